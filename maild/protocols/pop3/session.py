"""The blocking half of a POP3 session: poplib for connecting, TLS and login; maild's own reader after.

:class:`POP3Session` runs in a worker thread of maild's POP3 pool, one method at a time (driven by
:class:`~maild.protocols.pop3.maildrop.POP3Maildrop`); only :meth:`POP3Session.shutdown` may be called from
another thread meanwhile, to unblock a cancelled step. poplib reads lines of at most 2,048 octets and
has no PIPELINING, so multi-line replies (CAPA, UIDL, LIST, RETR) and all commands after login go
through :class:`~maild.protocols.pop3.decoder.ReplyDecoder`. While poplib still reads (greeting, STLS,
USER/PASS, AUTH) maild's reader takes its octets from poplib's own buffered socket file, so that no
octet is lost between the two readers; once logged in, poplib never reads again, and maild takes what
poplib's file still buffers and from then on reads the socket itself: ``recv_into`` straight into
the decoder's receive buffer (:data:`FIRST_READ_OCTETS`, then :data:`READ_CHUNK_OCTETS` once a read
fills it), no ``bytes`` object and no copy per read; the buffer is borrowed from a pool
(:mod:`.buffers`) for each :meth:`POP3Session.receive` (a hand-off part of a RETR window, a listing)
and given back when the call returns, so idle sessions and idle threads hold none, and its pages
stay mapped from one receive to the next.

The capped multi-reply reads (``TOP`` windows) are in :mod:`.capped_reads`, the mended poplib clients
in :mod:`.poplib_clients` (its ``close_quietly`` drops ``OSError`` of a close). With
:mod:`maild.protocols.pop3.maildrop` the only POP3 code that catches ``poplib.error_proto``,
``ssl.SSLError`` and ``OSError``; they leave it as :mod:`maild.errors` classes naming the account,
never the password.
"""

from __future__ import annotations

import collections
import contextlib
import io
import poplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from maild.auth import sasl
from maild.errors import (
    AuthError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
)
from maild.model import ServerSettings
from maild.protocols.pop3 import listings, wire
from maild.protocols.pop3.auth import authenticate
from maild.protocols.pop3.buffers import RECEIVE_BUFFERS
from maild.protocols.pop3.decoder import ReplyDecoder
from maild.protocols.pop3.lines import LINE_REPLY_TIMEOUTS
from maild.protocols.pop3.poplib_clients import BoundedPOP3, BoundedPOP3SSL, close_quietly
from maild.protocols.pop3.session_errors import THROTTLE_CODES, SessionErrors
from maild.protocols.pop3.spooling import BodySpooler
from maild.protocols.progress import ProgressFloor
from maild.protocols.tls import client_context
from maild.spool import Spool

__all__ = ["ABORT_TIMEOUT_S", "READ_CHUNK_OCTETS", "THROTTLE_CODES", "Listing", "POP3Session"]


READ_CHUNK_OCTETS = 256 * 1024
"""Most octets taken from the socket per read (the room made at the decoder's fill mark)."""

FIRST_READ_OCTETS = 16 * 1024
"""Most octets of each read of a :meth:`POP3Session.receive` until a read fills it: replies to
single-line commands and short listings need no more, and 50 sessions listing at once with new
buffers (the pool, :mod:`.buffers`, keeps a few) then hold 16 KiB each, not :data:`READ_CHUNK_OCTETS`."""

ABORT_TIMEOUT_S = 5.0
"""Limit in seconds for RSET and for QUIT during :meth:`POP3Maildrop.abort` (capped by the account's
timeout), and for waiting on a step still running in its thread."""


@dataclass(frozen=True, slots=True)
class Listing:
    """Result of the inventory step: UIDL listing (None when refused, with the refusal) and scan listing."""

    uidl: listings.UIDLListing | None
    uidl_refusal: str
    sizes: dict[int, int]
    uidl_status: wire.StatusLine | None = None


class POP3Session:
    """The blocking half of one POP3 session. Its methods run in a worker thread, one at a time;
    only :meth:`shutdown` may be called from another thread meanwhile."""

    def __init__(self, settings: ServerSettings, max_reply_octets: int) -> None:
        self.settings = settings
        self.pop: poplib.POP3 | None = None
        self.caps: dict[str, tuple[str, ...]] = {}
        self.decoder = ReplyDecoder(max_reply_octets=max_reply_octets)
        self._lock = threading.Lock()
        self._shut = False
        self.errors = SessionErrors(settings)
        self._ahead: collections.deque[bool] = collections.deque()  # replies owed: multiline or not
        self._recv_into: Callable[[memoryview], int] | None = None  # the socket's, once logged in

    # -- errors: see maild/protocols/pop3/session_errors.py ---------------------------------------------

    def where(self) -> str:
        """``account 'NAME': POP3 HOST:PORT``, the start of every error message."""
        return self.errors.where()

    def redact(self, text: str) -> str:
        """``text`` without the password or any registered SASL secret (:meth:`SessionErrors.redact`)."""
        return self.errors.redact(text)

    def add_secrets(self, secrets: Sequence[str]) -> None:
        """Have :meth:`redact` also remove ``secrets`` (tokens, base64 SASL responses) from now on."""
        self.errors.add_secrets(secrets)

    def protocol_error(self, message: str, *, line: str = "", standard: str = "") -> ProtocolError:
        """A ProtocolError naming the account, with the server's line redacted."""
        return self.errors.protocol_error(message, line=line, standard=standard)

    def connection_closed(self, doing: str) -> ConnectError:
        """The error for a connection the server closed while ``doing``."""
        return self.errors.connection_closed(doing)

    def translate(self, exc: BaseException, doing: str, *, connecting: bool = False) -> MaildError | None:
        """The maild error for a foreign exception raised while ``doing`` (see :class:`SessionErrors`)."""
        return self.errors.translate(exc, doing, connecting=connecting)

    def mapped(self, doing: str, *, connecting: bool = False) -> contextlib.AbstractContextManager[None]:
        """Translate foreign exceptions raised while ``doing`` (:meth:`SessionErrors.mapped`)."""
        return self.errors.mapped(doing, connecting=connecting)

    def _login_step(self, pop: poplib.POP3, verb: Literal["USER", "PASS"]) -> MaildError | None:
        """Send USER or PASS through poplib; return the error to raise, or None on +OK.

        The error is returned, not raised, so that the caller raises it with no exception chain:
        poplib's frames beneath the original exception hold the password in their locals, and
        traceback renderers may print locals.

        Standard: RFC 1939 section 7; RFC 2449 section 8.1 and RFC 3206 for the response codes.
        """
        try:
            if verb == "USER":
                pop.user(self.settings.username)
            else:
                secret = self.settings.password
                # a server echoing the PASS line: masked like the password, whatever its length
                secret.add_forms([f"PASS {secret.reveal()}"])
                pop.pass_(secret.reveal())
        except poplib.error_proto as exc:
            status = self.errors.refusal(exc, verb)
        except OSError as exc:
            return self.translate(exc, f"sending {verb}", connecting=True)
        else:
            return None
        return status if isinstance(status, MaildError) else self.errors.login_refused(status, "login")

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
            close_quietly(self.pop)

    def _attach(self, pop: poplib.POP3) -> None:
        with self._lock:
            if not self._shut:
                self.pop = pop
                return
        close_quietly(pop)
        raise ConnectError(f"{self.where()}: connection abandoned (cancelled)", account=self.settings.account)

    def connect(self) -> None:
        """Connect, greet, negotiate TLS, CAPA, log in, CAPA again. Closes the socket on any failure.

        Login: AUTH (RFC 5034) with the mechanism :func:`maild.auth.sasl.choose_mechanism` picks from
        CAPA's ``SASL`` line; USER/PASS when ``auth = "password"`` and no mechanism fits.

        Standard: RFC 1939 sections 4 and 7 (greeting, USER/PASS), RFC 2595 section 4 (STLS), RFC 2449
        section 5 (CAPA after login: capabilities may differ per state), RFC 5034 (AUTH), RFC 3206
        (response codes).
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
        if s.tokens is not None:  # a token first: no connection is opened for a grant that is gone
            s.tokens.access_token()
        # verifies certificate and host name; built once per CA file, and only for a session that uses
        # TLS: loading the system's CA store costs 35-55 ms of CPU, which a one-shot `maild fetch` of
        # a plaintext account (tls = "none") would spend for nothing
        ctx = client_context(s.ca_file) if s.tls != "none" else None
        try:
            if s.tls == "implicit" and ctx is not None:
                pop: poplib.POP3 = BoundedPOP3SSL(s.host, s.port, s.timeout_s, ctx)
            else:
                pop = BoundedPOP3(s.host, s.port, s.timeout_s)
        except poplib.error_proto as exc:
            raise self.errors.greeting_refused(exc) from exc
        self._attach(pop)
        if s.tls == "starttls" and ctx is not None:
            try:
                pop.stls(context=ctx)  # CAPA, then STLS only if offered, then the handshake
            except (poplib.error_proto, UnicodeDecodeError) as exc:
                raise self.errors.stls_failed(exc) from exc
        if any(c in s.username + s.password.reveal() for c in "\r\n\0"):
            raise AuthError(f"{self.where()}: username or password contains a line break", account=acct)
        if not authenticate(self, pop, self._sasl_offered()):  # AUTH (RFC 5034), see pop3/auth.py
            for verb in ("USER", "PASS"):
                error = self._login_step(pop, verb)
                if error is not None:
                    raise error  # outside any except block: no chain back to poplib's frames
        capa = self.exchange(["CAPA"], multiline=True, pipelined=False)[0]
        self.caps = listings.parse_capa(capa.body) if capa.body is not None else {}
        self._take_over(pop)

    def _take_over(self, pop: poplib.POP3) -> None:
        """Read the socket directly from now on (poplib is done reading: the session is logged in).

        Octets poplib's buffered file still holds (none from a server that sends nothing unasked)
        are taken first without waiting: the socket is non-blocking for that one read, so an empty
        buffer gives nothing instead of a wait.
        """
        sock = pop.sock
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            pending = cast(io.BufferedIOBase, pop.file).read1(READ_CHUNK_OCTETS)
        except (BlockingIOError, ssl.SSLWantReadError):
            pending = b""
        finally:
            sock.settimeout(timeout)
        if pending:
            self.decoder.feed(pending)
        self._recv_into = sock.recv_into

    def _sasl_offered(self) -> frozenset[str]:
        """The SASL mechanisms of CAPA in the AUTHORIZATION state (after STLS: RFC 2595 section 4 says
        to discard capabilities learnt before TLS); empty when the server has no CAPA."""
        capa = self.exchange(["CAPA"], multiline=True, pipelined=False)[0]
        return sasl.pop3_mechanisms(listings.parse_capa(capa.body) if capa.body is not None else {})

    # -- commands -------------------------------------------------------------------------------------

    @property
    def pipelining(self) -> bool:
        """Whether the server announced PIPELINING (RFC 2449 section 6.6)."""
        return "PIPELINING" in self.caps

    def exchange(self, commands: Sequence[str], *, multiline: bool, pipelined: bool) -> list[wire.Reply]:
        """Send ``commands`` and read one reply to each, in order.

        Replies still owed for commands sent ahead (:meth:`send_ahead`) are read and discarded first.

        Args:
            commands: command lines without CRLF, ASCII.
            multiline: whether ``+OK`` replies to these commands are multi-line.
            pipelined: send all commands at once (RFC 2449 section 6.6) instead of one per round trip.

        Raises:
            ProtocolError: a reply is malformed or too large, or data follows the last reply.
            OSError: from the socket (mapped by the caller's :meth:`mapped`).
        """
        self.drain_owed()
        replies: list[wire.Reply] = []
        batches = [commands] if pipelined else [[c] for c in commands]
        for batch in batches:
            self.send_ahead(batch, multiline=multiline)
            replies.extend(self.receive(len(batch), multiline=multiline))
        return replies

    @property
    def owed(self) -> int:
        """Commands sent whose replies have not been read yet."""
        return len(self._ahead)

    def drain_owed(self) -> None:
        """Read and drop the replies still owed for commands sent ahead (none owed: nothing)."""
        if self._ahead:
            self.receive(len(self._ahead), multiline=self._ahead[0])

    def send_ahead(self, commands: Sequence[str], *, multiline: bool) -> None:
        """Send ``commands`` now and read their replies later with :meth:`receive` (RFC 2449 section
        6.6: only when the server announced PIPELINING, or for a single command). All commands owed
        at one time must be of one kind (``multiline``).

        Raises:
            ConnectError: not connected. OSError: from the socket.
        """
        pop = self.pop
        if pop is None:
            raise ConnectError(f"{self.where()}: not connected", account=self.settings.account)
        if self._ahead and self._ahead[0] != multiline:
            raise RuntimeError("replies of another kind are still owed")
        pop.sock.sendall("".join(f"{c}\r\n" for c in commands).encode("ascii"))
        self._ahead.extend([multiline] * len(commands))

    def receive(
        self,
        count: int,
        *,
        multiline: bool,
        into: list[wire.Reply] | None = None,
        spool: Spool | None = None,
        caps: Sequence[int] | None = None,
    ) -> list[wire.Reply]:
        """Read the replies to the ``count`` oldest commands owed (see :meth:`send_ahead`).

        ``into``: the list to append each reply to as soon as it is complete (and to return), so that
        a caller still holds the replies that arrived whole when a later one fails.
        ``spool``: write multi-line bodies of at least its threshold to spool files as they arrive
        (:mod:`.spooling`; the reply's ``spooled`` or ``spool_error``); a file of a reply that did
        not complete is closed when the error is dropped.
        ``caps``: the decoder's reply cap in octets for each of the ``count`` replies, in order (set
        before it is read; the caller restores the session's own).

        Raises:
            ProtocolError: a reply is malformed or too large, or data follows the last reply owed.
            ConnectError: the server closed the connection. OSError: from the socket.
            NetworkTimeout: multi-line replies arrived slower than ``settings.min_rate_octets_per_s``
                over a window of ``settings.progress_window_s`` seconds ("server too slow"), or a
                single-line reply took longer than :data:`LINE_REPLY_TIMEOUTS` times
                ``settings.timeout_s`` to arrive whole.
        """
        pop = self.pop
        if pop is None:
            raise ConnectError(f"{self.where()}: not connected", account=self.settings.account)
        if count > len(self._ahead):
            raise RuntimeError(f"{count} replies asked, {len(self._ahead)} owed")
        file = cast(io.BufferedIOBase, pop.file)
        replies: list[wire.Reply] = into if into is not None else []
        settings = self.settings
        # multi-line replies carry the data (RETR, TOP, UIDL, LIST): they must keep up a floor rate
        progress = (
            ProgressFloor(settings.min_rate_octets_per_s, settings.progress_window_s) if multiline else None
        )
        received = 0
        # single-line replies: a deadline per reply (the progress floor would fail a short reply
        # that follows a long silence)
        line_limit_s = None if multiline else LINE_REPLY_TIMEOUTS * settings.timeout_s
        reply_started = time.monotonic()
        recv_into = self._recv_into
        decoder = self.decoder
        read_octets = FIRST_READ_OCTETS
        borrowed = False  # the decoder receives into a buffer of the pool (buffers.py) until the end
        spooler = BodySpooler(spool) if spool is not None and multiline else None
        try:
            for index in range(count):
                if caps is not None:
                    decoder.max_reply_octets = caps[index]
                while (reply := decoder.next_reply(multiline=multiline)) is None:
                    if recv_into is not None:
                        if not borrowed:  # at the first read: a reply may be buffered already
                            decoder.use_buffer(RECEIVE_BUFFERS.take())
                            borrowed = True
                        octets = decoder.receive_into(recv_into, read_octets)
                        if octets == read_octets < READ_CHUNK_OCTETS:  # more is coming: read more
                            read_octets = READ_CHUNK_OCTETS
                    else:  # still logging in: through poplib's file (see _take_over)
                        chunk = file.read1(READ_CHUNK_OCTETS)
                        octets = len(chunk)
                        decoder.feed(chunk)
                    if not octets:
                        raise ConnectError(
                            f"{self.where()}: server closed the connection", account=self.settings.account
                        )
                    received += octets
                    if progress is not None and (slow := progress.check(received)) is not None:
                        raise NetworkTimeout(f"{self.where()}: {slow}", account=settings.account)
                    if line_limit_s is not None and time.monotonic() - reply_started > line_limit_s:
                        raise NetworkTimeout(
                            f"{self.where()}: server too slow: a one-line reply still incomplete after"
                            f" {line_limit_s:g} s ({LINE_REPLY_TIMEOUTS} x timeout)",
                            account=settings.account,
                        )
                    if spooler is not None:
                        spooler.after_feed(decoder)
                if spooler is not None:
                    reply = spooler.finish(reply)
                self._ahead.popleft()
                replies.append(reply)
                reply_started = time.monotonic()
        finally:
            if borrowed:
                RECEIVE_BUFFERS.give(decoder.lend_buffer())
        if not self._ahead and self.decoder.buffered_octets:
            raise self.protocol_error("unexpected data after the last reply", standard="RFC 1939 section 3")
        return replies

    def run(self, doing: str, commands: Sequence[str], *, multiline: bool) -> list[wire.Reply]:
        """:meth:`exchange` with errors mapped; pipelined when the server allows it."""
        with self.mapped(doing):
            return self.exchange(commands, multiline=multiline, pipelined=self.pipelining)

    def listing(self) -> Listing:
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
            sizes = listings.parse_scan_listing(scan.body)
            if uidl.body is None:
                return Listing(None, self.redact(uidl.status.render()), sizes, uidl.status)
            return Listing(listings.parse_uidl_listing(uidl.body), "", sizes)

    def quit(self) -> wire.StatusLine:
        """QUIT (RFC 1939 section 6), then close the socket whatever happened."""
        try:
            return self.run("sending QUIT", ["QUIT"], multiline=False)[0].status
        finally:
            self.close()

    def reset_and_quit(self) -> None:
        """RSET, and only after ``+OK`` to it QUIT, with a short timeout; then close. Best effort.

        QUIT is never pipelined behind RSET: a QUIT after a failed RSET would apply the deletions.
        With replies still owed (a RETR window sent ahead) it only closes the connection: a session
        that ends without QUIT never enters the UPDATE state (RFC 1939 section 6), so nothing is deleted.
        """
        try:
            if self.pop is not None and not self._ahead:  # replies owed: just hang up (no UPDATE state)
                self.pop.sock.settimeout(min(self.settings.timeout_s, ABORT_TIMEOUT_S))
                if self.exchange(["RSET"], multiline=False, pipelined=False)[0].status.ok:
                    self.exchange(["QUIT"], multiline=False, pipelined=False)
        finally:
            self.close()
