"""A token endpoint that accepts and never answers does not hold a stop (QA of session 14).

Before: SIGTERM cancelled the cycles after ``shutdown_timeout``, but the worker thread blocked in the HTTP exchange
ran on until HTTP_TIMEOUT_S (30 s) had passed: the POP3 cycle's cancellation waited for it and the interpreter's
exit joined it (IMAP's ``asyncio.to_thread``), so ``maild run`` with ``shutdown_timeout = "1s"`` exited 29 s after
SIGTERM, at systemd's ``TimeoutStopSec=30s``. A TLS endpoint that never finished its handshake was not even cut off
by the exchange's own deadline (the socket was watched from the end of the handshake).

Steps of the daemon test: start a scripted mail server offering XOAUTH2 and a token endpoint that accepts
connections and never answers; start ``maild run`` with one OAuth2 account (refresh token stored) and
``shutdown_timeout = "1s"``; wait until the token endpoint has a connection; SIGTERM; the daemon exits 0 within the
stop guard, which is a fraction of HTTP_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tomli_w

from maild.auth import endpoint
from maild.auth import imap as imap_auth
from maild.auth.tokens import OAuth2Settings, OAuth2Tokens, RefreshTokenStore
from maild.errors import MaildError, TransientError
from maild.model import ServerSettings
from maild.secret import Secret
from tests.support.daemonproc import maild_command, running_maild
from tests.support.maildconf import short_dir

#: How long the tests wait for a stopped exchange or daemon to end, in seconds: a hang guard, well under the
#: HTTP_TIMEOUT_S (30 s) the exchange ran on for before.
STOP_GUARD_S = 12.0


def accept_each(listener: socket.socket, take: Callable[[socket.socket], None]) -> None:
    """Hand every connection ``listener`` accepts to ``take``, until the listener is closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        take(conn)


class SilentEndpoint:
    """A loopback listener that accepts connections and never sends an octet (nor completes a TLS handshake)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.connected = threading.Event()
        self.thread = threading.Thread(target=accept_each, args=(self.listener, self._take), daemon=True)
        self.thread.start()

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}/token"

    def _take(self, conn: socket.socket) -> None:
        self.accepted.append(conn)
        self.connected.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentEndpoint]:
    """The silent endpoint, closed after the test."""
    server = SilentEndpoint()
    yield server
    server.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_abort_exchanges_ends_an_exchange_the_endpoint_never_answers(
    silent: SilentEndpoint, scheme: str
) -> None:
    """An exchange waiting for a silent endpoint (its answer, or its TLS handshake) ends at once when aborted."""
    outcome: list[BaseException | tuple[int, bytes]] = []

    def ask() -> None:
        try:
            outcome.append(endpoint.post("anna", silent.url(scheme), [("grant_type", "refresh_token")]))
        except MaildError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    assert silent.connected.wait(STOP_GUARD_S)
    assert endpoint.abort_exchanges() == 1
    thread.join(STOP_GUARD_S)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], TransientError)
    assert "exchange stopped (maild is stopping)" in str(outcome[0])


def test_abort_exchanges_without_exchanges_changes_nothing() -> None:
    """With no exchange running it ends none, and a later exchange is not affected."""
    assert endpoint.abort_exchanges() == 0
    with pytest.raises(TransientError, match="unreachable"):
        endpoint.post("anna", "http://127.0.0.1:9/token", [])


class MailServer:
    """A loopback POP3 or IMAP server offering only SASL XOAUTH2, refusing everything else."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=accept_each, args=(self.listener, self._take), daemon=True).start()

    def _take(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            try:
                self._converse(conn, lines)
            except OSError:
                return

    def _converse(self, conn: socket.socket, lines: object) -> None:
        imap = self.protocol == "imap"
        conn.sendall(
            b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] ready\r\n" if imap else b"+OK ready\r\n"
        )
        for line in lines:  # type: ignore[attr-defined]
            words = line.split()
            if not words:
                continue
            if imap:
                tag = words[0]
                if len(words) > 1 and words[1].upper() == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR\r\n" + tag + b" OK done\r\n")
                else:
                    conn.sendall(tag + b" NO not here\r\n")
            elif words[0].upper() == b"CAPA":
                conn.sendall(b"+OK\r\nUIDL\r\nUSER\r\nSASL XOAUTH2\r\n.\r\n")
            else:
                conn.sendall(b"-ERR not here\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_sigterm_ends_the_daemon_while_a_token_endpoint_never_answers(
    silent: SilentEndpoint, protocol: str
) -> None:
    """SIGTERM with a token request hanging: the daemon exits 0 soon after shutdown_timeout, not HTTP_TIMEOUT_S."""
    server = MailServer(protocol)
    directory = short_dir("maild-tstop-")
    try:
        url = silent.url("http")
        state = directory / "state"
        RefreshTokenStore(state / "oauth2", "anna").save(
            Secret("rt-1"), "cid", url, now=dt.datetime.now(dt.UTC)
        )
        config = {
            "daemon": {
                "state_dir": str(state),
                "control_socket": str(directory / "control.sock"),
                "shutdown_timeout": "1s",
            },
            "accounts": {
                "anna": {
                    "organisation": "O",
                    "employee": "Anna",
                    "protocol": protocol,
                    "host": "127.0.0.1",
                    "port": server.port,
                    "tls": "none",
                    "username": "anna",
                    "auth": "oauth2",
                    "poll_interval": "1h",
                    "oauth2": {"client_id": "cid", "token_url": url, "device_url": url},
                }
            },
        }
        path = directory / "config.toml"
        path.write_bytes(tomli_w.dumps(config).encode())
        log = directory / "maild.log"
        with running_maild(maild_command(path), log=log) as proc:
            assert silent.connected.wait(60), Path(log).read_text()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=STOP_GUARD_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"maild still running {STOP_GUARD_S} s after SIGTERM (shutdown_timeout 1 s)")
        assert code == 0
        assert "daemon.stopped" in log.read_text()
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


async def test_hanging_token_requests_leave_the_default_executor_free(silent: SilentEndpoint) -> None:
    """More IMAP sign-ins waiting for a silent token endpoint than the default executor has threads: work sent
    to that executor (the archive's CPU work of every other account) still runs at once."""
    default_threads = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
    sign_ins = min(default_threads + 1, imap_auth.TOKEN_THREADS)
    assert sign_ins > default_threads
    url = silent.url("http")
    directory = short_dir("maild-tpool-")
    waiting = []
    try:
        for n in range(sign_ins):
            name = f"acct{n}"
            RefreshTokenStore(directory, name).save(Secret("rt"), "cid", url, now=dt.datetime.now(dt.UTC))
            source = OAuth2Tokens(
                OAuth2Settings(
                    account=name, token_url=url, device_url=url, client_id="cid", token_dir=directory
                )
            )
            settings = ServerSettings(
                name, "127.0.0.1", 143, "none", None, name, Secret(""), 5.0, auth="oauth2", tokens=source
            )
            waiting.append(asyncio.ensure_future(imap_auth._secret(settings)))
        while len(silent.accepted) < default_threads:
            await asyncio.sleep(0.01)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "ran"), STOP_GUARD_S) == "ran"
    finally:
        endpoint.abort_exchanges()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        shutil.rmtree(directory, ignore_errors=True)
