"""Run one child process and measure it: wall seconds, CPU seconds and peak RSS from its rusage.

The child's own ``wait4`` rusage is used: CPU is user + system time of the child and every descendant it
waited for (an mda, a password command); peak RSS is ``ru_maxrss``, the largest resident set of that
process tree's single largest member. Only PIDs started here are ever signalled.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


@dataclasses.dataclass
class Run:
    """One measured child process.

    Attributes:
        wall_s: wall-clock seconds from spawn to exit (or to the kill at the budget).
        cpu_s: user + system CPU seconds of the child and its waited-for descendants.
        rss_mb: peak resident set size in MiB (``ru_maxrss``).
        returncode: exit status (negative: killed by that signal).
        cut: True when the run was stopped at its time budget.
        output: the last few KB of stdout+stderr, for error reports.
    """

    wall_s: float
    cpu_s: float
    rss_mb: float
    returncode: int
    cut: bool
    output: str


def run(
    argv: Sequence[str],
    *,
    budget_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> Run:
    """Run ``argv`` to completion or until ``budget_s`` seconds have passed (then SIGTERM, SIGKILL).

    Args:
        argv: the command.
        budget_s: the longest the child may run.
        env: its environment (default: ours).
        cwd: its working directory.
        log: where its stdout and stderr go (default: a temporary file next to nothing; kept short).
    """
    log = log or Path(f"/tmp/maild-bench-{os.getpid()}.log")
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: S603
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        cut = False
        deadline = started + budget_s
        status = 0
        usage = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            now = time.monotonic()
            if now >= deadline and not cut:
                cut = True
                proc.send_signal(signal.SIGTERM)
                deadline = now + 5.0
            elif cut and now >= deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002 if now - started < 1 else 0.01)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_bytes()[-4000:].decode("utf-8", "replace")
    assert usage is not None
    return Run(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
        cut=cut,
        output=text,
    )


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by every thread of a running process (nanosecond schedstat sums)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def reset_peak_rss(pid: int) -> None:
    """Reset a running process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
