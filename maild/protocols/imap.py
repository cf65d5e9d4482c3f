"""IMAP adapter over aioimaplib 2.0.3: one authenticated session with one account's server.

aioimaplib is the only network library used here, and this is the only module that imports it; its
untyped values (``Any``) stay inside. What the adapter adds on top of the library (see
``DEPENDENCIES.md`` for the measurements behind each point):

* every tagged status is parsed and checked: NO and BAD come back from aioimaplib as data;
* user names and mailbox names are quoted here, mailbox names encoded as modified UTF-7
  (aioimaplib sends arguments raw; it quotes only the password);
* STARTTLS, which aioimaplib lacks, in :func:`_starttls` (the one place using library internals
  beyond the protocol object's public methods, guarded by a test);
* SELECT, never EXAMINE (broken in the library), and ``BODY.PEEK[]``, so ``\\Seen`` is untouched;
* every library call is raced against an inactivity timeout of ``settings.timeout_s`` and against the
  connection-lost callback, because aioimaplib leaves a command pending forever when the connection
  drops. After a timeout, a lost connection or a cancellation the session is discarded and every
  later call raises :class:`~maild.errors.TransientError`;
* responses are kept short (at most :data:`MAX_UIDS_PER_COMMAND` UIDs per command), because the
  stock library recurses once per response line and dies near 1,000 lines in one read;
* with exactly aioimaplib 2.0.3 a small protocol subclass removes the library's hot spots (quadratic
  FETCH completion check, eager debug formatting of every received chunk, recursion per line).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import itertools
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aioimaplib
import structlog

from maild.errors import (
    AccountError,
    AuthError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import (
    IMAPKey,
    InventoryEntry,
    MessageKey,
    RetrievalFailure,
    RetrievedMessage,
    ServerSettings,
)
from maild.protocols import imap_wire as wire
from maild.protocols.base import Maildrop
from maild.protocols.tls import client_context

#: The aioimaplib release whose internals :class:`_FastProtocol` and :func:`_starttls` were written for.
PATCHED_AIOIMAPLIB = "2.0.3"
#: The installed aioimaplib release.
AIOIMAPLIB_VERSION = importlib.metadata.version("aioimaplib")

#: Most UIDs named in one command, so that no response exceeds a few hundred lines.
MAX_UIDS_PER_COMMAND = 400
#: Most messages per body FETCH: each costs two response lines (header with literal, then ``)``).
MAX_MESSAGES_PER_FETCH = 200

#: RFC 5530 response codes that mean "come back later".
THROTTLE_CODES = frozenset({"UNAVAILABLE", "LIMIT", "INUSE"})
#: Flags that describe this session, not the message (``\Recent``: RFC 3501 section 2.3.2, gone in
#: RFC 9051); left out of RetrievedMessage.flags.
SESSION_FLAGS = frozenset({"\\Recent"})
#: Items of the body FETCH; ``BODY.PEEK[]`` leaves ``\Seen`` alone (RFC 9051 section 6.4.5).
BODY_ITEMS = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
#: Items of the identity pass after a UIDVALIDITY change: size and Message-ID, no body.
IDENTITY_ITEMS = "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
#: Items of the header scan used to compare mailboxes without downloading bodies.
HEADER_ITEMS = "(UID RFC822.SIZE BODY.PEEK[HEADER])"
#: Slowest upload rate assumed for APPEND, in octets per second: while a message is being sent
#: nothing arrives, so the inactivity limit is extended by its size divided by this rate.
MIN_UPLOAD_OCTETS_PER_S = 32 * 1024
#: APPEND refusals that concern the session rather than the message (RFC 5530): raised, not returned.
APPEND_SESSION_CODES = frozenset({"UNAVAILABLE", "INUSE", "SERVERBUG"})

_log = structlog.get_logger(__name__)


def _quiet_library_logger() -> None:
    """Keep aioimaplib's logger at WARNING: at DEBUG it writes message bodies and some passwords."""
    for name in ("aioimaplib", "aioimaplib.aioimaplib"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------------
# aioimaplib protocol subclasses
# --------------------------------------------------------------------------------------------------


class _TrackingProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """The stock protocol plus ``last_received``, the loop time of the last chunk (for inactivity)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Callable[[Exception | None], None] | None
    ) -> None:
        super().__init__(loop, conn_lost_cb)
        self.last_received = loop.time()

    greeting_refused: bytes | None = None

    def data_received(self, d: bytes) -> None:
        self.last_received = self.loop.time()
        super().data_received(d)

    async def welcome(self, command: bytes) -> None:
        """Handle the greeting; on a BYE (or other non-OK) greeting, remember it and hang up.

        The stock method raises inside a task nobody awaits, and the client then waits for a state
        that never comes; closing the transport turns that into a prompt connection-lost.
        """
        try:
            await super().welcome(command)
        except aioimaplib.Error:
            self.greeting_refused = command
            if self.transport is not None:
                self.transport.close()


class _FastFetchCommand(aioimaplib.FetchCommand):  # type: ignore[misc]
    """FetchCommand whose completion check is O(1) per line instead of rescanning every line.

    Keeps the stock rule: count ``(`` and ``)`` in the text lines since the last line that starts a
    FETCH response (literals excluded); more data is awaited while the counts differ.
    """

    _open_parens = 0
    _close_parens = 0

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if isinstance(line, bytes):
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._open_parens, self._close_parens = line.count(b"("), line.count(b")")
            else:
                self._open_parens += line.count(b"(")
                self._close_parens += line.count(b")")

    def wait_data(self) -> bool:
        return bool(self._open_parens != self._close_parens)


class _FastProtocol(_TrackingProtocol):
    """aioimaplib 2.0.3's protocol with its three hot spots removed, behaviour otherwise identical.

    * ``data_received`` no longer formats every received chunk into a debug string;
    * ``_handle_responses`` loops over the lines of a chunk instead of recursing once per line and
      walks it by offset instead of copying the rest after every line;
    * FETCH uses :class:`_FastFetchCommand`.

    Only used when the installed aioimaplib is exactly :data:`PATCHED_AIOIMAPLIB`; a test compares it
    with the stock protocol on the same byte streams split at every boundary.
    """

    incomplete_line: bytes
    current_command: Any

    def data_received(self, d: bytes) -> None:
        self.last_received = self.loop.time()
        try:
            self._handle_responses(self.incomplete_line + d, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data

    def _handle_responses(self, data: bytes, line_handler: Any, current_cmd: Any = None) -> None:
        view = memoryview(data)
        pos = 0
        size = len(data)
        while True:
            if pos >= size:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                missing = current_cmd._expected_size - len(current_cmd._resp_literal_data)
                current_cmd.append_literal_data(view[pos : pos + missing])
                pos = min(pos + missing, size)
                if current_cmd.wait_literal_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
            end = data.find(aioimaplib.CRLF, pos)
            if end < 0:
                raise aioimaplib.IncompleteRead(current_cmd, data[pos:])
            line = data[pos:end]
            pos = end + 2
            cmd = line_handler(line, current_cmd)
            begin_literal = aioimaplib.literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None

    async def fetch(
        self,
        message_set: str,
        message_parts: str,
        by_uid: bool = False,
        timeout: Any = None,  # noqa: ASYNC109 -- the library's signature
    ) -> Any:
        command = _FastFetchCommand(
            self.new_tag(),
            message_set,
            message_parts,
            prefix="UID" if by_uid else "",
            loop=self.loop,
            timeout=timeout,
        )
        return await self.execute(command)


_PROTOCOL_CLASS: type[_TrackingProtocol] = (
    _FastProtocol if AIOIMAPLIB_VERSION == PATCHED_AIOIMAPLIB else _TrackingProtocol
)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """``aioimaplib.IMAP4`` building :data:`_PROTOCOL_CLASS` (same code as the library's method)."""

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _PROTOCOL_CLASS(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


async def _starttls(protocol: Any, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Any:
    """Send STARTTLS on a not-authenticated aioimaplib session and upgrade its transport to TLS.

    aioimaplib has no STARTTLS. This sends the command through the protocol object (``execute``,
    ``Command``, ``new_tag``), and after OK wraps ``protocol.transport`` with ``loop.start_tls()``.
    Capabilities must be read again afterwards (RFC 9051 section 6.2.1). Written for aioimaplib 2.0.3;
    ``tests/faults/imap_library_test.py`` fails when the internals used here change.

    Returns:
        The STARTTLS response (``Response``); the transport was upgraded only if its result is OK.

    Raises:
        ProtocolError: bytes followed the STARTTLS completion in plaintext (a response injection).
        ssl.SSLError, OSError: the handshake failed (mapped by the caller).
    """
    response = await protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
    if response.result != "OK":
        return response
    if protocol.incomplete_line:
        raise ProtocolError("plaintext data after the STARTTLS response", standard="RFC 9051 section 6.2.1")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport,
        protocol,
        context,
        server_hostname=server_hostname,
        ssl_handshake_timeout=timeout_s,
    )
    return response


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Mark a library task's exception as retrieved (it may finish after we stopped waiting)."""
    if not task.cancelled():
        task.exception()


class _SelectRefused(ProtocolError):
    """SELECT was answered NO (no such mailbox, no permission): per-key failures in retrieve()."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The server's answer to one APPEND.

    Attributes:
        ok: True when the server stored the message (tagged OK).
        status: the tagged completion as one line, e.g. ``"OK [APPENDUID 38505 3955] Append completed"``
            or ``"NO [OVERQUOTA] Quota exceeded"`` (for reports; match on ``code``, never on text).
        code: the response code's atom, e.g. ``"APPENDUID"``, ``"TOOBIG"``, ``"OVERQUOTA"``, or None.
        uidvalidity, uid: from ``[APPENDUID uidvalidity uid]`` (RFC 4315 section 3) when the server
            offers UIDPLUS, else None.
    """

    ok: bool
    status: str
    code: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None


@dataclass(frozen=True, slots=True)
class MailboxHeaders:
    """The header scan of one mailbox (see :meth:`IMAPMailbox.headers`).

    Attributes:
        mailbox: the readable mailbox name.
        uidvalidity: its UIDVALIDITY at the scan.
        messages: UID to the fetched items: ``size_octets`` (RFC822.SIZE) and ``header`` (the header
            section with its empty line, as sent).
        failures: UID to the reason its items could not be read (NIL, malformed, not returned
            although the FETCH did not complete OK).
    """

    mailbox: str
    uidvalidity: int
    messages: dict[int, wire.FetchedMessage] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


class IMAPMailbox(Maildrop):
    """An IMAP session over aioimaplib for one account and one or more mailboxes.

    Args:
        settings: server, TLS mode, credentials and ``timeout_s``, the longest silence in seconds
            tolerated during any one operation (connect, each command; a FETCH may take longer as
            long as data keeps arriving).
        mailboxes: the mailboxes :meth:`inventory` covers, as readable Unicode names (``"INBOX"``,
            ``"Entwürfe 2026"``); encoded to modified UTF-7 and quoted here.
        list_all: ignore ``mailboxes`` and cover every mailbox the server LISTs, except those
            :func:`~maild.protocols.imap_wire.choose_mailboxes` leaves out (``\\Noselect``,
            special-use ``\\Trash`` and ``\\Junk``, and ``exclude``).
        exclude: with ``list_all``, readable names left out together with the mailboxes beneath them.
        batch_messages: most messages per body FETCH, 1 to :data:`MAX_MESSAGES_PER_FETCH`.
        batch_octets: target total size in octets of one body FETCH (RFC822.SIZE); a single larger
            message is fetched alone.

    Raises:
        ValueError: no mailboxes (and not ``list_all``), a mailbox name that cannot be sent (CR, LF,
            NUL, lone surrogate), or a batch limit out of range.
    """

    def __init__(
        self,
        settings: ServerSettings,
        mailboxes: Sequence[str] = ("INBOX",),
        *,
        list_all: bool = False,
        exclude: Sequence[str] = (),
        batch_messages: int = MAX_MESSAGES_PER_FETCH,
        batch_octets: int = 16 * 2**20,
    ) -> None:
        _quiet_library_logger()
        if isinstance(mailboxes, str) or not (mailboxes or list_all):
            raise ValueError("mailboxes must be a non-empty sequence of names")
        for name in mailboxes:
            wire.quote_astring(wire.encode_mailbox_name(name))
        if not 1 <= batch_messages <= MAX_MESSAGES_PER_FETCH:
            raise ValueError(f"batch_messages must be 1 to {MAX_MESSAGES_PER_FETCH}")
        if batch_octets < 1:
            raise ValueError("batch_octets must be positive")
        self._settings = settings
        self._mailboxes = tuple(dict.fromkeys(mailboxes))
        self._batch_messages = batch_messages
        self._batch_octets = batch_octets
        self._client: Any = None
        self._lost: asyncio.Future[None] | None = None
        self._broken: str | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._selected: str | None = None
        self._uidvalidity = 0
        self._list_all = list_all
        self._exclude = tuple(exclude)
        self._listed: frozenset[str] | None = None
        self.mailbox_states: dict[str, wire.SelectInfo] = {}
        """Readable mailbox name to what SELECT reported, for each mailbox the last :meth:`inventory`
        covered, in inventory order."""
        self.mailbox_failures: dict[str, str] = {}
        """Readable mailbox name to why the last :meth:`inventory` could not select it."""

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper-cased (``"UIDPLUS"``, ``"IDLE"``, ...)."""
        return self._capabilities

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version (e.g. ``"TLSv1.3"``) of an open session, None when plaintext."""
        with contextlib.suppress(Exception):
            ssl_object = self._client.protocol.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                return str(ssl_object.version())
        return None

    # ------------------------------------------------------------------ plumbing

    def _on_connection_lost(self, _exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _discard(self, reason: str) -> None:
        """Mark the session unusable and close its transport; later calls raise TransientError."""
        if self._broken is None:
            self._broken = reason
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            transport = client.protocol.transport
            if transport is not None:
                transport.abort()
        with contextlib.suppress(Exception):
            if not client._client_task.done():
                client._client_task.cancel()
        with contextlib.suppress(Exception):
            for task in list(client.protocol.tasks):
                task.cancel()

    def _error(
        self, cls: type[AccountError], message: str, *, line: str = "", standard: str = ""
    ) -> AccountError:
        """Build an error naming the account (never the password)."""
        text = f"{self._settings.account}: {message}"
        if issubclass(cls, ProtocolError):
            return cls(text, account=self._settings.account, line=line, standard=standard)
        return cls(text, account=self._settings.account)

    @property
    def _protocol(self) -> Any:
        """The library's protocol object of a usable session.

        Raises:
            TransientError: not opened, or discarded after a timeout, loss or cancellation.
        """
        if self._broken is not None:
            raise self._error(TransientError, f"session discarded ({self._broken})")
        if self._client is None:
            raise self._error(TransientError, "session not open")
        return self._client.protocol

    async def _call(self, what: str, start: Callable[[], Any], *, send_octets: int = 0) -> Any:
        """Run one library call, raced against inactivity and the loss of the connection.

        Args:
            what: the command, for error messages (never holds a secret).
            start: makes the library's awaitable; called only when the session is usable.
            send_octets: octets the command uploads (APPEND); the inactivity limit is extended by
                ``send_octets / MIN_UPLOAD_OCTETS_PER_S`` seconds, since nothing arrives meanwhile.

        Raises:
            TransientError: the session was discarded earlier.
            NetworkTimeout: nothing arrived for ``timeout_s`` seconds.
            ConnectError: the connection was lost or could not be made, or TLS failed.
            ProtocolError: aioimaplib rejected the state of the session or a response.
        """
        if self._broken is not None:
            raise self._error(TransientError, f"{what}: session discarded ({self._broken})")
        if self._client is None or self._lost is None:
            raise self._error(TransientError, f"{what}: session not open")
        if self._lost.done():
            self._discard("connection lost")
            raise self._error(ConnectError, f"{what}: connection lost")
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(start())
        task.add_done_callback(_consume_outcome)
        began = loop.time() + send_octets / MIN_UPLOAD_OCTETS_PER_S
        timeout_s = self._settings.timeout_s
        try:
            while not task.done():
                last = max(began, self._client.protocol.last_received)
                remaining = last + timeout_s - loop.time()
                if remaining <= 0:
                    self._discard(f"{what} timed out")
                    raise self._error(NetworkTimeout, f"{what}: no data from server for {timeout_s:g} s")
                await asyncio.wait((task, self._lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if not task.done() and self._lost.done():
                    self._discard(f"connection lost during {what}")
                    greeting = self._client.protocol.greeting_refused
                    if greeting is not None:
                        text = bytes(greeting[:200]).decode("utf-8", "replace")
                        raise self._error(ConnectError, f"{what}: server refused the session: {text}")
                    raise self._error(ConnectError, f"{what}: connection lost")
            return task.result()
        except asyncio.CancelledError:
            self._discard(f"{what} cancelled")
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise self._error(ProtocolError, f"{what}: cancelled inside aioimaplib") from None
            raise
        except MaildError:
            self._discard(f"{what} failed")
            raise
        except (TimeoutError, aioimaplib.CommandTimeout):
            self._discard(f"{what} timed out")
            raise self._error(NetworkTimeout, f"{what}: timed out after {timeout_s:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            self._discard("TLS certificate rejected")
            raise self._error(
                ConnectError, f"{what}: TLS certificate rejected: {exc.verify_message}"
            ) from None
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._discard(f"{what} failed: {type(exc).__name__}")
            raise self._error(ConnectError, f"{what}: {type(exc).__name__}: {exc}") from None
        except (aioimaplib.AioImapException, RecursionError, ValueError) as exc:
            self._discard(f"{what} failed in aioimaplib")
            raise self._error(
                ProtocolError, f"{what}: aioimaplib failed: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            if not task.done():
                task.cancel()

    def _completion(self, response: Any, what: str) -> tuple[list[wire.Part], wire.StatusResponse]:
        """Split a library Response into its untagged parts and the parsed tagged status."""
        lines = list(response.lines)
        if not lines or not isinstance(lines[-1], bytes | bytearray):
            raise self._error(ProtocolError, f"{what}: response without tagged completion")
        try:
            status = wire.parse_completion(str(response.result), lines[-1])
        except ProtocolError as exc:
            self._discard(f"{what}: bad completion")
            raise self._error(ProtocolError, f"{what}: {exc}") from None
        if status.code == "ALERT":
            _log.warning("imap.alert", account=self._settings.account, command=what, text=status.text)
        return lines[:-1], status

    def _refused(self, status: wire.StatusResponse, what: str) -> AccountError:
        """The error for a NO or BAD completion, by RFC 5530 response code (never by text)."""
        detail = f"{what} refused: {status.describe()}"
        if status.condition == "NO" and status.code in THROTTLE_CODES:
            return self._error(ThrottledError, detail)
        if status.condition == "NO" and status.code == "SERVERBUG":
            return self._error(TransientError, detail)
        return self._error(ProtocolError, detail, line=status.describe(), standard="RFC 9051 section 7.1")

    async def _command(self, what: str, start: Callable[[], Any]) -> list[wire.Part]:
        """Run a command that must end OK; return its untagged parts."""
        lines, status = self._completion(await self._call(what, start), what)
        if not status.ok:
            raise self._refused(status, what)
        return lines

    async def _capability(self) -> frozenset[str]:
        protocol = self._protocol
        lines = await self._command(
            "CAPABILITY",
            lambda: protocol.execute(
                aioimaplib.Command("CAPABILITY", protocol.new_tag(), loop=protocol.loop)
            ),
        )
        capabilities = frozenset().union(*(wire.parse_capability(line) for line in lines))
        if not capabilities & {"IMAP4REV1", "IMAP4REV2"}:
            raise self._error(
                ProtocolError,
                "server speaks neither IMAP4rev1 nor IMAP4rev2",
                standard="RFC 9051 section 7.2.2",
            )
        return capabilities

    # ------------------------------------------------------------------ Maildrop

    async def open(self) -> None:
        """Connect, negotiate TLS (implicit or STARTTLS), check CAPABILITY and LOGIN.

        The certificate and host name are always verified (``settings.ca_file`` or the system store).
        User name and password travel as quoted strings (RFC 9051 section 6.2.3).

        Cancelled at any await: the session is discarded; call :meth:`abort`.

        Raises:
            ConnectError: refused, unreachable, TLS failure, or the connection was lost.
            NetworkTimeout: the server was silent for ``timeout_s`` seconds.
            AuthError: LOGIN answered NO (RFC 5530 ``[AUTHENTICATIONFAILED]`` and others), or the
                user name or password holds CR, LF or NUL.
            ThrottledError: LOGIN answered NO ``[UNAVAILABLE]``, ``[LIMIT]`` or ``[INUSE]``.
            ProtocolError: no STARTTLS or LOGIN offered, BAD, or a broken response.
            RuntimeError: called a second time on the same object.
        """
        if self._client is not None:
            raise RuntimeError("open() may be called once per IMAPMailbox")
        settings = self._settings
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        context: ssl.SSLContext | None = None
        if settings.tls != "none":
            try:
                context = client_context(settings.ca_file)  # built once per CA file, then shared
            except (OSError, ssl.SSLError) as exc:
                raise self._error(ConnectError, f"cannot load ca_file {settings.ca_file!r}: {exc}") from None
        self._client = _Client(
            settings.host,
            settings.port,
            timeout=settings.timeout_s,
            conn_lost_cb=self._on_connection_lost,
            ssl_context=context if settings.tls == "implicit" else None,
        )
        client = self._client
        await self._call("connect", client.wait_hello_from_server)
        preauth = client.get_state() == "AUTH"
        if settings.tls == "starttls":
            if preauth:
                self._discard("PREAUTH before STARTTLS")
                raise self._error(
                    ProtocolError, "PREAUTH greeting: STARTTLS impossible", standard="RFC 9051 section 6.2.1"
                )
            if "STARTTLS" not in await self._capability():
                raise self._error(
                    ProtocolError, "server offers no STARTTLS", standard="RFC 9051 section 6.2.1"
                )
            assert context is not None
            _lines, status = self._completion(
                await self._call(
                    "STARTTLS",
                    lambda: _starttls(client.protocol, context, settings.host, settings.timeout_s),
                ),
                "STARTTLS",
            )
            if not status.ok:
                raise self._refused(status, "STARTTLS")
        capabilities = await self._capability()
        if not preauth:
            capabilities = await self._login(capabilities)
        self._capabilities = capabilities

    async def _login(self, capabilities: frozenset[str]) -> frozenset[str]:
        settings = self._settings
        if "LOGINDISABLED" in capabilities:
            raise self._error(
                ProtocolError, "server disables LOGIN here (use TLS)", standard="RFC 9051 section 6.2.3"
            )
        password = settings.password.reveal()
        try:
            user = wire.quote_astring(settings.username)
            wire.quote_astring(password)  # only the check: aioimaplib quotes the password itself
        except ValueError:
            raise self._error(AuthError, "user name or password contains CR, LF or NUL") from None
        protocol = self._protocol
        _lines, status = self._completion(
            await self._call("LOGIN", lambda: protocol.login(user, password)), "LOGIN"
        )
        if status.condition == "NO" and status.code not in THROTTLE_CODES | {"SERVERBUG"}:
            raise self._error(AuthError, f"LOGIN refused: {status.describe()}")
        if not status.ok:
            raise self._refused(status, "LOGIN")
        if status.code == "CAPABILITY":
            return wire.parse_capability(status.code_args)
        return await self._capability()

    async def _select(self, mailbox: str) -> wire.SelectInfo:
        """SELECT ``mailbox`` (read-write, so that STORE works; no flags change by selecting)."""
        protocol = self._protocol
        argument = wire.quote_astring(wire.encode_mailbox_name(mailbox))
        what = f"SELECT {mailbox!r}"
        self._selected = None
        lines, status = self._completion(await self._call(what, lambda: protocol.select(argument)), what)
        if status.condition == "NO" and status.code not in THROTTLE_CODES | {"SERVERBUG"}:
            raise _SelectRefused(
                f"{self._settings.account}: {what} refused: {status.describe()}",
                account=self._settings.account,
            )
        if not status.ok:
            raise self._refused(status, what)
        info = wire.parse_select(lines, status)
        self._selected, self._uidvalidity = mailbox, info.uidvalidity
        return info

    async def list_mailboxes(self) -> list[wire.ListedMailbox]:
        """LIST every mailbox (``LIST "" "*"``), with special-use attributes when the server has them.

        With ``SPECIAL-USE`` and ``LIST-EXTENDED`` the command is ``LIST "" "*" RETURN (SPECIAL-USE)``
        (RFC 6154 section 5.1); other servers may still put ``\\Trash`` and the like in a plain LIST.

        Standard: RFC 9051 section 6.3.9 (LIST); RFC 6154.

        Raises:
            ProtocolError: LIST refused or a broken response (a name that is not modified UTF-7).
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        protocol = self._protocol
        args: tuple[str, ...] = ('""', '"*"')
        if {"SPECIAL-USE", "LIST-EXTENDED"} <= self._capabilities:
            args = (*args, "RETURN", "(SPECIAL-USE)")
        lines = await self._command("LIST", lambda: protocol.simple_command("LIST", *args))
        try:
            return wire.parse_list(lines)
        except ProtocolError as exc:
            raise self._error(ProtocolError, f"LIST: {exc}", standard=exc.standard) from None

    def covers(self, key: MessageKey) -> bool:
        """Whether the last :meth:`inventory` looked where ``key`` lives (see :class:`Maildrop`).

        True for a mailbox it selected, and, with ``list_all``, for a mailbox the server no longer
        LISTs at all (deleted there). False for a mailbox it could not select, and for one not
        configured (any more) or excluded: those keys say nothing about the server now.
        """
        if not isinstance(key, IMAPKey):
            return False
        if key.mailbox in self.mailbox_states:
            return True
        return self._listed is not None and key.mailbox not in self._listed

    async def inventory(self) -> list[InventoryEntry]:
        """Return one entry per message of each covered mailbox: SELECT, then UID SEARCH ALL.

        The mailboxes are the configured ones, or with ``list_all`` those :meth:`list_mailboxes`
        reports less those :func:`~maild.protocols.imap_wire.choose_mailboxes` leaves out. Entries
        come mailbox by mailbox in that order, UIDs in server order; sizes are None (:meth:`retrieve`
        asks for them). An empty mailbox (EXISTS 0) costs no SEARCH. What SELECT reported is kept in
        :attr:`mailbox_states`.

        A mailbox the server refuses to select (NO, e.g. ``[NONEXISTENT]`` or no permission) is
        skipped and recorded in :attr:`mailbox_failures`, so that one missing mailbox does not stop
        the others; :meth:`covers` is False for its keys, so nothing of it is recorded as gone.

        Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 and 6.4.9 (UID SEARCH).

        Cancelled at any await: the session is discarded; nothing has changed on the server.

        Raises:
            ProtocolError: no mailbox at all could be selected (the first refusal is raised), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        entries: list[InventoryEntry] = []
        protocol = self._protocol
        mailboxes: Sequence[str] = self._mailboxes
        self.mailbox_states, self.mailbox_failures, self._listed = {}, {}, None
        if self._list_all:
            listed = await self.list_mailboxes()
            self._listed = frozenset(m.name for m in listed)
            mailboxes = wire.choose_mailboxes(listed, self._exclude)
            if not mailboxes:
                raise self._error(
                    ProtocolError, "LIST shows no mailbox to fetch", standard="RFC 9051 section 6.3.9"
                )
        refused: _SelectRefused | None = None
        for mailbox in mailboxes:
            try:
                info = await self._select(mailbox)
            except _SelectRefused as exc:
                refused = refused or exc
                self.mailbox_failures[mailbox] = str(exc)
                _log.warning(
                    "imap.select-failed", account=self._settings.account, mailbox=mailbox, error=str(exc)
                )
                continue
            self.mailbox_states[mailbox] = info
            if info.exists == 0:
                continue
            lines = await self._command(
                f"UID SEARCH ALL in {mailbox!r}", lambda: protocol.search("ALL", charset=None, by_uid=True)
            )
            try:
                uids = wire.parse_search(lines)
            except ProtocolError as exc:
                raise self._error(ProtocolError, str(exc), standard=exc.standard) from None
            entries.extend(InventoryEntry(IMAPKey(mailbox, info.uidvalidity, uid)) for uid in uids)
        if refused is not None and not self.mailbox_states:
            raise refused
        return entries

    async def _uid_fetch(
        self, uids: Sequence[int], items: str, require: tuple[wire.FetchItem, ...]
    ) -> tuple[wire.FetchResult, wire.StatusResponse]:
        """``UID FETCH uids items``; returns the parsed result and the completion (OK or NO)."""
        protocol = self._protocol
        uid_set = wire.sequence_set(uids)
        what = f"UID FETCH {items} for {len(uids)} UIDs"
        lines, status = self._completion(
            await self._call(what, lambda: protocol.fetch(uid_set, items, by_uid=True, timeout=None)), what
        )
        if status.condition == "BAD" or status.code in THROTTLE_CODES | {"SERVERBUG"}:
            raise self._refused(status, what)
        return wire.parse_fetch(lines, requested=uids, require=require), status

    async def retrieve(
        self, keys: Sequence[MessageKey]
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Retrieve messages with ``BODY.PEEK[]`` (``\\Seen`` unchanged), yielding each in key order.

        Consecutive keys of the same mailbox form a run: SELECT (if not selected), one cheap
        ``UID FETCH (RFC822.SIZE)`` pass (at most :data:`MAX_UIDS_PER_COMMAND` UIDs per command) to
        size the batches, then ``UID FETCH (UID FLAGS INTERNALDATE BODY.PEEK[])`` per batch of at most
        ``batch_messages`` messages and about ``batch_octets`` octets. Duplicate keys are retrieved once.

        Flags are the message's flags at retrieval time without the per-session ``\\Recent``.

        Yields :class:`RetrievalFailure` for: a key whose UIDVALIDITY differs from the mailbox's now
        (its UID may name another message), a mailbox that can no longer be selected, a UID the
        server did not return (expunged meanwhile), a response with the body NIL or items missing.

        Standard: RFC 9051 section 6.4.5 and 6.4.9 (UID FETCH), 7.5.2 (FETCH response).

        Cancelled at any await: the session is discarded; messages already yielded stay valid.

        Raises:
            TypeError: a key is not an :class:`~maild.model.IMAPKey`.
            ThrottledError, NetworkTimeout, ConnectError, ProtocolError, TransientError: the
                session is broken or refused the fetch as a whole; call :meth:`abort`.
        """
        ordered: list[IMAPKey] = []
        for key in dict.fromkeys(keys):
            if not isinstance(key, IMAPKey):
                raise TypeError(f"IMAPMailbox cannot retrieve {type(key).__name__}")
            ordered.append(key)
        for mailbox, run in itertools.groupby(ordered, key=lambda key: key.mailbox):
            async for item in self._retrieve_run(mailbox, list(run)):
                yield item

    async def _retrieve_run(
        self, mailbox: str, run: list[IMAPKey]
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        if self._selected != mailbox:
            try:
                await self._select(mailbox)
            except _SelectRefused as exc:
                for key in run:
                    yield RetrievalFailure(key, str(exc))
                return
        reasons: dict[int, str] = {}
        wanted = sorted({key.uid for key in run if key.uidvalidity == self._uidvalidity})
        sizes: dict[int, int] = {}
        for chunk in _chunks(wanted, MAX_UIDS_PER_COMMAND):
            result, status = await self._uid_fetch(chunk, "(RFC822.SIZE)", ("RFC822.SIZE",))
            sizes.update(
                (uid, message.size_octets)
                for uid, message in result.messages.items()
                if message.size_octets is not None
            )
            reasons.update(result.failures)
            for uid in chunk:
                if uid not in sizes:
                    reasons.setdefault(uid, f"not on the server any more ({status.describe()})")
        batch: list[IMAPKey] = []
        batch_uids: list[int] = []
        batch_octets = 0
        for key in run:
            size = sizes.get(key.uid) if key.uidvalidity == self._uidvalidity else None
            if (
                size is not None
                and batch_uids
                and (len(batch_uids) >= self._batch_messages or batch_octets + size > self._batch_octets)
            ):
                async for item in self._fetch_batch(batch, batch_uids, reasons):
                    yield item
                batch, batch_uids, batch_octets = [], [], 0
            batch.append(key)
            if size is not None:
                batch_uids.append(key.uid)
                batch_octets += size
        async for item in self._fetch_batch(batch, batch_uids, reasons):
            yield item

    async def _fetch_batch(
        self, batch: list[IMAPKey], uids: list[int], reasons: dict[int, str]
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Fetch the bodies of ``uids`` and yield one result per key of ``batch``, in order."""
        result: wire.FetchResult = wire.FetchResult()
        completion = ""
        if uids:
            result, status = await self._uid_fetch(uids, BODY_ITEMS, ("BODY[]", "FLAGS", "INTERNALDATE"))
            completion = status.describe()
        for key in batch:
            if key.uidvalidity != self._uidvalidity:
                yield RetrievalFailure(
                    key, f"UIDVALIDITY of {key.mailbox!r} is now {self._uidvalidity}, not {key.uidvalidity}"
                )
                continue
            message = result.messages.get(key.uid)
            if message is not None and message.body is not None:
                flags = (message.flags or frozenset()) - SESSION_FLAGS
                yield RetrievedMessage(key, message.body, message.internaldate, flags)
                continue
            reason = result.failures.get(key.uid) or reasons.get(key.uid) or f"not returned ({completion})"
            yield RetrievalFailure(key, reason)

    async def delete(self, keys: Sequence[MessageKey]) -> list[MessageKey]:
        """Delete messages: ``UID STORE +FLAGS.SILENT (\\Deleted)``, then expunge only those.

        With UIDPLUS: ``UID EXPUNGE`` of exactly the given UIDs (RFC 4315 section 2.1), so other
        messages that some other client marked ``\\Deleted`` stay. Without UIDPLUS only a plain
        EXPUNGE exists, which removes *every* ``\\Deleted`` message of the mailbox; so, per mailbox:
        ``UID SEARCH DELETED`` first, and if any message other than the given ones is marked, nothing
        there is touched. Otherwise the given UIDs are flagged, ``UID SEARCH DELETED`` runs again
        (another client may have marked one meanwhile: then the flags just set are removed again and
        the mailbox is skipped), and only then EXPUNGE. Skipped mailboxes are logged
        (``imap.expunge-skipped``) and their keys left out of the result.

        Mailboxes are processed in the order first named, at most :data:`MAX_UIDS_PER_COMMAND` UIDs
        per command. UIDs no longer present are ignored by the server. The caller must have committed
        the messages durably first.

        Returns:
            The keys whose deletion was sent (all given keys except those of skipped mailboxes).

        Standard: RFC 9051 section 6.4.6 (STORE), 6.4.3 (EXPUNGE), 6.4.4 (SEARCH DELETED);
        RFC 4315 section 2.1 (UID EXPUNGE).

        Cancelled at any await: the session is discarded; some messages may be expunged already and
        some only flagged ``\\Deleted`` (expunged by the next EXPUNGE of any client).

        Raises:
            TypeError: a key is not an :class:`~maild.model.IMAPKey`.
            ProtocolError: a mailbox cannot be selected, is read-only, or its UIDVALIDITY changed
                (nothing of that mailbox is deleted); STORE, SEARCH or EXPUNGE refused.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        by_mailbox: dict[str, list[IMAPKey]] = {}
        for key in keys:
            if not isinstance(key, IMAPKey):
                raise TypeError(f"IMAPMailbox cannot delete {type(key).__name__}")
            by_mailbox.setdefault(key.mailbox, []).append(key)
        done: list[MessageKey] = []
        uidplus = "UIDPLUS" in self._capabilities
        for mailbox, mailbox_keys in by_mailbox.items():
            info = await self._select(mailbox)
            stale = {key.uidvalidity for key in mailbox_keys} - {info.uidvalidity}
            if stale:
                raise self._error(ProtocolError, f"UIDVALIDITY of {mailbox!r} changed; not deleting there")
            if info.read_only:
                raise self._error(ProtocolError, f"{mailbox!r} is read-only; not deleting there")
            uids = sorted({key.uid for key in mailbox_keys})
            if uidplus:
                for chunk in _chunks(uids, MAX_UIDS_PER_COMMAND):
                    await self._store_deleted(mailbox, chunk, "+FLAGS.SILENT")
                    uid_set = wire.sequence_set(chunk)
                    await self._command(
                        f"UID EXPUNGE in {mailbox!r}",
                        functools.partial(self._protocol.expunge, uid_set, by_uid=True),
                    )
            elif not await self._expunge_without_uidplus(mailbox, uids):
                continue
            done.extend(mailbox_keys)
        return done

    async def _store_deleted(self, mailbox: str, uids: Sequence[int], change: str) -> None:
        protocol = self._protocol
        await self._command(
            f"UID STORE {change} \\Deleted in {mailbox!r}",
            functools.partial(protocol.store, wire.sequence_set(uids), change, r"(\Deleted)", by_uid=True),
        )

    async def _deleted_uids(self, mailbox: str) -> set[int]:
        protocol = self._protocol
        lines = await self._command(
            f"UID SEARCH DELETED in {mailbox!r}",
            lambda: protocol.search("DELETED", charset=None, by_uid=True),
        )
        try:
            return set(wire.parse_search(lines))
        except ProtocolError as exc:
            raise self._error(ProtocolError, str(exc), standard=exc.standard) from None

    async def _expunge_without_uidplus(self, mailbox: str, uids: list[int]) -> bool:
        """Flag ``uids`` and EXPUNGE, unless that would expunge another ``\\Deleted`` message.

        Returns:
            True when EXPUNGE was sent, False when the mailbox was skipped (nothing left flagged
            by maild).
        """
        wanted = set(uids)
        before = await self._deleted_uids(mailbox)
        foreign = before - wanted
        if foreign:
            _log.warning(
                "imap.expunge-skipped",
                account=self._settings.account,
                mailbox=mailbox,
                reason="other messages are marked \\Deleted and the server lacks UIDPLUS",
                other_deleted=len(foreign),
            )
            return False
        for chunk in _chunks(uids, MAX_UIDS_PER_COMMAND):
            await self._store_deleted(mailbox, chunk, "+FLAGS.SILENT")
        foreign = await self._deleted_uids(mailbox) - wanted
        if foreign:
            flagged_by_us = sorted(wanted - before)
            for chunk in _chunks(flagged_by_us, MAX_UIDS_PER_COMMAND):
                await self._store_deleted(mailbox, chunk, "-FLAGS.SILENT")
            _log.warning(
                "imap.expunge-skipped",
                account=self._settings.account,
                mailbox=mailbox,
                reason="another client marked messages \\Deleted meanwhile and the server lacks UIDPLUS",
                other_deleted=len(foreign),
            )
            return False
        protocol = self._protocol
        await self._command(f"EXPUNGE in {mailbox!r}", protocol.expunge)
        return True

    async def headers(self, mailbox: str) -> MailboxHeaders:
        """Scan one mailbox without downloading bodies: SELECT, UID SEARCH ALL, then
        ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])`` in batches of :data:`MAX_MESSAGES_PER_FETCH`.

        ``BODY.PEEK`` leaves ``\\Seen`` alone. A UID that a FETCH completing OK did not return was
        expunged meanwhile and is left out; one that a FETCH answered NO did not return is a failure.

        Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 (SEARCH), 6.4.5 (``BODY.PEEK[HEADER]``).

        Cancelled at any await: the session is discarded; nothing changed on the server.

        Raises:
            ProtocolError: the mailbox cannot be selected (e.g. ``[NONEXISTENT]``), BAD, broken replies.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        info = await self._select(mailbox)
        scan = MailboxHeaders(mailbox, info.uidvalidity)
        if info.exists == 0:
            return scan
        protocol = self._protocol
        lines = await self._command(
            f"UID SEARCH ALL in {mailbox!r}", lambda: protocol.search("ALL", charset=None, by_uid=True)
        )
        try:
            uids = wire.parse_search(lines)
        except ProtocolError as exc:
            raise self._error(ProtocolError, str(exc), standard=exc.standard) from None
        for chunk in _chunks(sorted(set(uids)), MAX_MESSAGES_PER_FETCH):
            result, status = await self._uid_fetch(chunk, HEADER_ITEMS, ("RFC822.SIZE", "BODY[HEADER]"))
            scan.messages.update(result.messages)
            scan.failures.update(result.failures)
            if not status.ok:
                for uid in chunk:
                    if uid not in result.messages and uid not in result.failures:
                        scan.failures[uid] = f"not returned ({status.describe()})"
        return scan

    async def append(
        self,
        mailbox: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
    ) -> AppendResult:
        """Upload one message into ``mailbox`` with APPEND, keeping its flags and INTERNALDATE.

        The mailbox name is encoded (modified UTF-7) and quoted here; the message travels as a
        synchronising literal, octet for octet. The inactivity limit is extended while it is sent
        (see :data:`MIN_UPLOAD_OCTETS_PER_S`).

        Args:
            mailbox: readable mailbox name, e.g. ``"INBOX"``; it must exist.
            raw: the message octets (CRLF line endings, as archived).
            flags: flags to set, e.g. ``{"\\Seen"}``.
            internaldate: the INTERNALDATE to set (aware; sent in UTC), or None for the server's now.

        Returns:
            The outcome. A refusal of this message (NO, e.g. ``[TOOBIG]`` RFC 7889,
            ``[OVERQUOTA]``/``[LIMIT]`` RFC 5530, ``[TRYCREATE]``; or BAD) is returned with ``ok``
            False, so that a caller can report it and go on with the next message.

        Standard: RFC 9051 section 6.3.12, RFC 3501 section 6.3.11 (APPEND); RFC 4315 section 3
        (APPENDUID).

        Cancelled at any await: the session is discarded; the server may or may not have stored
        the message (compare before appending again).

        Raises:
            ProtocolError: a flag or the mailbox name cannot be sent; a broken response.
            ThrottledError, TransientError: NO ``[UNAVAILABLE]``/``[INUSE]``/``[SERVERBUG]`` (the
                session, not the message, is the problem).
            NetworkTimeout, ConnectError: as for :meth:`open`; the outcome is unknown.
        """
        try:
            argument = wire.quote_astring(wire.encode_mailbox_name(mailbox))
            flag_list = wire.format_flag_list(flags)
            date = wire.format_internaldate(internaldate) if internaldate is not None else None
        except ValueError as exc:
            raise self._error(ProtocolError, f"APPEND to {mailbox!r}: {exc}") from None
        protocol = self._protocol
        what = f"APPEND to {mailbox!r} ({len(raw)} octets)"
        _lines, status = self._completion(
            await self._call(
                what,
                lambda: protocol.append(raw, argument, flag_list, date, timeout=None),
                send_octets=len(raw),
            ),
            what,
        )
        if status.condition == "NO" and status.code in APPEND_SESSION_CODES:
            raise self._refused(status, what)
        if not status.ok:
            return AppendResult(False, status.describe(), status.code)
        appenduid = wire.parse_appenduid(status)
        if appenduid is None:
            return AppendResult(True, status.describe(), status.code)
        return AppendResult(True, status.describe(), status.code, appenduid[0], appenduid[1])

    async def fetch_identities(
        self, mailbox: str, uidvalidity: int, uids: Sequence[int]
    ) -> dict[int, tuple[int, bytes]]:
        """Read size and Message-ID field of messages without their bodies.

        ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`` in batches of
        :data:`MAX_MESSAGES_PER_FETCH`, after a SELECT unless ``mailbox`` is selected already. Used to
        recognise archived messages under new UIDs after a UIDVALIDITY change without downloading
        them again. ``BODY.PEEK`` leaves ``\\Seen`` alone.

        Returns:
            UID to (RFC822.SIZE in octets, the Message-ID field lines as sent, ending with the empty
            line). UIDs the server did not return, or returned incompletely, are left out; so is
            everything when the mailbox's UIDVALIDITY is no longer ``uidvalidity``.

        Standard: RFC 9051 section 6.4.5 (``BODY.PEEK[HEADER.FIELDS]``, RFC822.SIZE), 6.4.9.

        Cancelled at any await: the session is discarded; nothing changed on the server.

        Raises:
            ProtocolError: the mailbox cannot be selected, BAD, broken responses.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        if self._selected != mailbox:
            await self._select(mailbox)
        if self._uidvalidity != uidvalidity:
            return {}
        found: dict[int, tuple[int, bytes]] = {}
        for chunk in _chunks(sorted(set(uids)), MAX_MESSAGES_PER_FETCH):
            result, _status = await self._uid_fetch(
                chunk, IDENTITY_ITEMS, ("RFC822.SIZE", "BODY[HEADER.FIELDS]")
            )
            for uid, message in result.messages.items():
                if message.size_octets is not None and message.header_fields is not None:
                    found[uid] = (message.size_octets, message.header_fields)
        return found

    async def close(self) -> None:
        """LOGOUT and close the connection. Deletions were applied by EXPUNGE already.

        A connection the server closes right after its BYE counts as success (RFC 9051 section 6.1.3).
        Does nothing if the session was never opened.

        Raises:
            TransientError: the session was discarded earlier (call :meth:`abort`).
            NetworkTimeout: no answer to LOGOUT within ``timeout_s`` seconds.
            ProtocolError: LOGOUT answered BAD.
        """
        if self._client is None:
            return
        protocol = self._protocol
        try:
            _lines, status = self._completion(await self._call("LOGOUT", protocol.logout), "LOGOUT")
            if status.condition == "BAD":
                raise self._refused(status, "LOGOUT")
        except ConnectError:
            pass
        finally:
            self._discard("closed")

    async def abort(self) -> None:
        """Close the connection at once without LOGOUT. Never raises; safe at any time and repeatedly."""
        with contextlib.suppress(Exception):
            self._discard("aborted")


# --------------------------------------------------------------------------------------------------
# IDLE (RFC 2177)
# --------------------------------------------------------------------------------------------------


class IMAPIdleSession(IMAPMailbox):
    """A session that selects one mailbox and waits in IDLE for the server to announce changes.

    Connection, TLS, login, SELECT and the guards against aioimaplib's hangs are those of
    :class:`IMAPMailbox`; this adds the IDLE steps, each bounded in time and raced against the loss
    of the connection (aioimaplib's own ``idle_start`` hangs forever when the server closes before
    its ``+`` continuation, and ``wait_server_push`` sits out its whole timeout after a hang-up):

    * :meth:`idle_start` sends IDLE and returns once the server's ``+`` arrived;
    * :meth:`idle_wait` returns what the server pushed, or nothing after the given time;
    * :meth:`idle_done` sends DONE and waits for the tagged OK;
    * :meth:`noop` asks the server for a sign of life between IDLE rounds.

    A ``* BYE`` (RFC 9051 section 7.1.5), end of file or a reset is a :class:`~maild.errors.ConnectError`
    at once, silence beyond ``timeout_s`` where an answer is due a :class:`~maild.errors.NetworkTimeout`;
    either way the session is discarded. Not safe for concurrent use by several tasks.

    Args:
        settings: as for :class:`IMAPMailbox`.
        mailbox: the readable name of the mailbox to watch.
    """

    def __init__(self, settings: ServerSettings, mailbox: str = "INBOX") -> None:
        super().__init__(settings, (mailbox,))
        self.mailbox = mailbox
        self._idle_task: asyncio.Future[Any] | None = None

    @property
    def supports_idle(self) -> bool:
        """Whether the server advertised IDLE after login (RFC 2177 section 3)."""
        return "IDLE" in self.capabilities

    @property
    def idling(self) -> bool:
        """Whether an IDLE command is outstanding (sent, not yet ended with DONE)."""
        return self._idle_task is not None

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None:
        """Turn on TCP keepalive, so that a peer that vanished without a reset is noticed.

        After ``idle_s`` seconds without traffic the kernel probes every ``interval_s`` seconds and
        closes the connection after ``count`` unanswered probes; the loss then arrives like any other.
        Best effort: options the platform lacks are skipped.
        """
        with contextlib.suppress(Exception):
            sock = self._client.protocol.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", idle_s),
                ("TCP_KEEPINTVL", interval_s),
                ("TCP_KEEPCNT", count),
            ):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    async def select_mailbox(self) -> wire.SelectInfo:
        """SELECT the watched mailbox.

        Raises:
            ProtocolError: it cannot be selected (e.g. ``[NONEXISTENT]``), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        return await self._select(self.mailbox)

    def _check_alive(self, what: str) -> Any:
        """The protocol object of a usable, connected session (raises otherwise)."""
        protocol = self._protocol
        if self._lost is None or self._lost.done():
            self._discard("connection lost")
            raise self._error(ConnectError, f"{what}: connection lost")
        return protocol

    async def idle_start(self) -> None:
        """Send IDLE and return once the server's ``+`` continuation arrived.

        Standard: RFC 2177 section 3.

        Cancelled at any await: the session is discarded.

        Raises:
            ProtocolError: the server lacks IDLE, answered NO or BAD, or IDLE is already running.
            ConnectError: the connection was lost before the ``+`` (aioimaplib issue #110).
            NetworkTimeout: no ``+`` within ``timeout_s`` seconds.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("IDLE")
        if self._idle_task is not None:
            raise self._error(ProtocolError, "IDLE is already running")
        if not self.supports_idle:
            raise self._error(ProtocolError, "server lacks IDLE", standard="RFC 2177")
        assert self._lost is not None
        protocol._idle_event.clear()
        command = aioimaplib.IdleCommand(protocol.new_tag(), protocol.idle_queue, loop=protocol.loop)
        idle = asyncio.ensure_future(protocol.execute(command))
        idle.add_done_callback(_consume_outcome)
        self._idle_task = idle
        ack = asyncio.ensure_future(protocol.wait_for_idle_response())
        try:
            await asyncio.wait(
                (idle, ack, self._lost), timeout=self._settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._discard("IDLE cancelled")
            raise
        finally:
            if not ack.done():
                ack.cancel()
        if ack.done() and not ack.cancelled() and not idle.done():
            return
        self._idle_task = None
        if idle.done() and not idle.cancelled() and idle.exception() is None:
            _lines, status = self._completion(idle.result(), "IDLE")
            self._discard("IDLE refused")
            raise self._refused(status, "IDLE")
        if self._lost.done() or idle.done():
            self._discard("connection lost before IDLE continuation")
            raise self._error(ConnectError, "IDLE: connection lost before the server's continuation")
        self._discard("IDLE continuation timed out")
        raise self._error(
            NetworkTimeout, f"IDLE: no continuation from server within {self._settings.timeout_s:g} s"
        )

    def _drain(self, protocol: Any) -> list[wire.Part]:
        lines: list[wire.Part] = []
        while not protocol.idle_queue.empty():
            item = protocol.idle_queue.get_nowait()
            if isinstance(item, list):
                lines.extend(item)
        return lines

    def _events(self, lines: list[wire.Part], what: str) -> wire.MailboxEvents:
        events = wire.parse_mailbox_events(lines)
        if events.bye is not None:
            self._idle_task = None
            self._discard("server said BYE")
            raise self._error(ConnectError, f"{what}: server closed the session: BYE {events.bye}")
        return events

    async def idle_wait(self, timeout_s: float) -> wire.MailboxEvents:
        """Wait up to ``timeout_s`` seconds for the server to push untagged responses during IDLE.

        Returns:
            What arrived (``changed`` is true for EXISTS, RECENT or EXPUNGE); empty after the time.

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            ProtocolError: no IDLE is running, or the server ended it unasked.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("IDLE")
        idle = self._idle_task
        if idle is None:
            raise self._error(ProtocolError, "IDLE is not running")
        assert self._lost is not None
        lines = self._drain(protocol)
        if not lines:
            get = asyncio.ensure_future(protocol.idle_queue.get())
            get.add_done_callback(_consume_outcome)
            try:
                await asyncio.wait(
                    (get, idle, self._lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                get.cancel()
                self._discard("IDLE wait cancelled")
                raise
            if get.done() and not get.cancelled():
                item = get.result()
                lines = list(item) if isinstance(item, list) else []
            else:
                get.cancel()
            lines += self._drain(protocol)
        events = self._events(lines, "IDLE")
        if lines:
            return events
        if self._lost.done():
            self._idle_task = None
            self._discard("connection lost during IDLE")
            raise self._error(ConnectError, "IDLE: connection lost")
        if idle.done():
            self._idle_task = None
            self._discard("server ended IDLE")
            raise self._error(ProtocolError, "IDLE: the server ended IDLE without DONE", standard="RFC 2177")
        return events

    async def idle_done(self) -> wire.MailboxEvents:
        """End IDLE with DONE and wait up to ``timeout_s`` seconds for the tagged OK.

        Returns:
            What the server pushed and nobody collected yet. Nothing when no IDLE was running.

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            NetworkTimeout: no completion within ``timeout_s`` seconds (a dead or stalled server).
            ProtocolError: IDLE ended NO or BAD.
            TransientError: the session was discarded earlier.
        """
        idle = self._idle_task
        if idle is None:
            return wire.MailboxEvents()
        protocol = self._check_alive("DONE")
        assert self._lost is not None
        self._idle_task = None
        if not idle.done():
            protocol.idle_done()
        try:
            await asyncio.wait(
                (idle, self._lost), timeout=self._settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._discard("DONE cancelled")
            raise
        events = self._events(self._drain(protocol), "DONE")
        if not idle.done() or idle.cancelled() or idle.exception() is not None:
            if self._lost.done() or idle.done():
                self._discard("connection lost after DONE")
                raise self._error(ConnectError, "DONE: connection lost")
            self._discard("DONE timed out")
            raise self._error(
                NetworkTimeout, f"DONE: no answer from server within {self._settings.timeout_s:g} s"
            )
        _lines, status = self._completion(idle.result(), "IDLE")
        if not status.ok:
            self._discard("IDLE ended with an error")
            raise self._refused(status, "IDLE")
        return events

    async def noop(self) -> wire.MailboxEvents:
        """Send NOOP (a liveness check) and return the mailbox events that came with its answer.

        Standard: RFC 9051 section 6.1.2.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            NetworkTimeout: no answer within ``timeout_s`` seconds.
            ProtocolError: NOOP answered BAD; a broken response.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("NOOP")
        lines = await self._command("NOOP", lambda: protocol.simple_command("NOOP"))
        return self._events(lines, "NOOP")

    async def close(self) -> None:
        """End IDLE if it runs (best effort), then LOGOUT as :meth:`IMAPMailbox.close` does."""
        if self._idle_task is not None:
            try:
                await self.idle_done()
            except MaildError:
                await self.abort()
                return
        await super().close()

    async def abort(self) -> None:
        """Close the connection at once, dropping a running IDLE. Never raises."""
        idle, self._idle_task = self._idle_task, None
        if idle is not None and not idle.done():
            idle.cancel()
        await super().abort()
