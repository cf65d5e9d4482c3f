"""The patched IMAP protocol's buffered reads (``asyncio.BufferedProtocol``): a shared read buffer, and
long literals read straight into a buffer of their announced size, give exactly what the stock
aioimaplib protocol makes of the same bytes, however the reads are cut."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aioimaplib

from maild.protocols.imap import client as imap_module
from maild.protocols.imap import reading as imap_reading
from tests.faults.test_imap_library import FakeTransport, fetch, run_command, shape

BIG = random.Random(7).randbytes(3 * imap_reading.DIRECT_LITERAL_OCTETS + 11)
EDGE = b"x" * (imap_reading.DIRECT_LITERAL_OCTETS + 5) + b")\r\n* 9 FETCH (\r\n"  # text-like octets inside
LARGE_STREAM = (
    b"* 1 FETCH (UID 11 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(BIG)
    + BIG
    + b")\r\n* 2 FETCH (UID 12 BODY[] {%d}\r\n" % len(EDGE)
    + EDGE
    + b' FLAGS () INTERNALDATE " 7-Jul-2026 10:00:00 +0200")\r\n'
    + b"* 3 FETCH (UID 13 BODY[] {3}\r\nabc)\r\n"
    + b"TAG OK Fetch completed.\r\n"
)


def read_sizes(stream: bytes, rnd: random.Random) -> list[int]:
    """Cuts like a socket's reads: mostly large, some tiny, some right around a literal's edges."""
    length = len(stream.replace(b"TAG", b"XXXX0"))
    cuts = {rnd.randrange(1, length) for _ in range(rnd.randint(1, 12))}
    body_start = stream.index(BIG)
    cuts |= {body_start + d for d in (0, 1, 100, imap_reading.DIRECT_LITERAL_OCTETS) if rnd.random() < 0.5}
    return sorted(c for c in cuts if 0 < c < length)


async def test_large_literals_read_directly_equal_the_stock_protocol_at_random_cuts() -> None:
    """Literals longer than DIRECT_LITERAL_OCTETS, cut at random and at their edges, come out of the
    buffered reads octet for octet as the stock protocol's data_received makes them."""
    rnd = random.Random(20261207)
    whole, _ = await run_command(aioimaplib.IMAP4ClientProtocol, fetch, LARGE_STREAM, [])
    assert shape(whole)[0] == "OK"
    assert [bytes(line) for line in whole.lines if isinstance(line, bytearray)] == [BIG, EDGE, b"abc"]
    for _ in range(60):
        cuts = read_sizes(LARGE_STREAM, rnd)
        fast, _ = await run_command(imap_module._FastProtocol, fetch, LARGE_STREAM, cuts)
        assert shape(fast) == shape(whole), f"cuts {cuts}"


async def test_a_long_literal_is_read_into_its_own_buffer_with_no_copy_between() -> None:
    """Once a read ends inside a long literal, the next read goes straight into the literal's buffer
    (of its announced size, filled in place), which is the very object handed to the command."""
    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None)
    protocol.connection_made(FakeTransport())
    protocol.state = "SELECTED"
    handed: list[list[Any]] = []
    streaming = imap_module.StreamingFetch(protocol, "11", "(UID BODY.PEEK[])", handed.append)
    task = asyncio.ensure_future(streaming.run())
    for _ in range(3):
        await asyncio.sleep(0)
    head = b"* 1 FETCH (UID 11 BODY[] {%d}\r\n" % len(BIG)
    first = head + BIG[:1000]
    shared = protocol.get_buffer(-1)
    shared[: len(first)] = first
    protocol.buffer_updated(len(first))

    direct = protocol.get_buffer(-1)
    assert len(direct) == len(BIG) - 1000  # exactly what the literal still owes
    assert direct.obj is not shared.obj
    direct[:] = BIG[1000:]
    literal = direct.obj
    del direct
    protocol.buffer_updated(len(BIG) - 1000)
    assert protocol.received_octets == len(head) + len(BIG)

    rest = b")\r\n" + protocol.tagpre.encode() + b"0 OK done\r\n"
    buffer = protocol.get_buffer(-1)
    assert buffer.obj is shared.obj  # back to the shared read buffer after the literal
    buffer[: len(rest)] = rest
    protocol.buffer_updated(len(rest))
    response = await asyncio.wait_for(task, 1)
    assert response.result == "OK"
    [parts] = handed
    assert parts[1] is literal
    assert bytes(parts[1]) == BIG


async def test_a_literal_collected_elsewhere_is_not_read_directly() -> None:
    """A command that collects its literal in another object (as the spool's hook does) keeps getting
    it piece by piece through the shared read buffer."""

    class Collector(bytearray):
        """Not a plain bytearray: the protocol must not replace it."""

    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None)
    protocol.connection_made(FakeTransport())
    protocol.state = "SELECTED"
    task = asyncio.ensure_future(fetch(protocol))
    for _ in range(3):
        await asyncio.sleep(0)
    command = protocol.pending_async_commands["FETCH"]
    original = command.begin_literal_data

    def begin(expected_size: int, literal_data: bytes = b"") -> Any:
        command._resp_literal_data = Collector()
        return original(expected_size, literal_data)

    command.begin_literal_data = begin
    first = b"* 1 FETCH (UID 11 BODY[] {%d}\r\n" % len(BIG) + BIG[:10]
    shared = protocol.get_buffer(-1)
    shared[: len(first)] = first
    protocol.buffer_updated(len(first))
    assert protocol.get_buffer(-1).obj is shared.obj
    rest = BIG[10:] + b")\r\n" + protocol.tagpre.encode() + b"0 OK done\r\n"
    for start in range(0, len(rest), len(shared)):
        piece = rest[start : start + len(shared)]
        shared[: len(piece)] = piece
        protocol.buffer_updated(len(piece))
    response = await asyncio.wait_for(task, 1)
    literals = [line for line in response.lines if isinstance(line, bytearray)]
    assert [type(line) for line in literals] == [Collector]
    assert bytes(literals[0]) == BIG


async def test_two_connections_reading_in_turns_through_the_shared_buffer_keep_their_own_data() -> None:
    """Two connections of one event loop read alternately, piece by piece, through the one read
    buffer: each response comes out as the stock protocol makes it, nothing of one in the other."""
    from tests.faults.test_imap_library import feed

    whole, _ = await run_command(aioimaplib.IMAP4ClientProtocol, fetch, LARGE_STREAM, [])
    loop = asyncio.get_running_loop()
    protocols, tasks, streams = [], [], []
    for _ in range(2):
        protocol = imap_module._FastProtocol(loop, None)
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.state = "SELECTED"
        tasks.append(asyncio.ensure_future(fetch(protocol)))
        protocols.append(protocol)
        streams.append(transport)
    for _ in range(3):
        await asyncio.sleep(0)
    data = [LARGE_STREAM.replace(b"TAG", bytes(transport.written.split(b" ", 1)[0])) for transport in streams]
    data[1] = data[1].replace(b"Fetch completed.", b"Fetch done here.")
    rnd = random.Random(5)
    offsets = [0, 0]
    while offsets != [len(data[0]), len(data[1])]:
        which = rnd.randrange(2)
        start = offsets[which]
        end = min(len(data[which]), start + rnd.randint(1, 100_000))
        feed(protocols[which], data[which][start:end])
        offsets[which] = end
    first, second = [await asyncio.wait_for(task, 2) for task in tasks]
    assert shape(first) == shape(whole)
    assert shape(second)[1][:-1] == shape(whole)[1][:-1]
    assert shape(second)[1][-1] == ("bytes", b"Fetch done here.")


PAD_LITERAL_OCTETS = 8 * 1024
"""Literal size of the padding responses: below DIRECT_LITERAL_OCTETS, so read through the buffer."""


def padded(tail: bytes, edge_at: int) -> bytes:
    """Small FETCH responses filling the first read of READ_BUFFER_OCTETS octets up to ``edge_at``
    octets into ``tail``, then the rest of ``tail``: the shared buffer's end falls there."""
    before = imap_reading.READ_BUFFER_OCTETS - edge_at
    out = bytearray()
    number = 100
    while before - len(out) > 2 * PAD_LITERAL_OCTETS:
        out += b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (number, number, PAD_LITERAL_OCTETS)
        out += bytes([65 + number % 26]) * PAD_LITERAL_OCTETS + b")\r\n"
        number += 1
    head = b"* %d FETCH (UID %d BODY[] {" % (number, number)
    room = before - len(out) - len(head) - len(b"}\r\n)\r\n")  # the size's digits and the literal
    size = next(room - d for d in range(1, 8) if len(str(room - d)) == d)
    filler = head + b"%d}\r\n" % size + b"z" * size + b")\r\n"
    out += filler
    assert len(out) == before, (len(out), before)
    return bytes(out) + tail


def tail_stream(literal: bytes) -> bytes:
    """One response with ``literal`` and items after it, then the tagged completion."""
    return (
        b"* 900 FETCH (UID 1900 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(literal)
        + literal
        + b' INTERNALDATE " 7-Jul-2026 10:00:00 +0200")\r\nTAG OK Fetch completed.\r\n'
    )


async def test_the_shared_buffers_end_inside_a_line_or_a_literal_equals_the_stock_protocol() -> None:
    """Reads of exactly READ_BUFFER_OCTETS (the kernel filling the shared buffer), each carrying dozens
    of responses and then the start of the next: wherever the buffer's end falls (inside the response
    line, inside the literal's announcement, between CR and LF, at the literal's first octet, inside a
    short or a long literal, on the edge of DIRECT_LITERAL_OCTETS still owed), the responses come out
    octet for octet as the stock protocol makes them of the whole stream."""
    short = bytes(range(256)) * 40 + b"\r\n)\r\n"  # 10 KiB: read through the buffer
    long = random.Random(11).randbytes(2 * imap_reading.DIRECT_LITERAL_OCTETS + 5)  # read directly
    for literal in (short, long):
        tail = tail_stream(literal)
        header = tail.index(b"\r\n") + 2
        edges = {*range(header + 3), header + 100, len(literal) // 2 + header}
        if literal is long:
            owed_edge = header + len(literal) - imap_reading.DIRECT_LITERAL_OCTETS
            edges |= {owed_edge - 1, owed_edge, owed_edge + 1}
        for edge_at in sorted(edges):
            stream = padded(tail, edge_at)
            whole, _ = await run_command(aioimaplib.IMAP4ClientProtocol, fetch, stream, [])
            assert whole.result == "OK"
            fast, _ = await run_command(imap_module._FastProtocol, fetch, stream, [])
            assert shape(fast) == shape(whole), f"buffer's end {edge_at} octets into the last response"
            assert bytes(fast.lines[-3]) == literal
