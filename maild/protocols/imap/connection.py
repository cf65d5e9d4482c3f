"""One IMAP connection: connect, TLS, guarded commands (sign-in: ``signin``; the selected mailbox:
``selection``; kept between cycles: ``kept``).

:class:`IMAPConnection` is the part that :class:`~maild.protocols.imap.mailbox.IMAPMailbox` (fetching,
deleting, appending) and :class:`~maild.protocols.imap.idle.IMAPIdleSession` each *hold*. What it adds
on top of :class:`~maild.protocols.imap.client.IMAPClient`:

* every tagged status is parsed and checked (:meth:`IMAPConnection.completion`,
  :meth:`IMAPConnection.refused`): NO and BAD come back from aioimaplib as data;
* user names and mailbox names are quoted here, mailbox names encoded as modified UTF-7
  (aioimaplib sends arguments raw; it quotes only the password);
* STARTTLS; SELECT, never EXAMINE (broken in the library);
* every call is raced against an inactivity timeout of ``settings.timeout_s``, a progress floor
  (:data:`COMMAND_MIN_RATE_OCTETS_PER_S` after :data:`COMMAND_WINDOW_TIMEOUTS` x ``timeout_s``; the
  account's transfer floor for message transfers) and the connection-lost callback
  (:meth:`IMAPConnection.call`), because aioimaplib leaves a command pending forever when the
  connection drops. After a timeout, a lost connection or a cancellation the
  connection is discarded and every later call raises :class:`~maild.errors.TransientError`;
* the error mapping: ``OSError``, ``ssl.SSLError``, ``TimeoutError`` and the client's
  :class:`~maild.protocols.imap.client.LibraryError` become :mod:`maild.errors` classes in the
  guarded call (:mod:`maild.protocols.imap.guard`, which :meth:`IMAPConnection.call` runs) and
  nowhere else.

Signing in (AUTHENTICATE when a SASL mechanism fits, else LOGIN), the capabilities and COMPRESS are
:mod:`maild.protocols.imap.signin`'s steps; LIST and CREATE are in :mod:`maild.protocols.imap.naming`;
SELECT, and the answers pipelined behind the sign-in, in :mod:`maild.protocols.imap.selection`
(``connection.selection``); parking a connection between cycles and taking it back in
:mod:`maild.protocols.imap.kept` (``connection.kept``).

Opening a session takes as few round trips as the server allows (capabilities from the greeting and
the sign-in's completion, the first SELECT pipelined behind the sign-in), and COMPRESS=DEFLATE
(RFC 4978) follows when :func:`maild.policy.want_compression` says so (see :meth:`IMAPConnection.open`).

May import: asyncio, ssl, structlog, :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.protocols.tls`,
:mod:`maild.protocols.imap.client`, :mod:`maild.protocols.imap.signin`, :mod:`maild.protocols.imap.codes`,
:mod:`maild.protocols.imap.selection`, :mod:`maild.protocols.imap.kept`, :mod:`maild.protocols.imap.guard`
and the sans-I/O IMAP modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from maild.errors import (
    AccountError,
    ConnectError,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import ServerSettings
from maild.protocols.imap import signin, wire
from maild.protocols.imap.client import (
    MAX_LITERAL_CEILING_OCTETS,
    MAX_LITERAL_OCTETS,
    IMAPClient,
    ReadLimits,
    Reply,
    quiet_library_logger,
)
from maild.protocols.imap.codes import SESSION_CODES, THROTTLE_CODES
from maild.protocols.imap.guard import (
    COMMAND_MIN_RATE_OCTETS_PER_S,
    COMMAND_WINDOW_TIMEOUTS,
    MIN_UPLOAD_OCTETS_PER_S,
    SLOW_COMMAND_TIMEOUTS,
    consume_outcome,
    guarded_call,
    lost_error,
)
from maild.protocols.imap.kept import KeptSession
from maild.protocols.imap.lex import Part
from maild.protocols.imap.selection import MailboxSelection, SelectRefused
from maild.protocols.imap.signin import MIN_RATE_SAMPLE_OCTETS, link_rate
from maild.protocols.progress import ProgressFloor
from maild.protocols.tls import client_context

__all__ = [
    "COMMAND_MIN_RATE_OCTETS_PER_S",
    "COMMAND_WINDOW_TIMEOUTS",
    "MIN_UPLOAD_OCTETS_PER_S",
    "SESSION_CODES",
    "SLOW_COMMAND_TIMEOUTS",
    "THROTTLE_CODES",
    "IMAPConnection",
    "SelectRefused",
    "consume_outcome",
    "link_rate",
]

#: One logger name for the whole IMAP adapter, as before it was split into modules.
_log = structlog.get_logger("maild.protocols.imap.mailbox")

T = TypeVar("T")


def literal_cap(max_message_size: int | None) -> int:
    """The largest literal a connection reads, in octets: :data:`~.client.MAX_LITERAL_OCTETS` without
    a ``max_message_size``, else ``max_message_size`` (at least 1), never above
    :data:`~.client.MAX_LITERAL_CEILING_OCTETS` (RFC 9051 section 4.3 allows literals up to
    2**32 - 1 octets)."""
    if max_message_size is None:
        return MAX_LITERAL_OCTETS
    return min(max(1, max_message_size), MAX_LITERAL_CEILING_OCTETS)


class IMAPConnection:
    """An authenticated IMAP connection to one account's server; not safe for concurrent use.

    Args:
        settings: server, TLS mode, credentials and ``timeout_s``, the longest silence in seconds
            tolerated during any one operation (connect, each command; a FETCH may take longer as
            long as data keeps arriving).
        max_message_size: the account's ``max_message_size`` in octets, or None. No literal larger
            than :func:`literal_cap` is read: the server
            announcing one loses the connection before any of its octets are read.
    """

    def __init__(self, settings: ServerSettings, *, max_message_size: int | None = None) -> None:
        quiet_library_logger()
        self.settings = settings
        self.limits = ReadLimits(literal_octets=literal_cap(max_message_size))
        """The caps on what this connection reads (see :class:`~.client.ReadLimits`)."""
        self._client: IMAPClient | None = None
        self._lost: asyncio.Future[None] | None = None
        self._broken: str | None = None
        self._capabilities: frozenset[str] = frozenset()
        self.enabled: set[str] = set()
        """Extensions this session turned on with ENABLE (RFC 5161), e.g. ``"QRESYNC"``."""
        self.selection = MailboxSelection(self)
        """The selected mailbox, SELECT and the answers pipelined behind the sign-in."""
        self.kept = KeptSession(self)
        """Whether this connection is kept for a later cycle; parking and taking it back."""
        self._waited_octets = 0
        self._waited_s = 0.0

    # ------------------------------------------------------------------ state

    @property
    def account(self) -> str:
        """The account's name, for errors and logs."""
        return self.settings.account

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper-cased (``"UIDPLUS"``, ``"IDLE"``, ...)."""
        return self._capabilities

    @property
    def selected(self) -> str | None:
        """The readable name of the selected mailbox, or None (see :attr:`selection`)."""
        return self.selection.selected

    @property
    def uidvalidity(self) -> int:
        """UIDVALIDITY of the mailbox the last successful SELECT chose (0 before any)."""
        return self.selection.uidvalidity

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version (e.g. ``"TLSv1.3"``) of an open connection, None when plaintext."""
        if self._client is None:
            return None
        with contextlib.suppress(Exception):
            ssl_object = self._client.extra_info("ssl_object")
            if ssl_object is not None:
                return str(ssl_object.version())
        return None

    @property
    def client(self) -> IMAPClient:
        """The client of a usable connection.

        Raises:
            TransientError: not opened, or discarded after a timeout, loss or cancellation.
        """
        if self._broken is not None:
            raise self.error(TransientError, f"session discarded ({self._broken})")
        if self._client is None:
            raise self.error(TransientError, "session not open")
        return self._client

    def lost(self, what: str) -> asyncio.Future[None]:
        """The future resolved when the connection is lost, for racing a wait against it.

        Raises:
            TransientError: not opened, or discarded.
            ConnectError: the connection is lost already (it is discarded now).
        """
        self.client  # noqa: B018 -- raises TransientError when unusable
        assert self._lost is not None
        if self._lost.done():
            self.discard("connection lost")
            raise self.error(ConnectError, f"{what}: connection lost")
        return self._lost

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None:
        """Turn on TCP keepalive, so that a peer that vanished without a reset is noticed.

        After ``idle_s`` seconds without traffic the kernel probes every ``interval_s`` seconds and
        closes the connection after ``count`` unanswered probes; the loss then arrives like any other.
        Best effort: options the platform lacks are skipped.
        """
        with contextlib.suppress(Exception):
            sock = self.client.extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", idle_s),
                ("TCP_KEEPINTVL", interval_s),
                ("TCP_KEEPCNT", count),
            ):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    # ------------------------------------------------------------------ plumbing

    def _on_connection_lost(self, _exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    @property
    def usable(self) -> bool:
        """Whether the connection is open, not discarded and not lost."""
        return (
            self._broken is None
            and self._client is not None
            and self._lost is not None
            and not self._lost.done()
        )

    def remember_rate(self) -> None:
        """Remember how fast message transfers arrived on this connection (for ``compress = "auto"``)."""
        if self._waited_octets >= MIN_RATE_SAMPLE_OCTETS and self._waited_s > 0:
            signin.remember_rate(self.settings.host, self.settings.port, self._waited_octets / self._waited_s)
        self._waited_octets, self._waited_s = 0, 0.0

    def discard(self, reason: str) -> None:
        """Mark the connection unusable and close it; later calls raise TransientError. Never raises."""
        self.remember_rate()
        self.kept.forget()
        if self._broken is None:
            self._broken = reason
        if self._client is not None:
            self._client.abort()

    def error(
        self, cls: type[AccountError], message: str, *, line: str = "", standard: str = ""
    ) -> AccountError:
        """Build an error of class ``cls`` naming the account; the password is masked wherever it
        appears in ``message`` or ``line`` (servers that echo the LOGIN line in their refusal)."""
        secret = self.settings.password
        text = secret.redact(f"{self.account}: {message}")
        if issubclass(cls, ProtocolError):
            return cls(text, account=self.account, line=secret.redact(line), standard=standard)
        return cls(text, account=self.account)

    async def call(
        self,
        what: str,
        start: Callable[[], Awaitable[T]],
        *,
        send_octets: int = 0,
        timeout_s: float | None = None,
        progress: ProgressFloor | None = None,
        slow: bool = False,
    ) -> T:
        """Run one client call, raced against inactivity and the loss of the connection.

        Args:
            what: the command, for error messages (never holds a secret).
            start: makes the awaitable; called only when the connection is usable.
            send_octets: octets the command uploads (APPEND); the inactivity limit is extended by
                ``send_octets / MIN_UPLOAD_OCTETS_PER_S`` seconds, since nothing arrives meanwhile.
            timeout_s: the inactivity limit in seconds; default the account's ``timeout_s``.
            progress: the progress floor of a message transfer this wait belongs to (the time
                spent here counts towards its windows), or None: then a floor of
                :data:`COMMAND_MIN_RATE_OCTETS_PER_S` in windows of :data:`COMMAND_WINDOW_TIMEOUTS` x
                ``timeout_s`` (plus the upload's allowance) applies.
            slow: a command the server may work on silently for long (``EXPUNGE``, ``UID SEARCH``):
                its limit and window are :data:`SLOW_COMMAND_TIMEOUTS` x ``timeout_s``.

        The race itself and the mapping of foreign exceptions are
        :func:`maild.protocols.imap.guard.guarded_call`.

        Cancelled: the connection is discarded and the cancellation propagates.

        Raises:
            TransientError: the connection was discarded earlier.
            NetworkTimeout: nothing arrived for ``timeout_s`` seconds, or data arrived slower than
                the floor over one of its windows ("server too slow").
            ConnectError: the connection was lost or could not be made, or TLS failed.
            ProtocolError: aioimaplib rejected the state of the session or a response, or the
                server broke a :class:`~.client.ReadLimits` cap (the text names which; the
                connection was dropped before the data was read).
        """
        if self._broken is not None:
            raise self.error(TransientError, f"{what}: session discarded ({self._broken})")
        client, lost = self._client, self._lost
        if client is None or lost is None:
            raise self.error(TransientError, f"{what}: session not open")
        if lost.done():  # e.g. a pipelined command's answer broke a cap before anyone waited for it
            self.discard("connection lost")
            raise lost_error(self, what, client)
        return await guarded_call(
            self,
            client,
            lost,
            what,
            start,
            send_octets=send_octets,
            timeout_s=timeout_s,
            progress=progress,
            on_transfer=self._count_transfer,
            slow=slow,
        )

    def _count_transfer(self, octets: int, seconds: float) -> None:
        """Add one message transfer's wait to the link's rate sample (see :meth:`remember_rate`)."""
        self._waited_octets += octets
        self._waited_s += seconds

    def completion(self, reply: Reply, what: str) -> tuple[list[Part], wire.StatusResponse]:
        """Split a reply into its untagged parts and the parsed tagged status; log an ``[ALERT]``.

        Raises:
            ProtocolError: no tagged completion, or one that is not OK, NO or BAD (RFC 9051
                section 7.1); the connection is discarded.
        """
        lines = reply.lines
        if not lines or not isinstance(lines[-1], bytes | bytearray):
            raise self.error(ProtocolError, f"{what}: response without tagged completion")
        try:
            status = wire.parse_completion(reply.result, lines[-1])
        except ProtocolError as exc:
            self.discard(f"{what}: bad completion")
            raise self.error(ProtocolError, f"{what}: {exc}", standard=exc.standard) from None
        if status.code == "ALERT":
            text = self.settings.password.redact(status.text)
            _log.warning("imap.alert", account=self.account, command=what, text=text)
        return lines[:-1], status

    def refused(self, status: wire.StatusResponse, what: str) -> AccountError:
        """The error for a NO or BAD completion, by RFC 5530 response code (never by text)."""
        detail = f"{what} refused: {status.describe()}"
        if status.condition == "NO" and status.code in THROTTLE_CODES:
            return self.error(ThrottledError, detail)
        if status.condition == "NO" and status.code == "SERVERBUG":
            return self.error(TransientError, detail)
        return self.error(ProtocolError, detail, line=status.describe(), standard="RFC 9051 section 7.1")

    async def command(
        self, what: str, start: Callable[[IMAPClient], Awaitable[Reply]], *, slow: bool = False
    ) -> list[Part]:
        """Run a command that must end OK; return its untagged parts.

        Args:
            what: the command, for error messages.
            start: called with the client, makes the command's awaitable.
            slow: give it :data:`SLOW_COMMAND_TIMEOUTS` x ``timeout_s`` (see :meth:`call`).

        Raises:
            ThrottledError, TransientError, ProtocolError: NO or BAD (see :meth:`refused`).
            NetworkTimeout, ConnectError: as for :meth:`call`.
        """
        client = self.client
        lines, status = self.completion(await self.call(what, lambda: start(client), slow=slow), what)
        if not status.ok:
            raise self.refused(status, what)
        return lines

    # ------------------------------------------------------------------ session

    async def open(self, *, preselect: str | None = None, search: bool = False) -> None:
        """Connect, negotiate TLS (implicit or STARTTLS), check CAPABILITY, sign in, maybe COMPRESS.

        The certificate and host name are always verified (``settings.ca_file`` or the system store).
        User name and password travel as quoted strings (RFC 9051 section 6.2.3).

        Round trips: the capabilities come from the greeting's ``[CAPABILITY ...]`` when it has one
        (else from the one CAPABILITY aioimaplib sends after the greeting; after STARTTLS they are
        asked again, as RFC 9051 section 6.2.1 requires), and after sign-in from the completion's
        ``[CAPABILITY ...]`` (section 7.1). ``preselect`` is sent right behind a LOGIN or an
        AUTHENTICATE PLAIN with initial response, in the same packet (pipelining, section 5.5); the
        next SELECT of that mailbox (:attr:`selection`) takes its answer instead of asking. With
        ``search``, ``UID SEARCH ALL`` follows the SELECT in the same packet (``take_search`` gives its
        answer): if the SELECT fails, no mailbox is selected and the server answers the search BAD,
        which is never read as a listing (RFC 9051 sections 5.5, 6.3.2). ``COMPRESS DEFLATE``
        (RFC 4978) follows when :func:`maild.policy.want_compression` says so for the account's
        ``compress`` setting and the transfer rate last measured from this server (see
        :func:`link_rate`); a refusal leaves the connection uncompressed.

        Args:
            preselect: the readable name of the mailbox to SELECT right behind the sign-in, or None.
            search: also send ``UID SEARCH ALL`` right behind that SELECT (needs ``preselect``).

        Cancelled at any await: the connection is discarded; call :meth:`abort`.

        Raises:
            ConnectError: refused, unreachable, TLS failure, or the connection was lost.
            NetworkTimeout: the server was silent for ``timeout_s`` seconds.
            AuthError: LOGIN answered NO (RFC 5530 ``[AUTHENTICATIONFAILED]`` and others), or the
                user name or password holds CR, LF or NUL.
            ThrottledError: LOGIN answered NO ``[UNAVAILABLE]``, ``[LIMIT]`` or ``[INUSE]``.
            ProtocolError: no STARTTLS (RFC 9051 section 6.2.1) or LOGIN (section 6.2.3) offered,
                BAD, or a broken response.
            RuntimeError: called a second time on the same object.
        """
        if self._client is not None:
            raise RuntimeError("open() may be called once per connection")
        settings = self.settings
        self._lost = asyncio.get_running_loop().create_future()
        context: ssl.SSLContext | None = None
        if settings.tls != "none":
            try:
                # built once per CA file, then shared; a build reads the CA store (tens of ms): off the loop
                context = await asyncio.to_thread(client_context, settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise self.error(ConnectError, f"cannot load ca_file {settings.ca_file!r}: {exc}") from None
        client = self._client = IMAPClient(
            settings.host,
            settings.port,
            ssl_context=context if settings.tls == "implicit" else None,
            on_connection_lost=self._on_connection_lost,
            timeout_s=settings.timeout_s,
            limits=self.limits,
        )
        await self.call("connect", client.wait_hello)
        preauth = client.preauthenticated
        capabilities = await signin.capabilities_before_sign_in(self, context, preauth=preauth)
        if not preauth:
            if preselect is not None:
                self.selection.follow_sign_in(client, preselect, search=search)
            capabilities = await signin.sign_in(self, capabilities)
        self._capabilities = capabilities
        await signin.maybe_compress(self, capabilities)

    @property
    def received_octets(self) -> tuple[int, int]:
        """Octets received on this connection (also after it was discarded): ``(plain, wire)``, the
        plain ones after inflating when COMPRESS is active; ``(0, 0)`` before :meth:`open`."""
        if self._client is None:
            return (0, 0)
        return (self._client.received_octets, self._client.wire_octets)

    @property
    def compressed(self) -> bool:
        """Whether COMPRESS=DEFLATE is active on this connection (RFC 4978)."""
        return self._client is not None and self._client.compressed

    async def close(self) -> None:
        """LOGOUT and close the connection. Deletions were applied by EXPUNGE already.

        A connection the server closes right after its BYE counts as success (RFC 9051 section 6.1.3).
        Does nothing if the connection was never opened.

        Raises:
            TransientError: the connection was discarded earlier (call :meth:`abort`).
            NetworkTimeout: no answer to LOGOUT within ``timeout_s`` seconds.
            ProtocolError: LOGOUT answered BAD (RFC 9051 section 7.1).
        """
        if self._client is None:
            return
        client = self.client
        try:
            _lines, status = self.completion(await self.call("LOGOUT", client.logout), "LOGOUT")
            if status.condition == "BAD":
                raise self.refused(status, "LOGOUT")
        except ConnectError:
            pass
        finally:
            self.discard("closed")

    def abort(self) -> None:
        """Close the connection at once without LOGOUT. Never raises; safe at any time and repeatedly."""
        with contextlib.suppress(Exception):
            self.discard("aborted")
