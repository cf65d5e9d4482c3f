"""The spool and the archive without the network: the kernel's share (system time, page faults, octets
read and written through system calls) of spooling and storing the benchmark's corpus.

    python3 -m tests.bench.kernel_path                        # 2,000 messages, medians of 3
    python3 -m tests.bench.kernel_path --pragma cache_size=-65536
    python3 -m tests.bench.kernel_path --wait                 # prints PID, waits for a line on stdin:
                                                              # attach perf record -p / strace -p first

Each run is a fresh ``python3`` process with the allocator settings of ``maild fetch``
(``maild.service.memory.tune_allocator``). It generates the scenario-a corpus of ``tests.bench.run``
(``bench_mix``, seed 1: 2,000 messages, 273 MB, 64 of them spooled), once, into a cache file beside the
archive, then writes every message of at least ``SPOOL_THRESHOLD_OCTETS`` to the archive's spool in
64 KiB parts (as the POP3 decoder and the IMAP writer jobs do) and stores the messages through
:class:`maild.fetch.commits.CommitChain` in batches closed at 8 MiB held or 32 MiB spooled (one
account's batches), with the real checkpointer, then closes the archive (its ``TRUNCATE`` checkpoint).
Reported per phase (``spool_write`` is inside ``store``, and counts only the thread that writes
the spool): user and system seconds of the process (``getrusage``), minor page faults, and ``rchar``/``wchar``/``syscr``/``syscw`` from
``/proc/self/io`` (octets and calls of read- and write-like system calls, page cache included).

Used for docs/performance.md, "Session 10: the system time". Speed is measured here, never asserted
in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PART_OCTETS = 64 * 1024
HELD_BATCH_OCTETS = 8 * 2**20
SPOOLED_BATCH_OCTETS = 32 * 2**20


def _sample(thread: bool = False) -> tuple[float, ...]:
    """This process's (or, with ``thread``, this thread's) CPU, faults and system-call I/O so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD if thread else resource.RUSAGE_SELF)
    where = "/proc/thread-self/io" if thread else "/proc/self/io"
    fields = dict(line.split(": ") for line in Path(where).read_text().splitlines())
    return (
        usage.ru_utime,
        usage.ru_stime,
        usage.ru_minflt,
        int(fields["rchar"]),
        int(fields["wchar"]),
        int(fields["syscr"]),
        int(fields["syscw"]),
    )


def _delta(a: tuple[float, ...], b: tuple[float, ...]) -> dict[str, float]:
    names = ("user_s", "sys_s", "minflt", "read_mib", "write_mib", "read_calls", "write_calls")
    out = {name: b[i] - a[i] for i, name in enumerate(names)}
    out["read_mib"] /= 2**20
    out["write_mib"] /= 2**20
    return {k: round(v, 3) for k, v in out.items()}


def _corpus(cache: Path, count: int) -> list[bytes]:
    if not cache.exists():
        from tests.bench.run import bench_mix
        from tests.support import corpus

        cache.write_bytes(pickle.dumps(list(corpus.generate(count, seed=1, size_mix=bench_mix()))))
    loaded: list[bytes] = pickle.loads(cache.read_bytes())
    return loaded


async def _one(directory: Path, count: int, pragmas: list[str], wait: bool) -> dict[str, Any]:
    from maild.archive.store import Store
    from maild.fetch.commits import CommitChain
    from maild.model import POP3Key, RetrievedMessage
    from maild.service.memory import tune_allocator
    from maild.spool import SPOOL_THRESHOLD_OCTETS

    tune_allocator()
    messages = _corpus(directory / f"corpus-{count}.pickle", count)
    if wait:
        print(f"PID {os.getpid()}", flush=True)
        sys.stdin.readline()
    store = await Store.open(directory / "archive.sqlite3")
    spool_totals = [0.0] * 7
    try:
        for pragma in pragmas:
            await store._conn.execute(f"PRAGMA {pragma}")
        await store.ensure_account("bench", "Bench", "Bench", "pop3", NOW)

        async def committed(_batch: list[RetrievedMessage], _outcome: object) -> None:
            return None

        chain = CommitChain(store, "bench", lambda: NOW, committed)
        start = _sample()
        wall = time.perf_counter()
        batch: list[RetrievedMessage] = []
        held = spooled = 0
        for n, raw in enumerate(messages):
            key = POP3Key(f"u{n}")
            if len(raw) >= SPOOL_THRESHOLD_OCTETS:
                before = _sample(thread=True)  # the spool is written by this thread only
                writer = store.spool.writer()
                with memoryview(raw) as view:
                    for pos in range(0, len(raw), PART_OCTETS):
                        writer.write(view[pos : pos + PART_OCTETS])
                body = writer.finish()
                after = _sample(thread=True)
                spool_totals = [t + (y - x) for t, x, y in zip(spool_totals, before, after, strict=True)]
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
        stored = _sample()
    finally:
        await store.close()
    closed = _sample()
    return {
        "spool_write": _delta((0.0,) * 7, tuple(spool_totals)),
        "store": _delta(start, stored),
        "close": _delta(stored, closed),
        "total": _delta(start, closed),
        "wall_s": round(time.perf_counter() - wall, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    """Run the measurement ``--repeat`` times, each in a fresh process; print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pragma", action="append", default=[])
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--wait", action="store_true", help="one run in this process, after a line on stdin")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.wait:
        directory = args.dir or Path(tempfile.mkdtemp(prefix="maild-kernel-"))
        for old in directory.glob("archive.sqlite3*"):
            old.unlink()
        print(json.dumps(asyncio.run(_one(directory, args.messages, args.pragma, args.wait))), flush=True)
        return
    directory = args.dir or Path(tempfile.mkdtemp(prefix="maild-kernel-"))
    directory.mkdir(parents=True, exist_ok=True)
    runs = []
    for _ in range(args.repeat):
        argv = [sys.executable, "-m", "tests.bench.kernel_path", "--child", "--dir", str(directory)]
        argv += ["--messages", str(args.messages)] + [f"--pragma={p}" for p in args.pragma]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]["total"]), flush=True)
    print("medians:")
    for phase in ("spool_write", "store", "close", "total"):
        keys = runs[0][phase].keys()
        print(f"  {phase:12s}", {k: round(statistics.median(r[phase][k] for r in runs), 3) for k in keys})


if __name__ == "__main__":
    main()
