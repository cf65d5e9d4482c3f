"""The control socket's slots kept for ``status`` against a real daemon whose server is stalled: 64
``fetch-now`` waits never lock an admin out (QA of session 15, left item).

Steps: a POP3 account reaching Dovecot through the fault proxy, stalled, so that every cycle hangs;
``maild run``; 64 raw clients each send ``fetch-now`` with ``wait``; 4 of them get ``busy`` at once,
the other 60 wait; ``maild status --json`` and ``maild check`` still answer; the proxy is reset and
the daemon stopped.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from maild.service import control
from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild, wait_for_status
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

#: Longest wait for the 4 ``busy`` lines, in seconds (they come at once; bounded against a hang).
BUSY_WAIT_S = 30.0


@pytest.fixture
def stalled(dovecot: Dovecot) -> Iterator[FaultProxy]:
    """A fault proxy in front of Dovecot's plaintext POP3 port, stalled: nothing gets through."""
    with FaultProxy(dovecot.host, dovecot.ports.pop3) as proxy:
        proxy.stall()
        yield proxy


def busy_lines(clients: list[socket.socket], wanted: int) -> dict[socket.socket, bytes]:
    """The first ``wanted`` reply lines among ``clients`` (each one line), read as they come, by client."""
    lines: dict[socket.socket, bytes] = {}
    pending = dict.fromkeys(clients, b"")
    deadline = time.monotonic() + BUSY_WAIT_S
    while len(lines) < wanted:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(lines)} of {wanted} clients were answered within {BUSY_WAIT_S:g} s"
        ready, _, _ = select.select(list(pending), [], [], left)
        for c in ready:
            chunk = c.recv(65536)
            pending[c] += chunk
            if pending[c].endswith(b"\n") or not chunk:
                lines[c] = pending.pop(c)
    return lines


def test_64_fetch_now_waits_on_a_stalled_server_leave_status_answering(
    dovecot: Dovecot, mail_user: MailUser, stalled: FaultProxy
) -> None:
    """With 64 fetch-now waits held by a stalled server, 4 get busy and status and check answer."""
    directory = short_dir()
    spec = AccountSpec(
        "anna-pop",
        "pop3",
        mail_user.name,
        mail_user.password,
        tls="none",
        extra={"host": stalled.host, "port": stalled.port, "timeout": "60s"},
    )
    cfg = write_config(directory, dovecot, [spec])
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        wait_for_status(cfg, lambda s: bool(s["accounts"]))
        request = json.dumps({"command": "fetch-now", "account": "anna-pop", "wait": True}).encode() + b"\n"
        clients = []
        try:
            for _ in range(control.MAX_CLIENTS):
                c = socket.socket(socket.AF_UNIX)
                clients.append(c)
                c.connect(str(directory / "control.sock"))
                c.sendall(request)
            lines = busy_lines(clients, control.QUICK_SLOTS)
            assert all(json.loads(line)["error"]["code"] == "busy" for line in lines.values()), lines
            status = maild_cli(cfg, "status", "--json", timeout_s=30)
            assert status.returncode in (0, 1), status.stderr
            assert [a["name"] for a in json.loads(status.stdout)["accounts"]] == ["anna-pop"]
            check = maild_cli(cfg, "check", timeout_s=30)
            assert check.returncode != 3, check.stdout + check.stderr  # 3: UNKNOWN, not asked
            waiting = [c for c in clients if c not in lines]
            assert select.select(waiting, [], [], 0)[0] == []  # the other 60 still wait on the server
        finally:
            for c in clients:
                c.close()
            stalled.reset()
        assert stop_maild(proc, timeout_s=30) == 0
