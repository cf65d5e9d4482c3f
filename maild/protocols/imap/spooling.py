"""A large ``BODY[]`` literal written to the spool as it arrives (:mod:`maild.spool`), never held whole.

aioimaplib collects a literal's octets in the command's ``_resp_literal_data`` (``extend`` per
received chunk, ``len`` to see how many are still owed) and hands the collected object to
``append_to_resp`` when the count is reached. The streaming FETCH command
(:class:`~maild.protocols.imap.commands._StreamingFetchCommand`) puts a :class:`SpoolingLiteral`
there instead for a literal of at least the spool's threshold: it writes the octets to a spool file
in parts of about :data:`~maild.spool.SPOOL_PART_OCTETS` (hashing them as they go), and at the end
becomes a :class:`~maild.protocols.imap.fetch.SpooledLiteral` marker that the FETCH assembler
passes through to the message's body (see there).

The writes run on the event loop, inside ``data_received``: one ``write(2)`` of at most a part into
the page cache of a private file (no ``fsync``; measured in docs/performance.md, "Session 7: the
spool"), as the receive buffer's own copies did before.

When the spool cannot take the message (:class:`~maild.spool.SpoolFull`) the rest of the literal
is still read and dropped, and the marker carries the reason: that message fails this cycle.
"""

from __future__ import annotations

from maild.protocols.imap.fetch import SpooledLiteral
from maild.spool import SPOOL_FAILURE_PREFIX, SPOOL_PART_OCTETS, Spool, SpoolFull, SpoolWriter

_DIRECT_WRITE_OCTETS = 64 * 2**10
"""A received chunk of at least this many octets goes to the file as it is (no copy into a part)."""


class SpoolingLiteral:
    """Stands in for aioimaplib's literal buffer of one large literal (``extend``, ``len``).

    Args:
        spool: where the octets go.
        size_octets: the literal's announced size.
    """

    def __init__(self, spool: Spool, size_octets: int) -> None:
        self._spool = spool
        self._size = size_octets
        self._received = 0
        self._pending = bytearray()
        self._writer: SpoolWriter | None = None
        self._error: str | None = None

    def __len__(self) -> int:
        """Octets received so far (what aioimaplib compares with the announced size)."""
        return self._received

    def extend(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next received octets (aioimaplib never passes more than are owed)."""
        self._received += len(data)
        if self._error is not None:
            return  # dropped: the spool failed for this message
        if not self._pending and len(data) >= _DIRECT_WRITE_OCTETS:
            self._write(data)  # a large received chunk: written as it is, not copied first
            return
        self._pending += data
        if len(self._pending) >= SPOOL_PART_OCTETS:
            self._flush()

    def finish(self) -> SpooledLiteral:
        """The marker for the assembler: the spooled body, or why it could not be spooled."""
        self._flush()
        if self._error is not None or self._writer is None:
            return SpooledLiteral(self._size, None, self._error or "empty spooled literal")
        writer, self._writer = self._writer, None
        return SpooledLiteral(self._size, writer.finish(), None)

    def abort(self) -> None:
        """Close the file of a literal that will not complete."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _flush(self) -> None:
        if self._pending:
            self._write(self._pending)
            self._pending = bytearray()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            return
        try:
            if self._writer is None:
                self._writer = self._spool.writer()
            self._writer.write(data)
        except SpoolFull as exc:
            self._writer = None
            self._error = f"{SPOOL_FAILURE_PREFIX}{exc}"
