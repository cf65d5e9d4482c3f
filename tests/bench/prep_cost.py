"""The store path's user time, per message and per step: the batch preparation by function, SQLite's
thread by statement family, and each thread's user and system seconds.

    python3 -m tests.bench.prep_cost                       # 2,000 messages, medians of 3 fresh processes
    python3 -m tests.bench.prep_cost --repeat 5 --json     # machine-readable medians
    python3 -m tests.bench.prep_cost --parts store --sql "PRAGMA cache_size = -8192"
    python3 -m tests.bench.prep_cost --wait                # one run; prints PID, waits for a line on
                                                           # stdin: attach `perf record -g -p PID` first

Each run is a fresh ``python3`` process with ``maild fetch``'s allocator settings. The corpus is
``tests.bench.kernel_path``'s (scenario a's ``bench_mix``, seed 1: 2,000 messages, 273 MB), cached in
the work directory. Two parts:

1. **Preparation, by function** (in memory, one function at a time over the whole corpus, in the order
   ``_prepare`` calls them, so the caches warm as they do there): SHA-256, the header scan, the
   summary, the MIME walk, ``has_documents``, the index text, the row (``utc_text`` and the tuple), and
   the whole ``_prepare`` on the same messages for comparison.
2. **The store** as ``tests.bench.kernel_path`` runs it (messages of at least ``SPOOL_THRESHOLD_OCTETS``
   spooled in 64 KiB parts, batches closed at 8 MiB held or 32 MiB spooled, through
   :class:`maild.fetch.commits.CommitChain` with the real checkpointer), with the connection handed to
   ``_insert_batch`` wrapped so that each call's thread CPU (``getrusage(RUSAGE_THREAD)``, user and
   system) is added to its statement family, and with every thread's CPU read from
   ``/proc/self/task/*/stat`` before the archive is closed (the event loop, the preparation workers,
   SQLite's writer thread, the checkpointer).

Microseconds per message are over all 2,000 messages. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.kernel_path import HELD_BATCH_OCTETS, NOW, PART_OCTETS, SPOOLED_BATCH_OCTETS, _corpus

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


def _timed(loop: Callable[[], object]) -> tuple[float, float]:
    """User and system seconds of this thread spent in ``loop()``."""
    u0, s0 = _thread_cpu()
    loop()
    u1, s1 = _thread_cpu()
    return u1 - u0, s1 - s0


def _preparation(messages: list[bytes]) -> dict[str, tuple[float, float]]:
    """Part 1: each function of the preparation over every message (all in memory here)."""
    from maild.archive.batches import _prepare
    from maild.archive.document_kind import has_documents
    from maild.archive.index_text import index_text
    from maild.archive.mime import MAX_PART_HEADER_OCTETS, walk
    from maild.archive.parse import _TOP_FIELDS, ParsedMessage
    from maild.archive.schema import utc_text
    from maild.message import scan_header, sha256_hex, summary_of
    from maild.model import POP3Key, RetrievedMessage

    out: dict[str, tuple[float, float]] = {}
    out["sha256"] = _timed(lambda: [sha256_hex(raw) for raw in messages])
    scans: list[Any] = []
    out["header_scan"] = _timed(lambda: scans.extend(scan_header(raw, _TOP_FIELDS) for raw in messages))
    summaries: list[Any] = []
    out["summary"] = _timed(lambda: summaries.extend(summary_of(scan.fields) for scan in scans))
    leaves: list[Any] = []
    out["mime_walk"] = _timed(
        lambda: leaves.extend(
            walk(raw, scan if scan.body_start <= MAX_PART_HEADER_OCTETS else None)
            for raw, scan in zip(messages, scans, strict=True)
        )
    )
    parsed = [
        ParsedMessage(summary, tuple(b for n, b in scan.fields if n == b"cc"), parts)
        for summary, scan, parts in zip(summaries, scans, leaves, strict=True)
    ]
    out["has_documents"] = _timed(lambda: [has_documents(parts) for parts in leaves])
    out["index_text"] = _timed(
        lambda: [index_text(raw, p).row() for raw, p in zip(messages, parsed, strict=True)]
    )
    out["utc_text"] = _timed(lambda: [utc_text(s.date) if s.date else None for s in summaries])
    batch = [RetrievedMessage(POP3Key(f"u{n}"), raw) for n, raw in enumerate(messages)]
    out["_prepare (all of it)"] = _timed(lambda: _prepare(batch, "2026-03-02T09:00:00Z"))
    return out


def _family(sql: str) -> str:
    words = sql.split()
    if words[0] == "INSERT":
        table = words[words.index("INTO") + 1]
        if table == "messages":
            return "messages multi-row" if "OR" in words[:3] else "messages large row"
        return f"{table} insert"
    if words[0] == "SELECT":
        table = words[words.index("FROM") + 1]
        return f"{table} lookup"
    return f"{words[0].lower()} {words[2] if len(words) > 2 else ''}".strip()


class _TimedConnection:
    """A ``sqlite3.Connection`` whose calls add their thread CPU to a statement family."""

    def __init__(self, db: Any, totals: dict[str, list[float]]) -> None:
        self._db = db
        self._totals = totals

    def _add(self, family: str, u0: float, s0: float) -> None:
        u1, s1 = _thread_cpu()
        entry = self._totals[family]
        entry[0] += u1 - u0
        entry[1] += s1 - s0
        entry[2] += 1

    def execute(self, sql: str, params: Any = ()) -> Any:
        u0, s0 = _thread_cpu()
        cur = self._db.execute(sql, params)
        self._add(_family(sql), u0, s0)
        return cur

    def executemany(self, sql: str, rows: Any) -> Any:
        u0, s0 = _thread_cpu()
        cur = self._db.executemany(sql, rows)
        self._add(_family(sql), u0, s0)
        return cur

    def blobopen(self, *args: Any) -> Any:
        return _TimedBlob(self._db.blobopen(*args), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class _TimedBlob:
    def __init__(self, blob: Any, owner: _TimedConnection) -> None:
        self._blob = blob
        self._owner = owner

    def __enter__(self) -> _TimedBlob:
        self._blob.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._blob.__exit__(*exc)

    def write(self, data: Any) -> None:
        u0, s0 = _thread_cpu()
        self._blob.write(data)
        self._owner._add("blob write", u0, s0)


def _tasks() -> dict[int, tuple[float, float]]:
    """Each thread of this process: native id -> (user s, system s), from /proc (clock ticks)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) * _TICK_S, int(fields[12]) * _TICK_S)
    return out


async def _store(directory: Path, messages: list[bytes], wait: bool, sql: list[str]) -> dict[str, Any]:
    """Part 2: the store through the commit chain, SQL families and threads timed."""
    from maild.archive import batches
    from maild.archive.store import Store
    from maild.fetch.commits import CommitChain
    from maild.model import POP3Key, RetrievedMessage
    from maild.spool import SPOOL_THRESHOLD_OCTETS

    for old in directory.glob("archive.sqlite3*"):
        old.unlink()
    families: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    prepare_threads: set[int] = set()
    writer_threads: set[int] = set()
    real_insert, real_prepare = batches._insert_batch, batches._prepare

    def insert(db: Any, *args: Any) -> Any:
        writer_threads.add(threading.get_native_id())
        u0, s0 = _thread_cpu()
        try:
            return real_insert(_TimedConnection(db, families), *args)
        finally:
            u1, s1 = _thread_cpu()
            families["(_insert_batch in all)"][0] += u1 - u0
            families["(_insert_batch in all)"][1] += s1 - s0
            families["(_insert_batch in all)"][2] += 1

    def prepare(*args: Any) -> Any:
        prepare_threads.add(threading.get_native_id())
        return real_prepare(*args)

    batches._insert_batch = insert  # type: ignore[assignment]
    batches._prepare = prepare  # type: ignore[assignment]
    if wait:
        print(f"PID {os.getpid()}", flush=True)
        sys.stdin.readline()
    before = _tasks()
    start = resource.getrusage(resource.RUSAGE_SELF)
    store = await Store.open(directory / "archive.sqlite3")
    try:
        await store.ensure_account("bench", "Bench", "Bench", "pop3", NOW)
        for statement in sql:  # e.g. a PRAGMA, or an FTS5 option such as automerge
            await store.db._conn.execute(statement)

        async def committed(_batch: list[RetrievedMessage], _outcome: object) -> None:
            return None

        chain = CommitChain(store, "bench", lambda: NOW, committed)
        spool = [0.0, 0.0]
        batch: list[RetrievedMessage] = []
        held = spooled = 0
        for n, raw in enumerate(messages):
            key = POP3Key(f"u{n}")
            if len(raw) >= SPOOL_THRESHOLD_OCTETS:
                u0, s0 = _thread_cpu()
                writer = store.spool.writer()
                with memoryview(raw) as view:
                    for pos in range(0, len(raw), PART_OCTETS):
                        writer.write(view[pos : pos + PART_OCTETS])
                body = writer.finish()
                u1, s1 = _thread_cpu()
                spool[0] += u1 - u0
                spool[1] += s1 - s0
                batch.append(RetrievedMessage(key, body))
                spooled += len(raw)
                held += len(body.head)
            else:
                batch.append(RetrievedMessage(key, raw))
                held += len(raw)
            if held >= HELD_BATCH_OCTETS or spooled >= SPOOLED_BATCH_OCTETS:
                await chain.start(batch)
                batch, held, spooled = [], 0, 0
        if batch:
            await chain.start(batch)
        await chain.settle()
        names = {t.native_id: t.name for t in threading.enumerate()}
        after = _tasks()
    finally:
        await store.close()
    end = resource.getrusage(resource.RUSAGE_SELF)
    main_id = threading.main_thread().native_id
    threads: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for tid, (u, s) in after.items():
        u0, s0 = before.get(tid, (0.0, 0.0))
        name = (
            "event loop (main)"
            if tid == main_id
            else "SQLite writer"
            if tid in writer_threads
            else "checkpointer"
            if "checkpointer" in names.get(tid, "")
            else "preparation"
            if tid in prepare_threads
            else "other"
        )
        threads[name][0] += u - u0
        threads[name][1] += s - s0
    return {
        "families": {k: [round(v[0], 4), round(v[1], 4), v[2]] for k, v in families.items()},
        "threads": {k: [round(v[0], 3), round(v[1], 3)] for k, v in threads.items()},
        "spool_write": [round(spool[0], 3), round(spool[1], 3)],
        "process": [round(end.ru_utime - start.ru_utime, 3), round(end.ru_stime - start.ru_stime, 3)],
    }


def _child(
    directory: Path, count: int, wait: bool, parts: str, sql: list[str], body_chars: int | None
) -> dict[str, Any]:
    from maild.archive import index_text
    from maild.service.memory import tune_allocator

    tune_allocator()
    if body_chars is not None:  # what the index's body text costs (not what maild stores: a bench knob)
        index_text.MAX_BODY_CHARS = body_chars
    messages = _corpus(directory / f"corpus-{count}.pickle", count)
    out: dict[str, Any] = {"messages": len(messages), "octets": sum(map(len, messages))}
    if "prep" in parts:
        out["preparation"] = {k: [round(u, 4), round(s, 4)] for k, (u, s) in _preparation(messages).items()}
    if "store" in parts:
        wall = time.perf_counter()
        out["store"] = asyncio.run(_store(directory, messages, wait, sql))
        out["store"]["wall_s"] = round(time.perf_counter() - wall, 3)
    return out


def _print(med: dict[str, Any]) -> None:
    n = med["messages"]

    def us(seconds: float) -> str:
        return f"{seconds / n * 1e6:8.1f}"

    if "preparation" in med:
        print(f"preparation by function ({n} messages, in memory): user us/msg, sys us/msg")
        for name, (u, s) in med["preparation"].items():
            print(f"  {name:28s} {us(u)} {us(s)}")
    if "store" in med:
        print("store path, SQLite's thread by statement family: user us/msg, sys us/msg, calls")
        for name, (u, s, calls) in sorted(med["store"]["families"].items(), key=lambda kv: -kv[1][0]):
            print(f"  {name:28s} {us(u)} {us(s)} {calls:6.0f}")
        print("store path, threads: user s, sys s")
        for name, (u, s) in med["store"]["threads"].items():
            print(f"  {name:28s} {u:8.3f} {s:8.3f}")
        print(
            f"  {'spool write (in the loop)':28s} {med['store']['spool_write'][0]:8.3f} {med['store']['spool_write'][1]:8.3f}"
        )
        print(f"  {'process':28s} {med['store']['process'][0]:8.3f} {med['store']['process'][1]:8.3f}")


def _median(runs: list[Any]) -> Any:
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median([r[k] for r in runs if k in r]) for k in first}
    if isinstance(first, list):
        return [_median([r[i] for r in runs]) for i in range(len(first))]
    return statistics.median(runs)


def main() -> None:
    """Run ``--repeat`` fresh processes; print the medians (or the one ``--wait`` run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", default="prep,store", help="prep, store or both (default)")
    parser.add_argument(
        "--sql", action="append", default=[], help="a statement run after opening the archive"
    )
    parser.add_argument("--max-body-chars", type=int, help="index this many body characters (measuring only)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--wait", action="store_true", help="one run in this process, after a line on stdin")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="maild-prep-"))
    directory.mkdir(parents=True, exist_ok=True)
    if args.child or args.wait:
        print(
            json.dumps(
                _child(directory, args.messages, args.wait, args.parts, args.sql, args.max_body_chars)
            ),
            flush=True,
        )
        return
    runs = []
    for _ in range(args.repeat):
        argv = [sys.executable, "-m", "tests.bench.prep_cost", "--child", "--dir", str(directory)]
        argv += ["--messages", str(args.messages), "--parts", args.parts] + [f"--sql={q}" for q in args.sql]
        if args.max_body_chars is not None:
            argv += ["--max-body-chars", str(args.max_body_chars)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    med = _median(runs)
    if args.json:
        print(json.dumps(med))
    else:
        _print(med)


if __name__ == "__main__":
    main()
