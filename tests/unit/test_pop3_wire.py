"""Tests of the sans-I/O POP3 reply parsers (RFC 1939, RFC 2449, RFC 3206)."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from maild.errors import ProtocolError
from maild.protocols.pop3 import decoder as pop3_decoder
from maild.protocols.pop3.decoder import ReplyDecoder
from maild.protocols.pop3.listings import parse_capa, parse_scan_listing, parse_uidl_listing
from maild.protocols.pop3.wire import (
    Reply,
    StatusLine,
    parse_status_line,
)

# -- helpers -------------------------------------------------------------------------------------------


def stuff(body: bytes) -> bytes:
    """Byte-stuff a CRLF message body and append the terminator, as a server does (RFC 1939 section 3)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def decode(chunks: list[bytes], kinds: list[bool], **caps: int) -> list[Reply]:
    """Feed ``chunks`` one by one and pull replies of the given kinds (True: multi-line) as they complete."""
    decoder = ReplyDecoder(**caps)
    out: list[Reply] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while len(out) < len(kinds) and (reply := decoder.next_reply(multiline=kinds[len(out)])) is not None:
            out.append(reply)
    assert decoder.buffered_octets == 0
    return out


def every_split(data: bytes) -> list[list[bytes]]:
    """Every way to cut ``data`` into two chunks, plus one byte per chunk."""
    splits = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    splits.append([data[i : i + 1] for i in range(len(data))])
    return splits


# A pipelined stream: RETR of a stuffed message, RETR refused, RETR of an empty message, DELE, UIDL.
MESSAGE = b"From: a@example.org\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"
STREAM = (
    b"+OK 63 octets\r\n"
    + stuff(MESSAGE)
    + b"-ERR [SYS/TEMP] try later\r\n"
    + b"+OK\r\n.\r\n"
    + b"+OK message 1 deleted\r\n"
    + b"+OK\r\n1 abc\r\n2 def\r\n.\r\n"
)
KINDS = [True, True, True, False, True]
EXPECTED = [
    Reply(StatusLine(True, None, "63 octets"), MESSAGE),
    Reply(StatusLine(False, "SYS/TEMP", "try later")),
    Reply(StatusLine(True, None, ""), b""),
    Reply(StatusLine(True, None, "message 1 deleted")),
    Reply(StatusLine(True, None, ""), b"1 abc\r\n2 def\r\n"),
]


# -- status lines --------------------------------------------------------------------------------------


def test_status_ok_with_text() -> None:
    """A +OK line gives ok=True, no code and the stripped text."""
    assert parse_status_line(b"+OK Dovecot ready.\r\n") == StatusLine(True, None, "Dovecot ready.")


def test_status_err_with_code() -> None:
    """A bracketed response code after -ERR is extracted and upper-cased (RFC 2449 section 8)."""
    status = parse_status_line(b"-ERR [auth] Authentication failed.")
    assert status == StatusLine(False, "AUTH", "Authentication failed.")


@pytest.mark.parametrize("code", ["SYS/TEMP", "SYS/PERM", "IN-USE", "LOGIN-DELAY", "AUTH"])
def test_status_known_codes(code: str) -> None:
    """Each RFC 2449 and RFC 3206 response code is recognised."""
    status = parse_status_line(f"-ERR [{code}] text\r\n".encode())
    assert status.code == code
    assert status.has_code(code)


def test_status_code_hierarchy() -> None:
    """has_code matches a code and its sub-levels but not a mere prefix of a level."""
    status = parse_status_line(b"-ERR [SYS/TEMP/X-FOO] busy")
    assert status.has_code("SYS")
    assert status.has_code("SYS/TEMP")
    assert not status.has_code("SYS/PERM")
    assert not parse_status_line(b"-ERR [SYSTEM] x").has_code("SYS")


def test_status_bare_indicators() -> None:
    """Indicators without text, lower case, or followed by a tab are accepted."""
    assert parse_status_line(b"+OK") == StatusLine(True, None, "")
    assert parse_status_line(b"-err\r\n") == StatusLine(False, None, "")
    assert parse_status_line(b"+OK\tfine") == StatusLine(True, None, "fine")


def test_status_bracket_that_is_not_a_code() -> None:
    """Bracketed text with a space, or unclosed, stays text."""
    assert parse_status_line(b"-ERR [not a code] x") == StatusLine(False, None, "[not a code] x")
    assert parse_status_line(b"-ERR [SYS/TEMP x").code is None
    assert parse_status_line(b"-ERR []").code is None


def test_status_code_only() -> None:
    """A code with no text leaves the text empty."""
    assert parse_status_line(b"-ERR [IN-USE]") == StatusLine(False, "IN-USE", "")


def test_status_non_utf8_text() -> None:
    """Undecodable text is replaced, not rejected."""
    assert parse_status_line(b"-ERR caf\xe9").text == "caf\ufffd"


@pytest.mark.parametrize("line", [b"", b"OK", b"+OKAY", b"* OK IMAP", b"-ERROR x", b"+", b"hello\r\n"])
def test_status_garbage(line: bytes) -> None:
    """A line without +OK or -ERR as its first word raises ProtocolError naming RFC 1939."""
    with pytest.raises(ProtocolError, match="RFC 1939 section 3"):
        parse_status_line(line)


def test_status_render() -> None:
    """render() rebuilds the line with its code, for failure reasons."""
    assert parse_status_line(b"-ERR [SYS/TEMP]  try later ").render() == "-ERR [SYS/TEMP] try later"
    assert parse_status_line(b"+OK").render() == "+OK"


# -- multi-line decoder --------------------------------------------------------------------------------


def test_decoder_stream_in_one_chunk() -> None:
    """A pipelined stream of mixed replies decodes into the expected replies in order."""
    assert decode([STREAM], KINDS) == EXPECTED


def test_decoder_stream_split_at_every_boundary() -> None:
    """Splitting the stream at any byte boundary, or into single bytes, gives the same replies."""
    for chunks in every_split(STREAM):
        assert decode(chunks, KINDS) == EXPECTED


def test_decoder_terminator_split_across_chunks() -> None:
    """The terminator split in three across chunks is still found."""
    chunks = [b"+OK\r\nbody\r", b"\n.", b"\r\n"]
    assert decode(chunks, [True]) == [Reply(StatusLine(True, None, ""), b"body\r\n")]


def test_decoder_returns_none_until_complete() -> None:
    """next_reply asks for more bytes until the terminator has arrived."""
    decoder = ReplyDecoder()
    decoder.feed(b"+OK\r\nline\r\n.")
    assert decoder.next_reply(multiline=True) is None
    decoder.feed(b"\r")
    assert decoder.next_reply(multiline=True) is None
    decoder.feed(b"\n+OK")
    assert decoder.next_reply(multiline=True) == Reply(StatusLine(True, None, ""), b"line\r\n")
    assert decoder.next_reply(multiline=False) is None
    assert decoder.buffered_octets == 3


def test_decoder_unstuffs_first_line() -> None:
    """A first body line sent as '..x' comes out as '.x'."""
    assert decode([b"+OK\r\n..x\r\n.\r\n"], [True])[0].body == b".x\r\n"


def test_decoder_unstuffs_dot_only_line() -> None:
    """A body line holding only '.' is sent as '..' and comes out as '.', also as the first line."""
    assert decode([b"+OK\r\n..\r\na\r\n..\r\n.\r\n"], [True])[0].body == b".\r\na\r\n.\r\n"


def test_decoder_removes_only_one_dot() -> None:
    """Only the stuffing dot is removed from a line starting with several dots."""
    assert decode([b"+OK\r\n...\r\nx\r\n....y\r\n.\r\n"], [True])[0].body == b"..\r\nx\r\n...y\r\n"


def test_decoder_keeps_unstuffed_leading_dot() -> None:
    """A server's unstuffed '.x' line (a protocol slip) is kept as sent, like poplib does."""
    assert decode([b"+OK\r\n.x\r\n.y\r\n.\r\n"], [True])[0].body == b".x\r\n.y\r\n"


def test_decoder_unstuffs_only_the_replies_that_need_it() -> None:
    """Un-stuffing is decided per reply: a stuffed reply between plain ones, pipelined and split at
    every boundary, comes out un-stuffed, and the plain ones unchanged."""
    plain, dotted = b"a\r\n.b\r\n", b"x\r\n.\r\n..y\r\n"
    stream = b"".join(b"+OK\r\n" + stuff(body) for body in (plain, dotted, plain))
    for chunks in every_split(stream):
        assert [r.body for r in decode(chunks, [True] * 3)] == [plain, dotted, plain]


def test_decoder_unstuffs_a_body_handed_out_as_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body large enough to be handed out as the receive buffer itself is un-stuffed too."""
    monkeypatch.setattr(pop3_decoder, "TAKE_BUFFER_OCTETS", 8)
    body = b"first line\r\n..dots\r\n.\r\nlast\r\n"
    for chunks in every_split(b"+OK\r\n" + stuff(body) + b"+OK\r\n" + stuff(b"plain\r\n")):
        assert [bytes(r.body or b"") for r in decode(chunks, [True, True])] == [body, b"plain\r\n"]


@pytest.mark.parametrize(
    "text",
    [
        b"a.b.c.d\r\n" * 40 + b".x\r\n" + b"." * 300 + b"\r\n..\r\n",  # dense dots: the fallback search
        b"no dots at all\r\n" * 20,
        b"...\r\n" * 50 + b"end.\r\n",
        b".\r\n\r\n.\r\n",
    ],
)
def test_decoder_finds_line_dots_among_dots_anywhere(text: bytes) -> None:
    """Lines starting with "." are found and un-stuffed whether dots elsewhere are rare or dense (the
    memchr search and its fallback), at every split, and the next reply still follows."""
    stream = b"+OK\r\n" + stuff(text) + b"+OK\r\n" + stuff(b".tail\r\n")
    for chunks in every_split(stream):
        assert [r.body for r in decode(chunks, [True, True])] == [text, b".tail\r\n"]


@pytest.fixture
def small_dense_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense-dot fallback of the line-dot search after 2 misses, over windows of 8 octets (then
    16, 32, ...): every window edge falls inside buffers of a few hundred octets."""
    monkeypatch.setattr(pop3_decoder, "DENSE_DOTS_MISSES", 2)
    monkeypatch.setattr(pop3_decoder, "DENSE_DOTS_WINDOW_OCTETS", 8)


@pytest.mark.usefixtures("small_dense_windows")
def test_line_dot_search_with_small_dense_windows_agrees_with_find_at_every_edge() -> None:
    """Where dots are dense the search goes on in windows of the three-octet find and then back to
    the dots: a CRLF "." at every offset across those window edges (and across the fill mark ``end``,
    beyond which nothing counts) is found exactly where ``find`` finds it, never earlier or later."""
    for offset in range(80):
        for tail in (b"\r\n.x", b"\r\n..x", b"\r\n.\r\n"):
            buf = bytearray(b"a." * 8 + b"." * offset + tail + b"b.c." * 12 + b"\r\n.end")
            for pos in range(24):
                for end in (None, offset + 17, offset + 18, offset + 19, offset + 20, len(buf) - 3):
                    assert pop3_decoder._line_dot(buf, pos, end) == buf.find(b"\r\n.", pos, end), (
                        offset,
                        tail,
                        pos,
                        end,
                    )


@pytest.mark.usefixtures("small_dense_windows")
def test_line_dot_search_with_small_dense_windows_agrees_with_find_on_random_octets() -> None:
    """The windowed search equals ``find(CRLF ".")`` on random octets rich in CR, LF and "." (dots dense
    enough that windows follow one another), from every start and up to random fill marks."""
    rng = random.Random(1911)
    for _ in range(300):
        buf = bytearray(rng.choice(b"\r\n....ab") for _ in range(rng.randrange(0, 500)))
        for pos in range(0, len(buf) + 1, 5):
            end = rng.choice([None, rng.randrange(0, len(buf) + 1)])
            assert pop3_decoder._line_dot(buf, pos, end) == buf.find(b"\r\n.", pos, end)


@pytest.mark.usefixtures("small_dense_windows")
def test_decoder_with_small_dense_windows_unstuffs_every_line_dot_at_every_split() -> None:
    """Header-like text dense with dots, then stuffed lines and the terminator falling at window edges:
    at every split the bodies come out octet-exact (each stuffing dot removed once, no line-start
    dot missed or taken for the terminator) and the next reply follows."""
    text = (
        b"Received: from a.b.c.d (e.f.g.h [10.0.0.1]) by i.j.k\r\n"
        + b".stuffed.after.dots\r\n"
        + b"x." * 9
        + b"\r\n..two\r\n.\r\n"
        + b"tail.\r\n"
    )
    stream = b"+OK\r\n" + stuff(text) + b"+OK\r\n" + stuff(b"a.b.c.d.e.f\r\n.last\r\n")
    for chunks in every_split(stream):
        assert [r.body for r in decode(chunks, [True, True])] == [text, b"a.b.c.d.e.f\r\n.last\r\n"]


def test_line_dot_search_agrees_with_find() -> None:
    """The dot-first search returns what ``find(CRLF ".")`` returns on random octets rich in CR, LF and "."."""
    rng = random.Random(19)
    for _ in range(300):
        buf = bytearray(rng.choice(b"\r\n.ab") for _ in range(rng.randrange(0, 400)))
        for pos in range(0, len(buf) + 1, 7):
            assert pop3_decoder._line_dot(buf, pos) == buf.find(b"\r\n.", pos)


def test_decoder_empty_message() -> None:
    """A multi-line reply with no data lines has an empty body."""
    assert decode([b"+OK 0 octets\r\n.\r\n"], [True]) == [Reply(StatusLine(True, None, "0 octets"), b"")]


def test_decoder_preserves_octets() -> None:
    """Bare LF, bare CR, NUL, 8-bit octets and trailing spaces pass through unchanged."""
    body = b"a\nb\rc\x00d\xff\xfe  \r\n\t.tab\r\n \r\n"
    for chunks in every_split(b"+OK\r\n" + stuff(body)):
        assert decode(chunks, [True])[0].body == body


def test_decoder_long_line() -> None:
    """A 10,000-octet line (poplib stops at 2,048) decodes intact at every split point."""
    body = b"X-Long: " + bytes(range(33, 127)) * 110 + b"\r\n.after\r\n"
    stream = b"+OK\r\n" + stuff(body)
    assert len(body) > 10_000
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]], [True])[0].body == body


def test_decoder_err_to_multiline_command_is_single_line() -> None:
    """-ERR ends its reply at the line end even when the command's +OK reply would be multi-line."""
    replies = decode([b"-ERR no such message\r\n+OK\r\n.\r\n"], [True, True])
    assert replies == [
        Reply(StatusLine(False, None, "no such message")),
        Reply(StatusLine(True, None, ""), b""),
    ]


def test_decoder_single_line_ok() -> None:
    """A +OK to a single-line command has no body and leaves the next reply in the buffer."""
    decoder = ReplyDecoder()
    decoder.feed(b"+OK\r\n.\r\n")
    assert decoder.next_reply(multiline=False) == Reply(StatusLine(True, None, ""))
    assert decoder.buffered_octets == 3


def test_decoder_replies_iterator() -> None:
    """replies() yields every complete reply and stops at an incomplete one."""
    decoder = ReplyDecoder()
    decoder.feed(b"+OK a\r\n+OK b\r\n+OK")
    assert [r.status.text for r in decoder.replies(multiline=False)] == ["a", "b"]
    assert decoder.buffered_octets == 3


def random_replies(rng: random.Random, alphabet: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """200 random bodies made of ``alphabet`` (each ending in CRLF unless empty) and their RETR
    replies (``+OK``, stuffed body, terminator) as one stream cut at 300 random places."""
    bodies = []
    for _ in range(200):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        bodies.append(body + b"\r\n" if body else body)
    stream = b"".join(b"+OK\r\n" + stuff(b) for b in bodies)
    cuts = sorted(rng.sample(range(len(stream)), 300))
    return bodies, [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def test_decoder_random_messages_round_trip() -> None:
    """Random messages full of dots and CR/LF survive stuffing and random chunking."""
    bodies, chunks = random_replies(
        random.Random(1939), [b".", b"\r\n", b"\r", b"\n", b"a", b" ", b"..", b"\r\n.\r\n"]
    )
    assert [r.body for r in decode(chunks, [True] * len(bodies))] == bodies


@pytest.mark.parametrize("take", [False, True])
@pytest.mark.parametrize("max_stuffed", [0, 1, 3, pop3_decoder.MAX_STUFFED_LINES])
def test_decoder_unstuffs_by_offsets_or_by_replace_alike(
    monkeypatch: pytest.MonkeyPatch, take: bool, max_stuffed: int
) -> None:
    """Random messages full of dots come out the same whether their stuffing dots are left out by
    remembered offsets (copied once, or moved within the buffer handed out) or, past
    ``MAX_STUFFED_LINES``, by ``replace``; randomly chunked."""
    monkeypatch.setattr(pop3_decoder, "MAX_STUFFED_LINES", max_stuffed)
    if take:
        monkeypatch.setattr(pop3_decoder, "TAKE_BUFFER_OCTETS", 1)
    alphabet = [b".", b"\r\n", b"\r", b"\n", b"a", b" ", b"..", b"\r\n.\r\n", b"\r\n..", b"\r\n..."]
    bodies, chunks = random_replies(random.Random(2449 + max_stuffed), alphabet)
    assert [bytes(r.body or b"") for r in decode(chunks, [True] * len(bodies))] == bodies


def test_decoder_garbage_status_line() -> None:
    """A reply that does not start with a status indicator raises ProtocolError."""
    decoder = ReplyDecoder()
    decoder.feed(b"Subject: out of step\r\n")
    with pytest.raises(ProtocolError):
        decoder.next_reply(multiline=True)


def test_decoder_over_cap_at_every_split() -> None:
    """A reply one octet over the cap raises at every split; exactly at the cap it decodes."""
    stream = b"+OK\r\n" + stuff(b"0123456789\r\n" * 5)
    size = len(stream)
    for chunks in every_split(stream):
        with pytest.raises(ProtocolError, match="cap"):
            decode(chunks, [True], max_reply_octets=size - 1)
        assert decode(chunks, [True], max_reply_octets=size)[0].body == b"0123456789\r\n" * 5


def test_decoder_over_cap_before_terminator() -> None:
    """Buffered octets over the cap raise before any terminator arrives."""
    decoder = ReplyDecoder(max_reply_octets=100)
    decoder.feed(b"+OK\r\n" + b"x" * 200)
    with pytest.raises(ProtocolError, match="100 octets"):
        decoder.next_reply(multiline=True)


def test_decoder_status_line_too_long() -> None:
    """A status line without CRLF beyond its cap raises; at the cap it is accepted."""
    decoder = ReplyDecoder(max_status_line_octets=10)
    decoder.feed(b"+OK 123456")
    assert decoder.next_reply(multiline=False) is None
    decoder.feed(b"\r")
    assert decoder.next_reply(multiline=False) is None
    decoder.feed(b"\n")
    assert decoder.next_reply(multiline=False) == Reply(StatusLine(True, None, "123456"))
    decoder.feed(b"+OK 1234567\r\n")
    with pytest.raises(ProtocolError, match="longer than 10"):
        decoder.next_reply(multiline=False)


def test_decoder_rejects_bad_caps() -> None:
    """Caps below one octet are a programming error."""
    with pytest.raises(ValueError, match="positive"):
        ReplyDecoder(max_reply_octets=0)


def decode_first_measured(stream: bytes) -> tuple[ReplyDecoder, Reply | None, int]:
    """Feed ``stream`` in 256 KiB chunks, take the first multi-line reply; return the decoder, the
    reply and the peak of traced memory in octets while doing so."""
    chunk = 256 * 1024
    decoder = ReplyDecoder()
    tracemalloc.start()
    try:
        for start in range(0, len(stream), chunk):
            decoder.feed(stream[start : start + chunk])
        reply = decoder.next_reply(multiline=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return decoder, reply, peak


def test_decoder_memory_about_two_copies() -> None:
    """Decoding a 25 MB stuffed message peaks at about two copies of it in memory."""
    body = (b"." + b"x" * 998 + b"\r\n") * 25_000
    _, reply, peak = decode_first_measured(b"+OK\r\n" + stuff(body))
    assert reply is not None
    assert reply.body == body
    assert peak < 2.4 * len(body)


def test_decoder_large_unstuffed_body_is_the_buffer_itself() -> None:
    """A 25 MB message without stuffed lines is handed out without a copy (peak about one message),
    octet-exact, and the start of the next reply behind it in the buffer survives."""
    body = (b"y" * 998 + b"\r\n") * 25_000
    decoder, reply, peak = decode_first_measured(b"+OK\r\n" + stuff(body) + b"+OK\r\nSubject: next\r\n")
    assert reply is not None
    assert reply.body == body
    assert peak < 1.3 * len(body)
    assert decoder.next_reply(multiline=True) is None
    decoder.feed(b"\r\n.\r\n")
    assert decoder.next_reply(multiline=True) == Reply(StatusLine(True, None, ""), b"Subject: next\r\n\r\n")


def test_decoder_large_body_with_few_stuffed_lines_is_unstuffed_in_its_buffer() -> None:
    """A 25 MB message with three stuffed lines is un-stuffed within the receive buffer handed out
    (peak about one copy of it, not two), octet-exact."""
    body = b".first\r\n" + (b"y" * 998 + b"\r\n") * 12_500 + b".mid\r\n" + (b"z" * 998 + b"\r\n") * 12_500
    body += b"..last\r\n"
    _, reply, peak = decode_first_measured(b"+OK\r\n" + stuff(body))
    assert reply is not None
    assert reply.body == body
    assert peak < 1.3 * len(body)


@pytest.mark.parametrize("split", [1, 7, 4096, 2**20 + 3])
def test_decoder_large_bodies_back_to_back(split: int) -> None:
    """Two pipelined 1.5 MB replies (one stuffed, one not), chunked anywhere, decode octet-exact."""
    plain = b"z" * 1_500_000 + b"\r\n"
    stuffed = b".first\r\n" + b"w" * 1_500_000 + b"\r\n.\r\n..x\r\n"
    stream = b"+OK\r\n" + stuff(stuffed) + b"+OK\r\n" + stuff(plain) + b"+OK bye\r\n"
    decoder = ReplyDecoder()
    got: list[Reply] = []
    kinds = [True, True, False]
    for start in range(0, len(stream), split):
        decoder.feed(stream[start : start + split])
        while len(got) < 3 and (reply := decoder.next_reply(multiline=kinds[len(got)])) is not None:
            got.append(reply)
    assert [r.body for r in got] == [stuffed, plain, None]
    assert decoder.buffered_octets == 0


# -- UIDL ----------------------------------------------------------------------------------------------


def test_uidl_listing() -> None:
    """A UIDL listing maps message-numbers to uidls in listing order with no duplicates."""
    listing = parse_uidl_listing(b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n")
    assert dict(listing.uidl_by_msgnum) == {1: "whqtswO00WBw418f9t5JxYwZ", 2: "QhdPYR:00WBw1Ph7x7"}
    assert listing.duplicates == {}


def test_uidl_empty_listing() -> None:
    """An empty maildrop gives an empty listing."""
    listing = parse_uidl_listing(b"")
    assert listing.uidl_by_msgnum == {}
    assert listing.duplicates == {}


def test_uidl_duplicates_reported() -> None:
    """A uidl carried by several messages is reported with all its message-numbers, not rejected."""
    listing = parse_uidl_listing(b"1 a\r\n2 b\r\n3 a\r\n4 a\r\n5 c\r\n6 b\r\n")
    assert listing.duplicates == {"a": (1, 3, 4), "b": (2, 6)}
    assert len(listing.uidl_by_msgnum) == 6


def test_uidl_odd_characters() -> None:
    """Every printable ASCII character except space is allowed in a uidl (RFC 1939 section 7)."""
    odd = bytes(range(0x21, 0x7F)).decode("ascii")
    listing = parse_uidl_listing(f"1 {odd}\r\n2 [x]\\y\"'<>\r\n".encode("ascii"))
    assert listing.uidl_by_msgnum == {1: odd, 2: "[x]\\y\"'<>"}


def test_uidl_eight_bit_round_trips() -> None:
    """An 8-bit uidl (outside the RFC) is kept, decoded as Latin-1 so its octets can be recovered."""
    uidl = parse_uidl_listing(b"1 caf\xc3\xa9\xff\r\n").uidl_by_msgnum[1]
    assert uidl.encode("latin-1") == b"caf\xc3\xa9\xff"


def test_uidl_long_accepted() -> None:
    """A uidl longer than the RFC's 70 octets is accepted rather than losing the message."""
    assert parse_uidl_listing(b"1 " + b"u" * 300 + b"\r\n").uidl_by_msgnum[1] == "u" * 300


def test_uidl_lenient_whitespace_and_blank_lines() -> None:
    """Runs of spaces or tabs between fields and blank lines are tolerated."""
    listing = parse_uidl_listing(b"1  a \r\n\r\n2\tb\r\n")
    assert listing.uidl_by_msgnum == {1: "a", 2: "b"}


@pytest.mark.parametrize(
    "body",
    [
        b"1\r\n",  # no uidl
        b"1 \r\n",  # empty uidl
        b"1 a b\r\n",  # uidl with a space
        b"1 a\x00b\r\n",  # control octet
        b"1 a\x7f\r\n",  # DEL
        b"1 a\x1bb\r\n",  # ESC
        b"x a\r\n",  # message-number not a number
        b"0 a\r\n",  # message-number zero
        b"-1 a\r\n",  # negative
        b"1_0 a\r\n",  # int() would accept this
        b"\xd9\xa1 a\r\n",  # non-ASCII digit
        b"1 a\r\n1 b\r\n",  # message-number repeated
    ],
)
def test_uidl_malformed(body: bytes) -> None:
    """A malformed UIDL listing line raises ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_uidl_listing(body)


# -- LIST ----------------------------------------------------------------------------------------------


def test_scan_listing() -> None:
    """A scan listing maps message-numbers to sizes in octets."""
    assert parse_scan_listing(b"1 120\r\n2 200\r\n3 0\r\n") == {1: 120, 2: 200, 3: 0}


def test_scan_listing_extra_fields_ignored() -> None:
    """Information after the size is allowed and ignored (RFC 1939 section 5)."""
    assert parse_scan_listing(b"1 120 extra info\r\n") == {1: 120}


def test_scan_listing_empty() -> None:
    """An empty maildrop gives an empty mapping."""
    assert parse_scan_listing(b"") == {}


@pytest.mark.parametrize("body", [b"1\r\n", b"1 -5\r\n", b"1 12k\r\n", b"a 5\r\n", b"1 5\r\n1 6\r\n"])
def test_scan_listing_malformed(body: bytes) -> None:
    """A malformed scan listing line raises ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_scan_listing(body)


# -- CAPA ----------------------------------------------------------------------------------------------


def test_capa_dovecot() -> None:
    """Dovecot's CAPA listing parses into upper-cased names with their parameters."""
    names = ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS", "USER"]
    body = b"".join(n.encode() + b"\r\n" for n in names) + b"SASL PLAIN LOGIN\r\n"
    caps = parse_capa(body)
    assert caps["SASL"] == ("PLAIN", "LOGIN")
    assert caps["PIPELINING"] == ()
    assert set(caps) == {
        "CAPA",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "PIPELINING",
        "AUTH-RESP-CODE",
        "STLS",
        "USER",
        "SASL",
    }


def test_capa_case_and_blank_lines() -> None:
    """Capability names are case-insensitive; parameters keep their case; blank lines are skipped."""
    assert parse_capa(b"pipelining\r\n\r\nimplementation Shiny v1\r\n") == {
        "PIPELINING": (),
        "IMPLEMENTATION": ("Shiny", "v1"),
    }


def test_capa_non_ascii() -> None:
    """Non-ASCII octets in a capability line do not raise."""
    assert parse_capa(b"IMPLEMENTATION caf\xe9\r\n") == {"IMPLEMENTATION": ("caf\ufffd",)}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"1 abc\r\n2 d\xe9f\r\n007 xyz\r\n",  # usual shape: the fast path
        b"1 abc\r\n2 abc\r\n3 other\r\n",  # a repeated uidl: the line parser reports it
        b"1 abc\r\n\r\n2 def\r\n",  # a blank line: the line parser skips it
        b"1  abc\r\n2\tdef\r\n",  # other whitespace between the fields
    ],
)
def test_uidl_fast_path_agrees_with_the_line_parser(body: bytes) -> None:
    """The listing parsers' fast path gives exactly what parsing line by line gives."""
    by_lines: dict[int, str] = {}
    for line in body.split(b"\r\n"):
        fields = line.split()
        if fields:
            by_lines[int(fields[0])] = fields[1].decode("latin-1")
    listing = parse_uidl_listing(body)
    assert dict(listing.uidl_by_msgnum) == by_lines
    repeated = {u for u in by_lines.values() if list(by_lines.values()).count(u) > 1}
    assert set(listing.duplicates) == repeated


@pytest.mark.parametrize(
    "body", [b"1 100\r\n02 200\r\n3 0\r\n", b"1 100 extra\r\n2 200\r\n", b"1 100\r\n\r\n2 5\r\n"]
)
def test_scan_fast_path_agrees_with_the_line_parser(body: bytes) -> None:
    expected = {int(f[0]): int(f[1]) for f in (line.split() for line in body.split(b"\r\n")) if f}
    assert parse_scan_listing(body) == expected


@pytest.mark.parametrize("body", [b"1 100\r\n1 200\r\n", b"0 100\r\n"])
def test_scan_fast_path_still_rejects_what_the_line_parser_rejects(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_scan_listing(body)
