"""The FETCH fast path of the patched IMAP protocol (session 11): a response in the usual body shape
(``* n FETCH (UID u FLAGS (...) INTERNALDATE "..." BODY[] {size}``, the literal, ``)``) is framed in
the read buffer by one pattern and settled by ``FetchAssembler.feed_plain`` without the lexer.

Every test compares it with the generic path (the same protocol with the fast path switched off,
itself compared with the stock aioimaplib protocol in ``test_imap_library.py`` and
``test_imap_buffered_read.py``) or with the stock protocol directly: the responses handed over, in
order and octet for octet, and what the assembler makes of them. Each also checks that the fast path
really took the responses it should, so that it cannot pass by not running.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aioimaplib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.protocols.imap import client as imap_module
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import protocol as imap_protocol
from maild.protocols.imap import reading as imap_reading
from maild.protocols.imap.lex import group_lines
from maild.protocols.imap.stream import BODY_EXPECT, BODY_REQUIRE
from tests.faults.test_imap_library import feed, fetch, run_command

UIDS = list(range(1, 200))
ITEMS = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
DATE = b'"07-Jul-2026 10:00:00 +0200"'


def plain(seq: int, uid: int, body: bytes, flags: bytes = b"\\Seen", date: bytes = DATE) -> bytes:
    """One response in the usual body shape (Dovecot's)."""
    return (
        b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE %s BODY[] {%d}\r\n" % (seq, uid, flags, date, len(body))
        + body
        + b")\r\n"
    )


# literal contents that look like protocol text: a cut or a framing slip shows
TRICKY = [
    b"",
    b"x",
    b")\r\n",
    b"\r\n",
    b"* 9 FETCH (UID 9 FLAGS () INTERNALDATE " + DATE + b" BODY[] {1}\r\nz)\r\n",
    b"Subject: a\r\n\r\nbody {12}\r\n)",
    bytes(range(256)),
]

#: Plain responses with every kind of line the fast path must leave alone between them.
MIXED = b"".join(
    [
        plain(1, 1, TRICKY[0]),
        plain(2, 2, TRICKY[1], flags=b""),
        b"* 3 EXISTS\r\n",
        plain(3, 3, TRICKY[2], flags=b"\\Seen \\Answered $Junk"),
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        plain(4, 4, TRICKY[3]),
        b"* 2 EXPUNGE\r\n",
        plain(4, 5, TRICKY[4]),
        b"* 5 FETCH (FLAGS (\\Seen) UID 5)\r\n",  # not the body shape: the generic path
        plain(6, 6, TRICKY[5], flags=b"NIL"),  # a NIL atom: the generic path reads it as nil
        b"* 7 FETCH (UID 7 BODY[] {3}\r\nabc FLAGS () INTERNALDATE "
        + DATE
        + b")\r\n",  # items after the body
        plain(8, 8, TRICKY[6], date=b'"* 7-Jul-2026 10:00:00 +0200"'),  # '* ' in the date: the library's way
        plain(9, 8, b"same UID again"),  # settled already: ignored
        plain(10, 999, b"not asked for"),
        plain(11, 11, b"bad date", date=b'"31-Feb-2026 10:00:00 +0000"'),  # a failure of its own
        b"* 12 FETCH (UID 12)\r\n",  # an earlier response for seq 12: the plain one merges with it
        plain(12, 12, b"merged"),
        plain(13, 13, b"spurious blank line after the literal")[:-3] + b"\r\n)\r\n",
        plain(15, 15, b"items after the literal")[:-3] + b" UID 15)\r\n",  # a plain first line, then more
        b"* 14 FETCH (UID 14 FLAGS (\\Seen) INTERNALDATE " + DATE + b" BODY[] {4}\r\nlast)\r\n",
        b"* BYE server shutting down\r\n",
    ]
)


@dataclass
class Run:
    """What one StreamingFetch made of a stream."""

    responses: list[list[tuple[str, bytes]]] = field(default_factory=list)
    """Every FETCH response handed over, in order: (type, octets) of each part."""
    plain: int = 0
    """Responses the fast path handed over read already (plain_sink)."""
    outcomes: list[tuple[int, object]] = field(default_factory=list)
    """The assembler's outcomes in settling order, then those of finish()."""
    ignored: int = 0
    result: str = ""
    last_bye: bytes | None = None


def _comparable(outcome: object) -> object:
    """An outcome with its body as octets (the literal's type is compared through the parts)."""
    if isinstance(outcome, imap_fetch.FetchedMessage):
        body = bytes(outcome.body) if isinstance(outcome.body, bytes | bytearray) else outcome.body
        return (outcome.uid, outcome.seq, outcome.flags, outcome.internaldate, body, outcome.missing)
    return outcome


@contextmanager
def fast_path_off() -> Iterator[None]:
    """The patched protocol with the fast path switched off: every line goes the generic way."""
    original = imap_protocol._FastProtocol._fast_fetch
    imap_protocol._FastProtocol._fast_fetch = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        imap_protocol._FastProtocol._fast_fetch = original  # type: ignore[method-assign]


async def run_stream(stream: bytes, cuts: list[int]) -> Run:
    """Run a StreamingFetch on the patched protocol fed ``stream`` (``TAG OK`` appended) cut at ``cuts``."""
    run = Run()
    assembler = imap_fetch.FetchAssembler(UIDS, BODY_REQUIRE, expect=BODY_EXPECT)
    protocols: list[Any] = []

    def taken() -> None:
        while (outcome := assembler.next_outcome()) is not None:
            run.outcomes.append((outcome[0], _comparable(outcome[1])))

    def sink(parts: list[Any]) -> None:
        for logical in group_lines(parts):
            run.responses.append([(type(part).__name__, bytes(part)) for part in logical])
        assembler.feed(parts)
        taken()

    def plain_sink(fields: imap_fetch.PlainFields, head: bytes, literal: Any) -> None:
        run.plain += 1
        run.responses.append([("bytes", head), (type(literal).__name__, bytes(literal)), ("bytes", b")")])
        assembler.feed_plain(fields, head, literal)
        taken()

    def start(protocol: Any) -> Coroutine[Any, Any, Any]:
        protocols.append(protocol)
        streaming = imap_module.StreamingFetch(protocol, "1:199", ITEMS, sink, plain_sink=plain_sink)
        coroutine: Coroutine[Any, Any, Any] = streaming.run()
        return coroutine

    response, _ = await run_command(
        imap_module._FastProtocol, start, stream + b"TAG OK Fetch completed.\r\n", cuts
    )
    assembler.finish()
    taken()
    run.ignored = assembler.ignored
    run.result = response.result
    run.last_bye = protocols[0].last_bye
    return run


async def generic_run(stream: bytes) -> Run:
    """What the generic path makes of ``stream`` in one read."""
    with fast_path_off():
        return await run_stream(stream, [])


def stream_length(stream: bytes) -> int:
    """Octets fed for ``stream`` (the tag as run_command writes it, ``TAG OK ...`` appended)."""
    return len(stream + b"XXXX0 OK Fetch completed.\r\n")


def assert_same(fast: Run, generic: Run, where: str) -> None:
    """Octet for octet, response for response, outcome for outcome."""
    assert fast.responses == generic.responses, where
    assert fast.outcomes == generic.outcomes, where
    assert (fast.ignored, fast.result, fast.last_bye) == (
        generic.ignored,
        generic.result,
        generic.last_bye,
    ), where


async def test_the_fast_path_takes_the_usual_responses_and_leaves_every_other_line_alone() -> None:
    """Read whole, the mixed stream comes out as the generic path makes it, and the fast path took
    the responses whose first line is in the usual shape and whose literal ``)`` ends (12 of them)."""
    generic = await generic_run(MIXED)
    assert generic.plain == 0
    fast = await run_stream(MIXED, [])
    assert_same(fast, generic, "whole")
    # seq 1, 2, 3, 4, 4 (UID 5), 6 (NIL: the assembler reads it the generic way), 9 (UID 8 again),
    # 10 (UID 999), 11, 12 (merged by the assembler), 13 (the blank line is skipped as before), 14;
    # not 5 (another shape), 7 (items after the literal), 8 ("* " in the date), 15 (a plain first
    # line, but items after the literal: its head taken, the rest the generic way)
    assert fast.plain == 12
    outcomes = dict(fast.outcomes)
    assert isinstance(outcomes[11], str)
    assert outcomes[6] == "flag list is not a parenthesised list of atoms"
    assert set(outcomes) == {1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15}
    assert fast.responses[-2][-1] == ("bytes", b" UID 15)")


async def test_the_fast_path_equals_the_generic_path_cut_at_every_octet() -> None:
    """The mixed stream cut once at every octet (inside a first line, inside ``{N}``, between CR and
    LF, at a literal's first and last octet, between ``)`` and its CRLF): the same responses, in the
    same order, octet for octet, and the same outcomes."""
    generic = await generic_run(MIXED)
    for cut in range(1, stream_length(MIXED)):
        assert_same(await run_stream(MIXED, [cut]), generic, f"cut at {cut}")


async def test_the_fast_path_equals_the_stock_library_on_its_own_framing() -> None:
    """Where the stock aioimaplib protocol frames a stream right (no blank line after a literal), the
    fast path hands over exactly the FETCH responses the stock FETCH command collects."""
    stream = b"".join(plain(n, n, TRICKY[n % len(TRICKY)] * (n % 3)) for n in range(1, 40))
    stock, _ = await run_command(
        aioimaplib.IMAP4ClientProtocol, fetch, stream + b"TAG OK Fetch completed.\r\n", []
    )
    expected = [[(type(p).__name__, bytes(p)) for p in logical] for logical in group_lines(stock.lines[:-1])]
    fast = await run_stream(stream, [37, 500, 501, 1800])
    assert fast.plain == 39
    assert fast.responses == expected


def many_responses(count: int, rnd: random.Random) -> bytes:
    """``count`` plain responses with literals of 0 to 12 KiB (through the shared buffer), some above
    DIRECT_LITERAL_OCTETS (read straight into their own buffer), a few lines of other kinds between."""
    out = bytearray()
    for n in range(1, count + 1):
        size = rnd.choice([0, 1, 2, 3, rnd.randrange(4000), rnd.randrange(12_000)])
        if n % 17 == 0:
            size = imap_reading.DIRECT_LITERAL_OCTETS + rnd.randrange(3000)
        # run_command writes the command's real tag over every "TAG": none inside a literal
        out += plain(n, n, rnd.randbytes(size).replace(b"TAG", b"tag"))
        if n % 11 == 0:
            out += b"* %d EXISTS\r\n" % (count + n)
    return bytes(out)


async def test_reads_of_the_whole_buffer_with_many_responses_and_the_start_of_the_next() -> None:
    """Reads of READ_BUFFER_OCTETS each carrying dozens of whole responses and then the start of the
    next (the end of a read inside a first line, a literal or between ``)`` and CRLF, wherever it
    falls), plus literals read straight into their own buffer: the generic path's responses, octet
    for octet, in order."""
    rnd = random.Random(20261207)
    stream = many_responses(150, rnd)
    assert len(stream) > 2 * imap_reading.READ_BUFFER_OCTETS
    generic = await generic_run(stream)
    fast = await run_stream(stream, [])
    assert fast.plain == 150
    assert_same(fast, generic, "reads of the whole buffer")
    for shift in (1, 2, 3, 57, 1000):  # move where each read's end falls
        assert_same(await run_stream(stream, [shift]), generic, f"first read of {shift} octets")


@given(st.data())
def test_any_cuts_give_what_the_generic_path_makes(data: st.DataObject) -> None:
    """Property: the mixed stream and a random stream of plain responses, each cut at random points,
    give the generic path's responses (order, octets) and outcomes."""
    seed = data.draw(st.integers(0, 2**16), label="seed")
    stream = data.draw(st.sampled_from([MIXED, many_responses(23, random.Random(seed))]), label="stream")
    length = stream_length(stream)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, length - 1), max_size=12), label="cuts")))
    generic = asyncio.run(generic_run(stream))
    assert_same(asyncio.run(run_stream(stream, cuts)), generic, f"cuts {cuts}")


@pytest.mark.parametrize(
    ("limit", "stream", "reason"),
    [
        (
            "literal_octets",
            plain(1, 1, b"x" * 50),
            "server announced a literal of 50 octets (the limit is 49)",
        ),
        ("untagged_per_command", plain(1, 1, b"a") + plain(2, 2, b"b"), "more than 3 untagged lines"),
        ("buffered_octets", plain(1, 1, b"x" * 200), "more than 199 octets for one response"),
    ],
)
async def test_the_fast_path_keeps_every_read_limit(limit: str, stream: bytes, reason: str) -> None:
    """A response the fast path takes is held to the same caps as the generic path: the connection is
    dropped and ``exceeded`` names the cap, the same words either way."""
    limits = {"literal_octets": 49, "untagged_per_command": 3, "buffered_octets": 199}[limit]
    exceeded: list[str | None] = []
    for switch in (fast_path_off, _fast_path_on):
        with switch():
            loop = asyncio.get_running_loop()
            protocol = imap_module._FastProtocol(loop, None, imap_module.ReadLimits(**{limit: limits}))
            protocol.connection_made(_Transport())
            protocol.state = "SELECTED"
            taken: list[Any] = []
            streaming = imap_module.StreamingFetch(
                protocol, "1:2", ITEMS, taken.append, plain_sink=lambda *args, into=taken: into.append(args)
            )
            task = asyncio.ensure_future(streaming.run())
            for _ in range(3):
                await asyncio.sleep(0)
            feed(protocol, stream)
            task.cancel()
            exceeded.append(protocol.exceeded)
    assert exceeded[0] == exceeded[1]
    assert exceeded[0] is not None and reason in exceeded[0]


@contextmanager
def _fast_path_on() -> Iterator[None]:
    yield


class _Transport:
    """A transport that records being aborted."""

    aborted = False

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    close = abort

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_feed_plain_equals_feed_for_every_assembler_state() -> None:
    """``FetchAssembler.feed_plain`` gives what ``feed`` gives for the same response: fresh, for a UID
    not asked for, a UID settled already, a second response for a sequence number, UID 0, a UID above
    32 bits, a NIL flag, a bad date, a literal of another size than announced, items the caller
    requires beyond the usual four, and text over the cap."""
    line = b"5 FETCH (UID %s FLAGS (%s) INTERNALDATE %s BODY[] {%d}"
    cases: list[tuple[dict[str, Any], list[list[Any]], tuple[bytes, bytes, bytes, bytes]]] = [
        ({}, [], (b"7", b"\\Seen", DATE, b"body")),
        ({}, [], (b"70", b"\\Seen", DATE, b"body")),
        (
            {},
            [[b"5 FETCH (UID 7 FLAGS () INTERNALDATE " + DATE + b" BODY[] {1}", bytearray(b"a"), b")"]],
            (b"7", b"", DATE, b"again"),
        ),
        ({}, [[b"5 FETCH (UID 7)"]], (b"7", b"\\Seen", DATE, b"merged")),
        ({}, [], (b"0", b"\\Seen", DATE, b"zero")),
        ({}, [], (b"4294967296", b"\\Seen", DATE, b"big")),
        ({}, [], (b"7", b"NIL", DATE, b"nil")),
        ({}, [], (b"7", b"\\Seen \\Flagged $x", b'"31-Feb-2026 10:00:00 +0000"', b"date")),
        ({"require": ("BODY[]", "RFC822.SIZE")}, [], (b"7", b"\\Seen", DATE, b"size")),
        ({"max_text_octets": 40}, [], (b"7", b"\\Seen", DATE, b"cap")),
        ({"max_literal_octets": 3}, [], (b"7", b"\\Seen", DATE, b"cap")),
    ]
    for options, before, (uid, flags, date, body) in cases:
        kwargs = {"require": ("BODY[]",), "expect": ("FLAGS", "INTERNALDATE"), **options}
        head = line % (uid, flags, date, len(body))
        match = imap_fetch.read_fetch_line  # the fields as the protocol's pattern reads them:
        fields = imap_protocol.PLAIN_BODY_RESPONSE.match(b"* " + head)
        assert fields is not None and match is not None
        results = []
        for use_plain in (False, True):
            assembler = imap_fetch.FetchAssembler([7, 70], **kwargs)
            for parts in before:
                assembler.feed(parts)
            if use_plain:
                assembler.feed_plain(fields.groups(), head, bytearray(body))  # type: ignore[arg-type]
            else:
                assembler.feed([head, bytearray(body), b")"])
            assembler.finish()
            outcomes = []
            while (outcome := assembler.next_outcome()) is not None:
                outcomes.append((outcome[0], _comparable(outcome[1])))
            results.append((outcomes, assembler.ignored, assembler.malformed))
        assert results[0] == results[1], (options, before, uid, flags, date)
    # a literal that is not what the line announced: the generic path decides
    assembler = imap_fetch.FetchAssembler([7], ("BODY[]",))
    head = line % (b"7", b"", DATE, 9)
    found = imap_protocol.PLAIN_BODY_RESPONSE.match(b"* " + head)
    assert found is not None
    assembler.feed_plain(found.groups(), head, bytearray(b"short"))  # type: ignore[arg-type]
    reference = imap_fetch.FetchAssembler([7], ("BODY[]",))
    reference.feed([head, bytearray(b"short"), b")"])
    assert assembler.next_outcome() == reference.next_outcome()
