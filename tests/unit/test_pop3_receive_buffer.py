"""The POP3 decoder's own receive buffer (fill mark, ``recv_into``) and the pool that lends it.

A reused buffer holds a previous reply's octets beyond the fill mark: these tests make those octets
as misleading as possible (terminators, stuffed dots, status lines) and check that nothing of them
is ever found, handed out or counted (RFC 1939 section 3).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.errors import ProtocolError
from maild.protocols.pop3 import decoder as pop3_decoder
from maild.protocols.pop3 import spooling
from maild.protocols.pop3.buffers import BufferPool
from maild.protocols.pop3.decoder import ReplyDecoder
from maild.protocols.pop3.wire import Reply
from maild.spool import LenientSpoolWriter, Spool
from tests.unit.test_fuzz import body_lines, stuffed

#: What a reused buffer holds beyond the fill mark: all the octets a decoder looks for.
DIRT = b"\r\n.\r\n+OK dirt\r\n..x\r\n.\r\n" * 4096


def dirty(octets: int) -> bytearray:
    """A buffer of ``octets`` octets full of terminators, stuffed lines and status lines."""
    return bytearray((DIRT * (octets // len(DIRT) + 1))[:octets])


def reader(stream: bytes, sizes: list[int]) -> Callable[[memoryview], int]:
    """A ``recv_into`` over ``stream`` whose successive calls return at most ``sizes[i]`` octets
    (then the rest in one read), 0 at its end."""
    pos = 0
    calls = 0

    def recv_into(view: memoryview) -> int:
        nonlocal pos, calls
        limit = sizes[calls] if calls < len(sizes) else len(stream)
        calls += 1
        n = min(len(view), max(1, limit), len(stream) - pos)
        view[:n] = stream[pos : pos + n]
        pos += n
        return n

    return recv_into


def receive_all(
    decoder: ReplyDecoder, stream: bytes, count: int, sizes: list[int], read_octets: int = 7
) -> list[Reply]:
    """Read ``stream`` through :meth:`ReplyDecoder.receive_into`, taking ``count`` multi-line replies."""
    recv_into = reader(stream, sizes)
    replies: list[Reply] = []
    while len(replies) < count:
        reply = decoder.next_reply(multiline=True)
        if reply is not None:
            replies.append(reply)
            continue
        assert decoder.receive_into(recv_into, read_octets), "the stream ended before its replies"
    return replies


def test_a_terminator_cut_at_every_read_edge_into_a_dirty_buffer_decodes_octet_exact() -> None:
    """A stuffed body and its terminator cut at every position between two reads into a reused
    buffer full of terminators beyond the fill mark: the same bodies as in one piece, and nothing
    of the dirt."""
    body = b".first\r\nmiddle.\r\n.\r\n..two\r\nlast\r\n"
    first, second = stuffed([b".first", b"middle.", b".", b"..two", b"last"]), stuffed([b"next"])
    assert first[0] == body
    stream = first[1] + second[1]
    for edge in range(1, len(stream)):
        decoder = ReplyDecoder()
        decoder.use_buffer(dirty(len(stream) + 64))
        replies = receive_all(decoder, stream, 2, [edge], read_octets=len(stream))
        assert [r.body for r in replies] == [body, b"next\r\n"]
        assert decoder.buffered_octets == 0


def test_a_reply_ending_exactly_at_the_end_of_the_buffer_then_the_next_read_makes_room() -> None:
    """A reply that fills the buffer to its last octet decodes; the next read moves what waits to
    the front (or grows the buffer) and the following reply decodes too."""
    one = stuffed([b"exactly", b".dotted"])[1]
    two = stuffed([b"after"])[1]
    decoder = ReplyDecoder()
    decoder.use_buffer(dirty(len(one)))
    replies = receive_all(decoder, one + two, 2, [len(one), 3, 100], read_octets=len(one))
    assert [r.body for r in replies] == [b"exactly\r\n.dotted\r\n", b"after\r\n"]
    assert decoder.buffer_octets >= len(one)


def test_what_waits_moves_to_the_front_instead_of_growing_the_buffer() -> None:
    """Octets of the next reply left behind a handed-out reply are moved to the front of the
    buffer when a read needs the room: the buffer does not grow."""
    one, two = stuffed([b"a" * 50])[1], stuffed([b"b" * 50])[1]
    decoder = ReplyDecoder()
    decoder.use_buffer(dirty(len(one) + 20))
    decoder.feed(one + two[:20])
    assert decoder.next_reply(multiline=True) is not None
    assert decoder.buffered_octets == 20
    decoder.feed(two[20:])  # needs the room the first reply had
    assert decoder.buffer_octets == len(one) + 20
    reply = decoder.next_reply(multiline=True)
    assert reply is not None
    assert reply.body == b"b" * 50 + b"\r\n"


def test_a_reused_buffer_never_leaks_the_previous_messages_octets_into_the_next() -> None:
    """A long message decoded in a buffer, which is then lent to another decoder: a shorter message
    without its terminator yet is not complete (the old terminator beyond the fill mark is not
    seen), and once complete it holds only its own octets."""
    long_body = (b"secret line of the first message\r\n" * 200) + b"\r\n"
    first = ReplyDecoder()
    first.feed(b"+OK\r\n" + long_body + b".\r\n")
    assert first.next_reply(multiline=True) == Reply(first_status(), long_body)
    buffer = first.lend_buffer()
    assert first.buffer_octets == 0
    assert len(buffer) >= len(long_body)
    second = ReplyDecoder()
    second.use_buffer(buffer)
    second.feed(b"+OK\r\nshort\r\n")
    assert second.next_reply(multiline=True) is None
    assert second.buffered_octets == len(b"+OK\r\nshort\r\n")
    parts: list[bytes] = []
    assert second.take_body_part(lambda view: parts.append(bytes(view)))
    assert parts == [b"short\r\n"]
    second.feed(b".\r\n")
    reply = second.next_reply(multiline=True)
    assert reply is not None
    assert reply.body == b""
    assert b"secret" not in b"".join(parts)


def first_status() -> object:
    """The status line of ``+OK`` without text."""
    decoder = ReplyDecoder()
    decoder.feed(b"+OK\r\n")
    reply = decoder.next_reply(multiline=False)
    assert reply is not None
    return reply.status


def test_a_status_line_error_shows_only_the_current_octets() -> None:
    """An over-long status line in a reused buffer: the error's line is this reply's, not the dirt."""
    decoder = ReplyDecoder(max_status_line_octets=16)
    decoder.use_buffer(dirty(4096))
    decoder.feed(b"+OK this status line is far too long")
    with pytest.raises(ProtocolError) as caught:
        decoder.next_reply(multiline=True)
    assert "dirt" not in str(caught.value)
    assert "far too long" in str(caught.value)


def test_lending_the_buffer_keeps_what_waits() -> None:
    """Lending the buffer between receives keeps the start of the next reply (pipelined RETRs)."""
    one, two = stuffed([b"first"])[1], stuffed([b"second"])[1]
    decoder = ReplyDecoder()
    decoder.use_buffer(dirty(256))
    decoder.feed(one + two[:9])
    assert decoder.next_reply(multiline=True) is not None
    lent = decoder.lend_buffer()
    assert decoder.buffered_octets == 9
    decoder.use_buffer(dirty(len(lent)))
    decoder.feed(two[9:])
    reply = decoder.next_reply(multiline=True)
    assert reply is not None
    assert reply.body == b"second\r\n"


@given(
    st.lists(body_lines, min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=64), max_size=16),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=1, max_value=300),
    st.integers(min_value=0),
)
def test_pop3_replies_received_into_reused_buffers_decode_as_fed(
    messages: list[list[bytes]], sizes: list[int], capacity: int, read_octets: int, seed: int
) -> None:
    """Pipelined replies read through ``receive_into`` at any read sizes, into a dirty reused buffer
    of any size, lent and replaced between replies, with body parts taken at random: the same
    bodies as fed in one piece."""
    pairs = [stuffed(lines) for lines in messages]
    stream = b"".join(wire for _, wire in pairs)
    rng = random.Random(seed)
    decoder = ReplyDecoder()
    decoder.use_buffer(dirty(capacity))
    recv_into = reader(stream, sizes)
    bodies: list[bytes] = []
    taken = bytearray()
    while len(bodies) < len(pairs):
        reply = decoder.next_reply(multiline=True)
        if reply is not None:
            assert reply.body is not None
            bodies.append(bytes(taken) + reply.body)
            taken.clear()
            if rng.random() < 0.5:
                decoder.lend_buffer()
                decoder.use_buffer(dirty(rng.randrange(0, 200)))
            continue
        if rng.random() < 0.3:
            decoder.take_body_part(lambda view: taken.extend(view))
        assert decoder.receive_into(recv_into, read_octets)
    assert bodies == [body for body, _ in pairs]
    assert decoder.buffered_octets == 0


#: Lines dense with dots, many of them starting with "." (stuffed on the wire) or being ".".
dotted_lines = st.lists(
    st.lists(st.sampled_from([b".", b"..", b"...", b"a.b", b".x.", b"x.", b"", b"q"]), max_size=12).map(
        b"".join
    ),
    min_size=1,
    max_size=30,
)


@given(
    st.lists(dotted_lines, min_size=1, max_size=3),
    st.lists(st.integers(min_value=1, max_value=64), max_size=16),
    st.integers(min_value=1, max_value=300),
    st.integers(min_value=0),
)
def test_dot_dense_replies_decode_octet_exact_through_small_dense_windows(
    messages: list[list[bytes]], sizes: list[int], read_octets: int, seed: int
) -> None:
    """Bodies dense with dots, read at any sizes with body parts taken at random, while the line-dot
    search falls back to its three-octet windows after 2 misses over windows of 8 octets (then 16,
    32, ...): every body comes out octet-exact, in order, none merged or cut (RFC 1939 section 3)."""
    pairs = [stuffed(lines) for lines in messages]
    stream = b"".join(wire for _, wire in pairs)
    rng = random.Random(seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pop3_decoder, "DENSE_DOTS_MISSES", 2)
        patch.setattr(pop3_decoder, "DENSE_DOTS_WINDOW_OCTETS", 8)
        decoder = ReplyDecoder()
        decoder.use_buffer(dirty(rng.randrange(0, 200)))
        recv_into = reader(stream, sizes)
        bodies: list[bytes] = []
        taken = bytearray()
        while len(bodies) < len(pairs):
            reply = decoder.next_reply(multiline=True)
            if reply is not None:
                assert reply.body is not None
                bodies.append(bytes(taken) + reply.body)
                taken.clear()
                continue
            if rng.random() < 0.3:
                decoder.take_body_part(lambda view: taken.extend(view))
            assert decoder.receive_into(recv_into, read_octets)
    assert bodies == [body for body, _ in pairs]
    assert decoder.buffered_octets == 0


def test_the_pool_keeps_a_bounded_number_of_buffers_of_a_bounded_size() -> None:
    """At most ``count`` idle buffers, none larger than ``max_octets`` nor empty; taken most
    recently given first; drained to nothing."""
    pool = BufferPool(2, 1000)
    assert pool.take() == bytearray()
    small, other, third = bytearray(10), bytearray(20), bytearray(30)
    pool.give(small)
    pool.give(other)
    pool.give(third)  # full: dropped
    pool.give(bytearray(1001))  # too large: dropped
    pool.give(bytearray())  # empty: nothing to keep
    assert pool.held_octets == 30
    assert pool.take() is other
    assert pool.take() is small
    assert pool.take() == bytearray()
    pool.give(third)
    assert pool.drain() == 30
    assert pool.held_octets == 0


def test_a_spooled_body_goes_to_the_writer_in_small_pieces_and_arrives_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 MiB stuffed body with MIME boundaries everywhere, read in 256 KiB reads: the spool writer
    is given pieces of at most SPOOL_WRITE_OCTETS (its mark scan copies each piece: small copies
    reuse heap memory), and the spooled file, its digest and its kept marks are those of the body
    written in one piece."""
    sizes: list[int] = []

    class Recording(LenientSpoolWriter):
        def write(self, part: bytes | bytearray | memoryview) -> None:
            sizes.append(len(part))
            super().write(part)

    monkeypatch.setattr(spooling, "LenientSpoolWriter", Recording)
    line = b"--boundary-" + b"x" * 40 + b"-\r\n.dot\r\n"
    body = line * (3 * 2**20 // len(line))
    spool = Spool(tmp_path, statvfs=lambda fd: os.statvfs(tmp_path))
    spooler = spooling.BodySpooler(spool)
    decoder = ReplyDecoder()
    recv_into = reader(stuffed([*body.split(b"\r\n")[:-1]])[1], [])
    while (reply := decoder.next_reply(multiline=True)) is None:
        assert decoder.receive_into(recv_into, 256 * 1024)
        spooler.after_feed(decoder)
    done = spooler.finish(reply)
    assert done.spooled is not None
    assert max(sizes[:-1]) <= spooling.SPOOL_WRITE_OCTETS
    assert sum(sizes) == len(body)
    whole = spool.writer()
    whole.write(body)
    reference = whole.finish()
    assert done.spooled.read_all() == body
    assert done.spooled.sha256 == reference.sha256
    assert done.spooled.kept == reference.kept
    done.spooled.close()
    reference.close()
