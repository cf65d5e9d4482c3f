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
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
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
        batch_messages: most messages per body FETCH, 1 to :data:`MAX_MESSAGES_PER_FETCH`.
        batch_octets: target total size in octets of one body FETCH (RFC822.SIZE); a single larger
            message is fetched alone.

    Raises:
        ValueError: no mailboxes, a mailbox name that cannot be sent (CR, LF, NUL, lone surrogate),
            or a batch limit out of range.
    """

    def __init__(
        self,
        settings: ServerSettings,
        mailboxes: Sequence[str] = ("INBOX",),
        *,
        batch_messages: int = 100,
        batch_octets: int = 16 * 2**20,
    ) -> None:
        _quiet_library_logger()
        if isinstance(mailboxes, str) or not mailboxes:
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

    async def _call(self, what: str, start: Callable[[], Any]) -> Any:
        """Run one library call, raced against inactivity and the loss of the connection.

        Args:
            what: the command, for error messages (never holds a secret).
            start: makes the library's awaitable; called only when the session is usable.

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
        began = loop.time()
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
                context = ssl.create_default_context(cafile=settings.ca_file)
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

    async def inventory(self) -> list[InventoryEntry]:
        """Return one entry per message of each configured mailbox: SELECT, then UID SEARCH ALL.

        Entries come mailbox by mailbox in configuration order, UIDs in server order; sizes are None
        (:meth:`retrieve` asks for them). An empty mailbox (EXISTS 0) costs no SEARCH.

        Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 and 6.4.9 (UID SEARCH).

        Cancelled at any await: the session is discarded; nothing has changed on the server.

        Raises:
            ProtocolError: a configured mailbox cannot be selected (e.g. ``[NONEXISTENT]``), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        entries: list[InventoryEntry] = []
        protocol = self._protocol
        for mailbox in self._mailboxes:
            info = await self._select(mailbox)
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

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        """Delete messages: ``UID STORE +FLAGS.SILENT (\\Deleted)`` then ``UID EXPUNGE`` (RFC 4315).

        Only the given UIDs are expunged, never other messages some other client marked
        ``\\Deleted``; so UIDPLUS is required. Mailboxes are processed in the order first named, at
        most :data:`MAX_UIDS_PER_COMMAND` UIDs per command. UIDs no longer present are ignored by the
        server. The caller must have committed the messages durably first.

        Standard: RFC 9051 section 6.4.6 (STORE), RFC 4315 section 2.1 (UID EXPUNGE).

        Cancelled at any await: the session is discarded; some messages may be expunged already and
        some only flagged ``\\Deleted`` (expunged by the next EXPUNGE of any client).

        Raises:
            TypeError: a key is not an :class:`~maild.model.IMAPKey`.
            ProtocolError: no UIDPLUS; a mailbox cannot be selected, is read-only, or its UIDVALIDITY
                changed (nothing of that mailbox is deleted); STORE or EXPUNGE refused.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        by_mailbox: dict[str, list[IMAPKey]] = {}
        for key in keys:
            if not isinstance(key, IMAPKey):
                raise TypeError(f"IMAPMailbox cannot delete {type(key).__name__}")
            by_mailbox.setdefault(key.mailbox, []).append(key)
        if not by_mailbox:
            return
        if "UIDPLUS" not in self._capabilities:
            raise self._error(
                ProtocolError,
                "server lacks UIDPLUS: UID EXPUNGE impossible, not deleting",
                standard="RFC 4315",
            )
        protocol = self._protocol
        for mailbox, mailbox_keys in by_mailbox.items():
            info = await self._select(mailbox)
            stale = {key.uidvalidity for key in mailbox_keys} - {info.uidvalidity}
            if stale:
                raise self._error(ProtocolError, f"UIDVALIDITY of {mailbox!r} changed; not deleting there")
            if info.read_only:
                raise self._error(ProtocolError, f"{mailbox!r} is read-only; not deleting there")
            for chunk in _chunks(sorted({key.uid for key in mailbox_keys}), MAX_UIDS_PER_COMMAND):
                uid_set = wire.sequence_set(chunk)
                await self._command(
                    f"UID STORE \\Deleted in {mailbox!r}",
                    functools.partial(protocol.store, uid_set, "+FLAGS.SILENT", r"(\Deleted)", by_uid=True),
                )
                await self._command(
                    f"UID EXPUNGE in {mailbox!r}",
                    functools.partial(protocol.expunge, uid_set, by_uid=True),
                )

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
