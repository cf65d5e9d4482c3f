"""COMPRESS=DEFLATE framing (RFC 4978): the inflater's bounded pieces and the deflating transport."""

from __future__ import annotations

import zlib

import pytest

from maild.errors import ProtocolError
from maild.protocols.imap.compress import DeflatingTransport, Inflater


def deflate(data: bytes) -> bytes:
    """``data`` as a raw DEFLATE stream with a sync flush, as a server sends it."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


class _Sink:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing


def test_pieces_are_bounded_and_complete() -> None:
    """A chunk that inflates to 100 times the piece size comes out in pieces of at most that size,
    together exactly the plain octets."""
    plain = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n" * 40_000
    inflater = Inflater(piece_octets=1000)
    pieces = list(inflater.pieces(deflate(plain)))
    assert max(len(p) for p in pieces) <= 1000
    assert b"".join(pieces) == plain
    assert inflater.inflated_octets == len(plain)


def test_any_split_of_the_stream_gives_the_same_octets() -> None:
    """The compressed stream cut at every byte boundary inflates to the same octets."""
    plain = b"A1 OK [CAPABILITY IMAP4rev1] done\r\n* 3 EXISTS\r\n"
    stream = deflate(plain)
    for cut in range(len(stream) + 1):
        inflater = Inflater(piece_octets=7)
        out = b"".join(inflater.pieces(stream[:cut])) + b"".join(inflater.pieces(stream[cut:]))
        assert out == plain


def test_stopping_early_inflates_no_more() -> None:
    """A caller that stops after the first piece has made the inflater produce only that piece."""
    inflater = Inflater(piece_octets=4096)
    for _piece in inflater.pieces(deflate(bytes(10 * 2**20))):
        break
    assert inflater.inflated_octets == 4096


def test_broken_stream_is_a_protocol_error() -> None:
    """Octets that are no DEFLATE stream raise ProtocolError citing RFC 4978."""
    with pytest.raises(ProtocolError, match="RFC 4978"):
        list(Inflater().pieces(b"\xff" * 32))


def test_deflating_transport_flushes_every_write_and_delegates_the_rest() -> None:
    """Each write is a complete flushed DEFLATE block the peer can inflate at once; other transport
    methods reach the wrapped transport."""
    sink = _Sink()
    transport = DeflatingTransport(sink)
    transport.write(b"A1 NOOP\r\n")
    transport.writelines([b"A2 ", b"LOGOUT\r\n"])
    inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
    assert inflater.decompress(sink.written[0]) == b"A1 NOOP\r\n"
    assert inflater.decompress(sink.written[1]) == b"A2 LOGOUT\r\n"
    sink.closing = True
    assert transport.is_closing()
