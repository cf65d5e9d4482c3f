"""A secret printed by a command from the admin's config (``password_command``, ``token_command``,
``client_secret_command``), run where blocking is allowed (a worker thread, the CLI).

The command is run without a shell, with stdin from /dev/null, in its own process group, bounded by a
timeout; its first stdout line is the secret. Errors name the config key and the program, never the
command's output.

:func:`stop_commands` kills every such command running now (its whole process group): a stopping daemon
calls it once its cycles are done, so that a command still running does not hold the process's exit
(the worker thread waiting for it is joined at exit) for the rest of its 30 s timeout, past systemd's
``TimeoutStopSec=30s`` (session 15; before, a ``sleep``-ing ``token_command`` held a stop 30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from maild.errors import ConfigError, TransientError

__all__ = ["first_line_of", "stop_commands"]

COMMAND_POLL_S = 0.1
"""How often (seconds) a command's reader looks whether :func:`stop_commands` stopped it or its
timeout passed while its stdout stays open: 0.1 s, the stop's delay at most (as the token endpoint's
``CONNECT_POLL_S``)."""

_RUNNING: set[subprocess.Popen[bytes]] = set()
_STOPPED: set[int] = set()  # PIDs of commands stop_commands killed (their callers raise "stopped")
_RUNNING_LOCK = threading.Lock()


def first_line_of(argv: Sequence[str], *, account: str, key: str, noun: str, timeout_s: float) -> str:
    """Run ``argv`` and return the first line of its stdout (without the line end; ``""`` if none).

    ``key`` (e.g. ``"password_command"``) and ``noun`` (e.g. ``"a password"``) word the errors;
    ``timeout_s`` is in seconds. A command that outlasts it, or that :func:`stop_commands` ends, is
    killed with its process group (children included).

    Raises:
        ConfigError: ``argv`` cannot be run, runs longer than ``timeout_s``, exits non-zero or prints
            an empty first line. The message never contains the output.
        TransientError: :func:`stop_commands` ended it (maild is stopping).
    """
    where = f"account {account}: {key} {argv[0]!r}"
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list from the admin's config, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: ended with its children
        )
    except OSError as exc:
        raise ConfigError(f"{where} failed: {type(exc).__name__}") from None
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        out = _read_until_end(proc, time.monotonic() + timeout_s)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
            stopped = proc.pid in _STOPPED
            _STOPPED.discard(proc.pid)
        if proc.returncode is None:  # interrupted in this thread (KeyboardInterrupt): not left behind
            _kill_group(proc)
            proc.wait()
    if stopped:
        raise TransientError(f"{where} stopped (maild is stopping)", account=account)
    if out is None:
        raise ConfigError(f"{where} failed: TimeoutExpired")
    value = out.decode("utf-8", "replace").splitlines()[0] if out else ""
    if proc.returncode != 0 or not value:
        raise ConfigError(f"{where} exited {proc.returncode} without printing {noun}")
    return value


def _read_until_end(proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    """``proc``'s whole stdout, read until its end (and ``proc`` reaped), or None: ``deadline``
    (:func:`time.monotonic`) passed or :func:`stop_commands` stopped it first; then its group is
    killed, ``proc`` reaped and its stdout closed without waiting for the pipe's end.

    Read in slices of :data:`COMMAND_POLL_S`, so that a stop is seen at once even when the pipe
    stays open: a child that left the group (``setsid``, a daemonising helper) keeps it open out of
    reach of the group's SIGKILL, and waiting for its end held the call, and a stop, without bound
    (review of session 15)."""
    while True:
        try:
            out, _ = proc.communicate(timeout=max(0.0, min(COMMAND_POLL_S, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            with _RUNNING_LOCK:
                stopped = proc.pid in _STOPPED
            if not stopped and time.monotonic() < deadline:
                continue  # communicate() again: output read so far is kept (subprocess docs)
        else:
            return out
        _kill_group(proc)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return None


def stop_commands() -> int:
    """Kill every command :func:`first_line_of` runs now, in any thread, with its process group;
    returns how many. Each of those calls raises TransientError ("stopped") at once. Commands started
    later are not affected."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
        _STOPPED.update(proc.pid for proc in running)
    for proc in running:
        _kill_group(proc)
    return len(running)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``proc`` leads (started with ``start_new_session``), and ``proc``."""
    if proc.returncode is not None:  # reaped: its PID may be another process's by now
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
