"""COMPRESS=DEFLATE (RFC 4978) framing: raw DEFLATE in both directions, inflation in bounded pieces.

No I/O of its own and no aioimaplib: :mod:`maild.protocols.imap.protocol` wraps the connection's
transport in a :class:`DeflatingTransport` and feeds what arrives through an :class:`Inflater`,
then through the same read limits as uncompressed data.

May import: zlib, :mod:`maild.errors`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from maild.errors import ProtocolError

__all__ = ["DEFLATE_LEVEL", "INFLATE_PIECE_OCTETS", "DeflatingTransport", "Inflater"]

#: Most octets one ``decompress`` call produces; the rest of a received chunk waits in the inflater
#: (``unconsumed_tail``) until the piece went through the caller's checks. A hostile stream (a "zip
#: bomb": 1 KiB can inflate to about 1 MiB) therefore never holds more inflated data at once than
#: one piece plus what the caller's limits allow.
INFLATE_PIECE_OCTETS = 256 * 1024
#: zlib level of what maild sends compressed (commands, and APPEND bodies when moving a mailbox).
DEFLATE_LEVEL = 6


class DeflatingTransport:
    """A transport whose writes are compressed: raw DEFLATE, a sync flush after each write.

    RFC 4978 section 3 (no zlib header, windowBits -15); ``Z_SYNC_FLUSH`` puts each command on the
    wire at once. Everything else (``abort``, ``pause_reading``, ``get_extra_info``, ...) goes to
    the wrapped transport.

    Args:
        inner: the asyncio transport to wrap.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Compress ``data`` and write it, flushed."""
        self._inner.write(self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH))

    def writelines(self, lines: Any) -> None:
        """Write the concatenation of ``lines`` (one flush)."""
        self.write(b"".join(lines))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Inflater:
    """Inflates a raw DEFLATE stream (RFC 4978) chunk by chunk, in pieces of at most ``piece_octets``.

    Args:
        piece_octets: the most octets one piece holds (default :data:`INFLATE_PIECE_OCTETS`).
    """

    def __init__(self, piece_octets: int = INFLATE_PIECE_OCTETS) -> None:
        self._inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        self._piece_octets = piece_octets
        self.inflated_octets = 0
        """Octets produced so far."""

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The plain octets of received ``data``, piece by piece; the next piece is inflated only
        when the caller asks for it (stop iterating to stop inflating).

        Raises:
            ProtocolError: ``data`` breaks the DEFLATE format (RFC 4978 section 3).
        """
        inflater = self._inflater
        pending = data
        while pending:
            try:
                piece = inflater.decompress(pending, self._piece_octets)
            except zlib.error as exc:
                raise ProtocolError(
                    f"server sent a broken DEFLATE stream ({exc})", standard="RFC 4978 section 3"
                ) from None
            pending = inflater.unconsumed_tail
            if piece:
                self.inflated_octets += len(piece)
                yield piece
