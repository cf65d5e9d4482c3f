"""Who is on the other end of a control connection, and whether they may use the socket.

The socket file's mode (0660) and its directory decide who may connect; this is the second check,
on the connected peer's credentials as the kernel reports them (``SO_PEERCRED``, Linux ``socket(7)``,
``struct ucred``: pid, uid, gid as three C ints). Allowed: root, the daemon's own uid, and members
(effective or by the group database) of the socket file's group: ``control_socket_group`` when set,
else the daemon's own group, which the file then has (``maild:maild`` under the unit: ``usermod -aG
maild ADMIN`` keeps working). Anyone else (a socket directory made too open, a file mode changed by
hand) is refused before their request is read.

Under ``PrivateUsers=yes`` (the shipped unit) the daemon's user namespace maps only root and its own
user; every other peer is reported as the overflow uid (65534, ``/proc/sys/kernel/overflowuid``) and
cannot be told apart: such a peer is left to the socket file's mode, as before (see
:func:`hidden_uid`).

May import: :mod:`maild.errors` and the standard library only.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["PEERCRED_FORMAT", "Peer", "hidden_uid", "peer_allowed", "peer_groups", "peer_of"]

#: ``struct ucred`` of ``SO_PEERCRED``: pid, uid, gid, each a C int (Linux ``socket(7)``, ``unix(7)``).
PEERCRED_FORMAT = "3i"


@dataclass(frozen=True, slots=True)
class Peer:
    """The credentials of a connected Unix socket peer, as the kernel took them at ``connect()``.

    Attributes:
        pid: process id (the connecting process; it may have exited since).
        uid: effective user id.
        gid: effective group id.
    """

    pid: int
    uid: int
    gid: int


class _Socket(Protocol):
    """What :func:`peer_of` needs of a socket (``socket.socket`` or asyncio's ``TransportSocket``)."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_of(sock: _Socket | None) -> Peer | None:
    """The peer credentials of the connected Unix socket ``sock``; None where the system has no
    ``SO_PEERCRED`` (not Linux) or the socket cannot tell (closed already, not a Unix socket)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize(PEERCRED_FORMAT))
    except OSError:
        return None
    pid, uid, gid = struct.unpack(PEERCRED_FORMAT, raw)
    return Peer(pid=pid, uid=uid, gid=gid)


def peer_groups(uid: int, gid: int) -> frozenset[int]:
    """The groups of user ``uid`` by the system's group database: ``gid`` and, when the uid has a
    passwd entry, every group listing it (``getgrouplist(3)``). A uid without an entry has ``gid`` only.

    The kernel's ``SO_PEERCRED`` carries only the effective gid; membership by the database is what
    ``control_socket_group`` means (the group an admin adds a user to)."""
    import pwd  # only for a peer that is neither root nor the daemon's uid

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return frozenset({gid})
    try:
        return frozenset({gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)})
    except OSError:
        return frozenset({gid, entry.pw_gid})


def hidden_uid(uid_map: str, overflow_uid: int) -> int | None:
    """The uid every peer the daemon's user namespace does not map is reported as, or None when the
    namespace maps every uid (``uid_map`` the one line ``0 0 4294967295``: no namespace).

    Args:
        uid_map: the text of ``/proc/self/uid_map`` (``user_namespaces(7)``: lines of inside,
            outside, count).
        overflow_uid: ``/proc/sys/kernel/overflowuid``.
    """
    ranges = [line.split() for line in uid_map.splitlines() if line.strip()]
    if ranges == [["0", "0", "4294967295"]]:
        return None
    return overflow_uid


def system_hidden_uid() -> int | None:
    """:func:`hidden_uid` of this process (None where ``/proc`` cannot tell: not Linux)."""
    try:
        uid_map = Path("/proc/self/uid_map").read_text(encoding="ascii")
        overflow = int(Path("/proc/sys/kernel/overflowuid").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return hidden_uid(uid_map, overflow)


def peer_allowed(
    uid: int,
    gid: int,
    groups: Collection[int],
    *,
    daemon_uid: int,
    socket_gid: int | None,
    hidden: int | None = None,
) -> bool:
    """Whether a peer may use the control socket.

    Args:
        uid: the peer's uid (``SO_PEERCRED``).
        gid: the peer's effective gid (``SO_PEERCRED``).
        groups: the peer's other groups (:func:`peer_groups`); may be empty.
        daemon_uid: the daemon's effective uid.
        socket_gid: the socket file's group (``control_socket_group``, else the daemon's gid), or
            None for no group.
        hidden: :func:`hidden_uid`: a peer of this uid cannot be told apart (the file's mode decided).

    Returns:
        True for root (uid 0), the daemon's uid, a member of ``socket_gid`` (effective or in
        ``groups``) or the ``hidden`` uid; False otherwise.
    """
    if uid in (0, daemon_uid) or (hidden is not None and uid == hidden):
        return True
    return socket_gid is not None and (gid == socket_gid or socket_gid in groups)
