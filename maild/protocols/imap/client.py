"""The aioimaplib protocol layer: the only module touching aioimaplib's internals.

What it adds to aioimaplib 2.0.3 (see ``DEPENDENCIES.md`` for the measurements behind each point):

* :class:`_TrackingProtocol` records when data last arrived (for the inactivity limit) and turns a
  refused greeting into a prompt connection loss;
* with exactly aioimaplib :data:`PATCHED_AIOIMAPLIB` a small subclass, :class:`_FastProtocol`, removes
  the library's hot spots (quadratic FETCH completion check, eager debug formatting of every received
  chunk, recursion per line);
* :class:`IMAPClient` builds the chosen protocol class (:data:`_PROTOCOL_CLASS`);
* streaming FETCH (:class:`StreamingFetch`, only on :class:`_FastProtocol`): each FETCH response is
  handed to a callback as soon as it is complete instead of being kept until the tagged completion,
  and reading can be paused for backpressure;
* STARTTLS, which aioimaplib lacks, in :func:`starttls`.

``tests/faults/imap_library_test.py`` pins the source of every library method relied on here.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import ssl
from collections.abc import Callable
from typing import Any, TypeAlias

import aioimaplib

from maild.errors import ProtocolError
from maild.protocols.imap.lex import Part

__all__ = [
    "AIOIMAPLIB_VERSION",
    "PATCHED_AIOIMAPLIB",
    "FetchSink",
    "IMAPClient",
    "StreamingFetch",
    "quiet_library_logger",
    "starttls",
    "streaming_supported",
]

#: The aioimaplib release whose internals :class:`_FastProtocol` and :func:`starttls` were written for.
PATCHED_AIOIMAPLIB = "2.0.3"
#: The installed aioimaplib release.
AIOIMAPLIB_VERSION = importlib.metadata.version("aioimaplib")


def quiet_library_logger() -> None:
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


#: Receives one complete FETCH response: its text lines (bytes, without ``* ``) and literals
#: (bytearray) in arrival order, the shape :func:`~maild.protocols.imap.fetch.parse_fetch` reads.
#: Called from the transport's ``data_received``: it must return quickly and must not raise.
FetchSink: TypeAlias = Callable[[list[Part]], None]


class _StreamingFetchCommand(_FastFetchCommand):
    """A FETCH that hands each complete FETCH response to a sink instead of keeping it.

    A response is complete when its parentheses balance after a text line (the library's own rule:
    after that it routes no further line to this command except a new ``n FETCH (``), when the next
    ``n FETCH (`` begins, or when the tagged completion arrives. Only the tagged completion stays in
    the library's ``Response.lines``; memory holds at most the response being read.

    Standard: RFC 9051 section 7.5.2 (one FETCH response per message, possibly several).
    """

    def __init__(self, tag: str, *args: Any, sink: FetchSink, prefix: str, loop: Any) -> None:
        super().__init__(tag, *args, prefix=prefix, loop=loop, timeout=None)
        self._sink = sink
        self._parts: list[Part] = []

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result != "Pending":  # the tagged completion, from Command.close()
            self._hand_over()
            aioimaplib.Command.append_to_resp(self, line, result)
            return
        text = isinstance(line, bytes)
        if text:
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._hand_over()
                self._open_parens, self._close_parens = line.count(b"("), line.count(b")")
            else:
                self._open_parens += line.count(b"(")
                self._close_parens += line.count(b")")
        self._parts.append(line)
        if text and self._open_parens == self._close_parens:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._parts:
            parts, self._parts = self._parts, []
            self._sink(parts)


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


def streaming_supported(protocol: Any) -> bool:
    """Whether :class:`StreamingFetch` works on ``protocol`` (the patched protocol only)."""
    return isinstance(protocol, _FastProtocol)


class StreamingFetch:
    """One ``[UID] FETCH`` whose responses go to ``sink`` one by one while the command runs.

    Only on :class:`_FastProtocol` (see :func:`streaming_supported`). aioimaplib keys pending async
    commands by name, so no other FETCH may run on the session until :meth:`run` has returned.

    Args:
        protocol: the session's protocol object.
        message_set: the sequence set, e.g. ``"1:2000,2005"``.
        items: the data items, e.g. ``"(UID FLAGS INTERNALDATE BODY.PEEK[])"``.
        sink: receives each complete FETCH response (see :data:`FetchSink`).
        by_uid: send ``UID FETCH`` (RFC 9051 section 6.4.9).
    """

    def __init__(
        self, protocol: Any, message_set: str, items: str, sink: FetchSink, *, by_uid: bool = True
    ) -> None:
        if not streaming_supported(protocol):
            raise TypeError("streaming FETCH needs the patched aioimaplib protocol")
        self._protocol = protocol
        self._command = _StreamingFetchCommand(
            protocol.new_tag(),
            message_set,
            items,
            sink=sink,
            prefix="UID" if by_uid else "",
            loop=protocol.loop,
        )

    async def run(self) -> Any:
        """Send the command and wait for its tagged completion.

        Returns:
            The library's Response; its ``lines`` hold only the tagged completion text.

        Raises:
            aioimaplib.Abort: the session is not in SELECTED state (mapped by the caller).
        """
        return await self._protocol.execute(self._command)

    @property
    def completed(self) -> bool:
        """Whether the tagged completion has arrived (:meth:`run` returns at the next loop turn)."""
        return bool(self._command._event.is_set())

    def pause_reading(self) -> None:
        """Stop reading from the connection (TCP flow control then holds the server back)."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the connection again after :meth:`pause_reading`; harmless when not paused."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


class IMAPClient(aioimaplib.IMAP4):  # type: ignore[misc]
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


async def starttls(protocol: Any, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Any:
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
