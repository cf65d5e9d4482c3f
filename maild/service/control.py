"""The control socket: newline-delimited JSON over a local Unix socket.

Request: one JSON object per line, ``{"command": "status", ...}`` (optional ``"version": 1``).
Reply: one JSON object per line, ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code": "unknown-command", "message": "..."}}``.

The blocking client the command line uses is :mod:`maild.service.control_client`.

Requests are limited in size (:data:`MAX_REQUEST_OCTETS`) and time (:data:`IDLE_TIMEOUT_S` without a
complete line): an abusive client is dropped without affecting the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from maild.errors import ControlError, MaildError
from maild.service.control_wire import PROTOCOL_VERSION, daemon_answers, encode
from maild.service.peer import Peer, peer_allowed, peer_groups, peer_of, system_hidden_uid

log = structlog.get_logger("maild.service.control")

MAX_REQUEST_OCTETS = 64 * 1024
#: Seconds a client may stay silent between requests (and take to read a reply) before it is dropped.
IDLE_TIMEOUT_S = 10.0
#: Seconds a new client may take to send its first request before it is dropped.
FIRST_REQUEST_TIMEOUT_S = 3.0
#: Clients served at once. When all slots are taken, the client silent longest (since it connected,
#: or since its last reply) is dropped to make room, so silent or idle connections never lock the
#: CLI out; only when every client's request is being handled does a new one get ``busy``.
MAX_CLIENTS = 64
#: Slots of :data:`MAX_CLIENTS` kept for the quick read-only commands (:data:`QUICK_COMMANDS`): a
#: request of any other command is answered ``busy`` while ``MAX_CLIENTS - QUICK_SLOTS`` (60) such
#: requests are being handled, so their clients cannot hold every slot and an admin's ``maild
#: status`` or ``maild check`` always finds one (QA of session 15: 64 ``fetch-now`` waits of a slow
#: server made every new client ``busy``).
QUICK_SLOTS = 4
#: Commands answered from memory at once, never waiting on a server: they may use the reserved slots.
QUICK_COMMANDS = frozenset({"status", "version", "metrics"})
LISTEN_BACKLOG = 512
SOCKET_MODE = 0o660

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def error_reply(code: str, message: str) -> dict[str, Any]:
    """Build the JSON error reply for ``code`` and ``message``."""
    return {"ok": False, "error": {"code": code, "message": message}}


class ControlServer:
    """Serves control requests on a Unix socket.

    Args:
        path: the socket path; its parent directory is created if missing.
        handler: coroutine mapping a request object to a reply object; it may raise
            :class:`ControlError` for a JSON error reply.
        group: optional group name or id that may use the socket (mode 0660).
    """

    def __init__(self, path: Path, handler: Handler, *, group: str | int | None = None) -> None:
        self.path = path
        self.handler = handler
        self.group = group
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._silent: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        """Clients without a request in hand (none sent yet, or the last answered), longest silent first."""
        self._identity: tuple[int, int] | None = None
        """Device and inode of the socket file this server made, to notice it removed or replaced."""
        self._lost: str | None = None
        """Why the last :meth:`restore` could not listen again (logged once per reason), or None."""
        self._long_requests = 0
        """Requests of commands not in :data:`QUICK_COMMANDS` being handled now."""
        self._daemon_uid = os.geteuid()
        self._socket_gid = os.getegid()
        """The socket file's group: ``group``'s gid once :meth:`start` gave the socket to it, else
        the daemon's own (the file's group when it is not given away)."""
        self._hidden_uid = system_hidden_uid()
        """The uid unmapped peers appear as in the daemon's user namespace (``PrivateUsers=yes``)."""

    async def start(self) -> None:
        """Listen on the socket.

        Raises:
            ControlError: another maild answers on the path, or the path cannot be used.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ControlError(
                "socket-path",
                f"daemon.control_socket: cannot create its directory {self.path.parent}: {exc.strerror}",
            ) from None
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ControlError(
                    "socket-path", f"control socket path {self.path} exists and is not a socket"
                )
            if daemon_answers(self.path):
                raise ControlError("in-use", f"another maild is listening on {self.path}")
            self.path.unlink()
        old_umask = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_OCTETS, backlog=LISTEN_BACKLOG
            )
        except OSError as exc:
            raise ControlError(
                "socket-path", f"daemon.control_socket: cannot listen on {self.path}: {exc.strerror}"
            ) from None
        finally:
            os.umask(old_umask)
        try:
            os.chmod(self.path, SOCKET_MODE)
            if self.group is not None:
                self._socket_gid = _gid(self.group)
                os.chown(self.path, -1, self._socket_gid)
            made = os.lstat(self.path)
        except (OSError, KeyError) as exc:
            await self.close()
            raise ControlError(
                "socket-group", f"cannot give {self.path} to group {self.group!r}: {exc}"
            ) from None
        self._identity = (made.st_dev, made.st_ino)

    async def restore(self) -> None:
        """Listen again when the socket file or its directory was removed (or replaced) under the daemon.

        Without this, ``rm -r /run/maild`` (a tmpfiles clean-up, an admin tidying) left a daemon that
        fetches on while ``maild status`` says "maild is not running" (exit 3), ``maild check`` says
        CRITICAL, and nothing can reach it but signals (QA of session 11). Called every few seconds by the
        daemon's housekeeping. The old listening socket is closed (its connected clients are served to
        the end); a path now held by another file or another daemon is left alone and logged once at
        error level (``control.socket.lost``); a restored socket is logged at warning
        (``control.socket.restored``).
        """
        if self._server is None or self._identity is None:
            return
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            what = "removed"
        except NotADirectoryError:
            what = "replaced"  # a file where the socket's directory was: logged once below
        except OSError:
            return  # cannot tell: leave it
        else:
            if (st.st_dev, st.st_ino) == self._identity:
                self._lost = None
                return
            what = "replaced"
        old, self._server = self._server, None
        old.close()  # stops listening on the orphan; the path is no longer its own
        try:
            await self.start()
        except ControlError as exc:
            self._server = old  # keep serving connected clients; try again at the next call
            reason = str(exc)
            if reason != self._lost:
                self._lost = reason
                log.error("control.socket.lost", path=str(self.path), found=what, error=reason)
            return
        self._lost = None
        log.warning("control.socket.restored", path=str(self.path), found=what)

    async def close(self) -> None:
        """Stop listening, drop connected clients and remove the socket file this server created.

        A server that never started listening leaves the path alone: it may be another daemon's; so
        does one whose file was replaced since (see :meth:`restore`).
        """
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if self._identity is None or (st.st_dev, st.st_ino) == self._identity:
                self.path.unlink()  # only the file this server made: not one put there since

    def _refused(self, peer: Peer | None) -> str | None:
        """Why ``peer`` may not use the socket (one line for its reply), or None when it may (also
        when the system cannot tell who it is: the socket file's mode decided already)."""
        if peer is None or peer.uid in (0, self._daemon_uid):
            return None
        groups = peer_groups(peer.uid, peer.gid) if peer.gid != self._socket_gid else ()
        if peer_allowed(
            peer.uid,
            peer.gid,
            groups,
            daemon_uid=self._daemon_uid,
            socket_gid=self._socket_gid,
            hidden=self._hidden_uid,
        ):
            return None
        users = "root" if self._daemon_uid == 0 else f"root, uid {self._daemon_uid}"
        group = self.group if self.group is not None else self._socket_gid
        return f"uid {peer.uid} may not use the control socket (only {users} or members of group {group})"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = peer_of(writer.get_extra_info("socket"))
        if (why := self._refused(peer)) is not None:
            assert peer is not None
            # Before taking a slot or reading a byte: a refused peer can neither send a request
            # nor push a silent client out (session 15's QA left the socket's mode the only check).
            log.warning("control.peer.refused", uid=peer.uid, pid=peer.pid, gid=peer.gid)
            writer.write(encode(error_reply("forbidden", why)))
            writer.close()
            return
        if len(self._clients) >= MAX_CLIENTS and self._silent:
            oldest, oldest_writer = next(iter(self._silent.items()))
            del self._silent[oldest]
            oldest_writer.transport.abort()
            oldest.cancel()
            self._clients.discard(oldest)
        if len(self._clients) >= MAX_CLIENTS:
            writer.write(encode(error_reply("busy", f"more than {MAX_CLIENTS} clients connected; try again")))
            writer.close()
            return
        self._clients.add(task)
        self._silent[task] = writer
        first = True
        try:
            while True:
                try:
                    async with asyncio.timeout(FIRST_REQUEST_TIMEOUT_S if first else IDLE_TIMEOUT_S):
                        line = await reader.readline()
                except TimeoutError:
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(
                        encode(error_reply("too-large", f"request exceeds {MAX_REQUEST_OCTETS} octets"))
                    )
                    async with asyncio.timeout(IDLE_TIMEOUT_S):  # a client that never reads is dropped
                        await writer.drain()
                    return
                if not line:
                    return
                first = False
                self._silent.pop(task, None)
                reply = await self._dispatch(line)
                writer.write(encode(reply))
                async with asyncio.timeout(IDLE_TIMEOUT_S):  # a client that never reads is dropped
                    await writer.drain()
                # Answered: droppable again, as the most recently active (QA of session 15: clients
                # idle after one reply, or trickling their next request, held every slot for
                # IDLE_TIMEOUT_S each and a new `maild status` got "busy").
                self._silent[task] = writer
        except (ConnectionError, OSError, TimeoutError):
            return
        except asyncio.CancelledError:
            # Dropped to make room, or the server closing. Nothing awaits this task: asyncio's
            # start_unix_server callback in Python 3.11 calls task.exception() on it, which raises
            # for a cancelled task, and the loop then logged an error-level traceback per dropped
            # client (QA of session 15; Python 3.12 checks task.cancelled() first). Ending here
            # leaves the task finished normally; the finally clause below still runs.
            return
        finally:
            self._clients.discard(task)
            self._silent.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return error_reply("bad-json", f"request is not valid JSON: {exc}")
        except RecursionError:
            return error_reply("bad-json", "request is nested too deeply")
        except ValueError:  # an integer of more than 4300 digits (sys.int_info)
            return error_reply("bad-json", "request holds a number with too many digits (more than 4300)")
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return error_reply("bad-request", 'request must be a JSON object with a string "command"')
        version = request.get("version", PROTOCOL_VERSION)
        if isinstance(version, bool) or version != PROTOCOL_VERSION:  # JSON true == 1 in Python
            return error_reply("bad-version", f"protocol version {version!r} is not supported (use 1)")
        quick = request["command"] in QUICK_COMMANDS
        if not quick and self._long_requests >= MAX_CLIENTS - QUICK_SLOTS:
            return error_reply(
                "busy",
                f"{self._long_requests} requests (fetch-now waits, reloads, ...) are being handled;"
                " try again (status still answers)",
            )
        self._long_requests += 0 if quick else 1
        try:
            reply = await self.handler(request)
        except ControlError as exc:
            return error_reply(exc.code, str(exc))
        except MaildError as exc:  # a StoreError, say: its own words say what went wrong
            log.warning("control.failed", command=request.get("command"), error=str(exc))
            return error_reply("failed", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("control.failed", command=request.get("command"))
            return error_reply("internal", f"internal error: {type(exc).__name__}")
        finally:
            self._long_requests -= 0 if quick else 1
        return {"ok": True, **reply}


def _gid(group: str | int) -> int:
    """Group id of ``group`` (a name, a decimal id string, or an int). Raises KeyError if unknown."""
    import grp

    if isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid
