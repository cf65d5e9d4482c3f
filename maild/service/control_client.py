"""The blocking control-socket client the command line uses: typed requests, typed replies.

:class:`ControlClient` has one method per command; each returns the record of
:mod:`maild.service.status`. Every failure (daemon not running, no permission, no answer in time, a
reply that is no JSON object or does not fit its record, an error reply) is one
:class:`~maild.errors.ControlError` with a code and a one-line message. :func:`request` is the raw
transport beneath (one JSON object out, one back), for tests and tools that need the bare reply.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maild.errors import ControlError
from maild.service.control_wire import PROTOCOL_VERSION, daemon_answers, encode
from maild.service.status import StatusReply

if TYPE_CHECKING:
    # Imported by the methods that return them: `maild status` and `maild check` (monitoring, every
    # minute) need only the status records, not the other ten reply records (start-up time).
    from maild.service import replies

#: Seconds the client waits for an ordinary reply.
DEFAULT_TIMEOUT_S = 30.0
#: Seconds ``fetch-now`` waits for the cycles to end.
FETCH_TIMEOUT_S = 3600.0
#: Seconds ``alert-test`` waits: both channels may take the daemon's 30 s limit each.
ALERT_TEST_TIMEOUT_S = 75.0
#: Longest reply read, in octets (256 MiB): whatever listens on the socket path cannot make the
#: command line grow without end (QA of session 11). Kept at 256 MiB in session 13: the status of
#: 10,000 accounts is about 10 MB, with failing messages listed some 70 MB, and ``fetch-now all``'s
#: results name every message not retrieved (50 accounts with a full disk and thousands of new
#: messages each: 100 MB and more); a smaller cap would turn such replies into errors. What the
#: client holds is bounded instead: the reply is received into one buffer reserved for the cap
#: (:func:`_receive`) and decoded once, so a reply near the cap peaks at about twice its size for a
#: reply of one long string (three times before) plus what its parsed objects weigh (docs/
#: control-socket.md, "Bounds").
MAX_REPLY_OCTETS = 256 * 2**20


#: Octets of the reply buffer to begin with (1 MiB: any ordinary reply); it doubles as a reply fills it.
REPLY_BUFFER_OCTETS = 2**20


def _connect(sock: socket.socket, path: Path, timeout_s: float) -> None:
    """Connect, retrying while the daemon's listen backlog is full (EAGAIN) for up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock.connect(str(path))
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            time.sleep(0.05)
        else:
            return


def request(path: Path, payload: dict[str, Any], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the daemon and return its reply object as sent (blocking); ``timeout_s``
    bounds the whole exchange (connecting, sending and the whole reply), in seconds.

    An error reply (``"ok": false``) is returned, not raised; :class:`ControlClient` raises it.

    Raises:
        ControlError: the daemon is not running (``not-running``), the socket may not be used
            (``permission``), it did not answer in time (``timeout``), or sent something that is not a
            JSON object or longer than :data:`MAX_REPLY_OCTETS` (``bad-reply``).
    """
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            _connect(sock, path, timeout_s)
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            # NotADirectoryError: a file where the socket's directory should be (a /run clean-up
            # gone wrong); before, "maild: [Errno 20] Not a directory" (QA of session 12)
            raise ControlError("not-running", f"maild is not running (no daemon on {path})") from None
        except TimeoutError:
            raise ControlError(
                "timeout", f"maild did not accept the connection within {timeout_s:g} s"
            ) from None
        except PermissionError:
            raise ControlError(
                "permission", f"no permission to use {path} (root or the socket's group)"
            ) from None
        try:
            # refused unread (a peer the daemon does not serve): the send may fail, its reply is queued
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(encode({"version": PROTOCOL_VERSION, **payload}))
            text = _receive(sock, path, deadline, timeout_s)
        except TimeoutError:
            raise ControlError("timeout", f"maild did not answer within {timeout_s:g} s") from None
    if not text:
        raise ControlError("no-reply", "maild closed the connection without a reply (did it stop or crash?)")
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise ControlError("bad-reply", "maild sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError("bad-reply", "maild sent a reply that is not a JSON object")
    return reply


def _receive(sock: socket.socket, path: Path, deadline: float, timeout_s: float) -> str:
    """Read one reply up to its newline and return it decoded (UTF-8): ``""`` when the daemon
    closed the connection without sending anything.

    The octets go straight from the socket into one buffer, an anonymous mapping of
    :data:`REPLY_BUFFER_OCTETS` doubled in place as a reply fills it (``mremap``: the pages move,
    nothing is copied or joined; at most :data:`MAX_REPLY_OCTETS` + 1 octets, and only what is
    mapped counts against a strict overcommit limit), and are decoded once from there, after which
    the buffer is unmapped:
    the caller parses the text alone (before, a growing ``bytearray`` of 64 KiB chunks was parsed by
    ``json.loads``, which decoded a copy of it while the buffer stayed alive: a reply of 256 MiB
    of one string made ``maild status`` peak at 786 MB, now 528 MB; docs/performance.md, "Session 13").

    Raises:
        ControlError: longer than :data:`MAX_REPLY_OCTETS` (``bad-reply``, as soon as one octet more
            arrived), not UTF-8 (``bad-reply``), or not complete by ``deadline`` (``timeout``).
        TimeoutError: a read waited past the deadline.
    """
    import mmap

    limit = MAX_REPLY_OCTETS + 1
    buffer = mmap.mmap(-1, min(REPLY_BUFFER_OCTETS, limit), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = memoryview(buffer)
    try:
        filled = 0
        while filled == 0 or view[filled - 1] != 0x0A:
            # the whole exchange is bounded, not each read: a reply trickled an octet at a time
            # kept `maild status` (and monitoring's `maild check`) waiting for ever (QA of session 12)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlError("timeout", f"maild did not answer within {timeout_s:g} s")
            if filled == len(buffer):  # full: twice as large (mremap moves the pages, copies nothing)
                view.release()
                buffer.resize(min(2 * len(buffer), limit))
                view = memoryview(buffer)
            sock.settimeout(left)
            got = sock.recv_into(view[filled:])
            if not got:
                break
            filled += got
            if filled > MAX_REPLY_OCTETS:
                raise ControlError(
                    "bad-reply", f"the reply on {path} is longer than {MAX_REPLY_OCTETS} octets"
                )
        try:
            return str(view[:filled], "utf-8")
        except UnicodeDecodeError:
            raise ControlError("bad-reply", "maild sent a reply that is not JSON") from None
    finally:
        view.release()
        buffer.close()


def checked(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    """``reply`` when it is a success; the one place that turns an error reply into an exception.

    Raises:
        ControlError: with the daemon's error code and message for ``{"ok": false, ...}``; ``bad-reply``
            when ``ok`` is missing.
    """
    ok = reply.get("ok")
    if ok is True:
        return reply
    err = reply.get("error")
    if ok is False and isinstance(err, dict):
        raise ControlError(str(err.get("code", "error")), str(err.get("message", "request failed")))
    raise ControlError("bad-reply", 'maild sent a reply without a valid "ok"')


class ControlClient:
    """Talks to the daemon on its control socket, one blocking request per call.

    Args:
        path: the control socket.
        timeout_s: seconds to wait for a reply (``fetch_now`` waits up to :data:`FETCH_TIMEOUT_S`).

    Every method raises :class:`~maild.errors.ControlError` as :func:`request` and :func:`checked`
    say, and ``bad-reply`` when the reply does not fit its record.
    """

    def __init__(self, path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def _ask(self, payload: dict[str, Any], timeout_s: float | None = None) -> Mapping[str, Any]:
        return checked(request(self.path, payload, timeout_s=timeout_s or self.timeout_s))

    def daemon_answers(self) -> bool:
        """True when a daemon listens on the socket (without sending a request)."""
        return daemon_answers(self.path)

    def status(self, account: str | None = None) -> StatusReply:
        """The daemon's status; with ``account``, only that account (``unknown-account`` if none)."""
        payload: dict[str, Any] = {"command": "status"}
        if account:
            payload["account"] = account
        return StatusReply.from_json(self._ask(payload))

    def version(self) -> replies.VersionReply:
        """The running daemon's version."""
        from maild.service import replies

        return replies.VersionReply.from_json(self._ask({"command": "version"}))

    def fetch_now(self, account: str = "all", *, retry_failed: bool = False) -> replies.FetchResults:
        """Run a cycle of ``account`` (or ``all``) now and wait for the outcomes.

        ``retry_failed``: also try the messages set aside after repeated failures again.
        """
        from maild.service import replies

        payload = {"command": "fetch-now", "account": account, "wait": True, "retry_failed": retry_failed}
        return replies.FetchResults.from_json(self._ask(payload, FETCH_TIMEOUT_S))

    def queue_fetch(self, account: str = "all", *, retry_failed: bool = False) -> replies.FetchQueued:
        """Ask for a cycle of ``account`` (or ``all``) now without waiting for it (``retry_failed``:
        as for :meth:`fetch_now`)."""
        from maild.service import replies

        payload = {"command": "fetch-now", "account": account, "wait": False, "retry_failed": retry_failed}
        return replies.FetchQueued.from_json(self._ask(payload))

    def pause(self, account: str) -> replies.AccountStateReply:
        """Stop fetching ``account`` until resumed or the daemon restarts."""
        from maild.service import replies

        return replies.AccountStateReply.from_json(self._ask({"command": "pause", "account": account}))

    def resume(self, account: str) -> replies.AccountStateReply:
        """Resume ``account`` (also after an authentication lockout)."""
        from maild.service import replies

        return replies.AccountStateReply.from_json(self._ask({"command": "resume", "account": account}))

    def reload(self) -> replies.ReloadReport:
        """Make the daemon re-read its configuration (``config-invalid`` when it rejects it)."""
        from maild.service import replies

        return replies.ReloadReport.from_json(self._ask({"command": "reload"}))

    def metrics(self) -> replies.MetricsReply:
        """The daemon's metrics in the Prometheus text format."""
        from maild.service import replies

        return replies.MetricsReply.from_json(self._ask({"command": "metrics"}))

    def alert_test(self) -> replies.AlertTestReply:
        """Make the daemon send a test alert through every configured channel (waits for them)."""
        from maild.service import replies

        reply = self._ask({"command": "alert-test"}, timeout_s=ALERT_TEST_TIMEOUT_S)
        return replies.AlertTestReply.from_json(reply)

    def stop(self) -> replies.StopReply:
        """Ask the daemon to stop (it finishes running cycles first)."""
        from maild.service import replies

        return replies.StopReply.from_json(self._ask({"command": "stop"}))
