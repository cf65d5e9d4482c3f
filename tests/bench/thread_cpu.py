"""Where the user and system time of a one-shot fetch go, thread by thread, and how often the threads
hand work to each other: A/B pairs of ``maild fetch`` against the benchmark's seeded Dovecot.

    python3 -m tests.bench.thread_cpu                                  # this tree, POP3, scenario a, 3 runs
    python3 -m tests.bench.thread_cpu --tree /tmp/main --tree . --repeat 4   # alternating, back to back
    python3 -m tests.bench.thread_cpu --protocol imap --scenario c

Uses the Dovecot that ``python3 -m tests.bench.run`` seeded in ``DIR/full/dovecot`` (started here if it
is not running, stopped again afterwards); scenario a is the 2,000-message account, c the fifty accounts
(``pop3_threads`` and the concurrency settings of the benchmark's scenario c). Each run is a fresh
``python3`` of the tree (``maild fetch`` in a wrapper, a fresh archive, byte-compiled modules) that
records, with ``getrusage(RUSAGE_THREAD)`` as each thread ends, the user and system seconds of:

- ``pop3``: the POP3 worker threads (receive, decoder, spooling); ``imap`` work runs on the loop;
- ``loop``: the main thread: start-up, the event loop (cycle, adapters' hand-offs, IMAP protocol);
- ``prepare``: the event loop's default executor (batch preparation: hash, parse, index text; the
  spool writer jobs of IMAP before session 13);
- ``spool``: the IMAP spool writer thread (session 13; still running at the end, so read from
  ``/proc/self/task/TID/stat`` in clock ticks, 10 ms, as every thread still alive then);
- ``sqlite``: aiosqlite's thread (the transactions); ``checkpoint``: the checkpointer's thread;

each thread's minor page faults (``ru_minflt``: not disturbed by other load; the process's too),
and counts the event loop's cross-thread wake-ups (``call_soon_threadsafe``), its iterations, executor
jobs, futures (``loop.create_future`` and ``concurrent.futures.Future``) and commit batches. Per-thread
rusage is exact where sampling profilers are not (py-spy's ``--gil`` mode attributes time by the GIL's
holder and moves with the load); CPU seconds still move with the machine's load: compare trees in
alternating runs, user and system time apart. Not collected by pytest; figures go to
docs/performance.md ("Session 11: the POP3 fetch's user time"); speed is never asserted in tests.
"""

from __future__ import annotations

import argparse
import compileall
import json
import socket
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

REPO = Path(__file__).resolve().parents[2]
ROLES = ("pop3", "loop", "prepare", "spool", "sqlite", "checkpoint", "other")
COUNTS = ("wakeups", "iterations", "jobs", "futures", "batches")
MANY_SETTINGS = {"max_concurrent_fetches": 50, "max_connections_per_host": 50, "pop3_threads": 50}

WRAPPER = r"""
import collections, json, os, resource, sys, threading
import asyncio.base_events as base_events
import concurrent.futures as cf
import concurrent.futures.thread as cft
cpu = collections.defaultdict(lambda: [0.0, 0.0, 0])
counts = collections.Counter()
def role(thread):
    name = thread.name
    if name.startswith("maild-pop3"):
        return "pop3"
    if name.startswith("asyncio"):
        return "prepare"
    if name.startswith("maild-checkpointer"):
        return "checkpoint"
    if name.startswith("maild-spool-writer"):
        return "spool"
    if "connection_worker" in getattr(getattr(thread, "_target", None), "__name__", ""):
        return "sqlite"
    return "other"
real_run = threading.Thread.run
def run(self):
    kind = role(self)
    try:
        return real_run(self)
    finally:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        cpu[kind][0] += usage.ru_utime
        cpu[kind][1] += usage.ru_stime
        cpu[kind][2] += usage.ru_minflt
threading.Thread.run = run
sites = collections.Counter()
SITES = os.environ.get("THREAD_CPU_SITES") == "1"
GENERIC = {"_all", "_scalar", "_write", "work", "_atomic", "_transaction"}
def site():
    frame = sys._getframe(2)
    first = None
    via = ""
    while frame is not None:
        name = frame.f_code.co_filename
        here = f"{name.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"
        first = first or here
        if "/maild/" in name:
            if name.endswith("/archive/connection.py") and frame.f_code.co_name in GENERIC:
                via += here + " <- "  # the archive's generic helpers: name their caller too
                frame = frame.f_back
                continue
            return via + here
        if "/aiosqlite/" in name and not via:
            via = "aiosqlite " + frame.f_code.co_name + " <- "
        frame = frame.f_back
    return via or first or "?"
def counting(cls, name, key):
    real = getattr(cls, name)
    def wrapper(*args, **kwargs):
        counts[key] += 1
        if SITES:
            sites[f"{key} {site()}"] += 1
        return real(*args, **kwargs)
    setattr(cls, name, wrapper)
counting(base_events.BaseEventLoop, "call_soon_threadsafe", "wakeups")
counting(base_events.BaseEventLoop, "_run_once", "iterations")
counting(base_events.BaseEventLoop, "create_future", "futures")
counting(cft.ThreadPoolExecutor, "submit", "jobs")
counting(cf.Future, "__init__", "futures")
from maild.fetch import commits
real_start = commits.CommitChain.start
async def start(self, batch):
    counts["batches"] += 1
    return await real_start(self, batch)
commits.CommitChain.start = start
from maild.cli.main import main
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_THREAD)
cpu["loop"] = [usage.ru_utime, usage.ru_stime, usage.ru_minflt]
tick = os.sysconf("SC_CLK_TCK")
for thread in threading.enumerate():
    if thread is threading.main_thread() or not thread.is_alive() or thread.native_id is None:
        continue
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kind = role(thread)
    cpu[kind][0] += int(fields[11]) / tick
    cpu[kind][1] += int(fields[12]) / tick
    cpu[kind][2] += int(fields[7])
total = resource.getrusage(resource.RUSAGE_SELF)
with open(os.environ["THREAD_CPU_OUT"], "w") as out:
    json.dump({"code": code, "cpu": cpu, "counts": counts, "sites": sites, "user": total.ru_utime, "sys": total.ru_stime,
               "minflt": total.ru_minflt,
               "rss_mb": total.ru_maxrss / 1024}, out)
sys.exit(code)
"""


def _answers(port: int) -> bool:
    """Whether something accepts connections on loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def run_once(tree: Path, maild: Maild, out: Path, *, sites: bool = False) -> dict[str, Any]:
    """One one-shot fetch of ``tree`` into a fresh archive; the wrapper's record (with ``sites``,
    also each count by the call site it came from: the first maild frame of the caller's stack)."""
    maild.reset()
    env = {**maild.env(), "PYTHONPATH": str(tree), "THREAD_CPU_OUT": str(out)}
    if sites:
        env["THREAD_CPU_SITES"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, "fetch", "-c", str(maild.config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise SystemExit(f"maild fetch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    record: dict[str, Any] = json.loads(out.read_text())
    record["messages"] = maild.fetched()
    return record


def flat(record: dict[str, Any]) -> dict[str, float]:
    """A record as one mapping: ``ROLE user``/``ROLE sys`` seconds, the process's, and the counts."""
    out: dict[str, float] = {}
    for kind in ROLES:
        user, system, *faults = record["cpu"].get(kind, (0.0, 0.0, 0))
        out[f"{kind} user"], out[f"{kind} sys"] = user, system
        out[f"{kind} faults"] = float(faults[0] if faults else 0)
    out["process user"], out["process sys"] = record["user"], record["sys"]
    out["process faults"] = float(record.get("minflt", 0))
    out["rss MB"] = record["rss_mb"]
    for key in COUNTS:
        out[key] = float(record["counts"].get(key, 0))
    out["messages"] = float(record["messages"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the fetches, alternating trees; print a line per run and the medians per tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/maild-bench", help="the benchmark's work directory")
    parser.add_argument("--tree", action="append", help="a maild checkout to run (repeat to compare)")
    parser.add_argument("--protocol", choices=("pop3", "imap"), default="pop3")
    parser.add_argument("--scenario", choices=("a", "c"), default="a")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree")
    parser.add_argument(
        "--sites",
        action="store_true",
        help="count hand-offs and futures by call site (slower: not for timing)",
    )
    args = parser.parse_args(argv)
    trees = [Path(t).resolve() for t in (args.tree or [str(REPO)])]
    for tree in trees:
        compileall.compile_dir(str(tree / "maild"), quiet=1)
    directory = Path(args.dir) / "full"
    dovecot = Dovecot.attach(directory / "dovecot")
    # one started in the foreground by another process (tests.bench.run) is not "running" to attach
    started_here = not dovecot.running and not _answers(dovecot.ports.pop3)
    if started_here:
        dovecot.start(daemonize=True)
    users = ["one"] if args.scenario == "a" else [f"m{i:02d}" for i in range(50)]
    logins = [Login(u, u, dovecot.users[u], directory / "secrets" / u) for u in users]
    port = dovecot.ports.pop3 if args.protocol == "pop3" else dovecot.ports.imap
    settings = {} if args.scenario == "a" else MANY_SETTINGS
    runs: dict[Path, list[dict[str, float]]] = defaultdict(list)
    by_site: dict[Path, dict[str, int]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            maild = Maild(Path(tmp) / "work", args.protocol, port, logins, daemon_settings=settings)
            for i in range(args.repeat):
                for tree in trees if i % 2 == 0 else trees[::-1]:
                    record = run_once(tree, maild, Path(tmp) / "run.json", sites=args.sites)
                    by_site[tree] = record.get("sites", {})
                    row = flat(record)
                    runs[tree].append(row)
                    print(
                        f"{tree}: process {row['process user']:.2f} user + {row['process sys']:.2f} sys; "
                        + ", ".join(f"{k} {row[f'{k} user']:.2f}/{row[f'{k} sys']:.2f}" for k in ROLES[:6])
                        + f"; {int(row['messages'])} messages",
                        flush=True,
                    )
    finally:
        if started_here:
            dovecot.stop()
    keys = list(next(iter(runs.values()))[0])
    print("\nmedians" + "".join(f" | {tree}" for tree in trees))
    for key in keys:
        values = [statistics.median(r[key] for r in runs[tree]) for tree in trees]
        per_message = (
            "  ("
            + ", ".join(
                f"{v / max(1.0, runs[t][0]['messages']):.3f}" for v, t in zip(values, trees, strict=True)
            )
            + " per message)"
            if key in COUNTS
            else ""
        )
        print(f"{key:>14}: " + "  ".join(f"{v:8.3f}" for v in values) + per_message)
    if args.sites:
        _print_sites(trees, by_site, runs)
    return 0


def _print_sites(
    trees: list[Path], by_site: dict[Path, dict[str, int]], runs: dict[Path, list[dict[str, float]]]
) -> None:
    """The counts of each tree's last run by call site, per message (those of at least 0.001)."""
    print("\nper message by call site (last run)" + "".join(f" | {tree}" for tree in trees))
    keys = sorted({k for counts in by_site.values() for k in counts})
    for key in keys:
        values = [by_site[t].get(key, 0) / max(1.0, runs[t][-1]["messages"]) for t in trees]
        if max(values) >= 0.001:
            print(f"{key:>72}: " + "  ".join(f"{v:7.3f}" for v in values))


if __name__ == "__main__":
    raise SystemExit(main())
