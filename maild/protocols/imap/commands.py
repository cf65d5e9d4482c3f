"""Commands aioimaplib 2.0.3 lacks or does badly, driven through maild's patched protocol.

* streaming FETCH (:class:`StreamingFetch`, RFC 9051 section 7.5.2): each FETCH response is handed
  to a sink as soon as it is complete instead of being kept until the tagged completion, and reading
  can be paused;
* STARTTLS (:func:`starttls`, RFC 9051 section 6.2.1), which aioimaplib lacks;
* AUTHENTICATE with continuation lines (:class:`Authentication`, RFC 9051 section 6.2.2; the library
  has only a one-shot XOAUTH2);
* IDLE rounds (:class:`IdleRound`, RFC 2177) bounded by the caller instead of the library's hanging
  helpers.

May import: asyncio, ssl, aioimaplib, :mod:`maild.errors`, :mod:`maild.protocols.imap.lex`,
:mod:`maild.protocols.imap.library`, :mod:`maild.protocols.imap.protocol`,
:mod:`maild.protocols.imap.fetch` (its types).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import aioimaplib

from maild.errors import ProtocolError
from maild.protocols.imap.fetch import PlainFields
from maild.protocols.imap.lex import Part, paren_depth
from maild.protocols.imap.library import LibraryError, Reply, _reply, _run
from maild.protocols.imap.protocol import (
    _FastFetchCommand,
    _FastProtocol,
)
from maild.protocols.imap.spooling import SpoolingLiteral
from maild.spool import Spool

__all__ = [
    "MAX_PENDING_CONTINUATIONS",
    "Authentication",
    "FetchSink",
    "IdleRound",
    "PlainFetchSink",
    "StreamingFetch",
    "starttls",
]


#: Receives one complete FETCH response: its text lines (bytes, without ``* ``) and literals
#: (bytearray) in arrival order, the shape :meth:`~.fetch.FetchAssembler.feed` reads.
#: Called from the transport's ``data_received``: it must return quickly and must not raise.
FetchSink: TypeAlias = Callable[[list[Part]], None]


#: Receives one complete FETCH response in the usual body shape, read by the client's framing
#: (:data:`~maild.protocols.imap.fetch_line.PLAIN_BODY_RESPONSE`): its fields, its first line without
#: ``* `` and the literal (:meth:`~.fetch.FetchAssembler.feed_plain`'s arguments). Called from the
#: transport's read callback like :data:`FetchSink`: it must return quickly and must not raise.
PlainFetchSink: TypeAlias = Callable[[PlainFields, bytes, Part], None]


def _nothing() -> None:
    """No flow control (a command made without a :class:`StreamingFetch`)."""


class _StreamingFetchCommand(_FastFetchCommand):
    """A FETCH that hands each complete FETCH response to a sink instead of keeping it.

    A response is complete when its depth returns to zero after a text line (after that the library
    routes no further line to this command except a new ``n FETCH (``), when the next ``n FETCH (``
    begins, or when the tagged completion arrives. Only the tagged completion stays in the library's
    ``Response.lines``; memory holds at most the response being read.

    Standard: RFC 9051 section 7.5.2 (one FETCH response per message, possibly several).
    """

    def __init__(
        self,
        tag: str,
        *args: Any,
        sink: FetchSink,
        prefix: str,
        loop: Any,
        spool: Spool | None = None,
        flow: tuple[Callable[[], None], Callable[[], None]] = (_nothing, _nothing),
    ) -> None:
        super().__init__(tag, *args, prefix=prefix, loop=loop, timeout=None)
        self._sink = sink
        self.plain_sink: PlainFetchSink | None = None
        """Where a response read by the protocol's fast path goes (:meth:`plain_head`); None: to
        :attr:`_sink` as parts, like every other response."""
        self._plain: PlainFields | None = None
        self._parts: list[Part] = []
        self._spool = spool
        self._flow = flow

    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        # a large literal goes to a spool file as it arrives (.spooling), not into a bytearray
        if self._spool is not None and expected_size >= self._spool.threshold_octets:
            self._resp_literal_data = SpoolingLiteral(self._spool, expected_size, self._loop, *self._flow)
        return cast(bytes, super().begin_literal_data(expected_size, literal_data))

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result != "Pending":  # the tagged completion, from Command.close()
            self._hand_over()
            aioimaplib.Command.append_to_resp(self, line, result)
            return
        if isinstance(line, SpoolingLiteral):
            line = line.finish()
        text = isinstance(line, bytes)
        if text:
            self._plain = None  # a line the fast path did not take: the response goes the generic way
            start = self.FETCH_MESSAGE_DATA_RE.match(line)
            if start:
                self._hand_over()
            self._depth = paren_depth(line, 0 if start else self._depth)
        self._parts.append(line)
        if text and self._depth <= 0:
            self._hand_over()

    def _reset_timer(self) -> None:
        """Nothing: this command has no timer of its own (made with ``timeout=None``; the caller
        bounds the silence, :meth:`~.connection.IMAPConnection.call`), so the library's cancel and
        re-arm of its placeholder handle after every literal piece is skipped."""

    def plain_head(self, head: bytes, fields: PlainFields) -> None:
        """The protocol's fast path read the first line of a response in the usual body shape
        (``head``, without ``* ``; ``fields``, its groups); its literal follows. The same state as
        :meth:`append_to_resp` leaves for that line (the depth is 1 in that shape), plus ``fields``
        for :meth:`plain_tail`."""
        self._hand_over()
        self._parts.append(head)
        self._depth = 1
        self._plain = fields

    @property
    def plain_open(self) -> bool:
        """Whether :meth:`plain_tail` may end the response now: a fast-path head and its literal
        complete, nothing else received since."""
        return self._plain is not None and len(self._parts) == 2 and not self.wait_literal_data()

    def plain_tail(self) -> None:
        """The ``)`` line ended a response begun by :meth:`plain_head` (:attr:`plain_open`): hand it
        over whole, to :attr:`plain_sink` (or as parts to the sink)."""
        fields, self._plain = self._plain, None
        head, literal = self._parts
        self._parts = []
        self._depth = 0
        self.held_octets = 0  # what the sink took is no longer the protocol's to count
        if fields is not None and self.plain_sink is not None:
            self.plain_sink(fields, head, literal)  # type: ignore[arg-type]  # the first part is text
        else:
            self._sink([head, literal, b")"])

    def _hand_over(self) -> None:
        self.held_octets = 0  # what the sink took is no longer the protocol's to count
        self._plain = None
        if self._parts:
            parts, self._parts = self._parts, []
            self._sink(parts)


class StreamingFetch:
    """One ``[UID] FETCH`` whose responses go to ``sink`` one by one while the command runs.

    aioimaplib keys pending async commands by name, so no other FETCH may run on the session until
    :meth:`run` has returned.

    Args:
        protocol: the session's protocol object (a :class:`_FastProtocol`).
        message_set: the sequence set, e.g. ``"1:2000,2005"``.
        items: the data items, e.g. ``"(UID FLAGS INTERNALDATE BODY.PEEK[])"``.
        sink: receives each complete FETCH response (see :data:`FetchSink`).
        by_uid: send ``UID FETCH`` (RFC 9051 section 6.4.9).
        spool: write literals of at least its threshold to spool files as they arrive
            (:mod:`.spooling`); None: every literal is held in memory.
        plain_sink: receives the responses in the usual body shape instead of ``sink``, read
            already (see :data:`PlainFetchSink`); None: ``sink`` gets every response.

    Raises:
        TypeError: ``protocol`` is not the patched protocol.
    """

    def __init__(
        self,
        protocol: Any,
        message_set: str,
        items: str,
        sink: FetchSink,
        *,
        by_uid: bool = True,
        spool: Spool | None = None,
        plain_sink: PlainFetchSink | None = None,
    ) -> None:
        if not isinstance(protocol, _FastProtocol):
            raise TypeError("streaming FETCH needs the patched aioimaplib protocol")
        self._protocol = protocol
        self._holds: set[str] = set()
        self._command = _StreamingFetchCommand(
            protocol.new_tag(),
            message_set,
            items,
            sink=sink,
            prefix="UID" if by_uid else "",
            loop=protocol.loop,
            spool=spool,
            flow=(lambda: self.pause_reading("spool"), lambda: self.resume_reading("spool")),
        )
        self._command.plain_sink = plain_sink

    async def run(self) -> Reply:
        """Send the command and wait for its tagged completion.

        Returns:
            The reply; its ``lines`` hold only the tagged completion text.

        Raises:
            LibraryError: the session is not in SELECTED state.
        """
        return await _run(self._protocol.execute(self._command))

    @property
    def completed(self) -> bool:
        """Whether the tagged completion has arrived (:meth:`run` returns at the next loop turn)."""
        return bool(self._command._event.is_set())

    def pause_reading(self, holder: str = "window") -> None:
        """Stop reading from the connection (TCP flow control then holds the server back) until every
        ``holder`` that paused it has resumed it: the retrieval's window of held messages
        (``"window"``) and a spooled literal's writer queue (``"spool"``, :mod:`.spooling`)."""
        first = not self._holds
        self._holds.add(holder)
        transport = self._protocol.transport
        if first and transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self, holder: str = "window") -> None:
        """End ``holder``'s pause (see :meth:`pause_reading`); reading resumes when no holder is left.
        Harmless when ``holder`` did not pause."""
        if holder not in self._holds:
            return
        self._holds.discard(holder)
        transport = self._protocol.transport
        if not self._holds and transport is not None and not transport.is_closing():
            transport.resume_reading()


async def starttls(protocol: Any, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Reply:
    """Send STARTTLS on a not-authenticated session and upgrade its transport to TLS.

    aioimaplib has no STARTTLS. This sends the command through the protocol object (``execute``,
    ``Command``, ``new_tag``), and after OK wraps ``protocol.transport`` with ``loop.start_tls()``.
    Capabilities must be read again afterwards (RFC 9051 section 6.2.1).

    Returns:
        The STARTTLS reply; the transport was upgraded only if its result is OK.

    Raises:
        ProtocolError: bytes followed the STARTTLS completion in plaintext (a response injection,
            RFC 9051 section 6.2.1).
        LibraryError: the library refused the command (wrong state).
        ssl.SSLError, OSError: the handshake failed (mapped by the caller).
    """
    reply = await _run(
        protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
    )
    if reply.result != "OK":
        return reply
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
    return reply


#: Continuation requests (``+`` lines) of one AUTHENTICATE held unanswered at most; more is a protocol
#: violation (a SASL exchange has one request per step, RFC 9051 section 6.2.2).
MAX_PENDING_CONTINUATIONS = 4


class _AuthenticateCommand(aioimaplib.Command):  # type: ignore[misc]
    """AUTHENTICATE whose continuation requests (``+ ...``) go to a queue instead of its response lines.

    The library routes a ``+`` line during a pending sync command to ``append_to_resp`` (with the
    ``+``); untagged lines arrive there without their ``* ``, so they never start with ``+``.
    """

    def __init__(self, tag: str, *args: str, loop: Any) -> None:
        super().__init__("AUTHENTICATE", tag, *args, loop=loop, timeout=None)
        self.continuations: asyncio.Queue[bytes] = asyncio.Queue(MAX_PENDING_CONTINUATIONS)
        self.overflow = False

    def __repr__(self) -> str:  # never the initial response (it holds the secret)
        return f"{self.tag} AUTHENTICATE"

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result == "Pending" and isinstance(line, bytes) and (line == b"+" or line.startswith(b"+ ")):
            if self.continuations.full():
                self.overflow = True  # a server flooding "+" lines: Authentication.next() fails
            else:
                self.continuations.put_nowait(bytes(line[2:]))
            return
        super().append_to_resp(line, result)


class Authentication:
    """One AUTHENTICATE command in flight (RFC 9051 section 6.2.2; SASL-IR, RFC 4959), step by step.

    The caller reads :meth:`next` (a continuation request's text, or the final :class:`Reply`) and
    answers each continuation with :meth:`send_line`; it bounds every wait itself. After an OK the
    library's state becomes authenticated, so that SELECT and the rest are accepted.

    Args:
        protocol: the session's protocol object, in the not-authenticated state.
        mechanism: the SASL mechanism name (``"XOAUTH2"``).
        initial: the base64 initial response for SASL-IR (a secret), or None.
    """

    def __init__(self, protocol: Any, mechanism: str, initial: bytes | None) -> None:
        self._protocol = protocol
        command = _AuthenticateCommand(protocol.new_tag(), mechanism, loop=protocol.loop)
        self._command = command
        line = f"{command.tag} AUTHENTICATE {mechanism}".encode("ascii")
        pipelinable = initial is not None
        if initial is not None:
            line += b" " + initial
        del initial

        async def run(line: bytes) -> Reply:
            # Not protocol.execute(): it logs and formats str(command), which would hold the secret.
            if protocol.state != aioimaplib.NONAUTH:
                raise LibraryError(f"AUTHENTICATE illegal in state {protocol.state}")
            if protocol.pending_sync_command is not None or protocol.pending_async_commands:
                raise LibraryError("AUTHENTICATE while another command is pending")
            transport = protocol.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("connection closed before AUTHENTICATE")
            protocol.pending_sync_command = command
            # Only a PLAIN initial response cannot draw a continuation request that a pipelined
            # line would then answer (RFC 4616, RFC 4959): only then do the follow-ups go along.
            if mechanism.upper() == "PLAIN" and pipelinable:
                line += aioimaplib.CRLF + protocol.follow_sign_in()
            else:
                line += aioimaplib.CRLF
                protocol.drop_follow_ups()
            transport.write(line)
            del line
            return await signed_in_reply(protocol, command)

        self._done: asyncio.Future[Reply] = asyncio.ensure_future(run(line))
        self._done.add_done_callback(_consume_outcome)
        del line

    async def next(self) -> bytes | Reply:
        """The next continuation request's text (base64, without ``+ ``) or the final reply.

        Raises:
            LibraryError: the library refused the command (wrong state).
        """
        queue = self._command.continuations
        if self._command.overflow:
            raise LibraryError(f"more than {MAX_PENDING_CONTINUATIONS} unanswered continuation requests")
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait((getter, self._done), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return self._done.result()

    def send_line(self, line: bytes) -> None:
        """Send one continuation response (``line`` plus CRLF; may hold a secret, never logged)."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed during AUTHENTICATE")
        transport.write(line + aioimaplib.CRLF)

    def cancel(self) -> None:
        """Stop waiting for the command (the connection is being discarded)."""
        self._done.cancel()


async def signed_in_reply(protocol: Any, command: Any) -> Reply:
    """Wait for the tagged completion of a sign-in command (LOGIN or AUTHENTICATE, already written)
    and, on OK, let the protocol send what was queued behind it (RFC 9051 sections 5.5, 6.2).

    Raises:
        LibraryError: the library failed the command (its text; the command line is never in it).
    """
    try:
        await command.wait()
    except aioimaplib.AioImapException as exc:
        raise LibraryError(f"{type(exc).__name__}: {exc}") from None
    reply = _reply(command.response)
    if reply.result == "OK":
        protocol.signed_in()
    return reply


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class IdleRound:
    """One IDLE command in flight (RFC 2177), driven step by step by the caller.

    aioimaplib's ``idle_start`` hangs forever when the server closes before its ``+`` (issue #110);
    here every step is a future the caller races against its own timeout and the connection loss.

    Attributes:
        command: resolves to the IDLE command's :class:`Reply` once the server ends it (after DONE),
            or raises :class:`LibraryError`.
    """

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        protocol._idle_event.clear()
        idle = aioimaplib.IdleCommand(protocol.new_tag(), protocol.idle_queue, loop=protocol.loop)
        self.command: asyncio.Future[Reply] = asyncio.ensure_future(_run(protocol.execute(idle)))
        self.command.add_done_callback(_consume_outcome)

    def continuation(self) -> asyncio.Future[None]:
        """A future resolved when the server's ``+`` continuation arrived; cancel it when not needed."""
        waiting: Awaitable[None] = self._protocol.wait_for_idle_response()
        return asyncio.ensure_future(waiting)

    def next_push(self) -> asyncio.Future[list[Part]]:
        """A future resolved with the next batch of pushed untagged parts; cancel it when not needed."""

        async def get() -> list[Part]:
            item = await self._protocol.idle_queue.get()
            return list(item) if isinstance(item, list) else []

        future = asyncio.ensure_future(get())
        future.add_done_callback(_consume_outcome)
        return future

    def drain(self) -> list[Part]:
        """The untagged parts pushed so far and not taken yet, in arrival order."""
        lines: list[Part] = []
        queue = self._protocol.idle_queue
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, list):
                lines.extend(item)
        return lines

    def send_done(self) -> None:
        """Send DONE (RFC 2177 section 3); the server then completes :attr:`command`."""
        self._protocol.idle_done()


# --------------------------------------------------------------------------------------------------
