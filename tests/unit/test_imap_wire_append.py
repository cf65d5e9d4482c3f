"""Sans-I/O parts of APPEND and of the header scan: date-time and flag arguments, APPENDUID, BODY[HEADER]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import wire


def test_internaldate_is_sent_in_utc_with_english_month() -> None:
    """An aware datetime becomes a quoted RFC 9051 date-time in UTC; a naive one is refused."""
    berlin = timezone(timedelta(hours=2))
    assert (
        wire.format_internaldate(datetime(2026, 5, 3, 1, 2, 3, tzinfo=berlin))
        == '"02-May-2026 23:02:03 +0000"'
    )
    assert imap_fetch.parse_internaldate(
        wire.format_internaldate(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)).strip('"')
    ) == datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        wire.format_internaldate(datetime(2026, 1, 1))


def test_flag_list() -> None:
    """Flags become a sorted parenthesised list, none is None, and non-atoms are refused."""
    assert wire.format_flag_list({"\\Seen", "$Forwarded"}) == "($Forwarded \\Seen)"
    assert wire.format_flag_list([]) is None
    for bad in ("two words", "\\", "a(b", 'q"', "x]"):
        with pytest.raises(ValueError, match="not an IMAP flag"):
            wire.format_flag_list([bad])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"[APPENDUID 38505 3955] APPEND completed", (38505, 3955)),
        (b"[appenduid 1 2] ok", (1, 2)),
        (b"[APPENDUID 38505 3955:3957] MULTIAPPEND", None),
        (b"[APPENDUID 38505] broken", None),
        (b"[APPENDUID 0 5] zero", None),
        (b"APPEND completed", None),
        (b"[READ-WRITE] other code", None),
    ],
)
def test_appenduid(text: bytes, expected: tuple[int, int] | None) -> None:
    """[APPENDUID v u] (RFC 4315) gives (UIDVALIDITY, UID); anything else gives None, never an error."""
    assert wire.parse_appenduid(wire.parse_completion("OK", text)) == expected


def test_refusal_codes_are_parsed() -> None:
    """[TOOBIG] and [OVERQUOTA] come out as response codes with their meaning listed."""
    for code in ("TOOBIG", "OVERQUOTA", "LIMIT"):
        status = wire.parse_completion("NO", f"[{code}] refused".encode())
        assert status.code == code
        assert code in wire.APPEND_REFUSAL_CODES


def test_fetch_header_literal_split_anywhere() -> None:
    """BODY[HEADER] (and RFC822.HEADER) literals are returned as header octets, UID on either side."""
    head = b"Subject: x (\r\nMessage-ID: <a@b>\r\n\r\n"
    lines = [b"1 FETCH (UID 7 RFC822.SIZE 99 BODY[HEADER] {%d}" % len(head), bytearray(head), b")"]
    result = imap_fetch.parse_fetch(lines, requested=[7], require=("RFC822.SIZE", "BODY[HEADER]"))
    assert result.messages[7].header == head
    assert result.messages[7].size_octets == 99
    alias = [b"* 2 FETCH (RFC822.HEADER {%d}" % len(head), bytearray(head), b" UID 8 RFC822.SIZE 5)"]
    result = imap_fetch.parse_fetch(alias, requested=[8], require=("BODY[HEADER]",))
    assert result.messages[8].header == head
    nil = [b"3 FETCH (UID 9 RFC822.SIZE 5 BODY[HEADER] NIL)"]
    assert imap_fetch.parse_fetch(nil, require=("BODY[HEADER]",)).failures == {9: "BODY[HEADER] is NIL"}
