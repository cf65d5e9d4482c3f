"""Where each read from an IMAP connection's socket goes (:class:`asyncio.BufferedProtocol`): one
reused read buffer per thread, or straight into the buffer of a long literal still owed.

:class:`DirectReads` is the part of the patched protocol (:class:`~.protocol._FastProtocol`) that
asyncio calls for every read (``get_buffer``, ``buffer_updated``). A read into the shared buffer is
handed to the protocol's line framing (``_received``, :mod:`.protocol`), which copies out what it
keeps before the next read; once a read ends inside a literal still owed at least
:data:`DIRECT_LITERAL_OCTETS`, the rest of that literal is read from the socket into its own buffer
(aioimaplib's ``bytearray`` of the announced size, or a :class:`DirectSink`'s parts: the spool's,
:mod:`.spooling`), with no copy in between, and handed to its command at its end as if it had been
collected piece by piece. Bounds: a read takes at most :data:`READ_BUFFER_OCTETS`; a literal's
buffer is its announced size, checked against :attr:`~.library.ReadLimits.literal_octets` by the
framing when it was announced (RFC 9051 section 4.3).

No aioimaplib here: the pending command is reached through the attributes the library's protocol
keeps (``current_command``, its ``_resp_literal_data``, ``_expected_size``, ``wait_literal_data``,
``append_literal_data``, ``_reset_timer``), pinned by ``tests/faults/test_imap_library.py``.

May import: threading, dataclasses, typing, :mod:`maild.protocols.imap.compress`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol, cast

from maild.protocols.imap.compress import Inflater

__all__ = ["DIRECT_LITERAL_OCTETS", "READ_BUFFER_OCTETS", "DirectReads", "DirectSink", "read_buffer"]

READ_BUFFER_OCTETS = 256 * 1024
"""Octets one read from the socket takes at most (asyncio's own reads are 256 KiB). The buffer is
one per thread, shared by every connection of its event loop: a read is handled, and what is kept of
it copied out, before the next read into it starts."""

DIRECT_LITERAL_OCTETS = 64 * 1024
"""A literal still owed at least this many octets when a read ends is read from the socket straight
into a buffer of its announced size (bounded by :attr:`ReadLimits.literal_octets`, checked when it
was announced), with no copy in between; a smaller rest comes through the shared read buffer together
with what follows it (one read instead of two)."""

_thread_buffers = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer (:data:`READ_BUFFER_OCTETS`), made on first use."""
    try:
        return _thread_buffers.view  # type: ignore[no-any-return]
    except AttributeError:
        _thread_buffers.view = memoryview(bytearray(READ_BUFFER_OCTETS))
        return _thread_buffers.view  # type: ignore[no-any-return]


@dataclass(slots=True)
class _DirectLiteral:
    """A literal being read straight into its own buffer (see :data:`DIRECT_LITERAL_OCTETS`)."""

    command: Any
    buffer: bytearray
    filled: int


class DirectSink(Protocol):
    """A literal collector the socket can read into itself (the spool's, :mod:`.spooling`): besides
    ``len`` (octets taken so far) it lends the free part of its current buffer and is told how many
    octets the read put there, so a large literal is not copied out of the shared read buffer."""

    def __len__(self) -> int:
        """Octets of the literal taken so far."""

    def receive_buffer(self, owed: int) -> memoryview:
        """Where the next read goes: at least 1 and at most ``owed`` octets (the literal's rest)."""

    def received_into(self, nbytes: int) -> None:
        """``nbytes`` octets were read into the last :meth:`receive_buffer` (never more than it was)."""


@dataclass(slots=True)
class _DirectSinkRead:
    """A literal being read straight into its collector's own buffers (a :class:`DirectSink`)."""

    command: Any
    sink: DirectSink


class DirectReads:
    """The reads of the patched protocol (:class:`asyncio.BufferedProtocol`'s two calls), mixed into
    :class:`~.protocol._FastProtocol`, which provides the attributes below and ``_received`` (the
    buffered path: line framing, inflation, the read limits)."""

    _direct: _DirectLiteral | _DirectSinkRead | None = None
    exceeded: str | None
    loop: Any
    last_received: float
    wire_octets: int
    received_octets: int
    current_command: Any
    _inflater: Inflater | None

    def _received(self, data: bytes | bytearray, size: int) -> None:
        """Handle the first ``size`` octets of a read through the shared buffer (the protocol's)."""
        raise NotImplementedError

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next read from the socket goes (:class:`asyncio.BufferedProtocol`): the rest of
        a literal read straight into its own buffer, else this thread's shared read buffer."""
        direct = self._direct
        if direct is None:
            return read_buffer()
        if isinstance(direct, _DirectSinkRead):
            return direct.sink.receive_buffer(direct.command._expected_size - len(direct.sink))
        return memoryview(direct.buffer)[direct.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` octets were read into the buffer :meth:`get_buffer` gave."""
        if self.exceeded is not None:
            return
        self.last_received = self.loop.time()
        self.wire_octets += nbytes
        direct = self._direct
        if direct is not None:
            if isinstance(direct, _DirectSinkRead):
                self._sink_received(direct, nbytes)
            else:
                self._literal_received(direct, nbytes)
            return
        self._received(cast(bytearray, read_buffer().obj), nbytes)
        self._read_literal_directly()

    def _read_literal_directly(self) -> None:
        """After a read: if a literal is still owed at least :data:`DIRECT_LITERAL_OCTETS` octets, read
        the rest straight into a buffer of its announced size.

        Only a literal collected in a plain ``bytearray`` (aioimaplib's own) or in a
        :class:`DirectSink` (the spool's: read into its own part buffers), on an uncompressed
        connection; a command that collects its literal in another object keeps receiving it in
        pieces.
        """
        cmd = self.current_command
        if cmd is None or self._inflater is not None or self.exceeded is not None:
            return
        if not cmd.wait_literal_data():
            return
        collected = cmd._resp_literal_data
        expected: int = cmd._expected_size
        if expected - len(collected) < DIRECT_LITERAL_OCTETS:
            return
        if hasattr(
            collected, "received_into"
        ):  # a DirectSink (not isinstance: a Protocol check costs ~10 us)
            self._direct = _DirectSinkRead(cmd, cast(DirectSink, collected))
            return
        if type(collected) is not bytearray:
            return
        buffer = bytearray(expected)  # within ReadLimits.literal_octets: checked at its announcement
        buffer[: len(collected)] = collected
        self._direct = _DirectLiteral(cmd, buffer, len(collected))
        cmd._resp_literal_data = bytearray()  # still owed: the command keeps waiting for data

    def _literal_received(self, direct: _DirectLiteral, nbytes: int) -> None:
        """``nbytes`` more octets of a literal read straight into its buffer; at its end, hand the
        literal to its command as if it had been collected piece by piece."""
        self.received_octets += nbytes
        direct.filled += nbytes
        cmd = direct.command
        if direct.filled < len(direct.buffer):
            cmd._reset_timer()
            return
        self._direct = None
        cmd._resp_literal_data = direct.buffer
        cmd.append_literal_data(b"")  # complete: appended to the response, the literal ends here

    def _sink_received(self, direct: _DirectSinkRead, nbytes: int) -> None:
        """``nbytes`` more octets of a literal read straight into its sink; at its end, hand the
        sink to its command as if it had been collected piece by piece."""
        self.received_octets += nbytes
        sink = direct.sink
        sink.received_into(nbytes)
        cmd = direct.command
        if len(sink) < cmd._expected_size:
            cmd._reset_timer()
            return
        self._direct = None
        cmd.append_literal_data(b"")  # complete: appended to the response, the literal ends here
