"""Sans-I/O IMAP parsing: mailbox names, quoting, sequence sets and every response parser.

Response parts are given in the shape aioimaplib 2.0.3 produces (see ``maild.protocols.imap.wire``);
``tests/faults/test_imap_library.py`` feeds real server byte streams through aioimaplib itself,
split at every byte boundary, into the same parsers.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from maild.errors import ProtocolError
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import fetch_line, utf7, wire
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap import listing as imap_list

# ------------------------------------------------------------------------------------ modified UTF-7


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Entwürfe 2026", "Entw&APw-rfe 2026"),
        ("&", "&-"),
        ("&-", "&--"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Sent Items", "Sent Items"),
        ('Quote " and \\ backslash', 'Quote " and \\ backslash'),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 section 5.1.3 example
        ("Grüße/Ärger", "Gr&APwA3w-e/&AMQ-rger"),
        ("📬 Post", "&2D3c7A- Post"),  # outside the BMP: a UTF-16 surrogate pair
        ("tab\there", "tab&AAk-here"),  # control characters are not printable ASCII
        ("", ""),
    ],
)
def test_mutf7_encodes_and_round_trips(name: str, encoded: str) -> None:
    """Names encode to the RFC 3501 form and decode back to the same Unicode text."""
    assert utf7.encode_mailbox_name(name) == encoded
    assert utf7.decode_mailbox_name(encoded) == name
    assert utf7.decode_mailbox_name(encoded.encode("ascii")) == name


def test_mutf7_round_trips_every_bmp_block() -> None:
    """A sample of characters across the Basic Multilingual Plane survives encode and decode."""
    text = "".join(chr(c) for c in range(0xA0, 0xD7FF, 97))
    assert utf7.decode_mailbox_name(utf7.encode_mailbox_name(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        "Entw\u00fcrfe",  # raw non-ASCII
        b"Entw\xc3\xbcrfe",  # raw UTF-8 octets
        "abc&AAk",  # unterminated run
        "&A-",  # too short for one UTF-16 unit
        "&AGE-",  # printable ASCII ('a') hidden in base64
        "&2D0-",  # lone high surrogate
        "&AOQ-&APY-",  # two adjacent runs: not what the encoder produces
        "&AP/-",  # '/' instead of ','
        "&APw=-",  # padding
        "a\x7fb",  # DEL is not printable
    ],
)
def test_mutf7_rejects_invalid_and_non_canonical_names(bad: str | bytes) -> None:
    """Names the encoder would never produce are refused, so SELECT can send back exactly what LIST sent."""
    with pytest.raises(ProtocolError, match=r"RFC 3501 section 5\.1\.3"):
        utf7.decode_mailbox_name(bad)


def test_mutf7_encode_rejects_lone_surrogate() -> None:
    """A lone surrogate has no UTF-16 form and cannot be a mailbox name."""
    with pytest.raises(ValueError, match="surrogate"):
        utf7.encode_mailbox_name("bad \ud800")


# ------------------------------------------------------------------------------------ quoting, sets


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("anna", '"anna"'),
        ("pass word", '"pass word"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ('\\"', r'"\\\""'),
        ("", '""'),
        ("Grüße", '"Grüße"'),
        ("NIL", '"NIL"'),
    ],
)
def test_quote_astring(value: str, quoted: str) -> None:
    """Backslash and double quote are escaped; everything is always quoted, so NIL stays a string."""
    assert wire.quote_astring(value) == quoted


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b", "line\r\n"])
def test_quote_astring_refuses_line_breaks_and_nul(value: str) -> None:
    """CR, LF and NUL would split the command on the wire and are refused."""
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        wire.quote_astring(value)


@pytest.mark.parametrize(
    ("uids", "text"),
    [
        ([1, 2, 3, 4, 5, 7, 9, 10, 11, 12], "1:5,7,9:12"),
        ([12, 1, 3, 2, 2, 7], "1:3,7,12"),
        ([42], "42"),
        ([1, 3, 5], "1,3,5"),
        ([4294967294, 4294967295], "4294967294:4294967295"),
        (range(1, 1001), "1:1000"),
    ],
)
def test_sequence_set(uids: list[int], text: str) -> None:
    """UIDs are sorted, deduplicated and compressed into ranges."""
    assert wire.sequence_set(uids) == text


@pytest.mark.parametrize("uids", [[], [0], [1, 2**32]])
def test_sequence_set_rejects_empty_and_out_of_range(uids: list[int]) -> None:
    """An empty set or a UID outside 1 to 2**32 - 1 cannot be sent."""
    with pytest.raises(ValueError, match=r"sequence-set|empty"):
        wire.sequence_set(uids)


# ------------------------------------------------------------------------------------ status, capability


@pytest.mark.parametrize(
    ("line", "condition", "code", "args", "text"),
    [
        (b"* OK [UIDVALIDITY 3857529045] UIDs valid", "OK", "UIDVALIDITY", "3857529045", "UIDs valid"),
        (b"OK [UIDNEXT 4392] Predicted next UID", "OK", "UIDNEXT", "4392", "Predicted next UID"),
        (b"NO [AUTHENTICATIONFAILED] Authentication failed.", "NO", "AUTHENTICATIONFAILED", "", ""),
        (b"NO [UNAVAILABLE] Try again later", "NO", "UNAVAILABLE", "", "Try again later"),
        (b"no [limit] too many", "NO", "LIMIT", "", "too many"),
        (b"OK [ALERT] System shutdown in 10 minutes", "OK", "ALERT", "", "System shutdown in 10 minutes"),
        (
            b"OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited",
            "OK",
            "PERMANENTFLAGS",
            "(\\Deleted \\Seen \\*)",
            "Limited",
        ),
        (b"BAD Error in IMAP command: Unknown", "BAD", None, "", "Error in IMAP command: Unknown"),
        (b"* BYE Logging out", "BYE", None, "", "Logging out"),
        (b"* PREAUTH [CAPABILITY IMAP4rev1] hi", "PREAUTH", "CAPABILITY", "IMAP4rev1", "hi"),
        (b"OK", "OK", None, "", ""),
        (b"OK [READ-WRITE]", "OK", "READ-WRITE", "", ""),
    ],
)
def test_parse_status(line: bytes, condition: str, code: str | None, args: str, text: str) -> None:
    """Condition, RFC 5530 code (upper-cased), its arguments and the text are separated."""
    status = wire.parse_status(line)
    assert (status.condition, status.code, status.code_args) == (condition, code, args)
    if text:
        assert status.text == text


@pytest.mark.parametrize("line", [b"3 EXISTS", b"NOOP", b"", b"* SEARCH 1 2", b"OKAY fine"])
def test_parse_status_rejects_other_lines(line: bytes) -> None:
    """Lines that are not status responses raise ProtocolError."""
    with pytest.raises(ProtocolError):
        wire.parse_status(line)


def test_parse_completion_as_aioimaplib_returns_it() -> None:
    """aioimaplib's result word and last line combine into one status; other result words are refused."""
    status = wire.parse_completion("NO", bytearray(b"[AUTHENTICATIONFAILED] Authentication failed."))
    assert status.condition == "NO"
    assert status.code == "AUTHENTICATIONFAILED"
    assert not status.ok
    assert status.describe() == "NO [AUTHENTICATIONFAILED] Authentication failed."
    assert wire.parse_completion("OK", b"Logout completed (0.001 + 0.000 secs).").ok
    with pytest.raises(ProtocolError, match=r"RFC 9051 section 7\.1"):
        wire.parse_completion("KO", b"timed out")


def test_parse_tagged_status() -> None:
    """A whole tagged line yields its tag and status; untagged lines are refused."""
    tag, status = wire.parse_tagged_status(b"A001 NO [UNAVAILABLE] Server busy")
    assert tag == "A001"
    assert (status.condition, status.code, status.text) == ("NO", "UNAVAILABLE", "Server busy")
    for bad in (b"* OK hi", b"A001", b"A001 MAYBE fine"):
        with pytest.raises(ProtocolError):
            wire.parse_tagged_status(bad)


@pytest.mark.parametrize(
    "line",
    [
        b"* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR STARTTLS AUTH=PLAIN",
        b"CAPABILITY IMAP4rev1 LITERAL+ SASL-IR STARTTLS AUTH=PLAIN",
        b"IMAP4rev1 literal+ SASL-IR STARTTLS auth=plain",
        "IMAP4rev1 LITERAL+ SASL-IR STARTTLS AUTH=PLAIN",
    ],
)
def test_parse_capability(line: bytes | str) -> None:
    """All shapes give the same upper-cased set."""
    assert wire.parse_capability(line) == {"IMAP4REV1", "LITERAL+", "SASL-IR", "STARTTLS", "AUTH=PLAIN"}


# ------------------------------------------------------------------------------------ SELECT, SEARCH

# What Dovecot 2.3.19 sends for SELECT, as aioimaplib hands it over (``* `` stripped), completion excluded.
DOVECOT_SELECT = [
    b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
    b"OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.",
    b"2000 EXISTS",
    b"0 RECENT",
    b"OK [UNSEEN 17] First unseen.",
    b"OK [UIDVALIDITY 1796008148] UIDs valid",
    b"OK [UIDNEXT 2001] Predicted next UID",
    b"OK [HIGHESTMODSEQ 3] Highest",
]


def test_parse_select_dovecot() -> None:
    """Every value Dovecot reports is read, flags in their RFC spelling."""
    completion = wire.parse_completion("OK", b"[READ-WRITE] Select completed (0.002 + 0.000 secs).")
    info = wire.parse_select(DOVECOT_SELECT, completion)
    assert info == wire.SelectInfo(
        exists=2000,
        uidvalidity=1796008148,
        uidnext=2001,
        flags=frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}),
        permanent_flags=frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\*"}),
        highest_modseq=3,
        read_only=False,
    )


def test_parse_select_minimal_rfc3501_server_with_prefixes() -> None:
    """Optional items may be missing, lines may keep ``* ``, flags may be in any case."""
    info = wire.parse_select(
        [
            b"* 0 EXISTS",
            b"* FLAGS (\\SEEN $Junk)",
            b"* OK [UIDVALIDITY 1] ok",
            b"* 3 EXPUNGE",
            b"* LIST () NIL x",
        ],
        wire.parse_completion("OK", b"[READ-ONLY] done"),
    )
    assert (info.exists, info.uidvalidity, info.uidnext, info.highest_modseq) == (0, 1, None, None)
    assert info.flags == {"\\Seen", "$Junk"}
    assert info.permanent_flags is None
    assert info.read_only is True


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b"3 EXISTS"], "UIDVALIDITY"),
        ([b"OK [UIDVALIDITY 7] x"], "EXISTS"),
        ([b"3 EXISTS", b"OK [UIDVALIDITY 0] zero"], "UIDVALIDITY"),
        ([b"3 EXISTS", b"OK [UIDVALIDITY 99999999999] big"], "UIDVALIDITY"),
        ([b"3 EXISTS", b"OK [UIDVALIDITY x] nan"], "UIDVALIDITY"),
        ([b"3 EXISTS", b"FLAGS (\\Seen", b"OK [UIDVALIDITY 1] x"], "flag list"),
    ],
)
def test_parse_select_rejects_missing_or_broken_values(lines: list[bytes], message: str) -> None:
    """Without a valid EXISTS and UIDVALIDITY the mailbox cannot be tracked: ProtocolError."""
    with pytest.raises(ProtocolError, match=message):
        wire.parse_select(lines)


@pytest.mark.parametrize(
    ("lines", "uids"),
    [
        ([b"1 2 3 7"], [1, 2, 3, 7]),  # aioimaplib strips "SEARCH "
        ([b"SEARCH 5 4"], [5, 4]),
        ([b"* SEARCH 9"], [9]),
        ([b""], []),
        ([b"SEARCH"], []),
        ([], []),
        ([b"2 3 (MODSEQ 917162500)"], [2, 3]),
        ([b"* 4 EXISTS", b"1 2", b"3 EXPUNGE", b"* 2 FETCH (FLAGS (\\Seen))", b"OK [ALERT] x"], [1, 2]),
        ([b"1 2", b"3"], [1, 2, 3]),
    ],
)
def test_parse_search(lines: list[bytes], uids: list[int]) -> None:
    """Numbers come back in server order; interleaved untagged responses are skipped."""
    assert wire.parse_search(lines) == uids


@pytest.mark.parametrize("line", [b"SEARCH 1 x 3", b"1 2 -3", b"SEARCH 0", b"SEARCH 4294967296"])
def test_parse_search_rejects_non_numbers(line: bytes) -> None:
    """A search line with anything but UIDs breaks RFC 9051 section 7.3.4."""
    with pytest.raises(ProtocolError, match=r"7\.3\.4"):
        wire.parse_search([line])


# ------------------------------------------------------------------------------------ INTERNALDATE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17-Jul-1996 02:44:25 -0700", datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC)),
        (" 7-Jul-1996 02:44:25 +0000", datetime(1996, 7, 7, 2, 44, 25, tzinfo=UTC)),
        ("07-jul-1996 02:44:25 +0200", datetime(1996, 7, 7, 0, 44, 25, tzinfo=UTC)),
        ("31-Dec-2025 23:30:00 -0130", datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)),
        (b"29-Feb-2024 12:00:00 +0100", datetime(2024, 2, 29, 11, 0, 0, tzinfo=UTC)),
    ],
)
def test_parse_internaldate(text: str | bytes, expected: datetime) -> None:
    """Dates become aware UTC datetimes, the zone offset applied."""
    parsed = imap_fetch.parse_internaldate(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "17-Jul-1996",
        "17-Foo-1996 02:44:25 -0700",
        "30-Feb-2024 12:00:00 +0000",
        "",
        "17-Jul-1996 2:44:25 -0700",
    ],
)
def test_parse_internaldate_rejects_garbage(text: str) -> None:
    """Anything but a valid RFC 9051 date-time raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 -- the message varies with the cause
        imap_fetch.parse_internaldate(text)


# ------------------------------------------------------------------------------------ FETCH

BODY = b'From: a@example.org\r\nSubject: (unbalanced :) "quote\r\n\r\nBody ) with ( parens {5}\r\n'
DATE = b'"17-Jul-1996 02:44:25 -0700"'
DATE_UTC = datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC)
ITEMS: dict[str, bytes] = {
    "UID": b"UID 7",
    "FLAGS": b"FLAGS (\\Seen $Forwarded)",
    "INTERNALDATE": b"INTERNALDATE " + DATE,
    "RFC822.SIZE": b"RFC822.SIZE %d" % len(BODY),
    "BODY[]": b"BODY[] {%d}" % len(BODY),
}
FULL: tuple[imap_fetch.FetchItem, ...] = ("UID", "FLAGS", "INTERNALDATE", "BODY[]")


def fetch_parts(
    seq: int, order: tuple[str, ...], body: bytes = BODY, *, star: bool = False
) -> list[imap_lex.Part]:
    """Build aioimaplib's parts for one FETCH response with the items in ``order``."""
    parts: list[imap_lex.Part] = []
    text = (b"* " if star else b"") + b"%d FETCH (" % seq
    for index, name in enumerate(order):
        item = ITEMS[name] if name != "BODY[]" else b"BODY[] {%d}" % len(body)
        text += (b" " if index else b"") + item
        if name == "BODY[]":
            parts += [text, bytearray(body)]
            text = b""
    parts.append(text + b")")
    return parts


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]"]))
)
def test_parse_fetch_items_in_every_order(order: tuple[str, ...]) -> None:
    """UID, FLAGS, INTERNALDATE, RFC822.SIZE and the body literal parse the same in all 120 orders."""
    result = imap_fetch.parse_fetch(fetch_parts(3, order), requested=[7], require=FULL)
    message = result.messages[7]
    assert message == imap_fetch.FetchedMessage(
        uid=7,
        seq=3,
        flags=frozenset({"\\Seen", "$Forwarded"}),
        internaldate=DATE_UTC,
        size_octets=len(BODY),
        body=BODY,
    )
    assert (result.failures, result.ignored, result.malformed) == ({}, 0, ())


def test_parse_fetch_with_untagged_prefix_kept() -> None:
    """Lines that still carry ``* `` (aioimaplib keeps it after unbalanced parentheses) parse the same."""
    parts = fetch_parts(1, ("UID", "BODY[]"), star=True) + fetch_parts(2, ("BODY[]", "UID"), b"x", star=True)
    parts[-1] = parts[-1].replace(b"UID 7", b"UID 8")
    result = imap_fetch.parse_fetch(parts, require=("BODY[]",))
    assert result.messages[7].body == BODY
    assert result.messages[8].body == b"x"


def test_parse_fetch_many_messages_and_empty_body() -> None:
    """Several responses in one command, including a zero-length literal."""
    parts: list[imap_lex.Part] = []
    for uid in range(1, 51):
        body = b"m%d\r\n" % uid if uid != 25 else b""
        parts += [b"%d FETCH (UID %d BODY[] {%d}" % (uid, uid, len(body)), bytearray(body), b")"]
    result = imap_fetch.parse_fetch(parts, requested=range(1, 51), require=("BODY[]",))
    assert sorted(result.messages) == list(range(1, 51))
    assert result.messages[25].body == b""
    assert result.messages[50].body == b"m50\r\n"


def test_parse_fetch_merges_responses_for_one_message() -> None:
    """Items spread over several FETCH responses with the same sequence number are merged."""
    parts: list[imap_lex.Part] = [
        b"4 FETCH (FLAGS ())",
        b"4 FETCH (UID 12 BODY[] {3}",
        bytearray(b"abc"),
        b")",
        b"* 4 FETCH (INTERNALDATE " + DATE + b" FLAGS (\\Seen))",
    ]
    result = imap_fetch.parse_fetch(parts, requested=[12], require=FULL)
    assert result.messages[12].flags == frozenset({"\\Seen"})
    assert result.messages[12].internaldate == DATE_UTC
    assert result.messages[12].body == b"abc"


def test_parse_fetch_nil_body_and_missing_items_are_per_message_failures() -> None:
    """NIL or absent required items fail that message only; the others still arrive."""
    parts: list[imap_lex.Part] = [
        b"1 FETCH (UID 1 FLAGS () INTERNALDATE " + DATE + b" BODY[] NIL)",
        b"2 FETCH (UID 2 FLAGS () BODY[] {2}",
        bytearray(b"ok"),
        b")",
        *fetch_parts(3, ("UID", "FLAGS", "INTERNALDATE", "BODY[]"), b"fine"),
        b"4 FETCH (UID 4 FLAGS () INTERNALDATE NIL BODY[] {1}",
        bytearray(b"x"),
        b")",
    ]
    parts[4] = parts[4].replace(b"UID 7", b"UID 3")
    result = imap_fetch.parse_fetch(parts, requested=[1, 2, 3, 4, 5], require=FULL)
    assert set(result.messages) == {3}
    assert result.failures == {1: "BODY[] is NIL", 2: "INTERNALDATE missing", 4: "INTERNALDATE is NIL"}
    assert 5 not in result.messages
    assert 5 not in result.failures


def test_parse_fetch_reports_interleaved_exists_and_expunge() -> None:
    """``* n EXISTS`` and ``* n EXPUNGE`` between responses are reported, not fatal."""
    parts: list[imap_lex.Part] = [
        b"* 5 EXISTS",
        *fetch_parts(1, ("UID", "BODY[]"), b"a"),
        b"2 EXPUNGE",
        b"* 6 EXISTS",
        b"* 3 RECENT",
        b"OK [ALERT] hello",
        *fetch_parts(2, ("BODY[]", "UID"), b"b"),
    ]
    parts[-1] = parts[-1].replace(b"UID 7", b"UID 9")
    result = imap_fetch.parse_fetch(parts, require=("BODY[]",))
    assert {uid: m.body for uid, m in result.messages.items()} == {7: b"a", 9: b"b"}
    assert result.exists == 6
    assert result.expunged == (2,)
    assert result.ignored == 1  # the ALERT; RECENT is a known message event


def test_parse_fetch_ignores_unrequested_and_uidless_responses() -> None:
    """A UID below the requested range (``UID FETCH 10:*``) and FLAGS pushes without UID are ignored."""
    parts: list[imap_lex.Part] = [
        b"3 FETCH (UID 9 BODY[] {1}",
        bytearray(b"z"),
        b")",
        b"2 FETCH (FLAGS (\\Deleted))",
    ]
    result = imap_fetch.parse_fetch(parts, requested=range(10, 20), require=("BODY[]",))
    assert result.messages == {}
    assert result.failures == {}
    assert result.ignored == 2


def test_parse_fetch_quoted_body_and_rfc822_alias() -> None:
    """A body sent as a quoted string or under the IMAP4rev1 name RFC822 is accepted."""
    parts: list[imap_lex.Part] = [
        b'1 FETCH (UID 1 BODY[] "short \\"one\\"")',
        b"2 FETCH (RFC822 {2}",
        bytearray(b"hi"),
    ]
    parts.append(b" UID 2)")
    result = imap_fetch.parse_fetch(parts, require=("BODY[]",))
    assert result.messages[1].body == b'short "one"'
    assert result.messages[2].body == b"hi"


def test_parse_fetch_section_specs_and_nested_lists() -> None:
    """Section specs with spaces and parentheses, MODSEQ and nested lists lex as single items."""
    parts: list[imap_lex.Part] = [
        b"1 FETCH (UID 5 MODSEQ (12) BODY[HEADER.FIELDS (FROM TO)] {4}",
        bytearray(b"x\r\n\r"),
        b" X-GM-LABELS (\\Inbox (nested)) BODY[] {1}",
        bytearray(b"!"),
        b")",
    ]
    result = imap_fetch.parse_fetch(parts, require=("BODY[]",))
    assert result.messages[5].body == b"!"


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"1 FETCH (UID 3 BODY[] {5}", bytearray(b"abc"), b")"], "announced as 5"),
        ([b"1 FETCH (UID 3 FLAGS (\\Seen BODY[] {1}", bytearray(b"a"), b")"], "unbalanced"),
        ([b'1 FETCH (UID 3 FLAGS 12 BODY[] "x")'], "flag list"),
        ([b'1 FETCH (UID 3 INTERNALDATE "yesterday" BODY[] {1}', bytearray(b"a"), b")"], "date-time"),
        ([b'1 FETCH (UID 3 RFC822.SIZE -1 BODY[] "x")'], "RFC822.SIZE"),
        ([b"1 FETCH (UID 3 BODY[])"], "without a value"),
        ([b"1 FETCH (UID 3 BODY[] (a b))"], "not a string"),
        ([b'1 FETCH (UID 3 BODY[] "unterminated)'], "unterminated"),
    ],
)
def test_parse_fetch_malformed_message_fails_alone(parts: list[imap_lex.Part], reason: str) -> None:
    """A response that breaks the grammar fails its own UID; a good message after it still parses."""
    good: list[imap_lex.Part] = [b"2 FETCH (UID 4 BODY[] {2}", bytearray(b"ok"), b")"]
    result = imap_fetch.parse_fetch([*parts, *good], require=("BODY[]",))
    assert reason in result.failures[3]
    assert result.messages[4].body == b"ok"


def test_parse_fetch_truncated_literal_fails_its_message() -> None:
    """A literal announced at the very end of the parts (response cut short) fails that message."""
    result = imap_fetch.parse_fetch([b"1 FETCH (UID 3 BODY[] {3}"], require=("BODY[]",))
    assert "missing" in result.failures[3]


def test_parse_fetch_malformed_without_uid_is_reported() -> None:
    """Garbage whose UID cannot be read is listed in ``malformed``, never raised."""
    result = imap_fetch.parse_fetch([b"1 FETCH (garbage", b'2 FETCH "x"', b"1 FETCH ((("])
    assert result.messages == {}
    assert len(result.malformed) == 3
    assert all("malformed FETCH response" in m for m in result.malformed)


def test_parse_fetch_body_may_contain_anything() -> None:
    """Literal octets are opaque: CRLF, NUL, 8-bit, ``{n}`` markers and FETCH-looking lines pass untouched."""
    body = b"1 FETCH (UID 99 BODY[] {3}\r\n\x00\xff\xfe)\r\n* 5 EXISTS\r\nA001 OK done\r\n{12}"
    result = imap_fetch.parse_fetch(fetch_parts(1, ("BODY[]", "UID"), body), require=("BODY[]",))
    assert result.messages[7].body == body


# ------------------------------------------------------------------------------------ LIST


def test_parse_list_dovecot_shapes() -> None:
    """Atoms, quoted names with escapes, literal names, NIL delimiter and special-use attributes."""
    lines: list[imap_lex.Part] = [
        b'(\\HasNoChildren) "/" INBOX',  # aioimaplib strips "LIST "
        b'LIST (\\HasNoChildren \\Sent) "/" "Sent Items"',
        b'* LIST (\\HasChildren \\noselect) "/" "Tom &- Jerry"',
        b'(\\HasNoChildren \\Drafts) "/" "Entw&APw-rfe 2026"',
        b'() "/" "say \\"hi\\" \\\\ ok"',
        b'(\\HasNoChildren) "/" {8}',
        bytearray(b"lit/name"),
        b'(\\Junk \\HasNoChildren) "/" {4}',
        bytearray(b"Spam"),
        b' ("CHILDINFO" ("SUBSCRIBED"))',
        b"(\\Noinferiors) NIL inbox",
        b"3 EXISTS",
    ]
    found = imap_list.parse_list(lines)
    assert [(m.name, m.delimiter) for m in found] == [
        ("INBOX", "/"),
        ("Sent Items", "/"),
        ("Tom & Jerry", "/"),
        ("Entwürfe 2026", "/"),
        ('say "hi" \\ ok', "/"),
        ("lit/name", "/"),
        ("Spam", "/"),
        ("INBOX", None),
    ]
    assert found[1].attributes == {"\\HasNoChildren", "\\Sent"}
    assert found[2].attributes == {"\\HasChildren", "\\Noselect"}
    assert not found[2].selectable
    assert found[3].attributes == {"\\HasNoChildren", "\\Drafts"}
    assert found[6].attributes == {"\\Junk", "\\HasNoChildren"}
    assert found[0].selectable


def test_parse_list_utf8_names() -> None:
    """After ENABLE UTF8=ACCEPT names are UTF-8, not modified UTF-7."""
    found = imap_list.parse_list(['() "/" "Entwürfe 2026"'.encode()], utf8=True)
    assert found[0].name == "Entwürfe 2026"


@pytest.mark.parametrize(
    "line",
    [
        b'(\\HasNoChildren "/" INBOX',
        b'() "//" INBOX',
        b'() "/" (INBOX)',
        b'() "/"',
        b'() "/" "Entw\xc3\xbcrfe"',
    ],
)
def test_parse_list_rejects_broken_lines(line: bytes) -> None:
    """Broken LIST lines raise ProtocolError."""
    with pytest.raises(ProtocolError):
        imap_list.parse_list([line])


def test_parse_flags() -> None:
    """System flags get their RFC spelling; keywords stay as sent."""
    assert imap_lex.parse_flags(b"(\\SEEN \\answered $Label1 Junk)") == {
        "\\Seen",
        "\\Answered",
        "$Label1",
        "Junk",
    }
    assert imap_lex.parse_flags("()") == frozenset()
    with pytest.raises(ProtocolError):
        imap_lex.parse_flags(b"\\Seen")


def test_parse_fetch_hands_on_every_literal_without_copying_it() -> None:
    """A BODY[] literal, large or small, is the body itself (no second copy of the message's octets)."""
    for raw in (b"x" * (2**20 + 5), b"Subject: small\r\n\r\nhi\r\n"):
        parts = fetch_parts(3, ("UID", "FLAGS", "INTERNALDATE", "BODY[]"), raw)
        literal = parts[1]
        result = imap_fetch.parse_fetch(parts, requested=[7], require=("BODY[]",))
        assert result.messages[7].body is literal
        assert result.messages[7].body == raw


@pytest.mark.parametrize(
    "head",
    [
        b'3 FETCH (UID 7 FLAGS (\\Seen $Junk) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {2}',
        b'3 FETCH (UID 7 FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {2}',
        b'3 FETCH (UID 7 FLAGS (NIL) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {2}',
        b'3 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE "a\\"b" BODY[] {2}',
        b'3 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {3}',
        b'3 FETCH (uid 7 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {2}',
    ],
)
def test_fetch_fast_path_and_lexer_agree_on_the_usual_shape_and_its_neighbours(head: bytes) -> None:
    """The usual body response (read by one regular expression) and shapes next to it (NIL flag, an
    escaped quote, a wrong literal count, lower-case names: left to the lexer) give the lexer's line."""
    logical: list[imap_lex.Part] = [head, bytearray(b"hi"), b")"]
    lexed = fetch_line._lexed_fetch_line(3, logical, head, len(b"3 FETCH "))
    assert imap_fetch.read_fetch_line(logical) == lexed
