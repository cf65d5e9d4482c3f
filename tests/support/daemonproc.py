"""`maild run` as a subprocess: start it, stop it with SIGTERM, wait until it has emptied a maildrop.

Used by the integration tests that drive the real command line and by the kill (crash) tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from maild.errors import ControlError
from maild.service.control_client import request
from tests.support.dovecot import Dovecot


def maild_command(cfg: Path, *options: str) -> list[str]:
    """The argv of ``python -m maild -c CFG [options] run``."""
    return [sys.executable, "-m", "maild", "-c", str(cfg), *options, "run"]


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


def status(control_socket: Path) -> dict[str, Any]:
    """The daemon's status reply, or ``{}`` while it does not answer yet."""
    try:
        return request(control_socket, {"command": "status"}, timeout_s=5)
    except ControlError:
        return {}


def wait_until_drained(
    directory: Path, dovecot: Dovecot, user: str, timeout_s: float, poll_s: float = 0.1
) -> bool:
    """Wait until the first account has had a successful cycle and ``user``'s INBOX is empty.

    ``directory`` holds the daemon's ``control.sock``. Returns False if that did not happen in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        accounts = status(directory / "control.sock").get("accounts")
        if accounts and accounts[0]["last_success"] is not None and not dovecot.maildir_files(user):
            return True
        time.sleep(poll_s)
    return False
