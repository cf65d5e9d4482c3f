"""Run one command and measure it: wall seconds, CPU seconds and peak RSS from its rusage.

CPU is user + system time of the command and every descendant it waited for (an mda, a password
command); peak RSS is ``ru_maxrss``, the resident set of the largest single process among them. Only
processes started here (and the command under ``time``) are ever signalled.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

TIME = "/usr/bin/time"
"""GNU time (Debian package ``time``)."""


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
        user_s: the user part of ``cpu_s`` (GNU time ``%U``), seconds.
        sys_s: the system part of ``cpu_s`` (GNU time ``%S``): the kernel's CPU on the command's
            behalf, seconds.
    """

    wall_s: float
    cpu_s: float
    rss_mb: float
    returncode: int
    cut: bool
    output: str
    user_s: float = 0.0
    sys_s: float = 0.0


def run(
    argv: Sequence[str],
    *,
    budget_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> Run:
    """Run ``argv`` to completion or until ``budget_s`` seconds have passed, then stop it.

    The command runs under GNU ``time``, a small process that forks it: the rusage (CPU, and above
    all ``ru_maxrss``) of a process forked straight from this large Python process would carry this
    process's own peak RSS across ``exec``. At the budget the command (``time``'s child) gets SIGTERM,
    SIGKILL 5 s later; ``time`` still reports it.

    Args:
        argv: the command.
        budget_s: the longest the command may run.
        env: its environment (default: ours).
        cwd: its working directory.
        log: where its stdout and stderr go.
    """
    log = log or Path(f"/tmp/maild-bench-{os.getpid()}.log")
    report = log.with_name(log.name + ".time")
    report.unlink(missing_ok=True)
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [TIME, "-q", "-f", "%e %U %S %M %x", "-o", str(report), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
        cut = False
        deadline = started + budget_s
        killed = False
        while proc.poll() is None:
            now = time.monotonic()
            if now >= deadline:
                child = _child_of(proc.pid)
                if not cut:
                    cut = True
                    if child:
                        os.kill(child, signal.SIGTERM)
                    deadline = now + 5.0
                elif not killed:
                    killed = True
                    if child:
                        os.kill(child, signal.SIGKILL)
                    deadline = now + 5.0
                else:
                    proc.kill()
                    proc.wait()
                    break
            time.sleep(0.002 if now - started < 1 else 0.01)
        wall = time.monotonic() - started
    text = log.read_bytes()[-4000:].decode("utf-8", "replace")
    try:
        fields = report.read_text().split()
        _elapsed, user_text, system_text, maxrss_kb, status = fields[-5:]
        user, system = float(user_text), float(system_text)
        rss = int(maxrss_kb) / 1024
        returncode = int(status)
    except (OSError, ValueError):
        user, system, rss = 0.0, 0.0, 0.0
        returncode = proc.returncode if proc.returncode is not None else -9
    if cut and returncode == 0:
        returncode = -signal.SIGTERM
    return Run(
        wall_s=wall,
        cpu_s=user + system,
        rss_mb=rss,
        returncode=returncode,
        cut=cut,
        output=text,
        user_s=user,
        sys_s=system,
    )


def _child_of(pid: int) -> int | None:
    """The first child of ``pid`` (the measured command under ``time``), or None."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by every thread of a running process (nanosecond schedstat sums)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def process_user_sys_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds used so far by a running process, all its threads
    (``utime``/``stime`` of ``/proc/PID/stat``, in clock ticks of ``SC_CLK_TCK``: 10 ms here, so
    coarser than :func:`process_cpu_s`, whose sum they split)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 is fields[0]
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def reset_peak_rss(pid: int) -> None:
    """Reset a running process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
