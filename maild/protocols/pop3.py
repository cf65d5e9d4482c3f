"""POP3 adapter: stdlib :mod:`poplib` for connecting, TLS and login; maild's own reader for everything else.

Blocking work runs in maild's thread pool, one executor job per step (login, inventory, one window of
RETRs or DELEs, QUIT). poplib reads lines of at most 2,048 octets and has no PIPELINING, so multi-line
replies (CAPA, UIDL, LIST, RETR) and all commands after login go through
:class:`~maild.protocols.pop3_wire.ReplyDecoder`, reading from poplib's own buffered socket file so that no
octet is lost between the two readers.

Cancellation: cancelling asyncio does not stop a thread, so a cancelled step shuts the socket down, which
makes the blocked thread return at once. The session is then broken: :meth:`POP3Maildrop.abort` only
closes it. Dropping a POP3 session without ``+OK`` to QUIT never enters the UPDATE state, so nothing marked
with DELE is deleted (RFC 1939 section 6).

Only this module (and :mod:`maild.protocols.imap`) catches ``poplib.error_proto``, ``ssl.SSLError`` and
``OSError``; they leave it as :mod:`maild.errors` classes naming the account, never the password.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import io
import poplib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import structlog

from maild.errors import (
    AuthError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import (
    InventoryEntry,
    MessageKey,
    POP3Key,
    RetrievalFailure,
    RetrievedMessage,
    ServerSettings,
)
from maild.protocols import pop3_identity as identity
from maild.protocols import pop3_wire as wire
from maild.protocols.base import Maildrop
from maild.protocols.tls import client_context

__all__ = ["ABORT_TIMEOUT_S", "READ_CHUNK_OCTETS", "POP3Maildrop"]

READ_CHUNK_OCTETS = 256 * 1024
"""Most octets taken from the socket per read."""

ABORT_TIMEOUT_S = 5.0
"""Limit in seconds for RSET and for QUIT during :meth:`POP3Maildrop.abort` (capped by the account's
timeout), and for waiting on a step still running in its thread."""

_THROTTLE_CODES = ("SYS/TEMP", "IN-USE", "LOGIN-DELAY")  # RFC 3206 section 5, RFC 2449 section 8.1
_T = TypeVar("_T")
_State = Literal["new", "opening", "open", "broken", "closed"]
_log = structlog.stdlib.get_logger(__name__)


def _close_quietly(pop: poplib.POP3) -> None:
    """Close a poplib session's file and socket, also a half-constructed one; never raises."""
    with contextlib.suppress(AttributeError, OSError):
        pop.close()


class _POP3(poplib.POP3):
    """poplib.POP3 that closes its socket when the greeting fails (poplib leaks it)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            super().__init__(host, port, timeout)
        except BaseException:
            _close_quietly(self)
            raise


class _POP3SSL(poplib.POP3_SSL):
    """poplib.POP3_SSL that closes its socket when the greeting fails (poplib leaks it)."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        try:
            super().__init__(host, port, timeout=timeout, context=context)
        except BaseException:
            _close_quietly(self)
            raise


@dataclass(frozen=True, slots=True)
class _Listing:
    """Result of the inventory step: UIDL listing (None when refused, with the refusal) and scan listing."""

    uidl: wire.UIDLListing | None
    uidl_refusal: str
    sizes: dict[int, int]
    uidl_status: wire.StatusLine | None = None


class _Session:
    """The blocking half of one POP3 session. Its methods run in a worker thread, one at a time;
    only :meth:`shutdown` may be called from another thread meanwhile."""

    def __init__(self, settings: ServerSettings, max_reply_octets: int) -> None:
        self.settings = settings
        self.pop: poplib.POP3 | None = None
        self.caps: dict[str, tuple[str, ...]] = {}
        self.decoder = wire.ReplyDecoder(max_reply_octets=max_reply_octets)
        self._lock = threading.Lock()
        self._shut = False

    # -- errors ---------------------------------------------------------------------------------------

    def _where(self) -> str:
        s = self.settings
        return f"account {s.account!r}: POP3 {s.host}:{s.port}"

    def redact(self, text: str) -> str:
        """Return ``text`` with the password replaced, should a server ever echo it."""
        secret = self.settings.password.reveal()
        return text.replace(secret, "********") if secret else text

    def protocol_error(self, message: str, *, line: str = "", standard: str = "") -> ProtocolError:
        """A ProtocolError naming the account, with the server's line redacted."""
        return ProtocolError(
            f"{self._where()}: {message}",
            account=self.settings.account,
            line=self.redact(line),
            standard=standard,
        )

    def translate(self, exc: BaseException, doing: str, *, connecting: bool = False) -> MaildError | None:
        """The maild error for a foreign exception raised while ``doing``, naming the account; None for
        exceptions that need no translation (maild errors that already name the account, bugs)."""
        acct = self.settings.account
        if isinstance(exc, ProtocolError):
            if exc.account:
                return None
            named = ProtocolError(f"{self._where()}: {self.redact(exc.args[0])}", account=acct)
            named.line, named.standard = self.redact(exc.line), exc.standard
            return named
        if isinstance(exc, TimeoutError):
            return NetworkTimeout(
                f"{self._where()}: no progress for {self.settings.timeout_s} s while {doing}", account=acct
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectError(f"{self._where()}: TLS failed while {doing}: {exc}", account=acct)
        if isinstance(exc, OSError):
            what = "cannot connect" if connecting else "connection lost"
            return ConnectError(f"{self._where()}: {what} while {doing}: {exc}", account=acct)
        return None

    @contextlib.contextmanager
    def mapped(self, doing: str, *, connecting: bool = False) -> Iterator[None]:
        """Translate foreign exceptions raised while ``doing`` (see :meth:`translate`)."""
        try:
            yield
        except Exception as exc:
            error = self.translate(exc, doing, connecting=connecting)
            if error is None:
                raise
            raise error from exc

    def _refusal(self, exc: poplib.error_proto, doing: str) -> wire.StatusLine | MaildError:
        """The server's status line inside a poplib error, or the error to raise for poplib's own
        complaints (``"-ERR EOF"``, ``"line too long"``) and for a malformed line."""
        arg = exc.args[0] if exc.args else b""
        if isinstance(arg, str):  # poplib's own text, not the server's
            if arg == "-ERR EOF":
                return ConnectError(
                    f"{self._where()}: server closed the connection while {doing}",
                    account=self.settings.account,
                )
            return self.protocol_error(f"{arg} while {doing}", standard="RFC 1939 section 3")
        try:
            return wire.parse_status_line(bytes(arg))
        except ProtocolError as bad:
            return self.translate(bad, doing) or bad

    def _login_step(self, pop: poplib.POP3, verb: Literal["USER", "PASS"]) -> MaildError | None:
        """Send USER or PASS through poplib; return the error to raise, or None on +OK.

        The error is returned, not raised, so that the caller raises it with no exception chain:
        poplib's frames beneath the original exception hold the password in their locals, and
        traceback renderers may print locals.

        Standard: RFC 1939 section 7; RFC 2449 section 8.1 and RFC 3206 for the response codes.
        """
        acct = self.settings.account
        try:
            if verb == "USER":
                pop.user(self.settings.username)
            else:
                pop.pass_(self.settings.password.reveal())
        except poplib.error_proto as exc:
            status = self._refusal(exc, verb)
        except OSError as exc:
            return self.translate(exc, f"sending {verb}", connecting=True)
        else:
            return None
        if isinstance(status, MaildError):
            return status
        reply = self.redact(status.render())
        if any(status.has_code(c) for c in _THROTTLE_CODES):
            return ThrottledError(f"{self._where()}: login deferred: {reply}", account=acct)
        if status.has_code("SYS/PERM"):
            return self.protocol_error(f"login failed: {reply}", line=reply, standard="RFC 3206 section 4")
        return AuthError(f"{self._where()}: login refused: {reply}", account=acct)

    # -- connection -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Shut the socket down so a thread blocked on it returns now; safe from any thread, any time."""
        with self._lock:
            self._shut = True
            pop = self.pop
        sock = getattr(pop, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # bypasses SSLSocket's, which drops state

    def close(self) -> None:
        """Close file and socket; never raises."""
        if self.pop is not None:
            _close_quietly(self.pop)

    def _attach(self, pop: poplib.POP3) -> None:
        with self._lock:
            if not self._shut:
                self.pop = pop
                return
        _close_quietly(pop)
        raise ConnectError(
            f"{self._where()}: connection abandoned (cancelled)", account=self.settings.account
        )

    def connect(self) -> None:
        """Connect, greet, negotiate TLS, USER/PASS, CAPA. Closes the socket on any failure.

        Standard: RFC 1939 sections 4 and 7 (greeting, USER/PASS), RFC 2595 section 4 (STLS), RFC 2449
        section 5 (CAPA after login: capabilities may differ per state), RFC 3206 (response codes).
        """
        try:
            with self.mapped("connecting", connecting=True):
                self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        s = self.settings
        acct = s.account
        ctx = client_context(s.ca_file)  # verifies certificate and host name; built once per CA file
        try:
            if s.tls == "implicit":
                pop: poplib.POP3 = _POP3SSL(s.host, s.port, s.timeout_s, ctx)
            else:
                pop = _POP3(s.host, s.port, s.timeout_s)
        except poplib.error_proto as exc:
            status = self._refusal(exc, "greeting")
            if isinstance(status, MaildError):
                raise status from exc
            if any(status.has_code(c) for c in _THROTTLE_CODES):
                raise ThrottledError(f"{self._where()}: greeting {status.render()}", account=acct) from exc
            raise TransientError(
                f"{self._where()}: server refused the session: {status.render()}", account=acct
            ) from exc
        self._attach(pop)
        if s.tls == "starttls":
            try:
                pop.stls(context=ctx)  # CAPA, then STLS only if offered, then the handshake
            except (poplib.error_proto, UnicodeDecodeError) as exc:
                reason = exc.args[0] if isinstance(exc, poplib.error_proto) and exc.args else exc
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                if reason == "-ERR EOF":
                    raise ConnectError(
                        f"{self._where()}: server closed the connection at STLS", account=acct
                    ) from exc
                raise self.protocol_error(
                    "STLS failed; refusing to log in without TLS",
                    line=str(reason),
                    standard="RFC 2595 section 4",
                ) from exc
        if any(c in s.username + s.password.reveal() for c in "\r\n\0"):
            raise AuthError(f"{self._where()}: username or password contains a line break", account=acct)
        for verb in ("USER", "PASS"):
            error = self._login_step(pop, verb)
            if error is not None:
                raise error  # outside any except block: no chain back to poplib's frames
        capa = self.exchange(["CAPA"], multiline=True, pipelined=False)[0]
        self.caps = wire.parse_capa(capa.body) if capa.body is not None else {}

    # -- commands -------------------------------------------------------------------------------------

    @property
    def pipelining(self) -> bool:
        """Whether the server announced PIPELINING (RFC 2449 section 6.6)."""
        return "PIPELINING" in self.caps

    def exchange(self, commands: Sequence[str], *, multiline: bool, pipelined: bool) -> list[wire.Reply]:
        """Send ``commands`` and read one reply to each, in order.

        Args:
            commands: command lines without CRLF, ASCII.
            multiline: whether ``+OK`` replies to these commands are multi-line.
            pipelined: send all commands at once (RFC 2449 section 6.6) instead of one per round trip.

        Raises:
            ProtocolError: a reply is malformed or too large, or data follows the last reply.
            OSError: from the socket (mapped by the caller's :meth:`mapped`).
        """
        pop = self.pop
        if pop is None:
            raise ConnectError(f"{self._where()}: not connected", account=self.settings.account)
        file = cast(io.BufferedIOBase, pop.file)
        replies: list[wire.Reply] = []
        batches = [commands] if pipelined else [[c] for c in commands]
        for batch in batches:
            pop.sock.sendall("".join(f"{c}\r\n" for c in batch).encode("ascii"))
            for _ in batch:
                while (reply := self.decoder.next_reply(multiline=multiline)) is None:
                    chunk = file.read1(READ_CHUNK_OCTETS)
                    if not chunk:
                        raise ConnectError(
                            f"{self._where()}: server closed the connection", account=self.settings.account
                        )
                    self.decoder.feed(chunk)
                replies.append(reply)
        if self.decoder.buffered_octets:
            raise self.protocol_error("unexpected data after the last reply", standard="RFC 1939 section 3")
        return replies

    def run(self, doing: str, commands: Sequence[str], *, multiline: bool) -> list[wire.Reply]:
        """:meth:`exchange` with errors mapped; pipelined when the server allows it."""
        with self.mapped(doing):
            return self.exchange(commands, multiline=multiline, pipelined=self.pipelining)

    def listing(self) -> _Listing:
        """UIDL and LIST (RFC 1939 sections 7 and 5), pipelined when allowed, parsed."""
        with self.mapped("listing the maildrop"):
            if self.pipelining:
                uidl, scan = self.exchange(["UIDL", "LIST"], multiline=True, pipelined=True)
            else:
                uidl = self.exchange(["UIDL"], multiline=True, pipelined=False)[0]
                scan = self.exchange(["LIST"], multiline=True, pipelined=False)[0]
            if scan.body is None:
                raise self.protocol_error(
                    "LIST refused", line=scan.status.render(), standard="RFC 1939 section 5"
                )
            sizes = wire.parse_scan_listing(scan.body)
            if uidl.body is None:
                return _Listing(None, self.redact(uidl.status.render()), sizes, uidl.status)
            return _Listing(wire.parse_uidl_listing(uidl.body), "", sizes)

    def quit(self) -> wire.StatusLine:
        """QUIT (RFC 1939 section 6), then close the socket whatever happened."""
        try:
            return self.run("sending QUIT", ["QUIT"], multiline=False)[0].status
        finally:
            self.close()

    def reset_and_quit(self) -> None:
        """RSET, and only after ``+OK`` to it QUIT, with a short timeout; then close. Best effort.

        QUIT is never pipelined behind RSET: a QUIT after a failed RSET would apply the deletions.
        """
        try:
            if self.pop is not None:
                self.pop.sock.settimeout(min(self.settings.timeout_s, ABORT_TIMEOUT_S))
                if self.exchange(["RSET"], multiline=False, pipelined=False)[0].status.ok:
                    self.exchange(["QUIT"], multiline=False, pipelined=False)
        finally:
            self.close()


class POP3Maildrop(Maildrop):
    """One POP3 session (RFC 1939) with one account's server, run in maild's thread pool.

    Identities are UIDLs (RFC 1939 section 7). Message-numbers are remembered for this session only and
    never leave this object. Messages whose UIDL appears more than once in the listing cannot be
    addressed by UIDL: :meth:`inventory` leaves them out and logs ``pop3.uidl.duplicate``. A server
    without UIDL gets identities computed from the messages' content instead (see
    :mod:`~maild.protocols.pop3_identity` and :attr:`identity`).

    Args:
        settings: how to reach and log in. Every socket operation (connect, TLS handshake, each send,
            each read) is limited to ``settings.timeout_s`` seconds.
        executor: maild's POP3 thread pool; each step is one job in it.
        window: most RETR or DELE commands sent ahead in one round trip when the server announces
            PIPELINING (RFC 2449 section 6.6); one at a time otherwise. 1 disables pipelining.
        window_octets: about how many octets of messages (LIST sizes) one RETR window may request; a
            window always holds at least one message.
        max_reply_octets: cap on one reply in octets; a larger message fails the session with
            ProtocolError.
        max_message_size: the account's ``max_message_size`` in octets, or None. Without UIDL, a
            message larger than this (by LIST) is never downloaded just to identify it: the fetch cycle
            skips it anyway. If its header section does not identify it, it gets the placeholder
            identity ``"unidentified:<octets>:<msgnum>"``, which names nothing in the archive.
    """

    def __init__(
        self,
        settings: ServerSettings,
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        window: int = 200,  # one commit batch of fetch.py in one round trip (see README "Performance")
        window_octets: int = 16 * 2**20,
        max_reply_octets: int = 100 * 2**20,
        max_message_size: int | None = None,
    ) -> None:
        if window < 1 or window_octets < 1 or max_reply_octets < 1:
            raise ValueError("window, window_octets and max_reply_octets must be positive")
        self._settings = settings
        self._executor = executor
        self._window = window
        self._window_octets = window_octets
        self._max_message_size = max_message_size
        self._session = _Session(settings, max_reply_octets)
        self._state: _State = "new"
        self._job: concurrent.futures.Future[object] | None = None
        self._msgnum_by_uidl: dict[str, int] | None = None
        self._size_by_uidl: dict[str, int] = {}
        self._duplicates: frozenset[str] = frozenset()
        self._identity: Literal["uidl", "content-digest"] = "uidl"
        self._warnings: tuple[str, ...] = ()

    @property
    def capabilities(self) -> Mapping[str, tuple[str, ...]]:
        """The server's CAPA after login (RFC 2449 section 5): upper-cased tag to parameters; empty if
        the server has no CAPA."""
        return dict(self._session.caps)

    @property
    def duplicate_uidls(self) -> frozenset[str]:
        """UIDLs that the last :meth:`inventory` found on more than one message, left out of it."""
        return self._duplicates

    @property
    def identity(self) -> str:
        """``"uidl"``, or ``"content-digest"`` when the last :meth:`inventory` found no UIDL and
        identified the messages by digests of their content (see :mod:`~maild.protocols.pop3_identity`)."""
        return self._identity

    @property
    def identity_warnings(self) -> Sequence[str]:
        """What the last :meth:`inventory` could not do as usual, in words for the status: digest
        identities and their cost, messages left out of the inventory."""
        return self._warnings

    async def _run(self, fn: Callable[[], _T]) -> _T:
        """Run one blocking step in the executor.

        Cancelled: the socket is shut down so the thread returns promptly, and the session is broken.
        Any exception from the step also breaks the session (the stream may be out of step).
        """
        job = self._executor.submit(fn)
        self._job = cast("concurrent.futures.Future[object]", job)
        try:
            return await asyncio.wrap_future(job)
        except BaseException:
            self._state = "broken"
            if not job.done():
                self._session.shutdown()
            raise

    def _require_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"POP3 session for {self._settings.account!r} is {self._state}, not open")

    async def open(self) -> None:
        """Connect, negotiate TLS, log in with USER/PASS, read CAPA.

        TLS: ``implicit`` wraps from the first octet; ``starttls`` issues STLS (RFC 2595 section 4) and
        never sends USER/PASS if STLS fails; the certificate and host name are always verified against
        ``settings.ca_file`` or the system store.

        Cancelled: nothing on the server has changed. The socket is shut down, or, while the TCP or TLS
        connection is still being made, closed by the connecting thread as soon as it has it (at most
        ``timeout_s`` later). Call :meth:`abort`.

        Raises:
            ConnectError: DNS failure, connection refused, TLS handshake or verification failure.
            AuthError: ``-ERR`` to USER or PASS, unless with a code below (RFC 3206 ``[AUTH]``).
            ThrottledError: ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]`` on the greeting or login.
            TransientError: the greeting was ``-ERR`` without such a code.
            NetworkTimeout: an operation exceeded ``timeout_s``.
            ProtocolError: ``[SYS/PERM]`` at login, STLS refused or not offered, or a malformed reply.
        """
        if self._state != "new":
            raise RuntimeError("open() may be called only once")
        self._state = "opening"
        await self._run(self._session.connect)
        self._state = "open"

    async def inventory(self) -> list[InventoryEntry]:
        """UIDL and LIST: one entry per message, in message-number order, sizes in octets from LIST.

        Messages sharing a UIDL are left out (see :attr:`duplicate_uidls`), with a warning. When the
        server does not offer UIDL or refuses it permanently, identities are digests of the messages'
        content instead (``TOP n 0`` and, where needed, RETR; see :meth:`_inventory_without_uidl`).

        Cancelled: nothing changes on the server; the session is broken (call :meth:`abort`).

        Standard: RFC 1939 section 7 (UIDL, TOP), section 5 (LIST).

        Raises:
            ThrottledError: UIDL was refused with ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]``
                (a passing condition: identities are not switched to digests for it).
            ProtocolError: the server refused LIST, a listing is malformed, or the two listings disagree
                on the message-numbers.
            NetworkTimeout, ConnectError: the session is broken.
        """
        self._require_open()
        self._identity, self._warnings = "uidl", ()
        listing = await self._run(self._session.listing)
        if listing.uidl is None:
            return await self._inventory_without_uidl(listing)
        uidls = listing.uidl.uidl_by_msgnum
        if set(uidls) != set(listing.sizes):
            raise self._session.protocol_error(
                "UIDL and LIST name different message-numbers", standard="RFC 1939 section 7"
            )
        dups = listing.uidl.duplicates
        for uidl, msgnums in dups.items():
            _log.warning(
                "pop3.uidl.duplicate", account=self._settings.account, uidl=uidl, message_count=len(msgnums)
            )
        entries: list[InventoryEntry] = []
        self._msgnum_by_uidl, self._size_by_uidl = {}, {}
        for msgnum in sorted(uidls):
            uidl = uidls[msgnum]
            if uidl not in dups:
                self._msgnum_by_uidl[uidl] = msgnum
                self._size_by_uidl[uidl] = listing.sizes[msgnum]
                entries.append(InventoryEntry(POP3Key(uidl), listing.sizes[msgnum]))
        self._duplicates = frozenset(dups)
        return entries

    async def _inventory_without_uidl(self, listing: _Listing) -> list[InventoryEntry]:
        """Identities for a server without UIDL: digests of the messages' content.

        Steps: ``TOP n 0`` for every message (pipelined in windows when allowed; not sent when CAPA
        lists capabilities without TOP); a header identity (``"hdr:…"``) for each message whose header
        section is distinctive and unique in the listing; RETR of every other message, in windows by
        LIST size, keeping only its SHA-256 (``"sha256:…"``, computed in the worker thread, the octets
        dropped at once). A message whose RETR is refused here has no identity this cycle: it is left
        out (neither retrieved nor deleted) and named in :attr:`identity_warnings`. The rules and why
        they are safe: :mod:`maild.protocols.pop3_identity`.

        Cancelled: as for :meth:`inventory`.

        Standard: RFC 1939 section 7 (UIDL optional, TOP), RFC 2449 section 6.6 (PIPELINING).

        Raises:
            ThrottledError: UIDL was refused with a code saying the condition will pass.
            NetworkTimeout, ConnectError, ProtocolError: as for :meth:`inventory`.
        """
        session, acct = self._session, self._settings.account
        status = listing.uidl_status
        if status is not None and any(status.has_code(c) for c in _THROTTLE_CODES):
            raise ThrottledError(f"{session._where()}: UIDL deferred: {listing.uidl_refusal}", account=acct)
        sizes = listing.sizes
        msgnums = sorted(sizes)
        tops: dict[int, bytes | None] = {}
        if msgnums and (not session.caps or "TOP" in session.caps):
            limit = self._window if session.pipelining else 1
            for start in range(0, len(msgnums), limit):
                window = msgnums[start : start + limit]
                replies = await self._run(
                    functools.partial(
                        session.run, "reading headers", [f"TOP {n} 0" for n in window], multiline=True
                    )
                )
                tops.update((n, r.body) for n, r in zip(window, replies, strict=True))
        plan = identity.plan_identities(sizes, tops)
        del tops
        cap = self._max_message_size
        skipped = {n: f"unidentified:{sizes[n]}:{n}" for n in plan.need_content if cap and sizes[n] > cap}
        digests: dict[int, str] = {}
        refused: list[str] = []
        readable = [n for n in plan.need_content if n not in skipped]
        for window in self._msgnum_windows(readable, sizes):
            outcome = await self._run(functools.partial(self._digest_window, window))
            for msgnum, result in zip(window, outcome, strict=True):
                if isinstance(result, str):
                    digests[msgnum] = result
                else:
                    refused.append(session.redact(result.render()))
        keys = {**plan.header_keys, **identity.content_keys(digests), **skipped}
        entries: list[InventoryEntry] = []
        self._msgnum_by_uidl, self._size_by_uidl = {}, {}
        for msgnum in msgnums:
            key = keys.get(msgnum)
            if key is not None:
                self._msgnum_by_uidl[key] = msgnum
                self._size_by_uidl[key] = sizes[msgnum]
                entries.append(InventoryEntry(POP3Key(key), sizes[msgnum]))
        self._duplicates = frozenset()
        self._identity = "content-digest"
        what = "does not offer UIDL" if "UIDL" not in session.caps else "refused UIDL"
        warnings = [
            f"the server {what} (RFC 1939 section 7): messages are identified by digests of their "
            f"content; {len(plan.header_keys)} by header section (TOP), {len(digests)} by full content "
            "(downloaded in full in every cycle)"
        ]
        if plan.collisions:
            warnings.append(
                f"{len(plan.collisions)} messages share their header section with another one: "
                "identified by full content"
            )
        if skipped:
            warnings.append(
                f"{len(skipped)} messages above max_message_size cannot be identified without "
                "downloading them: skipped, left on the server"
            )
        if refused:
            warnings.append(
                f"{len(refused)} messages could not be read to identify them ({refused[0]}): "
                "left on the server, tried again next cycle"
            )
        self._warnings = tuple(warnings)
        _log.info(  # every cycle: info, not warning; the status carries the warning
            "pop3.identity.content-digest",
            account=acct,
            by_header=len(plan.header_keys),
            by_content=len(digests),
            header_collisions=len(plan.collisions),
            unidentified=len(refused),
        )
        return entries

    def _digest_window(self, msgnums: Sequence[int]) -> list[str | wire.StatusLine]:
        """RETR ``msgnums`` (in the worker thread) and return each one's content digest, or the refusal."""
        replies = self._session.run("identifying messages", [f"RETR {n}" for n in msgnums], multiline=True)
        out: list[str | wire.StatusLine] = []
        for reply in replies:
            out.append(identity.content_digest(reply.body) if reply.body is not None else reply.status)
        return out

    def _msgnum_windows(self, msgnums: Sequence[int], sizes: Mapping[int, int]) -> list[list[int]]:
        """Group message-numbers into RETR windows by command count and LIST sizes, as :meth:`_windows`."""
        limit = self._window if self._session.pipelining else 1
        windows: list[list[int]] = []
        octets = 0
        for msgnum in msgnums:
            size = sizes[msgnum]
            if not windows or len(windows[-1]) >= limit or octets + size > self._window_octets:
                windows.append([])
                octets = 0
            windows[-1].append(msgnum)
            octets += size
        return windows

    def _msgnum(self, key: MessageKey) -> int | None:
        if not isinstance(key, POP3Key):
            raise TypeError(f"POP3 key expected, got {type(key).__name__}")
        if self._msgnum_by_uidl is None:
            raise RuntimeError("inventory() must run before retrieve() or delete()")
        return self._msgnum_by_uidl.get(key.uidl)

    def _windows(self, keys: Sequence[MessageKey]) -> list[list[tuple[MessageKey, int | None]]]:
        """Group keys into RETR windows by command count and expected octets (LIST sizes)."""
        limit = self._window if self._session.pipelining else 1
        windows: list[list[tuple[MessageKey, int | None]]] = [[]]
        count = octets = 0
        for key in keys:
            msgnum = self._msgnum(key)
            if msgnum is not None:
                size = self._size_by_uidl[cast(POP3Key, key).uidl]
                if count and (count >= limit or octets + size > self._window_octets):
                    windows.append([])
                    count = octets = 0
                count += 1
                octets += size
            windows[-1].append((key, msgnum))
        return [w for w in windows if w]

    async def retrieve(
        self, keys: Sequence[MessageKey]
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """RETR each message, pipelined in windows when the server allows; yield in the order of ``keys``.

        Each window is one executor job; its messages are yielded once the whole window has arrived.
        ``raw`` is the message exactly as sent after un-stuffing, CRLF line endings (RFC 1939 section 3).
        A ``-ERR`` to one RETR yields :class:`RetrievalFailure` with the server's line; a key not in this
        session's inventory (or with a duplicated UIDL) yields RetrievalFailure without asking the server.
        With digest identities (:attr:`identity`), a message whose octets do not match its identity
        yields RetrievalFailure too, so that nothing is stored (and then deleted) under a wrong identity.

        Cancelled while awaiting a window: the socket is shut down and the session broken; nothing was
        deleted. Closing the generator early (it is suspended at a yield, all replies of the window
        read) leaves the session usable.

        Standard: RFC 1939 section 7 (RETR), RFC 2449 section 6.6 (PIPELINING).

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken; call :meth:`abort`.
            TypeError: a key is not a POP3Key. RuntimeError: :meth:`inventory` has not run.
        """
        self._require_open()
        for window in self._windows(keys):  # checks every key before the first RETR
            replies, mismatched = await self._run(functools.partial(self._retrieve_window, window))
            results: list[RetrievedMessage | RetrievalFailure] = []
            it = iter(replies)
            for key, msgnum in window:
                if msgnum is None:
                    duplicate = cast(POP3Key, key).uidl in self._duplicates
                    reason = (
                        "UIDL is not unique in the maildrop"
                        if duplicate
                        else "not in this session's inventory"
                    )
                    results.append(RetrievalFailure(key, reason))
                    continue
                reply = next(it)
                if reply.body is None:
                    results.append(RetrievalFailure(key, self._session.redact(reply.status.render())))
                elif msgnum in mismatched:
                    uidl = cast(POP3Key, key).uidl
                    _log.warning("pop3.identity.mismatch", account=self._settings.account, key=uidl)
                    reason = "content differs from its digest identity; not stored"
                    results.append(RetrievalFailure(key, reason))
                else:
                    results.append(RetrievedMessage(key, reply.body))
            del replies, it
            results.reverse()
            while results:
                yield results.pop()  # drop our reference before the consumer runs

    def _retrieve_window(
        self, window: Sequence[tuple[MessageKey, int | None]]
    ) -> tuple[list[wire.Reply], frozenset[int]]:
        """RETR one window (in the worker thread); with digest identities, also return the
        message-numbers whose octets do not match their identity (see
        :func:`~maild.protocols.pop3_identity.key_matches`), which must not be stored under it."""
        targets = [(cast(POP3Key, key), n) for key, n in window if n is not None]
        replies = self._session.run("retrieving", [f"RETR {n}" for _, n in targets], multiline=True)
        if self._identity != "content-digest":
            return replies, frozenset()
        mismatched = frozenset(
            n
            for (key, n), reply in zip(targets, replies, strict=True)
            if reply.body is not None
            and not identity.key_matches(key.uidl, reply.body, self._size_by_uidl[key.uidl])
        )
        return replies, mismatched

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        """DELE each message, pipelined in windows of up to ``window`` commands when allowed.

        Deletion takes effect only when :meth:`close` gets ``+OK`` to QUIT (RFC 1939 section 6).
        Every key is checked before anything is sent.

        Cancelled: the socket is shut down and the session broken; since no QUIT follows, nothing is
        deleted.

        Standard: RFC 1939 section 5 (DELE), RFC 2449 section 6.6 (PIPELINING).

        Raises:
            ProtocolError: the server refused a DELE (all replies of the window were read first, so the
                session stays usable; :meth:`abort` un-marks everything).
            NetworkTimeout, ConnectError: the session is broken; nothing is deleted.
            ValueError: a key is not in this session's inventory or its UIDL is not unique: such a
                message is never deleted. TypeError, RuntimeError: as for :meth:`retrieve`.
        """
        self._require_open()
        targets: list[tuple[POP3Key, int]] = []
        seen: set[int] = set()  # a repeated key gets one DELE: a second would be refused
        for key in keys:
            msgnum = self._msgnum(key)
            if msgnum is None:
                raise ValueError(
                    f"account {self._settings.account!r}: cannot delete {key!r}: not addressable"
                )
            if msgnum not in seen:
                seen.add(msgnum)
                targets.append((cast(POP3Key, key), msgnum))
        limit = self._window if self._session.pipelining else 1
        for start in range(0, len(targets), limit):
            window = targets[start : start + limit]
            commands = [f"DELE {n}" for _, n in window]
            replies = await self._run(
                functools.partial(self._session.run, "deleting", commands, multiline=False)
            )
            refused = [
                (key, r.status) for (key, _), r in zip(window, replies, strict=True) if not r.status.ok
            ]
            if refused:
                key, status = refused[0]
                line = self._session.redact(status.render())
                raise self._session.protocol_error(
                    f"DELE refused for {len(refused)} message(s), first UIDL {key.uidl!r}",
                    line=line,
                    standard="RFC 1939 section 5",
                )

    async def close(self) -> None:
        """QUIT: the server enters UPDATE and removes the messages marked with DELE; then close.

        Only ``+OK`` to QUIT means the deletions were applied (RFC 1939 section 6).

        Cancelled: QUIT may or may not have reached the server, so deletions may or may not have
        happened; the socket is shut down.

        Raises:
            ProtocolError: QUIT was answered ``-ERR``; deletions may not have happened.
            NetworkTimeout, ConnectError: no reply to QUIT; treat deletions as not done.
        """
        self._require_open()
        status = await self._run(self._session.quit)
        self._state = "closed"
        if not status.ok:
            line = self._session.redact(status.render())
            raise self._session.protocol_error(
                "QUIT refused; deletions may not have been applied", line=line, standard="RFC 1939 section 6"
            )

    async def abort(self) -> None:
        """End the session without applying deletions; never raises (cancellation still propagates).

        An open, in-step session gets RSET and, only after ``+OK`` to it, QUIT, each limited to
        :data:`ABORT_TIMEOUT_S`; a broken one (after an error or cancellation) is only closed, waiting
        at most that long for a step still running in its thread. Either way no UPDATE with deletions
        happens. Safe to call at any time and more than once.

        Cancelled: the socket is closed before the cancellation propagates.

        Standard: RFC 1939 section 5 (RSET) and section 6 (no UPDATE without QUIT).
        """
        state, self._state = self._state, "closed"
        if state in ("new", "closed"):
            return
        try:
            if state == "open" and (self._job is None or self._job.done()):
                async with asyncio.timeout(2 * ABORT_TIMEOUT_S):
                    await self._run(self._session.reset_and_quit)
            elif self._job is not None and not self._job.done():
                self._session.shutdown()
                waiter = asyncio.wrap_future(self._job)
                await asyncio.wait([waiter], timeout=ABORT_TIMEOUT_S)
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()  # retrieved: the step failed because we shut it down
                waiter.cancel()
        except Exception as exc:  # best effort by contract
            _log.debug("pop3.abort.failed", account=self._settings.account, error=type(exc).__name__)
        finally:
            self._state = "closed"
            self._session.shutdown()
            self._session.close()
