"""Review of the POP3 line-dot search's dense-dot windows (session 11) against a plain reference.

The decoder's bodies are compared with an independent un-stuffer (RFC 1939 section 3: a line of the
body that begins with "." is sent with one more "."; the body ends at CRLF "." CRLF), over replies
made of lines of every dot density (bare CR and LF, dots before and after them, lines of dots),
single-line ``-ERR`` replies between them, read in pieces of every size, body parts taken at random,
and with every bound of the search (misses before the fallback, the density, the window, the
remembered dots, the buffer handed out whole) set small enough that each edge falls inside a few
hundred octets, and at the shipped values on a body of several windows cut at every octet.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.protocols.pop3 import decoder as pop3_decoder
from maild.protocols.pop3.decoder import ReplyDecoder

_TOKENS = [b".", b"..", b"...", b"\r", b"\n", b"a", b"\r.", b"\n.", b".\r", b"x.y", b" ", b"\x00", b"\xff"]


def _no_crlf(line: bytes) -> bytes:
    """A line's content has no CRLF (that would end it): remove CRs before LFs until none is left."""
    while b"\r\n" in line:
        line = line.replace(b"\r\n", b"\n")
    return line


#: One body line's content (without its CRLF), from sparse to all dots.
_line = st.lists(st.sampled_from(_TOKENS), max_size=14).map(lambda parts: _no_crlf(b"".join(parts)))


def _wire(lines: list[bytes]) -> tuple[bytes, bytes]:
    """(the body as the client must see it, the multi-line reply as a server sends it)."""
    body = b"".join(line + b"\r\n" for line in lines)
    sent = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return body, b"+OK 1.2.3 octets.\r\n" + sent + b".\r\n"


def _reference_unstuff(reply: bytes) -> bytes:
    """The plain reading of one multi-line reply, line by line (RFC 1939 section 3): the oracle."""
    status_end = reply.index(b"\r\n") + 2
    lines = reply[status_end:].split(b"\r\n")
    out = []
    for line in lines:
        if line == b".":
            return b"".join(out)
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    raise AssertionError("no terminator")


def _reader(stream: bytes, sizes: list[int]) -> Callable[[memoryview], int]:
    pos = 0
    calls = 0

    def recv_into(view: memoryview) -> int:
        nonlocal pos, calls
        limit = sizes[calls % len(sizes)] if sizes else len(stream)
        calls += 1
        n = min(len(view), max(1, limit), len(stream) - pos)
        view[:n] = stream[pos : pos + n]
        pos += n
        return n

    return recv_into


_BOUNDS = st.fixed_dictionaries(
    {
        "DENSE_DOTS_MISSES": st.sampled_from([0, 1, 2, 3, 16]),
        "DENSE_DOTS_OCTETS": st.sampled_from([1, 2, 3, 8, 64]),
        "DENSE_DOTS_WINDOW_OCTETS": st.sampled_from([3, 4, 5, 8, 13, 1024]),
        "MAX_STUFFED_LINES": st.sampled_from([0, 1, 2, 1024]),
        "TAKE_BUFFER_OCTETS": st.sampled_from([1, 8, 64, 2**20]),
    }
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(st.lists(_line, max_size=25), st.none()), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=40), max_size=12),
    st.integers(min_value=1, max_value=300),
    _BOUNDS,
    st.randoms(use_true_random=False),
)
def test_replies_of_every_dot_density_decode_as_the_plain_reading_under_every_bound(
    replies: list[list[bytes] | None],
    sizes: list[int],
    read_octets: int,
    bounds: dict[str, int],
    rng: random.Random,
) -> None:
    """Pipelined multi-line replies of every dot density (and ``-ERR`` lines between them), read at
    any sizes with body parts taken at random, under any setting of the search's bounds: each body
    is the plain line-by-line reading, in order, none merged, cut or left stuffed."""
    stream = b""
    expected: list[bytes | None] = []
    for lines in replies:
        if lines is None:
            stream += b"-ERR no such message. 3.\r\n"
            expected.append(None)
        else:
            body, wire = _wire(lines)
            assert _reference_unstuff(wire) == body
            stream += wire
            expected.append(body)
    got: list[bytes | None] = []
    with pytest.MonkeyPatch.context() as patch:
        for name, value in bounds.items():
            patch.setattr(pop3_decoder, name, value)
        decoder = ReplyDecoder()
        recv_into = _reader(stream, sizes)
        taken = bytearray()
        while len(got) < len(expected):
            reply = decoder.next_reply(multiline=True)
            if reply is not None:
                got.append(None if reply.body is None else bytes(taken) + reply.body)
                if reply.body is None:
                    assert not taken
                taken.clear()
                continue
            if rng.random() < 0.3:
                decoder.take_body_part(lambda view: taken.extend(view))
            assert decoder.receive_into(recv_into, read_octets), "the stream ended before its replies"
    assert got == expected
    assert decoder.buffered_octets == 0


def _header_like(rng: random.Random, octets: int) -> list[bytes]:
    """Lines like a header section's (host names, addresses: a dot every few octets) with lines that
    begin with dots and lines of dots among them, about ``octets`` long."""
    lines: list[bytes] = []
    total = 0
    while total < octets:
        kind = rng.random()
        if kind < 0.6:
            line = b"Received: from " + b".".join(
                b"h%d" % rng.randrange(100) for _ in range(rng.randrange(1, 30))
            )
        elif kind < 0.75:
            line = b"." * rng.randrange(1, 6) + b"x.y"
        elif kind < 0.85:
            line = b"." * rng.randrange(0, 200)
        else:
            line = b"plain text without any" * rng.randrange(0, 4)
        lines.append(line)
        total += len(line) + 2
    return lines


def test_a_body_of_several_dense_windows_at_the_shipped_bounds_cut_at_every_octet() -> None:
    """At the shipped bounds (16 misses, 1 KiB windows doubling), a dense body of about 7 KiB (so the
    windows of 1, 2 and 4 KiB and the returns to the dot search all fall inside it) followed by a
    second reply, cut into two reads at every octet: both bodies as the plain reading gives them."""
    rng = random.Random(12)
    first_body, first = _wire(_header_like(rng, 7 * 1024))
    second_body, second = _wire([b".", b"..a", b"b.", b""])
    stream = first + second
    assert first.count(b"\r\n..") > 20  # the stuffed lines are spread through every window
    for cut in range(1, len(stream)):
        decoder = ReplyDecoder()
        decoder.feed(stream[:cut])
        bodies = []
        for chunk in (b"", stream[cut:]):
            decoder.feed(chunk)
            while (reply := decoder.next_reply(multiline=True)) is not None:
                bodies.append(reply.body)
        assert bodies == [first_body, second_body], cut
