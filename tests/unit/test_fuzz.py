"""Property-based tests (Hypothesis) of every parser that reads what a server or an administrator wrote.

For each: arbitrary splits of a valid byte stream give the same result as one piece; arbitrary input
never raises anything but the module's documented error, never loops, and never buffers beyond the
documented caps. The normal suite runs a bounded number of examples (profile ``maild``, registered in
``tests/conftest.py``); ``python3 -m tests.bench.fuzz`` runs the long profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from maild.config.loader import load_config
from maild.errors import ConfigError, ProtocolError
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import fetch_line
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap.listing import parse_list, parse_status, parse_vanished
from maild.protocols.imap.utf7 import decode_mailbox_name, encode_mailbox_name
from maild.protocols.pop3.decoder import ReplyDecoder
from maild.protocols.pop3.wire import Reply
from tests.faults.test_imap_library import run_streaming

# -------------------------------------------------------------------------------------------- POP3

#: A line of a message body: any octets but CR and LF (the CRLF is added).
body_lines = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=8
)


def stuffed(lines: list[bytes]) -> tuple[bytes, bytes]:
    """(the body as the message holds it, the multi-line reply that carries it, RFC 1939 section 3)."""
    body = b"".join(line + b"\r\n" for line in lines)
    wire = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return body, b"+OK follows\r\n" + wire + b".\r\n"


def decode_all(chunks: list[bytes], count: int, decoder: ReplyDecoder | None = None) -> list[Reply]:
    """Feed ``chunks`` one by one, taking every complete multi-line reply after each."""
    decoder = decoder or ReplyDecoder()
    replies: list[Reply] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while len(replies) < count and (reply := decoder.next_reply(multiline=True)) is not None:
            replies.append(reply)
    return replies


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (taken modulo its length, in order)."""
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.lists(body_lines, min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=12))
def test_pop3_replies_decode_the_same_at_any_split(messages: list[list[bytes]], points: list[int]) -> None:
    """Pipelined multi-line replies cut anywhere decode to the same bodies as in one piece, un-stuffed."""
    pairs = [stuffed(lines) for lines in messages]
    stream = b"".join(wire for _, wire in pairs)

    whole = decode_all([stream], len(pairs))
    pieces = decode_all(cut(stream, points), len(pairs))

    assert [r.body for r in whole] == [body for body, _ in pairs]
    assert pieces == whole


@given(st.lists(st.binary(max_size=300), max_size=12), st.booleans())
def test_pop3_decoder_on_arbitrary_bytes_raises_only_protocol_error_within_its_caps(
    chunks: list[bytes], multiline: bool
) -> None:
    """Arbitrary octets give replies or ProtocolError, nothing else; what it holds stays within the caps."""
    cap, status_cap = 1024, 64
    decoder = ReplyDecoder(max_reply_octets=cap, max_status_line_octets=status_cap)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while decoder.next_reply(multiline=multiline) is not None:
                pass
            assert decoder.buffered_octets <= cap + len(chunk)
    except ProtocolError:
        pass


# -------------------------------------------------------------------------------------------- IMAP

bodies = st.binary(min_size=1, max_size=120)
#: Whether INTERNALDATE is sent, and what comes between the literal and the rest of the response.
message_shapes = st.tuples(bodies, st.booleans(), st.sampled_from([b"", b"\r\n", b"\r\n \r\n"]))


def fetch_stream(shapes: list[tuple[bytes, bool, bytes]]) -> bytes:
    """A UID FETCH 11:13 reply for messages with these (body, INTERNALDATE sent, after-literal gap)."""
    out = b""
    for seq, (body, dated, gap) in enumerate(shapes, 1):
        date = b' INTERNALDATE "17-Jul-1996 02:44:25 -0700"' if dated else b""
        out += b"* %d FETCH (UID %d FLAGS (\\Seen)%s BODY[] {%d}\r\n" % (seq, 10 + seq, date, len(body))
        out += body + gap + b")\r\n"
    return out + b"TAG OK Fetch completed (0.001 + 0.000 secs).\r\n"


def assemble(handed: list[list[tuple[str, bytes]]]) -> dict[int, imap_fetch.Outcome]:
    """What the streaming path's assembler (body required, FLAGS and INTERNALDATE expected) makes of it."""
    assembler = imap_fetch.FetchAssembler([11, 12, 13], ("BODY[]",), expect=("FLAGS", "INTERNALDATE"))
    for call in handed:
        assembler.feed([bytearray(octets) if kind == "bytearray" else octets for kind, octets in call])
    assembler.finish()
    outcomes: dict[int, imap_fetch.Outcome] = {}
    while (outcome := assembler.next_outcome()) is not None:
        outcomes[outcome[0]] = outcome[1]
    return outcomes


@given(st.lists(message_shapes, min_size=1, max_size=3), st.lists(st.integers(min_value=0), max_size=8))
def test_streaming_fetch_gives_exact_bodies_at_any_split_with_gaps_and_missing_items(
    shapes: list[tuple[bytes, bool, bytes]], points: list[int]
) -> None:
    """A FETCH reply with arbitrary body octets, INTERNALDATE sometimes left out and spurious blank
    lines after literals, read through the real protocol cut anywhere, gives every body exactly,
    with INTERNALDATE listed as missing where it was left out."""
    stream = fetch_stream(shapes)
    tagged = stream.replace(b"TAG", b"XXXX0")
    cuts = sorted({p % len(tagged) for p in points if p % len(tagged)})

    _, handed = asyncio.run(run_streaming(cuts, stream))
    outcomes = assemble(handed)

    for seq, (body, dated, _) in enumerate(shapes, 1):
        outcome = outcomes[10 + seq]
        assert isinstance(outcome, imap_fetch.FetchedMessage), outcome
        assert outcome.body == body
        assert outcome.missing == (() if dated else ("INTERNALDATE",))


parts_strategy = st.lists(
    st.one_of(st.binary(max_size=60), st.binary(max_size=60).map(bytearray)), max_size=8
)


@given(parts_strategy)
def test_fetch_assembler_never_raises_on_arbitrary_parts(parts: list[imap_lex.Part]) -> None:
    """Arbitrary response parts never make the assembler raise; every outcome is a message or a reason."""
    assembler = imap_fetch.FetchAssembler(None, ("BODY[]",), expect=("FLAGS", "INTERNALDATE"))
    assembler.feed(parts)
    assembler.finish()
    while (outcome := assembler.next_outcome()) is not None:
        assert isinstance(outcome[1], imap_fetch.FetchedMessage | str)


@given(parts_strategy)
def test_lexer_raises_only_lex_error(parts: list[imap_lex.Part]) -> None:
    """The lexer turns arbitrary parts into tokens or LexError, nothing else."""
    with contextlib.suppress(imap_lex.LexError):
        imap_lex.lex(parts)


@given(parts_strategy, st.booleans())
def test_list_parser_raises_only_protocol_error(parts: list[imap_lex.Part], utf8: bool) -> None:
    """The LIST parser turns arbitrary parts into mailboxes or ProtocolError, nothing else."""
    with contextlib.suppress(ProtocolError):
        parse_list(parts, utf8=utf8)


@given(parts_strategy, st.booleans())
def test_status_and_vanished_parsers_raise_only_protocol_error(
    parts: list[imap_lex.Part], utf8: bool
) -> None:
    """The STATUS and VANISHED parsers turn arbitrary parts into values or ProtocolError, nothing else."""
    with contextlib.suppress(ProtocolError):
        parse_status([b"STATUS " + bytes(p) if isinstance(p, bytes) else p for p in parts], utf8=utf8)
    with contextlib.suppress(ProtocolError):
        parse_vanished([b"VANISHED (EARLIER) " + bytes(p) if isinstance(p, bytes) else p for p in parts])


#: Flags as servers spell them, and some the fast path must leave to the lexer (NIL, odd octets).
flag_words = st.one_of(
    st.sampled_from(["\\Seen", "\\Answered", "$Junk", "NIL", "nil", "Nil", "$NILS", "xnil", "$label1", "a.b-c+d", "x_y"]),
    st.text(alphabet='\\$aZ09(){}[]" .%*-', min_size=0, max_size=6),
)
date_texts = st.one_of(
    st.sampled_from(["17-Jul-1996 02:44:25 -0700", " 7-Jul-1996 02:44:25 +0000", "", "a\\b", 'a"b']),
    st.text(alphabet='0123456789-: +"\\abJul', max_size=30),
)


@given(
    st.one_of(st.integers(min_value=0, max_value=2**33), st.just(7)),
    st.lists(flag_words, max_size=3),
    st.sampled_from([" "] * 6 + ["  ", "\t"]),  # the usual shape most of the time, its neighbours too
    date_texts,
    st.binary(max_size=30),
    st.sampled_from([0] * 6 + [-1, 1]),
    st.sampled_from([b")"] * 6 + [b" )", b") ", b"", b" UID 5)"]),
    st.sampled_from(["UID"] * 6 + ["uid"]),
)
def test_fetch_fast_path_reads_exactly_what_the_lexer_reads(
    uid: int,
    flags: list[str],
    separator: str,
    date: str,
    body: bytes,
    miscount: int,
    tail: bytes,
    uid_name: str,
) -> None:
    """A body FETCH response in the usual shape or close to it: ``read_fetch_line`` (which reads the
    usual shape by one regular expression) gives the same line as the lexer, or the same error."""
    head = (
        f'3 FETCH ({uid_name} {uid} FLAGS ({separator.join(flags)}) INTERNALDATE "{date}" '
        f"BODY[] {{{len(body) + miscount}}}"
    ).encode()
    logical: list[imap_lex.Part] = [head, bytearray(body), tail] if tail else [head, bytearray(body)]
    start = imap_lex.FETCH_START.match(head)
    assert start is not None
    assert imap_fetch.read_fetch_line(logical) == fetch_line._lexed_fetch_line(3, logical, head, start.end())


date_octets = st.one_of(
    st.sampled_from(
        [b"17-Jul-1996 02:44:25 -0700", b" 7-jul-1996 02:44:25 +0000", b"\x1c7-Jul-1996 02:44:25 +0000"]
    ),
    st.binary(max_size=30),
    st.text(alphabet="0123456789-: +\t\x1c\xa0JulFebDECx", max_size=30).map(lambda t: t.encode("latin-1")),
    st.builds(
        lambda day, month, year, time, sign, zone: f"{day}-{month}-{year} {time} {sign}{zone}".encode(
            "latin-1"
        ),
        st.sampled_from(["1", "01", " 1", "31", "\t9", "\xa09", "001"]),
        st.sampled_from(["Jul", "jUL", "Feb", "Foo", "J\xfcl"]),
        st.sampled_from(["1996", "2024", "0000", "99999"]),
        st.sampled_from(["02:44:25", "23:59:60", "2:44:25", "24:00:00"]),
        st.sampled_from(["+", "-", " "]),
        st.sampled_from(["0000", "0130", "2400", "2359", "00"]),
    ),
)


@given(date_octets)
def test_internaldate_octets_read_as_their_decoded_text(octets: bytes) -> None:
    """An INTERNALDATE handed over as received octets (read without decoding) gives the same instant as
    its leniently decoded text, or the same refusal (ValueError)."""

    def read(value: bytes | str) -> object:
        try:
            return imap_fetch.parse_internaldate(value)
        except ValueError:
            return ValueError

    assert read(octets) == read(octets.decode("ascii", "replace"))
    assert read(bytearray(octets)) == read(octets)


@given(st.text(min_size=1, max_size=40))
def test_modified_utf7_round_trips(name: str) -> None:
    """Every Unicode name survives encoding to modified UTF-7 and back."""
    assert decode_mailbox_name(encode_mailbox_name(name)) == name


@given(st.one_of(st.binary(max_size=60), st.text(max_size=60)))
def test_modified_utf7_decoder_raises_only_protocol_error(wire: Any) -> None:
    """Arbitrary octets or text decode to a name that encodes back to them, or raise ProtocolError."""
    try:
        name = decode_mailbox_name(wire)
    except ProtocolError:
        return
    expected = wire if isinstance(wire, str) else wire.decode("ascii")
    assert encode_mailbox_name(name) == expected


# -------------------------------------------------------------------------------------- configuration

toml_keys = st.sampled_from(
    ["daemon", "accounts", "accounts.a", "host", "port", "protocol", "username", "password", "retention"]
)
toml_values = st.one_of(
    st.integers(), st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
    st.sampled_from(["true", "[1, 2]", "{}", '"pop3"', '"imap"', '"delete"']),
)  # fmt: skip


@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.tuples(st.booleans(), toml_keys, toml_values).map(
                lambda t: f"[{t[1]}]" if t[0] else f"{t[1].split('.')[-1]} = {t[2]}"
            ),
            max_size=10,
        ).map("\n".join),
    )
)
def test_config_loader_raises_only_config_error(text: str) -> None:
    """Arbitrary text, and random mixtures of real keys and values, load or raise ConfigError, nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(ConfigError):
            load_config(path)
