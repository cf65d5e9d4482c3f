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
from collections.abc import Sequence

from maild.errors import ConfigError, TransientError

__all__ = ["first_line_of", "stop_commands"]

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
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise ConfigError(f"{where} failed: TimeoutExpired") from None
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
    value = out.decode("utf-8", "replace").splitlines()[0] if out else ""
    if proc.returncode != 0 or not value:
        raise ConfigError(f"{where} exited {proc.returncode} without printing {noun}")
    return value


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
