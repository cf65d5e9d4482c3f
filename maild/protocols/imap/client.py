"""The aioimaplib layer's entry point: one connection behind maild's own small API (:class:`IMAPClient`).

Everything else in :mod:`maild.protocols.imap` talks to the server through :class:`IMAPClient`,
whose values are maild types (:class:`~.library.Reply`, :data:`~.lex.Part`) and whose errors are
:class:`~.library.LibraryError` and :class:`~.library.LibraryTimeout`; aioimaplib's ``Response``,
``Command``, tags, tasks, IDLE queue and exceptions stay in the five modules that import it:

* :mod:`~.library`: the pin, :class:`~.library.ReadLimits`, :class:`~.library.Reply`, the errors;
* :mod:`~.protocol`: the patched protocol (hot spots removed, FETCH framed with the lexer's rules,
  greeting capabilities, commands pipelined behind the sign-in, COMPRESS=DEFLATE framing, read limits);
* :mod:`~.commands`: streaming FETCH, STARTTLS, AUTHENTICATE and IDLE rounds;
* :mod:`~.pipeline`: several tagged commands in one write (RFC 9051 section 5.5);
* this module: :class:`IMAPClient`, one method per command (RFC 9051 section 6; COMPRESS, RFC 4978
  section 3; IDLE, RFC 2177), and the names callers import from here.

What maild adds to aioimaplib 2.0.3 is measured in ``DEPENDENCIES.md``. There is no fallback to the
stock protocol: ``pyproject.toml`` pins aioimaplib to exactly :data:`~.library.PATCHED_AIOIMAPLIB`,
and ``tests/faults/test_imap_library.py`` (with the IDLE pins in ``tests/faults/test_idle_faults.py``)
fails when the installed version or the source of any library method relied on here changes. A path
that would only run after the pin changed is never tested.

May import: asyncio, contextlib, ssl, aioimaplib, :mod:`maild.protocols.imap.library`,
:mod:`maild.protocols.imap.protocol`, :mod:`maild.protocols.imap.commands`,
:mod:`maild.protocols.imap.pipeline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib

from maild.protocols.imap.commands import (
    MAX_PENDING_CONTINUATIONS,
    Authentication,
    FetchSink,
    IdleRound,
    PlainFetchSink,
    StreamingFetch,
    signed_in_reply,
    starttls,
)
from maild.protocols.imap.library import (
    MAX_BUFFERED_OCTETS,
    MAX_LINE_OCTETS,
    MAX_LITERAL_CEILING_OCTETS,
    MAX_LITERAL_OCTETS,
    MAX_UNTAGGED_PER_COMMAND,
    PATCHED_AIOIMAPLIB,
    LibraryError,
    LibraryTimeout,
    ReadLimits,
    Reply,
    _reply,
    _run,
    quiet_library_logger,
)
from maild.protocols.imap.pipeline import MAX_PIPELINED_COMMANDS, _FollowUp, _pipeline
from maild.protocols.imap.protocol import _FastProtocol, _LibraryClient
from maild.spool import Spool

__all__ = [
    "MAX_BUFFERED_OCTETS",
    "MAX_LINE_OCTETS",
    "MAX_LITERAL_CEILING_OCTETS",
    "MAX_LITERAL_OCTETS",
    "MAX_PENDING_CONTINUATIONS",
    "MAX_PIPELINED_COMMANDS",
    "MAX_UNTAGGED_PER_COMMAND",
    "PATCHED_AIOIMAPLIB",
    "Authentication",
    "FetchSink",
    "IMAPClient",
    "IdleRound",
    "LibraryError",
    "LibraryTimeout",
    "PlainFetchSink",
    "ReadLimits",
    "Reply",
    "StreamingFetch",
    "quiet_library_logger",
    "starttls",
]


class IMAPClient:
    """One aioimaplib connection behind maild's own small API.

    Every command coroutine returns a :class:`Reply` (NO and BAD are data, checked by the caller) or
    raises :class:`LibraryError`; socket and TLS errors (``OSError``, ``ssl.SSLError``) and
    ``TimeoutError`` pass through for the caller to map. Arguments are sent as given: the caller
    quotes and encodes them. No command has a library timer: the caller bounds every wait.

    Args:
        host, port: the server.
        ssl_context: for implicit TLS, else None.
        on_connection_lost: called once when the transport closes (the library's ``conn_lost_cb``).
        timeout_s: aioimaplib's own timer for commands that take one (LOGIN, SELECT, ...), seconds.
        limits: the caps on what is read (default :class:`ReadLimits`'s).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        on_connection_lost: Callable[[Exception | None], None],
        timeout_s: float,
        limits: ReadLimits | None = None,
    ) -> None:
        self._client = _LibraryClient(
            host,
            port,
            timeout=timeout_s,
            conn_lost_cb=on_connection_lost,
            ssl_context=ssl_context,
            read_limits=limits,
        )
        self._protocol: _FastProtocol = self._client.protocol

    # ------------------------------------------------------------------ connection state

    @property
    def last_received(self) -> float:
        """Loop time (seconds) when data last arrived, or when the client was made."""
        return float(self._protocol.last_received)

    @property
    def received_octets(self) -> int:
        """Octets received on this connection so far (for the progress floor)."""
        return int(self._protocol.received_octets)

    @property
    def exceeded(self) -> str | None:
        """Which :class:`ReadLimits` cap the server broke (the connection was then dropped), or None."""
        return self._protocol.exceeded

    @property
    def greeting_refused(self) -> bytes | None:
        """The server's greeting when it was not OK/PREAUTH (the connection was then closed)."""
        return self._protocol.greeting_refused

    @property
    def last_bye(self) -> bytes | None:
        """The server's last untagged BYE line (without ``* ``), or None."""
        return self._protocol.last_bye

    @property
    def greeting_capabilities(self) -> frozenset[str] | None:
        """The capabilities of the greeting's ``[CAPABILITY ...]`` code, upper-cased, or None.

        Standard: RFC 9051 section 7.1 (a server may send them there to save the client a round trip).
        """
        return self._protocol.greeting_capabilities

    @property
    def announced_capabilities(self) -> frozenset[str]:
        """What the greeting or aioimaplib's own CAPABILITY after it announced, upper-cased."""
        return frozenset(a.upper() for a in self._protocol.capabilities) - {"CAPABILITY"}

    @property
    def wire_octets(self) -> int:
        """Octets received from the socket so far (compressed ones as received)."""
        return int(self._protocol.wire_octets)

    @property
    def compressed(self) -> bool:
        """Whether COMPRESS=DEFLATE is active on this connection (RFC 4978)."""
        return self._protocol._inflater is not None or self._protocol._switch_to_inflate

    @property
    def preauthenticated(self) -> bool:
        """Whether the greeting was PREAUTH (the session is authenticated already, RFC 9051 7.1.4)."""
        return bool(self._client.get_state() == "AUTH")

    @property
    def reading(self) -> bool:
        """Whether the transport reads from the socket now (False while paused or closed)."""
        transport = self._protocol.transport
        return bool(transport is not None and transport.is_reading())

    def extra_info(self, name: str) -> Any:
        """The transport's ``get_extra_info(name)`` (``"socket"``, ``"ssl_object"``), or None."""
        with contextlib.suppress(Exception):
            return self._protocol.transport.get_extra_info(name)
        return None

    def abort(self) -> None:
        """Close the transport at once and cancel the library's tasks. Never raises."""
        with contextlib.suppress(Exception):
            transport = self._protocol.transport
            if transport is not None:
                transport.abort()
        with contextlib.suppress(Exception):
            if not self._client._client_task.done():
                self._client._client_task.cancel()
        with contextlib.suppress(Exception):
            for task in list(self._protocol.tasks):
                task.cancel()

    # ------------------------------------------------------------------ commands

    async def wait_hello(self) -> None:
        """Wait for the connection and the server's greeting."""
        try:
            await self._client.wait_hello_from_server()
        except aioimaplib.AioImapException as exc:
            raise LibraryError(f"{type(exc).__name__}: {exc}") from None

    async def capability(self) -> Reply:
        """CAPABILITY (RFC 9051 section 6.1.1)."""
        protocol = self._protocol
        return await _run(
            protocol.execute(aioimaplib.Command("CAPABILITY", protocol.new_tag(), loop=protocol.loop))
        )

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Reply:
        """STARTTLS and the TLS upgrade (see :func:`starttls`)."""
        return await starttls(self._protocol, context, server_hostname, timeout_s)

    async def login(self, user: str, password: str) -> Reply:
        """LOGIN with ``user`` as given (quoted by the caller); the password is quoted here.

        The commands queued by :meth:`follow_sign_in` go out in the same write, right behind it
        (RFC 9051 section 5.5). Never logs or formats the command line (it holds the password).
        """
        protocol = self._protocol
        if protocol.state != aioimaplib.NONAUTH:
            raise LibraryError(f"LOGIN illegal in state {protocol.state}")
        command = aioimaplib.Command("LOGIN", protocol.new_tag(), loop=protocol.loop)
        if protocol.pending_sync_command is not None or protocol.pending_async_commands:
            raise LibraryError("LOGIN while another command is pending")
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed before LOGIN")
        protocol.pending_sync_command = command
        line = f"{command.tag} LOGIN {user} {aioimaplib.quoted(password)}\r\n".encode()
        transport.write(line + protocol.follow_sign_in())
        del line, password
        return await signed_in_reply(protocol, command)

    def follow_sign_in(self, name: str, *args: str) -> asyncio.Future[Reply | None]:
        """Queue ``name args`` to be sent right behind the next sign-in command (pipelined).

        It goes out with LOGIN, or with AUTHENTICATE PLAIN carrying an initial response (SASL-IR);
        with any other sign-in, or none (PREAUTH), it is not sent and the future resolves to None.
        If the sign-in fails, the server answers it NO or BAD (not authenticated). The future
        resolves with the command's :class:`Reply` when its tagged completion arrives; a SELECT
        answered OK puts the session in the selected state.

        Standard: RFC 9051 section 5.5 (pipelining).
        """
        reply: asyncio.Future[Reply | None] = self._protocol.loop.create_future()
        self._protocol.follow_ups.append(_FollowUp(name, args, reply))
        return reply

    def drop_follow_ups(self) -> None:
        """Forget the commands queued by :meth:`follow_sign_in` (their futures resolve to None)."""
        self._protocol.drop_follow_ups()

    async def compress(self) -> Reply:
        """``COMPRESS DEFLATE`` (RFC 4978 section 3); on OK both directions are compressed from then on.

        Received data is inflated in pieces of :data:`~.compress.INFLATE_PIECE_OCTETS`, each checked against
        the :class:`ReadLimits` before the next is inflated.
        """
        protocol = self._protocol
        while protocol.queued or protocol.pending_sync_command is not None:
            pending = protocol.queued[-1] if protocol.queued else protocol.pending_sync_command
            await pending._event.wait()
        # Not execute(): aioimaplib allows COMPRESS only in the authenticated state, RFC 4978
        # section 3 in the selected state too (a pipelined SELECT may have completed).
        if protocol.state not in (aioimaplib.AUTH, aioimaplib.SELECTED):
            raise LibraryError(f"COMPRESS illegal in state {protocol.state}")
        if protocol.pending_async_commands:
            raise LibraryError("COMPRESS while another command is pending")
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed before COMPRESS")
        command = aioimaplib.Command("COMPRESS", protocol.new_tag(), "DEFLATE", loop=protocol.loop)
        protocol.pending_sync_command = command
        transport.write(f"{command.tag} COMPRESS DEFLATE".encode("ascii") + aioimaplib.CRLF)
        try:
            await command.wait()
        except aioimaplib.AioImapException as exc:
            raise LibraryError(f"{type(exc).__name__}: {exc}") from None
        return _reply(command.response)

    def authenticate(self, mechanism: str, initial: bytes | None) -> Authentication:
        """Send ``AUTHENTICATE mechanism [initial]`` now; return the exchange (:class:`Authentication`)."""
        return Authentication(self._protocol, mechanism, initial)

    async def select(self, mailbox: str) -> Reply:
        """SELECT ``mailbox`` (quoted and encoded by the caller)."""
        return await _run(self._protocol.select(mailbox))

    async def simple(self, name: str, *args: str) -> Reply:
        """A command without special handling: ``LIST``, ``NOOP``, ..."""
        return await _run(self._protocol.simple_command(name, *args))

    async def uid_fetch(self, uid_set: str, items: str) -> Reply:
        """``UID FETCH`` with every response kept until the tagged completion (short commands only)."""
        return await _run(self._protocol.fetch(uid_set, items, by_uid=True, timeout=None))

    def streaming_fetch(
        self,
        uid_set: str,
        items: str,
        sink: FetchSink,
        spool: Spool | None = None,
        plain_sink: PlainFetchSink | None = None,
    ) -> StreamingFetch:
        """A ``UID FETCH`` handing each response to ``sink`` (see :class:`StreamingFetch`), or the
        usual body responses read already to ``plain_sink`` when given; large literals to ``spool``
        files as they arrive, when given."""
        return StreamingFetch(self._protocol, uid_set, items, sink, spool=spool, plain_sink=plain_sink)

    async def uid_search(self, criterion: str) -> Reply:
        """``UID SEARCH criterion`` without CHARSET."""
        return await _run(self._protocol.search(criterion, charset=None, by_uid=True))

    async def pipeline(self, commands: list[str]) -> list[Reply]:
        """Send up to :data:`MAX_PIPELINED_COMMANDS` commands in one write and wait for all of them.

        For commands aioimaplib lacks or would serialise (STATUS, LIST with RETURN options, NOTIFY,
        SELECT followed by UID SEARCH): one round trip for all. Each reply holds the untagged lines
        that arrived after the previous command's completion and before its own (servers answer
        commands in order), then its completion text. A SELECT's outcome sets the library's state as
        its own ``select()`` would, an UNSELECT answered OK the authenticated state. Arguments are
        sent as given: the caller quotes and encodes them.

        Standard: RFC 9051 section 5.5 (multiple commands in progress).

        Raises:
            LibraryError: not authenticated, too many commands, or completions out of order.
        """
        return await _pipeline(self._protocol, commands)

    async def uid_store(self, uid_set: str, change: str, flags: str) -> Reply:
        """``UID STORE uid_set change flags``, e.g. ``+FLAGS.SILENT (\\Deleted)``."""
        return await _run(self._protocol.store(uid_set, change, flags, by_uid=True))

    async def uid_expunge(self, uid_set: str) -> Reply:
        """``UID EXPUNGE uid_set`` (RFC 4315 section 2.1)."""
        return await _run(self._protocol.expunge(uid_set, by_uid=True))

    async def expunge(self) -> Reply:
        """EXPUNGE (every ``\\Deleted`` message of the selected mailbox)."""
        return await _run(self._protocol.expunge())

    async def append(self, raw: bytes, mailbox: str, flag_list: str | None, date: str | None) -> Reply:
        """APPEND ``raw`` as a synchronising literal; ``date`` already formatted and quoted."""
        return await _run(self._protocol.append(raw, mailbox, flag_list, date, timeout=None))

    async def logout(self) -> Reply:
        """LOGOUT."""
        return await _run(self._protocol.logout())

    def start_idle(self) -> IdleRound:
        """Send IDLE now and return the round to drive (see :class:`IdleRound`)."""
        return IdleRound(self._protocol)
