"""The control socket: newline-delimited JSON over a Unix socket, limits, errors, socket file handling.

Socket paths live in short directories under /tmp: Unix socket paths are limited to about 107 bytes
and pytest's tmp_path is often longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from maild.cli.common import scan_control_socket
from maild.errors import ControlError, StoreError
from maild.service import control
from maild.service.control import MAX_REQUEST_OCTETS, ControlServer, error_reply
from maild.service.control_client import ControlClient, checked, request
from maild.service.replies import (
    AccountStateReply,
    FetchOutcome,
    FetchQueued,
    FetchResults,
    MetricsReply,
    ReloadReport,
    StopReply,
    VersionReply,
)
from maild.service.status import ArchiveTotals, StatusReply


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short temporary directory for socket files."""
    path = Path(tempfile.mkdtemp(prefix="mdc", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "control.sock"


class Handler:
    """A handler that answers "status", raises on "fail"/"boom" (or those accounts), and echoes other commands."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(req)
        command = req["command"]
        if command == "status":
            return {"accounts": [{"name": "anna-pop", "state": "idle"}], "note": "Grüße"}
        if command == "fail" or req.get("account") == "nobody":
            raise ControlError("unknown-account", "no account named 'nobody'")
        if command == "boom" or req.get("account") == "boom":
            raise RuntimeError("handler bug")
        if command == "store-fails":
            raise StoreError("archive /x/maild.sqlite3: database is locked")
        return {"echo": req}


@pytest.fixture
async def server(sock_path: Path) -> AsyncIterator[ControlServer]:
    """A started control server with :class:`Handler`."""
    srv = ControlServer(sock_path, Handler())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


class Client:
    """A raw asyncio client speaking lines of bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, data: bytes) -> dict[str, Any]:
        await self.send(data)
        async with asyncio.timeout(5):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), line
        reply = json.loads(line)
        assert isinstance(reply, dict)
        return reply

    async def read_until_closed(self, timeout_s: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout_s):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def status_from_new_client(server: ControlServer) -> dict[str, Any]:
    """Connect a fresh client, ask for the status, disconnect: proves the server still serves others."""
    fresh = await Client.connect(server.path)
    try:
        return await fresh.ask(b'{"command": "status"}\n')
    finally:
        await fresh.close()


@pytest.fixture
async def client(server: ControlServer) -> AsyncIterator[Client]:
    c = await Client.connect(server.path)
    try:
        yield c
    finally:
        await c.close()


def error_code(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False
    return str(reply["error"]["code"])


# -- requests and replies ---------------------------------------------------------------------------


async def test_status_request_gets_reply(client: Client, server: ControlServer) -> None:
    """A status request is answered with ok=true and the handler's fields."""
    reply = await client.ask(b'{"command": "status", "version": 1}\n')

    assert reply == {"ok": True, "accounts": [{"name": "anna-pop", "state": "idle"}], "note": "Grüße"}
    assert isinstance(server.handler, Handler)
    assert server.handler.requests == [{"command": "status", "version": 1}]


async def test_reply_is_one_line_of_utf8_json(client: Client) -> None:
    """A reply is one line of UTF-8 JSON, non-ASCII text written as such."""
    await client.send(b'{"command": "status"}\n')
    async with asyncio.timeout(5):
        line = await client.reader.readline()

    assert line.count(b"\n") == 1
    assert "Grüße".encode() in line


async def test_version_may_be_omitted(client: Client) -> None:
    """A request without "version" is treated as version 1."""
    reply = await client.ask(b'{"command": "status"}\n')

    assert reply["ok"] is True


async def test_several_requests_on_one_connection(client: Client) -> None:
    """A client may send several requests on one connection, each answered in order."""
    first = await client.ask(b'{"command": "status"}\n')
    second = await client.ask(b'{"command": "echo", "n": 2}\n')
    third = await client.ask(b"nonsense\n")

    assert first["ok"] is True
    assert second["echo"] == {"command": "echo", "n": 2}
    assert error_code(third) == "bad-json"


@pytest.mark.parametrize("line", [b"{not json\n", b"\xff\xfe\n", b"\n", b'{"command": "status"\n'])
async def test_bad_json_gets_bad_json_error(client: Client, line: bytes) -> None:
    """A line that is not valid JSON (or not UTF-8) gets the error code bad-json."""
    reply = await client.ask(line)

    assert error_code(reply) == "bad-json"


@pytest.mark.parametrize(
    "line",
    [b"[1, 2]\n", b'"status"\n', b"42\n", b"null\n", b"{}\n", b'{"command": 5}\n', b'{"cmd": "status"}\n'],
)
async def test_non_object_or_missing_command_gets_bad_request(client: Client, line: bytes) -> None:
    """JSON that is not an object with a string "command" gets the error code bad-request."""
    reply = await client.ask(line)

    assert error_code(reply) == "bad-request"


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5, True])
async def test_unknown_version_gets_bad_version(
    client: Client, server: ControlServer, version: object
) -> None:
    """A request for a protocol version other than 1 gets bad-version and never reaches the handler."""
    line = json.dumps({"command": "status", "version": version}).encode() + b"\n"

    reply = await client.ask(line)

    assert error_code(reply) == "bad-version"
    assert isinstance(server.handler, Handler)
    assert server.handler.requests == []


async def test_control_error_from_handler_becomes_its_code(client: Client) -> None:
    """A ControlError raised by the handler becomes an error reply with its code and message."""
    reply = await client.ask(b'{"command": "fail"}\n')

    assert reply == error_reply("unknown-account", "no account named 'nobody'")


async def test_handler_exception_gives_internal_and_server_keeps_serving(
    client: Client, server: ControlServer
) -> None:
    """An unexpected exception in the handler gives code internal, is logged, and the server keeps serving."""
    with capture_logs() as logs:
        reply = await client.ask(b'{"command": "boom"}\n')
    after_same = await client.ask(b'{"command": "status"}\n')
    after_other = await status_from_new_client(server)

    assert error_code(reply) == "internal"
    assert "RuntimeError" in reply["error"]["message"]
    assert "handler bug" not in reply["error"]["message"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["control.failed"]
    assert after_same["ok"] is True
    assert after_other["ok"] is True


# -- limits -----------------------------------------------------------------------------------------


async def test_oversized_request_drops_client_and_others_are_served(server: ControlServer) -> None:
    """A client sending more than 64 KiB without a newline is answered too-large and dropped; others are still served."""
    bad = await Client.connect(server.path)
    with contextlib.suppress(ConnectionError):
        await bad.send(b"x" * (MAX_REQUEST_OCTETS + 8192))
    rest = await bad.read_until_closed()
    await bad.close()

    reply = await status_from_new_client(server)

    lines = rest.splitlines()
    assert len(lines) == 1
    assert error_code(json.loads(lines[0])) == "too-large"
    assert reply["ok"] is True


async def test_request_just_under_the_limit_is_served(client: Client) -> None:
    """A request line somewhat below 64 KiB is still processed normally."""
    padding = "p" * (MAX_REQUEST_OCTETS - 1024)
    reply = await client.ask(json.dumps({"command": "echo", "pad": padding}).encode() + b"\n")

    assert reply["ok"] is True
    assert reply["echo"]["pad"] == padding


@pytest.mark.parametrize("partial", [b"", b'{"command": "sta'])
async def test_idle_client_is_dropped(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch, partial: bytes
) -> None:
    """A client that sends no complete line within IDLE_TIMEOUT_S is disconnected; the server keeps serving."""
    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(control, "FIRST_REQUEST_TIMEOUT_S", 0.2)
    idle = await Client.connect(server.path)
    if partial:
        await idle.send(partial)

    rest = await idle.read_until_closed(timeout_s=5.0)
    await idle.close()
    reply = await status_from_new_client(server)

    assert rest == b""
    assert reply["ok"] is True


async def test_client_closing_early_does_not_disturb_server(server: ControlServer) -> None:
    """A client that disconnects right after sending a request does not stop the server."""
    quitter = await Client.connect(server.path)
    await quitter.send(b'{"command": "status"}\n')
    await quitter.close()

    reply = await status_from_new_client(server)

    assert reply["ok"] is True


# -- socket file ------------------------------------------------------------------------------------


async def test_socket_mode_is_0660(server: ControlServer) -> None:
    """The socket file is a socket with mode 0660."""
    mode = os.lstat(server.path).st_mode

    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


NOGROUP_GID = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="changing a file's group to another group needs root"
)


@needs_root
@pytest.mark.parametrize("group", [NOGROUP_GID, "nogroup"])
async def test_socket_group_is_applied(sock_path: Path, group: str | int) -> None:
    """A group given by id or by name becomes the socket file's group."""
    srv = ControlServer(sock_path, Handler(), group=group)
    await srv.start()
    try:
        gid = os.lstat(sock_path).st_gid
    finally:
        await srv.close()

    assert gid == NOGROUP_GID


@needs_root
async def test_numeric_socket_group_from_config_is_applied(sock_dir: Path) -> None:
    """control_socket_group = <id> in the config gives the socket that group, as documented ("name or id")."""
    from maild.config.loader import load_config

    cfg = sock_dir / "config.toml"
    cfg.write_text(f"[daemon]\ncontrol_socket_group = {NOGROUP_GID}\n")
    group = load_config(cfg).daemon.control_socket_group
    srv = ControlServer(sock_dir / "c.sock", Handler(), group=group)
    try:
        await srv.start()
        gid = os.lstat(srv.path).st_gid
    finally:
        await srv.close()

    assert gid == NOGROUP_GID


async def test_parent_directory_is_created(sock_dir: Path) -> None:
    """start() creates a missing parent directory of the socket path."""
    path = sock_dir / "run" / "c.sock"
    srv = ControlServer(path, Handler())
    await srv.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        await srv.close()


async def test_stale_socket_file_is_replaced(sock_path: Path) -> None:
    """A socket file nobody listens on (left by a crash) is replaced and the new server answers."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)

    srv = ControlServer(sock_path, Handler())
    await srv.start()
    try:
        reply = await asyncio.to_thread(request, sock_path, {"command": "status"}, timeout_s=5)
    finally:
        await srv.close()

    assert reply["ok"] is True


async def test_second_server_on_live_socket_is_refused(server: ControlServer) -> None:
    """Starting a second server on a socket another server answers on raises ControlError in-use and leaves the first working."""
    second = ControlServer(server.path, Handler())

    with pytest.raises(ControlError) as info:
        await second.start()

    assert info.value.code == "in-use"
    reply = await asyncio.to_thread(request, server.path, {"command": "status"}, timeout_s=5)
    assert reply["ok"] is True


async def test_non_socket_file_at_path_is_refused(sock_path: Path) -> None:
    """A regular file at the socket path is not removed; start() raises ControlError socket-path."""
    sock_path.write_text("important")
    srv = ControlServer(sock_path, Handler())

    with pytest.raises(ControlError) as info:
        await srv.start()

    assert info.value.code == "socket-path"
    assert sock_path.read_text() == "important"


async def test_close_removes_the_socket_file(sock_path: Path) -> None:
    """close() stops listening and removes the socket file; closing twice is harmless."""
    srv = ControlServer(sock_path, Handler())
    await srv.start()

    await srv.close()
    await srv.close()

    assert not sock_path.exists()
    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(request, sock_path, {"command": "status"}, timeout_s=5)
    assert info.value.code == "not-running"


async def test_close_drops_connected_clients(sock_path: Path) -> None:
    """close() disconnects clients that are still connected."""
    srv = ControlServer(sock_path, Handler())
    await srv.start()
    lingering = await Client.connect(sock_path)
    await lingering.ask(b'{"command": "status"}\n')

    await srv.close()
    rest = await lingering.read_until_closed()
    await lingering.close()

    assert rest == b""


# -- blocking client --------------------------------------------------------------------------------


def test_request_to_missing_socket_is_not_running(sock_dir: Path) -> None:
    """The blocking client raises ControlError not-running when no socket file exists."""
    with pytest.raises(ControlError) as info:
        request(sock_dir / "absent.sock", {"command": "status"}, timeout_s=2)

    assert info.value.code == "not-running"


def test_request_to_dead_socket_is_not_running(sock_path: Path) -> None:
    """The blocking client raises ControlError not-running when the socket file has no listener."""
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()

    with pytest.raises(ControlError) as info:
        request(sock_path, {"command": "status"}, timeout_s=2)

    assert info.value.code == "not-running"


async def test_request_round_trip_adds_version(server: ControlServer) -> None:
    """The blocking client sends version 1 with the payload and returns the decoded reply."""
    reply = await asyncio.to_thread(request, server.path, {"command": "echo", "x": "ä"}, timeout_s=5)

    assert reply == {"ok": True, "echo": {"version": 1, "command": "echo", "x": "ä"}}


async def test_request_returns_error_replies_as_objects(server: ControlServer) -> None:
    """An error reply is returned to the caller as an object, not raised."""
    reply = await asyncio.to_thread(request, server.path, {"command": "fail"}, timeout_s=5)

    assert error_code(reply) == "unknown-account"


def _one_shot_server(path: Path, answer: bytes | None) -> tuple[socket.socket, Any]:
    """Listen on ``path``; the returned thread accepts one client, reads a line, sends ``answer`` (or nothing)."""
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            if answer is not None:
                conn.sendall(answer)
                return
            conn.recv(65536)  # hold the connection open until the client gives up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(
    ("answer", "timeout_s", "code"),
    [
        (b"not json\n", 5, "bad-reply"),
        (b"[1, 2]\n", 5, "bad-reply"),
        (b"", 5, "no-reply"),
        (None, 0.3, "timeout"),
    ],
    ids=["not-json", "not-an-object", "empty", "silent"],
)
def test_request_with_garbage_or_no_reply(
    sock_path: Path, answer: bytes | None, timeout_s: float, code: str
) -> None:
    """A reply that is not a JSON object raises ControlError bad-reply; one that closes without a word, no-reply; one that never answers, timeout."""
    listener, thread = _one_shot_server(sock_path, answer)
    try:
        with pytest.raises(ControlError) as info:
            request(sock_path, {"command": "status"}, timeout_s=timeout_s)
    finally:
        thread.join(5)
        listener.close()

    assert info.value.code == code


async def test_many_clients_at_once_are_all_served(server: ControlServer) -> None:
    """Fifty clients connected at the same time each get their own reply."""
    clients = [await Client.connect(server.path) for _ in range(50)]
    try:
        replies = await asyncio.gather(*(c.ask(b'{"command": "status"}\n') for c in clients))
    finally:
        for c in clients:
            await c.close()
    assert len(replies) == 50
    assert all(r["ok"] for r in replies)


async def test_client_that_never_reads_is_dropped(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends requests but never reads the replies is dropped once its socket buffer is full."""
    import maild.service.control as control

    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.3)
    _reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:
        request = b'{"command": "status"}\n'
        for _ in range(20000):  # far more reply octets than the socket buffers hold
            writer.write(request)
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.drain(), timeout=5)
        deadline = asyncio.get_running_loop().time() + 10
        while server._clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not server._clients, "the non-reading client is still being served"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    assert (await status_from_new_client(server))["ok"]


# -- typed client -----------------------------------------------------------------------------------


def test_client_of_a_daemon_that_is_not_running_says_so_in_one_line(sock_dir: Path) -> None:
    """ControlClient raises ControlError not-running with one line naming the socket."""
    client = ControlClient(sock_dir / "absent.sock", timeout_s=2)

    with pytest.raises(ControlError) as info:
        client.status()

    assert info.value.code == "not-running"
    assert str(info.value) == f"maild is not running (no daemon on {sock_dir / 'absent.sock'})"
    assert not client.daemon_answers()


async def test_client_raises_the_daemons_error_reply(server: ControlServer) -> None:
    """An error reply becomes ControlError with the daemon's code and message."""
    client = ControlClient(server.path, timeout_s=5)

    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(client.pause, "nobody")

    assert (info.value.code, str(info.value)) == ("unknown-account", "no account named 'nobody'")


async def test_client_turns_an_internal_error_into_control_error(server: ControlServer) -> None:
    """A handler bug on the daemon's side reaches the client as ControlError internal, not a traceback."""
    client = ControlClient(server.path, timeout_s=5)

    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(client.resume, "boom")

    assert info.value.code == "internal"


async def test_client_refuses_a_reply_of_another_shape(server: ControlServer) -> None:
    """A success reply that does not fit the command's record is ControlError bad-reply."""
    client = ControlClient(server.path, timeout_s=5)

    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(client.status)  # the test handler's status has no "version"

    assert info.value.code == "bad-reply"


@pytest.mark.parametrize("reply", [{"ok": False}, {"error": "x"}, {"ok": "yes"}])
def test_checked_refuses_replies_without_a_valid_ok(reply: dict[str, Any]) -> None:
    """A reply whose "ok" is missing, or false without an error object, is ControlError, never a success."""
    with pytest.raises(ControlError):
        checked(reply)


async def test_client_reads_typed_replies(sock_path: Path) -> None:
    """Each client method sends its command and returns the reply as its record."""
    status = StatusReply("1.0", datetime(2026, 3, 2, 9, 0, tzinfo=UTC), (), ArchiveTotals(1, 2))
    replies: dict[str, Any] = {
        "status": status,
        "version": VersionReply("1.0"),
        "pause": AccountStateReply("anna-pop", "paused"),
        "resume": AccountStateReply("anna-pop", "waiting"),
        "reload": ReloadReport(removed=("alt",)),
        "metrics": MetricsReply("maild_up 1\n"),
        "stop": StopReply(),
    }
    seen: list[dict[str, Any]] = []

    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        seen.append(req)
        if req["command"] == "fetch-now":
            if req["wait"]:
                return FetchResults((FetchOutcome(req["account"], new_links=1),)).to_json()
            return FetchQueued((req["account"],)).to_json()
        return dict(replies[req["command"]].to_json())

    srv = ControlServer(sock_path, handler)
    await srv.start()
    client = ControlClient(sock_path, timeout_s=5)
    try:
        got = [
            await asyncio.to_thread(client.status),
            await asyncio.to_thread(client.version),
            await asyncio.to_thread(client.pause, "anna-pop"),
            await asyncio.to_thread(client.resume, "anna-pop"),
            await asyncio.to_thread(client.reload),
            await asyncio.to_thread(client.metrics),
            await asyncio.to_thread(client.stop),
            await asyncio.to_thread(client.fetch_now, "anna-pop"),
            await asyncio.to_thread(client.queue_fetch),
        ]
    finally:
        await srv.close()

    assert got == [
        *replies.values(),
        FetchResults((FetchOutcome("anna-pop", new_links=1),)),
        FetchQueued(("all",)),
    ]
    assert [r["command"] for r in seen] == [*replies, "fetch-now", "fetch-now"]
    assert (seen[-2]["wait"], seen[-1]["wait"]) == (True, False)


async def test_silent_clients_never_lock_out_a_real_one(server: ControlServer) -> None:
    """With every client slot held by connections that sent nothing, a new client is still served:
    the longest-silent one is dropped to make room (70 silent connections, then status)."""
    silent = [await Client.connect(server.path) for _ in range(control.MAX_CLIENTS + 6)]
    try:
        reply = await status_from_new_client(server)
        assert reply["ok"] is True
        dropped = await silent[0].read_until_closed()
        assert dropped == b""
    finally:
        for c in silent:
            await c.close()


async def test_huge_integer_in_a_request_gets_one_clear_error(client: Client) -> None:
    """A 5,000-digit integer gets a bad-json reply saying so (not a dropped connection)."""
    reply = await client.ask(b'{"command": "status", "n": ' + b"9" * 5000 + b"}\n")
    assert error_code(reply) == "bad-json"
    assert "too many digits" in reply["error"]["message"]


async def test_store_error_keeps_its_cause(client: Client) -> None:
    """A MaildError from a command (a StoreError) is answered with its own words, not "internal error"."""
    reply = await client.ask(b'{"command": "store-fails"}\n')
    assert error_code(reply) == "failed"
    assert reply["error"]["message"] == "StoreError: archive /x/maild.sqlite3: database is locked"


async def test_socket_in_a_directory_that_cannot_exist_names_the_key(tmp_path: Path) -> None:
    """A control socket whose directory cannot be created is one line naming daemon.control_socket."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    server = ControlServer(blocker / "sub" / "control.sock", Handler())
    with pytest.raises(ControlError, match=r"^daemon.control_socket: cannot create its directory .*sub: "):
        await server.start()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'[daemon]\ncontrol_socket = "run/c.sock"\n[accounts.a]\nhost = "x\n', "run/c.sock"),
        (b"[daemon]\ncontrol_socket = '/run/x.sock'  # comment\n", "/run/x.sock"),
        (b'[accounts.a]\ncontrol_socket = "not/the/daemon.sock"\n[daemon\n', None),
        (b'control_socket = "top/level.sock"\n', None),
        (b"\xff\xfe[daemon]\n", None),
    ],
    ids=["daemon-table", "single-quoted", "other-table", "top-level", "not-utf8"],
)
def test_scan_control_socket_reads_only_the_daemon_table(text: bytes, expected: str | None) -> None:
    """In a file that is not TOML, only a plain-string control_socket line of [daemon] is taken."""
    assert scan_control_socket(text) == expected


@pytest.mark.parametrize("how", ["socket removed", "directory removed"])
async def test_a_socket_removed_under_the_daemon_is_restored(sock_dir: Path, how: str) -> None:
    """restore() listens again when the socket file or its directory is gone (QA of session 11: `rm -r
    /run/maild` left a running daemon that `maild status` called "not running"); logged at warning."""
    path = sock_dir / "run" / "control.sock"
    srv = ControlServer(path, Handler())
    await srv.start()
    try:
        await srv.restore()  # nothing to do
        if how == "socket removed":
            path.unlink()
        else:
            shutil.rmtree(path.parent)
        with capture_logs() as logs:
            await srv.restore()
        assert [(e["event"], e["log_level"]) for e in logs] == [("control.socket.restored", "warning")]
        assert stat.S_IMODE(path.stat().st_mode) == control.SOCKET_MODE
        reply = await asyncio.to_thread(request, path, {"command": "status"})
        assert reply["ok"] is True
    finally:
        await srv.close()
    assert not path.exists()


async def test_a_path_taken_by_another_file_is_left_alone_and_logged_once(sock_path: Path) -> None:
    """A regular file put where the socket was is not removed; the error is logged once, not every few seconds."""
    srv = ControlServer(sock_path, Handler())
    await srv.start()
    try:
        sock_path.unlink()
        sock_path.write_text("not a socket")
        with capture_logs() as logs:
            await srv.restore()
            await srv.restore()
        assert [e["event"] for e in logs] == ["control.socket.lost"]
        assert logs[0]["log_level"] == "error"
        assert sock_path.read_text() == "not a socket"
        sock_path.unlink()  # the admin takes it away: the next call listens again
        with capture_logs() as logs:
            await srv.restore()
        assert [e["event"] for e in logs] == ["control.socket.restored"]
        assert (await asyncio.to_thread(request, sock_path, {"command": "status"}))["ok"] is True
    finally:
        await srv.close()


async def test_a_file_where_the_sockets_directory_was_is_logged_once(sock_dir: Path) -> None:
    """QA of session 12: a regular file put where the socket's directory was (``rm -r /run/maild;
    touch /run/maild``) made ``lstat`` fail with ENOTDIR, which restore() took for "cannot tell" and
    left unlogged for ever while every client said "not running". Now it is logged once at error and
    the socket comes back when the file is taken away."""
    path = sock_dir / "run" / "control.sock"
    srv = ControlServer(path, Handler())
    await srv.start()
    try:
        shutil.rmtree(path.parent)
        path.parent.write_text("in the way")
        with capture_logs() as logs:
            await srv.restore()
            await srv.restore()
        assert [(e["event"], e["log_level"]) for e in logs] == [("control.socket.lost", "error")]
        assert logs[0]["found"] == "replaced"
        path.parent.unlink()
        with capture_logs() as logs:
            await srv.restore()
        assert [e["event"] for e in logs] == ["control.socket.restored"]
        assert (await asyncio.to_thread(request, path, {"command": "status"}))["ok"] is True
    finally:
        await srv.close()


async def test_a_stop_leaves_a_file_put_at_the_socket_path_alone(sock_path: Path) -> None:
    """close() removes only the socket file this server made, not one put at its path since."""
    srv = ControlServer(sock_path, Handler())
    await srv.start()
    sock_path.unlink()
    sock_path.write_text("not a socket")
    with capture_logs():
        await srv.restore()
    await srv.close()
    assert sock_path.read_text() == "not a socket"


def test_an_endless_reply_is_cut_off(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply longer than MAX_REPLY_OCTETS (whatever listens on the path) is a bad-reply error, not a
    command line that reads until memory runs out."""
    from maild.service import control_client

    monkeypatch.setattr(control_client, "MAX_REPLY_OCTETS", 100_000)
    path = sock_dir / "endless.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for _ in range(100):  # 6.5 MB without a newline, then the end: more than the limit
                conn.sendall(b"x" * 65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ControlError, match="longer than 100000 octets") as info:
            request(path, {"command": "status"}, timeout_s=10)
        assert info.value.code == "bad-reply"
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_trickled_reply_is_bounded_as_a_whole(sock_dir: Path) -> None:
    """QA of session 12: the timeout bounded each read, so a listener sending one octet every 0.1 s
    kept ``maild status`` (and ``maild check``, run by monitoring every minute) waiting for ever. Now
    ``timeout_s`` bounds the whole reply: with 0.5 s the request ends as a timeout after a few octets
    (the listener would trickle for 60 s)."""
    path = sock_dir / "trickle.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    sent: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for _ in range(600):
                if stop.wait(0.1):
                    return
                conn.sendall(b" ")
                sent.append(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ControlError, match=r"did not answer within 0\.5 s") as info:
            request(path, {"command": "status"}, timeout_s=0.5)
        assert info.value.code == "timeout"
        assert len(sent) < 50  # ended by the deadline, not by the listener's end
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=10)


def test_a_fifo_as_the_configuration_does_not_block_a_client_command(tmp_path: Path) -> None:
    """QA of session 12: ``maild -c FIFO status`` warned that the file is not a regular one, then
    opened it to look for ``control_socket`` anyway and waited for a writer for ever. Now the file is
    read only when regular: the default socket is asked. Steps: control_socket_path on a FIFO in a
    thread; it returns (a writer opens the FIFO afterwards only to release a blocked open)."""
    import argparse

    from maild.cli.common import control_socket_path
    from maild.config.loader import DaemonConfig

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    found: list[Path] = []
    thread = threading.Thread(
        target=lambda: found.append(control_socket_path(argparse.Namespace(config=str(fifo))))
    )
    thread.start()
    thread.join(60)
    blocked = thread.is_alive()
    if blocked:  # release the open, or the test run would hang on this thread
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        thread.join()
    assert not blocked, "control_socket_path blocked on the FIFO"
    assert found == [DaemonConfig().control_socket]


def test_a_file_where_the_socket_directory_should_be_means_not_running(tmp_path: Path) -> None:
    """QA of session 12: ``/run/maild`` replaced by a regular file made every client command end in
    ``maild: [Errno 20] Not a directory`` (exit 1); it is "not running" (status exits 3) naming the path."""
    (tmp_path / "maild").write_text("")
    path = tmp_path / "maild" / "control.sock"
    with pytest.raises(ControlError, match="maild is not running") as caught:
        request(path, {"command": "status"})
    assert caught.value.code == "not-running"
