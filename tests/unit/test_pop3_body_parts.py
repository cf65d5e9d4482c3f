"""ReplyDecoder.take_body_part: a RETR body handed out in parts equals the body in one piece, for
every cut and every chunking, across stuffed lines and the terminator (RFC 1939 section 3)."""

from __future__ import annotations

import random

import pytest

from maild.errors import ProtocolError
from maild.protocols.pop3 import decoder as pop3_decoder
from maild.protocols.pop3 import wire
from maild.protocols.pop3.decoder import ReplyDecoder


def stuff(body: bytes) -> bytes:
    """Byte-stuff a CRLF body and add the terminator (RFC 1939 section 3)."""
    lines = body.split(b"\r\n")[:-1] if body else []
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def parts_and_rest(wire_octets: bytes, chunk: int, take: float, seed: int) -> tuple[bytes, wire.Reply]:
    """Feed ``wire_octets`` in chunks of ``chunk`` octets, taking a part after a fraction ``take`` of
    the feeds; return the parts joined with the reply's rest, and the reply."""
    rnd = random.Random(seed)
    decoder = ReplyDecoder()
    parts: list[bytes] = []
    reply = None
    for pos in range(0, len(wire_octets), chunk):
        decoder.feed(wire_octets[pos : pos + chunk])
        reply = decoder.next_reply(multiline=True)
        if reply is not None:
            break
        if rnd.random() < take:
            decoder.take_body_part(lambda view: parts.append(bytes(view)))
    assert reply is not None and reply.body is not None
    return b"".join(parts) + reply.body, reply


BODIES = [
    b"",
    b"\r\n",
    b"..\r\n",
    b".\r\n",
    b"a\r\n.\r\n..\r\n...\r\nb\r\n",
    b".first\r\n\r\n.\r\nmid\r\n.last\r\n",
    b"x" * 100 + b"\r\n" + b".y\r\n" * 20 + b"z\r\n",
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_parts_join_to_the_body_at_every_chunking(body: bytes, chunk: int) -> None:
    """Taking parts whenever possible, at every chunk size, gives the same octets as one piece."""
    octets = b"+OK\r\n" + stuff(body)
    for seed in range(4):
        joined, _ = parts_and_rest(octets, chunk, 1.0, seed)
        assert joined == body


def test_random_bodies_random_parts() -> None:
    """Random dotted bodies, random chunkings, parts taken at random: always the body."""
    rnd = random.Random(7)
    for trial in range(400):
        lines = [
            bytes(rnd.choice(b"..ab") for _ in range(rnd.choice([0, 1, 2, 3, 8])))
            for _ in range(rnd.randint(0, 30))
        ]
        body = b"".join(line + b"\r\n" for line in lines)
        octets = b"+OK x\r\n" + stuff(body)
        joined, _ = parts_and_rest(octets, rnd.randint(1, 12), rnd.random(), trial)
        assert joined == body, trial


def test_parts_with_more_stuffed_lines_than_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_STUFFED_LINES (un-stuffing by replace) the parts are un-stuffed alike."""
    monkeypatch.setattr(pop3_decoder, "MAX_STUFFED_LINES", 2)
    body = b"".join(b"..%d\r\n" % n if n % 2 else b"line %d\r\n" % n for n in range(200))
    for chunk in (1, 3, 17, 100):
        joined, _ = parts_and_rest(b"+OK\r\n" + stuff(body), chunk, 1.0, chunk)
        assert joined == body


def test_next_reply_follows_the_parts() -> None:
    """After a body taken in parts, the next reply in the buffer decodes normally."""
    body = b"a\r\n..b\r\n" * 50
    decoder = ReplyDecoder()
    decoder.feed(b"+OK\r\n" + stuff(body)[:-3])
    assert decoder.next_reply(multiline=True) is None
    pieces: list[bytes] = []
    assert decoder.take_body_part(lambda view: pieces.append(bytes(view)))
    first = b"".join(pieces)
    assert body.startswith(first)
    decoder.feed(b".\r\n+OK 2 200\r\n")
    reply = decoder.next_reply(multiline=True)
    assert reply is not None and first + (reply.body or b"") == body
    after = decoder.next_reply(multiline=False)
    assert after is not None and after.status.text == "2 200"


def test_no_part_before_a_complete_line() -> None:
    """Nothing is handed out before the status line, nor from a line whose end has not arrived."""
    decoder = ReplyDecoder()
    decoder.feed(b"+OK")
    assert decoder.next_reply(multiline=True) is None
    assert not decoder.take_body_part(print)
    decoder.feed(b"\r\nno line end yet")
    assert decoder.next_reply(multiline=True) is None
    assert not decoder.take_body_part(print)
    assert decoder.body_octets_buffered == len(b"no line end yet")


def test_cap_counts_the_parts_taken() -> None:
    """max_reply_octets caps the whole reply, also what was handed out in parts."""
    decoder = ReplyDecoder(max_reply_octets=100)
    decoder.feed(b"+OK\r\n" + b"x" * 40 + b"\r\n")
    assert decoder.next_reply(multiline=True) is None
    assert decoder.take_body_part(lambda view: None)
    decoder.feed(b"y" * 70 + b"\r\n")
    with pytest.raises(ProtocolError, match="larger than the cap"):
        decoder.next_reply(multiline=True)
