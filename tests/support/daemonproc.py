"""`maild run` as a subprocess: start it, stop it with SIGTERM, wait for its status or until it has
emptied a maildrop.

Used by the integration tests that drive the real command line and by the kill (crash) tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from maild.errors import ControlError
from maild.service.control_client import request
from tests.support.dovecot import Dovecot


def maild_command(cfg: Path, *options: str) -> list[str]:
    """The argv of ``python -m maild -c CFG [options] run``."""
    return [sys.executable, "-m", "maild", "-c", str(cfg), *options, "run"]


def maild_cli(cfg: Path, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m maild -c CFG ARGS...`` to the end: its exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@contextlib.contextmanager
def running_maild(
    command: list[str], *, log: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (see :func:`maild_command`) with its output in ``log`` (or discarded).

    ``env`` is added to this process's environment. Whatever happens in the block, the process does not
    outlive it: if it is still running at the end, it is killed.
    """
    out = log.open("wb") if log else None
    try:
        proc = subprocess.Popen(
            command,
            stdout=out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    finally:
        if out is not None:
            out.close()  # the daemon has its own descriptor
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_maild(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int:
    """SIGTERM the daemon and return its exit status (killing it and raising if it takes over ``timeout_s``)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def wait_for_status(
    cfg: Path, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0, poll_s: float = 0.1
) -> dict[str, Any]:
    """Poll ``maild -c CFG status --json`` until ``predicate(reply)`` holds; return that reply.

    Exit 0 (healthy) and 1 (an account needs attention) both carry the JSON; an exit 1 without it
    (the daemon still starting) and exit 3 (not running yet) are polled past.

    Raises:
        AssertionError: not within ``timeout_s`` seconds; the message holds the last reply.
    """
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        done = maild_cli(cfg, "status", "--json")
        if done.returncode in (0, 1) and done.stdout.strip():
            last = json.loads(done.stdout)
            if predicate(last):
                return last
        time.sleep(poll_s)
    raise AssertionError(f"status never matched within {timeout_s:g} s; last: {last}")


def wait_for_account(
    cfg: Path, name: str | None, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    """Poll like :func:`wait_for_status` until account ``name`` (None: the first) satisfies
    ``predicate``; return its record.

    Raises:
        AssertionError: not within ``timeout_s`` seconds.
    """

    def account(reply: dict[str, Any]) -> dict[str, Any] | None:
        accounts: list[dict[str, Any]] = reply.get("accounts", [])
        return next((a for a in accounts if name is None or a["name"] == name), None)

    reply = wait_for_status(cfg, lambda r: (a := account(r)) is not None and predicate(a), timeout_s)
    found = account(reply)
    assert found is not None
    return found


def status(control_socket: Path) -> dict[str, Any]:
    """The daemon's status reply, or ``{}`` while it does not answer yet."""
    try:
        return request(control_socket, {"command": "status"}, timeout_s=5)
    except ControlError:
        return {}


def end_process(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs, reap it and close the pipes the test opened to it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
    """Poll ``predicate`` every ``poll_s`` seconds until it is true (a hang guard, not a speed
    assertion); fail naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def wait_until_drained(
    directory: Path,
    dovecot: Dovecot,
    user: str,
    timeout_s: float,
    poll_s: float = 0.1,
    *,
    mailboxes: tuple[str, ...] = ("INBOX",),
) -> bool:
    """Wait until the first account has had a successful cycle and ``user``'s ``mailboxes`` are empty.

    ``directory`` holds the daemon's ``control.sock``. Returns False if that did not happen in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        accounts = status(directory / "control.sock").get("accounts")
        empty = not any(dovecot.maildir_files(user, mailbox) for mailbox in mailboxes)
        if accounts and accounts[0]["last_success"] is not None and empty:
            return True
        time.sleep(poll_s)
    return False


def log_events(log: Path, event: str) -> list[str]:
    """The levels of the daemon's JSON log lines (stderr to a file) with this ``event``, in order."""
    levels = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            levels.append(record["level"])
    return levels
