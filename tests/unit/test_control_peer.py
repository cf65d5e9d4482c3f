"""The control socket's peer check (``SO_PEERCRED``): a peer that is neither root, the daemon's uid nor
a member of ``control_socket_group`` is refused before its request is read (session 15's QA left the
socket file's mode the only check)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap  # noqa: F401  imported here: the client imports it lazily, and the child (uid 65534) may not read it
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from maild.service.control import ControlServer
from maild.service.control_client import request
from maild.service.peer import Peer, hidden_uid, peer_allowed, peer_groups, peer_of
from tests.unit.test_control import Handler, sock_dir, status_from_new_client

__all__ = ["sock_dir"]  # the fixture, shared with test_control

DAEMON = 990
GROUP = 4000

#: (uid, gid, groups, socket_gid, allowed): every way in and the near misses.
CASES = [
    (0, 0, (), None, True),  # root
    (0, 55, (), GROUP, True),  # root in any group
    (DAEMON, 55, (), None, True),  # the daemon's own uid
    (DAEMON, 55, (), GROUP, True),
    (1000, 1000, (), None, False),  # anyone else without a configured group
    (1000, GROUP, (GROUP,), None, False),  # the group counts only when configured
    (1000, GROUP, (), GROUP, True),  # effective gid is the group
    (1000, 1000, (GROUP,), GROUP, True),  # supplementary member
    (1000, 1000, (GROUP - 1, GROUP + 1), GROUP, False),  # near misses of the gid
    (1000, GROUP + 1, (), GROUP, False),
    (DAEMON + 1, 1000, (), None, False),  # near misses of the uid
    (DAEMON - 1, 1000, (), None, False),
    (1, 1000, (), None, False),
]


@pytest.mark.parametrize(("uid", "gid", "groups", "socket_gid", "allowed"), CASES)
def test_peer_allowed_over_uid_gid_and_groups(
    uid: int, gid: int, groups: tuple[int, ...], socket_gid: int | None, allowed: bool
) -> None:
    """Root, the daemon's uid and (when configured) members of the socket's group, nobody else."""
    assert peer_allowed(uid, gid, groups, daemon_uid=DAEMON, socket_gid=socket_gid) is allowed


@pytest.mark.parametrize(("uid", "allowed"), [(65534, True), (65533, False), (65535, False)])
def test_the_uid_a_user_namespace_hides_peers_behind_is_left_to_the_file_mode(
    uid: int, allowed: bool
) -> None:
    """Under PrivateUsers=yes every unmapped peer is the overflow uid: it cannot be told apart, so
    the socket file's mode (which the kernel checked at connect) decides; its neighbours are refused."""
    assert peer_allowed(uid, 65534, (), daemon_uid=DAEMON, socket_gid=GROUP, hidden=65534) is allowed


@pytest.mark.parametrize(
    ("uid_map", "hidden"),
    [
        ("         0          0 4294967295\n", None),  # no user namespace: every uid is seen as it is
        ("         0          0          1\n       998        998          1\n", 65534),  # PrivateUsers
        ("         0     100000      65536\n", 65534),  # a container's range
        ("         0          0 4294967294\n", 65534),
    ],
)
def test_hidden_uid_is_the_overflow_uid_unless_every_uid_is_mapped(uid_map: str, hidden: int | None) -> None:
    """Only the identity map of all 4294967295 uids means peers are seen as they are."""
    assert hidden_uid(uid_map, 65534) == hidden


ids = st.integers(min_value=0, max_value=2**31 - 1)


@given(ids, ids, st.frozensets(ids, max_size=5), st.one_of(st.none(), ids))
def test_without_root_or_daemon_uid_only_the_configured_group_lets_in(
    uid: int, gid: int, groups: frozenset[int], socket_gid: int | None
) -> None:
    """For any other uid the answer is exactly membership (effective or supplementary) of a
    configured group; more groups never take access away."""
    allowed = peer_allowed(uid, gid, groups, daemon_uid=DAEMON, socket_gid=socket_gid)

    if uid in (0, DAEMON):
        assert allowed
    elif socket_gid is None:
        assert not allowed
    else:
        assert allowed is (socket_gid == gid or socket_gid in groups)
        assert peer_allowed(uid, gid, groups | {socket_gid}, daemon_uid=DAEMON, socket_gid=socket_gid)


def test_peer_of_a_socket_pair_is_this_process() -> None:
    """SO_PEERCRED of a connected pair gives this process's pid, uid and gid."""
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_of(a) == Peer(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())


def test_a_socket_without_credentials_is_let_in_by_no_rule() -> None:
    """An unconnected Unix socket reports uid and gid -1 (no credentials): refused even with a group;
    no socket at all (a transport without one) is None, where the file's mode decided."""
    with socket.socket(socket.AF_UNIX) as s:
        peer = peer_of(s)
    assert peer is not None
    assert not peer_allowed(peer.uid, peer.gid, (), daemon_uid=DAEMON, socket_gid=GROUP)
    assert peer_of(None) is None


def test_peer_groups_of_a_uid_without_passwd_entry_is_its_gid() -> None:
    """A uid no passwd entry names has only the gid the kernel reported."""
    assert peer_groups(2**31 - 7, 12345) == frozenset({12345})


# -- as another uid, against a real server ----------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="connecting as another uid needs root (setuid in the child)"
)
NOBODY = 65534


def ask_as_nobody(path: Path, *, cli: bool = False) -> bytes:
    """In a forked child of uid and gid 65534 (nobody/nogroup, no other groups): connect to ``path``,
    send a status request, read one reply line; return what the child read (blocking: run it in a
    thread while the server runs on the loop)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup of the parent's state, only os._exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            if cli:  # the command line's own client
                os.write(write_end, json.dumps(request(path, {"command": "status"})).encode() + b"\n")
                code = 0
                return b""  # never reached: the finally clause exits
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(20)
                s.connect(str(path))
                with contextlib.suppress(OSError):  # a refused peer may be closed on already
                    s.sendall(b'{"command": "status"}\n')
                data = b""
                while not data.endswith(b"\n") and (chunk := s.recv(65536)):
                    data += chunk
            os.write(write_end, data)
            code = 0
        except BaseException as exc:
            os.write(2, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out


async def reply_as_nobody(path: Path, *, cli: bool = False) -> dict[str, Any]:
    """The reply line a process of uid and gid 65534 gets to a status request (``cli``: through
    :func:`~maild.service.control_client.request`, else raw)."""
    out = await asyncio.to_thread(ask_as_nobody, path, cli=cli)
    assert out.count(b"\n") == 1
    reply = json.loads(out)
    assert isinstance(reply, dict)
    return reply


async def open_server(sock_dir: Path, handler: Handler, group: str | None) -> ControlServer:
    """A started server whose socket anyone may connect to (directory 0755, socket 0666: a mode
    changed by hand), so that only the peer check stands in the way."""
    sock_dir.chmod(0o755)
    srv = ControlServer(sock_dir / "control.sock", handler, group=group)
    await srv.start()
    srv.path.chmod(0o666)
    return srv


@needs_root
@pytest.mark.parametrize("cli", [False, True])
async def test_another_uid_is_refused_with_one_line_and_one_warning_unread(sock_dir: Path, cli: bool) -> None:
    """uid 65534 on a root daemon without a socket group: one `forbidden` reply line (also through
    the command line's client, which sends before it reads), one warning with uid and pid, the
    request never handled; root's own status still answers."""
    handler = Handler()
    srv = await open_server(sock_dir, handler, None)
    try:
        with structlog.testing.capture_logs() as logs:
            reply = await reply_as_nobody(srv.path, cli=cli)
        assert reply["ok"] is False
        error = reply["error"]
        assert isinstance(error, dict)
        assert error["code"] == "forbidden"
        assert (
            error["message"]
            == f"uid {NOBODY} may not use the control socket (only root or members of group 0)"
        )
        refused = [e for e in logs if e["event"] == "control.peer.refused"]
        assert len(refused) == 1
        assert refused[0]["log_level"] == "warning"
        assert refused[0]["uid"] == NOBODY and refused[0]["pid"] > 0
        assert handler.requests == []
        assert (await status_from_new_client(srv))["ok"] is True
    finally:
        await srv.close()


@needs_root
async def test_a_member_of_the_socket_group_is_served(sock_dir: Path) -> None:
    """uid 65534 whose gid is the configured control_socket_group (nogroup) gets its status."""
    handler = Handler()
    srv = await open_server(sock_dir, handler, str(NOBODY))
    try:
        reply = await reply_as_nobody(srv.path)
        assert reply["ok"] is True
        assert handler.requests == [{"command": "status"}]
    finally:
        await srv.close()


@needs_root
async def test_a_peer_outside_the_configured_group_is_refused_naming_it(sock_dir: Path) -> None:
    """With control_socket_group "daemon", uid 65534 (not a member) is refused, the group named."""
    handler = Handler()
    srv = await open_server(sock_dir, handler, "daemon")
    try:
        reply = await reply_as_nobody(srv.path)
        error = reply["error"]
        assert isinstance(error, dict)
        assert error["message"].endswith("(only root or members of group daemon)")
        assert handler.requests == []
    finally:
        await srv.close()
