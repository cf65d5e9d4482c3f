"""A stop does not wait for an OAuth2 token request still in its TCP connect, nor for a secret command
still running (session 15).

Before: :func:`~maild.auth.endpoint.abort_exchanges` shut the sockets of the exchanges running, but a
socket still connecting (to a host dropping the SYN) was not watched yet, so the exchange ran on to the
socket's own 30 s timeout; and a ``token_command`` or ``client_secret_command`` (run in a worker thread)
ran on to its 30 s timeout. The interpreter's exit joins those threads: ``maild run`` exited some 30 s
after SIGTERM, at systemd's ``TimeoutStopSec=30s``. Now the socket is watched before its connect and the
commands are killed with their process groups once the cycles are cancelled.

A listener whose accept queue is full and which never accepts stands in for a host dropping the SYN
(Linux drops further SYNs then); ``sleep``-ing commands stand in for slow ones. The daemon runs with
``shutdown_timeout = "1s"``; the tests' guard (12 s) is a hang guard well under the 30 s of before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from maild.auth import endpoint
from maild.auth.command import first_line_of, stop_commands
from maild.auth.tokens import RefreshTokenStore
from maild.errors import ConfigError, MaildError, TransientError
from maild.model import Secret
from tests.faults.test_token_endpoint_stop import STOP_GUARD_S, MailServer
from tests.support.daemonproc import maild_command, running_maild, wait_until
from tests.support.maildconf import short_dir

#: Connections a full-backlog listener takes before it drops SYNs (its queue plus one, on Linux).
FILLERS = 8


class DroppingListener:
    """A loopback port that drops SYNs: a listener with a backlog of 0 whose queue is filled by
    connections nobody accepts. A connect to it blocks until its timeout, as to a host dropping SYNs."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(FILLERS):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self.fillers.append(filler)
        self.fillers_connecting = _syn_sent(self.port)  # the fillers beyond the queue wait too

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def connecting(self) -> bool:
        """Whether a connect to it besides the fillers' is under way."""
        return _syn_sent(self.port) > self.fillers_connecting

    def drops_syn(self) -> bool:
        """Whether a connect to it now times out (checked with a short timeout)."""
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
        except TimeoutError:
            return True
        except OSError:
            return False
        finally:
            probe.close()
        return False

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()


@pytest.fixture
def dropping() -> Iterator[DroppingListener]:
    """The SYN-dropping port, closed after the test."""
    listener = DroppingListener()
    if not listener.drops_syn():
        listener.close()
        pytest.fail("a full-backlog listener does not drop SYNs on this machine")
    yield listener
    listener.close()


def test_abort_exchanges_ends_an_exchange_in_its_tcp_connect(dropping: DroppingListener) -> None:
    """An exchange whose connect hangs (SYN dropped) ends at once with "stopped" when aborted."""
    outcome: list[BaseException | tuple[int, bytes]] = []

    def ask() -> None:
        try:
            outcome.append(endpoint.post("anna", dropping.url(), [("grant_type", "refresh_token")]))
        except MaildError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    wait_until(dropping.connecting, "the exchange's connect", STOP_GUARD_S)
    assert endpoint.abort_exchanges() == 1
    thread.join(STOP_GUARD_S)
    assert not thread.is_alive(), "the connect was not ended by abort_exchanges"
    assert len(outcome) == 1
    assert isinstance(outcome[0], TransientError)
    assert "exchange stopped (maild is stopping)" in str(outcome[0])


def test_a_refused_connect_is_still_unreachable() -> None:
    """The watched connect reports a closed port as before ("unreachable"), not as stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="unreachable"):
        endpoint.post("anna", f"http://127.0.0.1:{port}/token", [])


def test_stop_commands_kills_a_running_command_and_its_group(tmp_path: Path) -> None:
    """A command (and the child it started) running in first_line_of is killed by stop_commands; the
    call raises TransientError "stopped"; stop_commands with none running ends none."""
    assert stop_commands() == 0
    marks = tmp_path / "pids"
    argv = ["sh", "-c", f"sleep 60 & echo $! > {marks}; wait"]
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(
                first_line_of(argv, account="anna", key="token_command", noun="a token", timeout_s=60)
            )
        except MaildError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: marks.exists() and marks.read_text().strip(), "the command's child", STOP_GUARD_S)
    child = int(marks.read_text())
    assert stop_commands() == 1
    thread.join(STOP_GUARD_S)
    assert not thread.is_alive()
    assert isinstance(outcome[0], TransientError)
    assert str(outcome[0]) == "account anna: token_command 'sh' stopped (maild is stopping)"
    wait_until(lambda: not _alive(child), "the command's child to end", STOP_GUARD_S)


def test_a_command_that_ends_is_read_as_before() -> None:
    """first_line_of still returns the first line, and a failing or empty command is a ConfigError."""
    assert (
        first_line_of(["printf", "tok\\nx\\n"], account="a", key="token_command", noun="a token", timeout_s=5)
        == "tok"
    )
    with pytest.raises(ConfigError, match="exited 3 without printing a token"):
        first_line_of(["sh", "-c", "exit 3"], account="a", key="token_command", noun="a token", timeout_s=5)
    with pytest.raises(ConfigError, match="failed: TimeoutExpired"):
        first_line_of(["sleep", "5"], account="a", key="token_command", noun="a token", timeout_s=0.2)
    with pytest.raises(ConfigError, match="failed: FileNotFoundError"):
        first_line_of(["/nonexistent/cmd"], account="a", key="token_command", noun="a token", timeout_s=5)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _config(directory: Path, server: MailServer, oauth2: dict[str, Any], **account: Any) -> Path:
    """A daemon configuration with one IMAP OAuth2 account ``anna`` (``oauth2`` empty: a password
    account, ``account`` adding its keys) and ``shutdown_timeout = "1s"``."""
    config = {
        "daemon": {
            "state_dir": str(directory / "state"),
            "control_socket": str(directory / "control.sock"),
            "shutdown_timeout": "1s",
        },
        "accounts": {
            "anna": {
                "organisation": "O",
                "employee": "Anna",
                "protocol": "imap",
                "host": "127.0.0.1",
                "port": server.port,
                "tls": "none",
                "username": "anna",
                "poll_interval": "1h",
                **({"auth": "oauth2", "oauth2": oauth2} if oauth2 else {}),
                **account,
            }
        },
    }
    path = directory / "config.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def _sigterm_and_wait(path: Path, ready: Any, what: str) -> None:
    """Start ``maild run``, wait for ``ready()``, SIGTERM it: it must exit 0 within the stop guard."""
    log = path.parent / "maild.log"
    with running_maild(maild_command(path), log=log) as proc:
        wait_until(ready, what, 60)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"maild still running {STOP_GUARD_S} s after SIGTERM (shutdown_timeout 1 s): {what}")
    assert code == 0, log.read_text()[-2000:]
    assert "daemon.stopped" in log.read_text()


def test_sigterm_ends_the_daemon_while_a_token_request_is_connecting(dropping: DroppingListener) -> None:
    """Steps: a token endpoint dropping SYNs; the daemon's refresh connects to it; SIGTERM: exit 0
    within the guard (before: at the connect's 30 s)."""
    server = MailServer("imap")
    directory = short_dir("maild-cstop-")
    try:
        url = dropping.url()
        RefreshTokenStore(directory / "state" / "oauth2", "anna").save(
            Secret("rt-1"), "cid", url, now=dt.datetime.now(dt.UTC)
        )
        path = _config(directory, server, {"client_id": "cid", "token_url": url, "device_url": url})
        # the refresh is under way once the daemon has started and its account's cycle began
        _sigterm_and_wait(
            path,
            lambda: "daemon.started" in (directory / "maild.log").read_text() and dropping.connecting(),
            "the token request's connect",
        )
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def _syn_sent(port: int) -> int:
    """How many sockets of this machine are in SYN-SENT towards ``port`` (from /proc/net/tcp)."""
    target = f":{port:04X}"
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return sum(1 for fields in rows if fields[2].endswith(target) and fields[3] == "02")  # 02: SYN_SENT


@pytest.mark.parametrize("key", ["token_command", "client_secret_command", "password_command"])
def test_sigterm_ends_the_daemon_while_a_secret_command_runs(key: str) -> None:
    """Steps: the account's token_command, client_secret_command or password_command writes its PID
    and sleeps 60 s; SIGTERM: exit 0 within the guard, the command killed (before: the first two at
    their 30 s timeout; the password_command, an asyncio subprocess, was already killed when its
    cycle was cancelled: kept here so that it stays so)."""
    server = MailServer("imap")
    directory = short_dir("maild-kstop-")
    mark = directory / "pid"
    argv = [
        sys.executable,
        "-c",
        f"import os, time; open({str(mark)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    try:
        account: dict[str, Any] = {}
        if key == "token_command":
            oauth2: dict[str, Any] = {"token_command": argv}
        elif key == "password_command":
            oauth2, account = {}, {"password_command": argv}
        else:
            url = "http://127.0.0.1:9/token"  # never reached: the secret is read first
            RefreshTokenStore(directory / "state" / "oauth2", "anna").save(
                Secret("rt-1"), "cid", url, now=dt.datetime.now(dt.UTC)
            )
            oauth2 = {"client_id": "cid", "token_url": url, "device_url": url, "client_secret_command": argv}
        path = _config(directory, server, oauth2, **account)
        _sigterm_and_wait(path, lambda: mark.exists() and mark.read_text().strip(), f"the {key}")
        pid = int(mark.read_text())
        wait_until(lambda: not _alive(pid), f"the {key} to be killed", STOP_GUARD_S)
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def _connect_in_thread(deadline: Any, port: int, timeout_s: float) -> list[BaseException | socket.socket]:
    """Run the watched connect to ``port`` in a thread; its outcome once it has ended (a hang guard)."""
    outcome: list[BaseException | socket.socket] = []

    def connect() -> None:
        try:
            outcome.append(endpoint._connect_watched(deadline, ("127.0.0.1", port), timeout_s))
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(STOP_GUARD_S)
    assert not thread.is_alive(), "the connect was not ended"
    return outcome


def test_an_exchange_aborted_before_its_connect_began_does_not_connect(dropping: DroppingListener) -> None:
    """An abort that lands before the connect has begun (shutting an unconnected socket does nothing)
    still ends the connect: ECONNABORTED, not the 30 s of the socket's timeout (the race the full
    suite found once)."""
    with endpoint._Deadline(endpoint.HTTP_TIMEOUT_S) as deadline:
        deadline.abort()
        (outcome,) = _connect_in_thread(deadline, dropping.port, endpoint.HTTP_TIMEOUT_S)
    assert isinstance(outcome, ConnectionAbortedError)


def test_a_connect_to_a_dropping_host_times_out_at_its_timeout(dropping: DroppingListener) -> None:
    """Without an abort the watched connect ends at its own timeout with TimeoutError, as the blocking
    connect did."""
    with endpoint._Deadline(endpoint.HTTP_TIMEOUT_S) as deadline:
        (outcome,) = _connect_in_thread(deadline, dropping.port, 0.3)
    assert isinstance(outcome, TimeoutError)
    assert not deadline.expired


def test_a_connect_that_succeeds_returns_a_blocking_socket_with_the_timeout() -> None:
    """A listening port: the socket is connected, back in blocking mode with the exchange's timeout."""
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        endpoint._Deadline(endpoint.HTTP_TIMEOUT_S) as deadline,
    ):
        (outcome,) = _connect_in_thread(deadline, server.getsockname()[1], 7.0)
        assert isinstance(outcome, socket.socket)
        with outcome:
            assert outcome.gettimeout() == 7.0
            assert outcome.getpeername() == server.getsockname()


def _setsid_grandchild(pidfile: Path, parent: str) -> list[str]:
    """argv of a command whose child leaves its process group (``setsid``, as a daemonising helper
    does) and holds the command's stdout open for 60 s; the child's PID is written to ``pidfile``;
    ``parent`` is what the command itself does then (Python statements)."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        f"{parent}\n"
    )
    return [sys.executable, "-c", code]


def _end_grandchild(pidfile: Path) -> None:
    """SIGKILL the grandchild _setsid_grandchild started (this test started it), if it runs."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def _run_in_thread(argv: list[str], timeout_s: float) -> tuple[threading.Thread, list[BaseException | str]]:
    """first_line_of(argv) in a daemon thread; its outcome is appended to the returned list."""
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(
                first_line_of(argv, account="anna", key="token_command", noun="a token", timeout_s=timeout_s)
            )
        except MaildError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_timeout_is_not_held_by_a_grandchild_that_left_the_group(tmp_path: Path) -> None:
    """A command whose daemonised child (setsid: out of reach of the group's SIGKILL) keeps stdout
    open: the timeout still ends the call (before session 15's review it then waited for the pipe's
    end, i.e. for the grandchild, without bound: here 60 s against a guard of STOP_GUARD_S)."""
    pidfile = tmp_path / "grandchild.pid"
    try:
        thread, outcome = _run_in_thread(_setsid_grandchild(pidfile, "time.sleep(60)"), 0.5)
        thread.join(STOP_GUARD_S)
        assert not thread.is_alive()
        assert isinstance(outcome[0], ConfigError)
        assert "failed: TimeoutExpired" in str(outcome[0])
    finally:
        _end_grandchild(pidfile)


def test_stop_commands_is_not_held_by_a_grandchild_that_left_the_group(tmp_path: Path) -> None:
    """stop_commands ends a call whose command's setsid child holds stdout open, at once ("stopped"),
    not at the command's timeout (60 s here) nor at the grandchild's end."""
    pidfile = tmp_path / "grandchild.pid"
    try:
        thread, outcome = _run_in_thread(_setsid_grandchild(pidfile, "time.sleep(60)"), 60)
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the grandchild", STOP_GUARD_S)
        wait_until(lambda: stop_commands() == 1, "the command to be stopped", STOP_GUARD_S)
        thread.join(STOP_GUARD_S)
        assert not thread.is_alive()
        assert isinstance(outcome[0], TransientError)
        assert "stopped (maild is stopping)" in str(outcome[0])
    finally:
        _end_grandchild(pidfile)
