"""Where the wall time of the 50 ms IMAP fetch goes: a timeline of receive, prepare, insert, COMMIT and
checkpoint per batch, from one one-shot ``maild fetch`` of the benchmark's 2,000 messages.

``python3 -m tests.bench.commit_timeline [--dir /tmp/maild-bench] [--tree PATH] [--rtt-ms 50]
[--repeat 3] [--batches]`` uses the Dovecot that ``python3 -m tests.bench.run`` seeded in
``DIR/full/dovecot`` (started here if it is not running, stopped again afterwards), a latency proxy
in this process, and runs ``maild fetch`` of the checkout at ``--tree`` (default: this one) in a
wrapper that records, with ``time.perf_counter``, when each of these begins and ends:

- ``prepare``: ``BatchWriter.prepare_batch`` (hash, parse, index text in a worker thread);
- ``insert``: ``BatchWriter.insert_batch`` (waiting for the write lock, the transaction);
- ``commit``: the ``COMMIT`` statement (the WAL written and fsync'ed; before session 8 also SQLite's
  automatic checkpoint after it);
- ``checkpoint``: a checkpoint in the checkpointer's thread (session 8), and ``restart``: the
  writer's own ``RESTART`` at the WAL's bound;
- ``chain``: the cycle waiting in ``CommitChain.settle`` (through ``start``) for the previous commit
  (reading paused: the fetch waits on the commits);
- ``idle``: the event loop waiting in ``epoll`` (nothing to do on the loop).

It prints, per run, the process's wall and CPU seconds, each kind's total and count, and with
``--batches`` one line per batch; ``--gil-profile FILE`` records the last run with ``py-spy record
--gil`` (summarise with ``python3 -m tests.bench.profile_summary FILE``). Not collected by pytest; figures go to docs/performance.md
("Session 8: the commit path"). Compare two trees by running this with ``--tree`` at each, back to
back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.bench.maildrun import Maild
from tests.bench.peers import Login
from tests.support.dovecot import Dovecot
from tests.support.proxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]
KINDS = ("prepare", "insert", "commit", "checkpoint", "restart", "chain", "idle")

WRAPPER = r"""
import json, os, resource, selectors, sys, threading, time
import aiosqlite
from maild.archive import batches, connection
from maild.fetch import commits
events = []
now = time.perf_counter
def span(kind, start, **extra):
    events.append((kind, start, now(), threading.current_thread().name, extra))
def wrap_async(cls, name, kind):
    real = getattr(cls, name)
    async def wrapper(self, *args, **kwargs):
        start = now()
        try:
            return await real(self, *args, **kwargs)
        finally:
            span(kind, start)
    setattr(cls, name, wrapper)
wrap_async(batches.BatchWriter, "prepare_batch", "prepare")
wrap_async(batches.BatchWriter, "insert_batch", "insert")
wrap_async(commits.CommitChain, "settle", "chain")  # start() waits through settle(keep=1)
try:  # the WAL bound: a method of the connection before session 15, its own class since
    from maild.archive.wal_bound import WALBound as _BoundOwner
    _BOUND = "before_write"
except ImportError:
    _BoundOwner, _BOUND = connection.ArchiveConnection, "_bound_wal"
if hasattr(_BoundOwner, _BOUND):
    real_bound = getattr(_BoundOwner, _BOUND)
    async def bound(self):
        checkpointer = getattr(self, "checkpointer", None) or self._checkpointer
        state = checkpointer.wal_state()
        start = now()
        await real_bound(self)
        if state is not None and now() - start > 0.0005:
            span("restart", start, frames=state.frames)
    setattr(_BoundOwner, _BOUND, bound)
try:
    from maild.archive import checkpointer
except ImportError:
    checkpointer = None
if checkpointer is not None:
    real_ckpt = checkpointer.Checkpointer._checkpoint
    def ckpt(self, conn):
        start = now()
        try:
            return real_ckpt(self, conn)
        finally:
            span("checkpoint", start)
    checkpointer.Checkpointer._checkpoint = ckpt
real_execute = aiosqlite.Connection.execute
def execute(self, sql, parameters=None):
    if sql != "COMMIT":
        return real_execute(self, sql, parameters)
    async def timed():
        start = now()
        try:
            return await real_execute(self, sql, parameters)
        finally:
            span("commit", start)
    return _Awaitable(timed)
class _Awaitable:
    def __init__(self, make):
        self._make = make
    def __await__(self):
        return self._make().__await__()
aiosqlite.Connection.execute = execute
real_select = selectors.EpollSelector.select
def select(self, timeout=None):
    start = now()
    try:
        return real_select(self, timeout)
    finally:
        if now() - start > 0.0002:
            span("idle", start)
selectors.EpollSelector.select = select
from maild.cli.main import main
t0 = now()
code = main(sys.argv[1:])
wall = now() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
with open(os.environ["TIMELINE_OUT"], "w") as out:
    json.dump({"t0": t0, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "sys": usage.ru_stime,
               "rss_mb": usage.ru_maxrss / 1024, "code": code, "events": events}, out)
sys.exit(code)
"""


def run_once(tree: Path, maild: Maild, out: Path, profile: str = "") -> dict[str, Any]:
    """One one-shot fetch of ``tree`` into a fresh archive; the wrapper's record. With ``profile``,
    py-spy records it there (raw, ``--gil``: only the thread holding the GIL is sampled)."""
    maild.reset()
    env = {**maild.env(), "PYTHONPATH": str(tree), "TIMELINE_OUT": str(out)}
    spy = ["py-spy", "record", "--gil", "--format", "raw", "--rate", "250", "-o", profile, "--"]
    proc = subprocess.run(
        [*(spy if profile else []), sys.executable, "-c", WRAPPER, "fetch", "-c", str(maild.config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise SystemExit(f"maild fetch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def summary(record: dict[str, Any]) -> dict[str, float]:
    """Each kind's total seconds and count, the wall and CPU, and the span from first prepare to last
    commit."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    first = last = None
    for kind, start, end, _thread, _extra in record["events"]:
        totals[kind] += end - start
        counts[kind] += 1
        if kind == "prepare" and first is None:
            first = start
        if kind == "commit":
            last = end
    out = {f"{k}_s": totals[k] for k in KINDS} | {f"{k}_n": float(counts[k]) for k in KINDS}
    out |= {"wall_s": record["wall"], "cpu_s": record["cpu"], "sys_s": record.get("sys", 0.0)}
    out["rss_mb"] = record["rss_mb"]
    out["store_span_s"] = (last - first) if first is not None and last is not None else 0.0
    return out


def batch_lines(record: dict[str, Any]) -> list[str]:
    """One line per batch: when its preparation, insert and COMMIT ran, seconds from the start."""
    t0 = record["t0"]
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for kind, start, end, _thread, _extra in record["events"]:
        by_kind[kind].append((start - t0, end - t0))
    lines = ["batch  prepare          insert           COMMIT"]
    inserts = by_kind["insert"]
    for i, (p, ins) in enumerate(zip(by_kind["prepare"], inserts, strict=False)):
        c = next((c for c in by_kind["commit"] if ins[0] <= c[0] and c[1] <= ins[1]), (0.0, 0.0))
        lines.append(
            f"{i:5d}  {p[0]:6.3f}-{p[1]:6.3f}  {ins[0]:6.3f}-{ins[1]:6.3f}  {c[0]:6.3f}-{c[1]:6.3f}"
        )
    for kind in ("checkpoint", "restart"):
        for start, end in by_kind[kind]:
            lines.append(f"{kind:>10}: {start:6.3f}-{end:6.3f} ({(end - start) * 1000:.0f} ms)")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the fetches; print a line per run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/maild-bench", help="the benchmark's work directory")
    parser.add_argument("--tree", default=str(REPO), help="the maild checkout to run")
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", action="store_true", help="print one line per batch of the last run")
    parser.add_argument("--gil-profile", default="", help="py-spy --gil raw profile of the last run here")
    args = parser.parse_args(argv)
    directory = Path(args.dir) / "full"
    dovecot = Dovecot.attach(directory / "dovecot")
    started_here = not dovecot.running
    if started_here:
        dovecot.start(daemonize=True)
    records: list[dict[str, Any]] = []
    try:
        with FaultProxy("127.0.0.1", dovecot.ports.imap) as proxy, tempfile.TemporaryDirectory() as tmp:
            proxy.latency(args.rtt_ms / 2000)
            login = Login("one", "one", dovecot.users["one"], directory / "secrets" / "one")
            maild = Maild(Path(tmp) / "work", "imap", proxy.port, [login], daemon_settings={})
            for i in range(args.repeat):
                profile = args.gil_profile if i == args.repeat - 1 else ""
                records.append(run_once(Path(args.tree), maild, Path(tmp) / f"run{i}.json", profile))
                s = summary(records[-1])
                print(
                    "  ".join(f"{k} {v:.2f}" for k, v in s.items() if not k.endswith("_n"))
                    + "  counts "
                    + " ".join(f"{k[:-2]}={int(v)}" for k, v in s.items() if k.endswith("_n")),
                    flush=True,
                )
    finally:
        if started_here:
            dovecot.stop()
    sums = [summary(r) for r in records]
    print("median: " + "  ".join(f"{k} {statistics.median(s[k] for s in sums):.2f}" for k in sums[0]))
    if args.batches:
        print("\n".join(batch_lines(records[-1])))
    os.environ.pop("TIMELINE_OUT", None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
