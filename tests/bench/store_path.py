"""The store path alone: CPU and peak RSS of storing the benchmark's corpus through the real Store.

    python3 -m tests.bench.store_path                   # 2,000 messages, with and without the index
    python3 -m tests.bench.store_path --repeat 3        # medians of 3 (each run a fresh process)
    python3 -m tests.bench.store_path --pragma cache_size=-8192
    python3 -m tests.bench.store_path --only with --chain   # through the fetch cycle's CommitChain

Each run is a fresh ``python3`` process that generates the corpus (``tests/support/corpus.py``, seed 0,
default mix) first, then stores it with :meth:`maild.archive.store.Store.store_batch` in batches of
``--batch-mib`` (default 4: the one-account batch under ``policy.MEMORY_BUDGET_OCTETS`` of 8 MiB), WAL and ``synchronous=FULL`` as always,
and reports the CPU (user + system, every thread of the process) and the peak RSS (``ru_maxrss``)
of the storing alone (the corpus is held in memory for the whole run: its octets are reported
beside the RSS). "without index": ``messages_fts`` is replaced by a plain table and the index text
is empty and the message is not walked (only its header summary is made), as ``tests/bench/search.py``
does, so the cost of the FTS5 index (text extraction and FTS5 rows) shows by difference.

``--chain`` stores the batches through :class:`maild.fetch.commits.CommitChain` as a fetch cycle does
when its reading waits for the commits (at 50 ms RTT): each batch is prepared while the previous one's
transaction runs. Without it, one ``store_batch`` after the other (prepare, then insert).

Speed and memory are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one(
    count: int, batch_mib: int, index: bool, pragmas: list[str], directory: Path, chain: bool = False
) -> dict[str, float]:
    from maild.archive import batches as store_module
    from maild.archive.index_text import IndexText
    from maild.archive.parse import ParsedMessage
    from maild.archive.store import Store
    from maild.fetch.commits import CommitChain
    from maild.message import summarise
    from maild.model import POP3Key, RetrievedMessage
    from tests.support import corpus

    messages = list(corpus.generate(count, seed=0))
    octets = sum(len(m) for m in messages)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    db = directory / "archive.sqlite3"
    store = await Store.open(db)
    try:
        for pragma in pragmas:
            await store._conn.execute(f"PRAGMA {pragma}")
        if not index:
            await store._conn.execute("DROP TABLE messages_fts")
            await store._conn.execute(
                "CREATE TABLE messages_fts (sender, recipients, subject, body, attachments)"
            )
            store_module.index_text = lambda raw, parsed=None: IndexText("", "", "", "", "")  # type: ignore[assignment]
            # without an index the store needs the header summary only, not the MIME walk
            store_module.parse = lambda raw, summary=None: ParsedMessage(summarise(raw), (), [])  # type: ignore[assignment]
        await store.ensure_account("bench", "Bench", "Bench", "pop3", NOW)

        async def committed(_batch: list[RetrievedMessage], _outcome: object) -> None:
            return None

        commits = CommitChain(store, "bench", lambda: NOW, committed)

        async def commit(batch: list[RetrievedMessage]) -> None:
            if chain:
                await commits.start(batch)
            else:
                await store.store_batch("bench", batch, NOW)

        wall = time.perf_counter()
        cpu = _cpu_s()
        batch: list[RetrievedMessage] = []
        held = 0
        for n, raw in enumerate(messages):
            batch.append(RetrievedMessage(POP3Key(f"u{n}"), raw))
            held += len(raw)
            if held >= batch_mib * 2**20:
                await commit(batch)
                batch, held = [], 0
        if batch:
            await commit(batch)
        await commits.settle()
        cpu = _cpu_s() - cpu
        wall = time.perf_counter() - wall
    finally:
        await store.close()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before,
        "corpus_mb": octets / 2**20,
    }


def main() -> None:
    """Run the measurement (in a child process per run) and print medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-mib", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pragma", action="append", default=[])
    parser.add_argument("--only", choices=("with", "without"))
    parser.add_argument("--chain", action="store_true", help="store through the cycle's CommitChain")
    parser.add_argument("--child", choices=("with", "without"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="maild-store-path-") as tmp:
            out = asyncio.run(
                _one(args.messages, args.batch_mib, args.child == "with", args.pragma, Path(tmp), args.chain)
            )
        print(json.dumps(out))
        return
    for label in ("without", "with"):
        if args.only and args.only != label:
            continue
        runs = []
        for _ in range(args.repeat):
            cmd = [
                sys.executable,
                "-m",
                "tests.bench.store_path",
                "--child",
                label,
                "--messages",
                str(args.messages),
                "--batch-mib",
                str(args.batch_mib),
                *(["--chain"] if args.chain else []),
            ]
            for p in args.pragma:
                cmd += ["--pragma", p]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        cpus = ", ".join(f"{r['cpu_s']:.2f}" for r in runs)
        print(
            f"{label} index: CPU {med['cpu_s']:.2f} s (runs {cpus}), wall {med['wall_s']:.2f} s,"
            f" peak RSS {med['peak_rss_mb']:.0f} MB (before storing {med['rss_before_mb']:.0f} MB,"
            f" corpus {med['corpus_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
