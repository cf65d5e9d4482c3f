"""Full-text search benchmark: index extraction cost, index size, query time on a large archive.

    python3 -m tests.bench.search                      # 100,000 messages (about 10 minutes on 2 cores)
    python3 -m tests.bench.search --messages 5000      # a quick run
    python3 -m tests.bench.search --messages 0         # the fetch-path figures only (no query archive)

Three measurements (figures go into docs/performance.md, "Full-text search"):

1. Extraction cost on the fetch benchmark's corpus (``tests/support/corpus.py``, the mix and seed of
   ``tests/bench/run.py``'s scenario a: 2,000 messages, 273 MB): CPU seconds of what only the index
   needs (the MIME walk of :func:`maild.archive.parse.parse` and
   :func:`maild.archive.index_text.index_text`: the parse and index text less the header summary)
   against what ``_prepare`` spends anyway (SHA-256 and header summary), and the cost of storing it
   with and without the index, each against the CPU of the daemon's initial POP3 fetch of the same
   corpus **measured in the same run** (``python3 -m tests.bench.run --scenarios a --protocols pop3
   --tools maild``, its "maild daemon" initial row; ``--fetch-cpu S`` gives a figure instead, ``0``
   leaves the shares out). The decode cache of :func:`maild.message.decode_field` starts empty each time.
2. An archive of N distinct text and HTML messages (``SMALL_MIX``) stored through the real
   :class:`~maild.archive.store.Store` in batches of 500 (WAL, ``synchronous=FULL``): wall and CPU
   per message, file size, and the share of the FTS5 tables (``dbstat``).
3. Queries through :class:`~maild.archive.reader.ArchiveReader` (limit 50): the number of matches,
   median and worst of 15 runs each (wall time, and the median CPU time, which other work on a shared
   machine does not inflate as much), and one ``maild messages search`` process end to end.

Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from maild.archive import batches as store_module
from maild.archive.index_text import IndexText, index_text
from maild.archive.parse import ParsedMessage, parse
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.store import Store
from maild.message import _decoded, sha256_hex, summarise
from maild.model import POP3Key, RetrievedMessage
from tests.support import corpus

FETCH_SEED = 1
"""The corpus seed of the fetch benchmark's one-account scenarios (``tests/bench/run.py``)."""
QUERIES = (
    ("common word", "Nebenkosten"),
    ("rare word", "Schlüsselübergabe"),
    ("two words", "Heizung Abrechnung"),
    ("phrase", '"mit freundlichen Grüßen"'),
    ("prefix", "Wasser*"),
    ("column filter", "subject:Abrechnung"),
)
BATCH = 500
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _sha256_s(messages: list[bytes]) -> float:
    start = time.process_time()
    for raw in messages:
        sha256_hex(raw)
    return time.process_time() - start


def fetch_messages(count: int) -> list[bytes]:
    """The first ``count`` messages the fetch benchmark's scenario a fetches (its mix and seed)."""
    from tests.bench.run import bench_mix

    return list(corpus.generate(count, seed=FETCH_SEED, size_mix=bench_mix()))


def daemon_fetch_cpu_s(directory: Path) -> float:
    """CPU seconds of the daemon's initial POP3 fetch of scenario a, measured now (one run of the fetch
    benchmark in a child process, its seeded Dovecot kept in ``directory``)."""
    result = directory / "fetch-cpu.json"
    subprocess.run(
        [
            sys.executable, "-m", "tests.bench.run", "--scenarios", "a", "--protocols", "pop3",
            "--tools", "maild", "--noop-repeat", "1", "--no-install", "--dir", str(directory / "fetch"),
            "--json", str(result),
        ],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows = json.loads(result.read_text())["rows"]
    (row,) = [
        r
        for r in rows
        if r["scenario"].startswith("a") and r["phase"] == "initial" and r["tool"] == "maild daemon"
    ]
    return float(row["cpu_s"])


def _share(spent: float, fetch_cpu_s: float) -> str:
    if not fetch_cpu_s:
        return "no fetch CPU measured"
    return f"{spent / fetch_cpu_s * 100:.1f} % of the daemon's fetch CPU ({fetch_cpu_s:.2f} s)"


def extraction_cost(messages: list[bytes], fetch_cpu_s: float) -> None:
    """Print CPU seconds of index extraction against hashing + summary and the fetch's CPU."""
    count = len(messages)
    octets = sum(len(m) for m in messages)
    _decoded.clear()
    start = time.process_time()
    for raw in messages:
        sha256_hex(raw)
        summarise(raw)
    prepare_s = time.process_time() - start
    _decoded.clear()
    start = time.process_time()
    for raw in messages:
        index_text(raw, parse(raw))  # as Store._prepare calls it: the summary comes with the parse
    index_s = time.process_time() - start - prepare_s + _sha256_s(messages)
    print(f"corpus: {count} messages, {octets / 1e6:.0f} MB")
    print(f"  SHA-256 + header summary: {prepare_s:.3f} s CPU ({prepare_s / count * 1e3:.3f} ms/message)")
    print(f"  parse + index text - summary: {index_s:.3f} s CPU ({index_s / count * 1e3:.3f} ms/message)")
    if fetch_cpu_s:
        print(f"  extraction: {_share(index_s, fetch_cpu_s)}")


async def store_cost(directory: Path, messages: list[bytes], fetch_cpu_s: float, repeat: int = 3) -> None:
    """Print the CPU of storing the corpus with the index and without it (extraction and FTS5 rows).

    Each is run ``repeat`` times, alternating, and the least CPU of each is kept: the machine is shared,
    and other work only ever adds to a run's CPU.
    """
    count = len(messages)
    results: dict[str, float] = {}
    for _ in range(repeat):
        for label in ("without index", "with index"):
            spent = await _store_once(directory, messages, with_index=label == "with index")
            results[label] = min(results.get(label, spent), spent)
    added = results["with index"] - results["without index"]
    print(
        f"storing the corpus (batches of 200, least of {repeat}): {results['without index']:.2f} s CPU without"
        f" index, {results['with index']:.2f} s with (+{added:.2f} s, {added / count * 1e3:.3f} ms/message,"
        f" {_share(added, fetch_cpu_s)})"
    )


async def _store_once(directory: Path, messages: list[bytes], *, with_index: bool) -> float:
    """CPU seconds of storing ``messages`` into a new archive, with or without the full-text index."""
    db = directory / f"store-cost-{with_index}.sqlite3"
    for leftover in directory.glob(db.name + "*"):
        leftover.unlink()
    store = await Store.open(db)
    try:
        if not with_index:  # a plain table of the same name takes the (empty) rows
            await store._conn.execute("DROP TABLE messages_fts")
            await store._conn.execute("CREATE TABLE messages_fts (sender, recipients, subject, body, attachments)")
        await store.ensure_account("bench", "Bench", "Bench", "pop3", NOW)
        original, original_parse = store_module.index_text, store_module.parse
        if not with_index:  # no index text, and only the header summary (no MIME walk)
            store_module.index_text = lambda raw, parsed=None: IndexText("", "", "", "", "")
            store_module.parse = lambda raw, summary=None: ParsedMessage(summarise(raw), (), [])
        start = time.process_time()
        try:
            for i in range(0, len(messages), 200):
                batch = [RetrievedMessage(POP3Key(f"u{i + n}"), raw) for n, raw in enumerate(messages[i : i + 200])]
                await store.store_batch("bench", batch, NOW)
        finally:
            store_module.index_text, store_module.parse = original, original_parse
        return time.process_time() - start
    finally:
        await store.close()
        for leftover in directory.glob(db.name + "*"):
            leftover.unlink()


async def build(db: Path, count: int) -> None:
    """Store ``count`` distinct SMALL_MIX messages in batches; print wall and CPU per message."""
    wall = time.perf_counter()
    cpu = time.process_time()
    store = await Store.open(db)
    try:
        await store.ensure_account("bench", "Bench", "Bench", "pop3", NOW)
        batch: list[RetrievedMessage] = []
        for n, raw in enumerate(corpus.generate(count, seed=7, size_mix=corpus.SMALL_MIX)):
            batch.append(RetrievedMessage(POP3Key(f"u{n}"), raw))
            if len(batch) == BATCH:
                await store.store_batch("bench", batch, NOW)
                batch = []
        if batch:
            await store.store_batch("bench", batch, NOW)
    finally:
        await store.close()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    print(f"archive: {count} messages stored in {wall:.1f} s wall, {cpu:.1f} s CPU (corpus generation included)")
    print(f"  per message: {wall / count * 1e3:.2f} ms wall, {cpu / count * 1e3:.2f} ms CPU")


def sizes(db: Path) -> None:
    """Print the archive's size and the FTS5 tables' share."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        total = db.stat().st_size
        raw = conn.execute("SELECT sum(size_octets) FROM messages").fetchone()[0]
        try:
            fts = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'messages_fts%'").fetchone()[0]
        except sqlite3.OperationalError:
            fts = None
    finally:
        conn.close()
    print(f"  file {total / 1e6:.0f} MB, messages' raw octets {raw / 1e6:.0f} MB")
    if fts is not None:
        print(f"  FTS5 tables {fts / 1e6:.0f} MB = {fts / total * 100:.1f} % of the file, {fts / raw * 100:.1f} % of the mail")


def _matches(db: Path, query: str) -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (query,)).fetchone()[0])
    finally:
        conn.close()


def queries(db: Path) -> None:
    """Print median and worst milliseconds of each query (limit 50), and one CLI run."""
    with ArchiveReader(db) as reader:
        for label, query in QUERIES:
            times = []
            cpu = []
            hits = 0
            for _ in range(15):
                start, start_cpu = time.perf_counter(), time.process_time()
                hits = len(reader.search(query, MessageFilter(limit=50)))
                times.append((time.perf_counter() - start) * 1e3)
                cpu.append((time.process_time() - start_cpu) * 1e3)
            matches = _matches(db, query)
            print(
                f"  {label:<16} {query!r:<28} {matches:>6} matches {hits:>3} shown  median {statistics.median(times):6.1f} ms"
                f" (CPU {statistics.median(cpu):5.1f} ms)  worst {max(times):6.1f} ms"
            )
        start = time.perf_counter()
        reader.index_coverage()
        print(f"  index coverage check: {(time.perf_counter() - start) * 1e3:.1f} ms")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "maild", "messages", "search", "--database", str(db), "Nebenkosten"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    print(f"  `maild messages search Nebenkosten` process: {(time.perf_counter() - start) * 1e3:.0f} ms")


def main() -> None:
    """Run the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="archive size for the query test")
    parser.add_argument("--corpus", type=int, default=2000, help="messages for the extraction cost")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/maild-bench-search"))
    parser.add_argument(
        "--fetch-cpu",
        type=float,
        default=None,
        help="the fetch's CPU s instead of measuring it (0: no shares)",
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    fetch_cpu_s = daemon_fetch_cpu_s(args.dir) if args.fetch_cpu is None else args.fetch_cpu
    if fetch_cpu_s:
        print(f"daemon's initial POP3 fetch of scenario a (this run): {fetch_cpu_s:.2f} s CPU")
    messages = fetch_messages(args.corpus)
    extraction_cost(messages, fetch_cpu_s)
    asyncio.run(store_cost(args.dir, messages, fetch_cpu_s))
    if not args.messages:  # --messages 0: the fetch-path figures only
        return
    db = args.dir / f"archive-{args.messages}.sqlite3"
    if not db.exists():
        args.dir.mkdir(parents=True, exist_ok=True)
        partial = args.dir / "partial.sqlite3"
        for leftover in args.dir.glob("partial.sqlite3*"):
            leftover.unlink()
        asyncio.run(build(partial, args.messages))
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{partial}{suffix}").exists():
                shutil.move(f"{partial}{suffix}", f"{db}{suffix}")
    print(f"archive {db}:")
    sizes(db)
    queries(db)


if __name__ == "__main__":
    main()
