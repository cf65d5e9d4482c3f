"""Header summaries of raw messages: decoding never fails, broken fields become None."""

from __future__ import annotations

import email.utils
import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.message import MAX_HEADER_OCTETS, decode_field, header_section, parse_date, sha256_hex, summarise
from maild.model import HeaderSummary


def crlf(*lines: bytes) -> bytes:
    return b"\r\n".join(lines)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        pytest.param(b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Grüße aus Köln", id="utf8-q"),
        pytest.param(b"=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln", id="utf8-b-lowercase"),
        pytest.param(b"=?ISO-8859-1?Q?Gr=FC=DFe?=", "Grüße", id="latin1-q"),
        pytest.param(b"=?iso-8859-1?B?R3L832U=?=", "Grüße", id="latin1-b"),
        pytest.param(b"Re: =?UTF-8?Q?=C3=84nderung?= am Vertrag", "Re: Änderung am Vertrag", id="mixed"),
        pytest.param(
            b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?Q?_aus_K=C3=B6ln?=", "Grüße aus Köln", id="adjacent-words"
        ),
    ],
)
def test_subject_rfc2047_words_are_decoded(field: bytes, expected: str) -> None:
    """RFC 2047 encoded-words in Q and B encoding, UTF-8 and ISO-8859-1, are decoded."""
    raw = crlf(b"Subject: " + field, b"", b"body")

    assert summarise(raw).subject == expected


def test_from_with_encoded_display_name() -> None:
    """An encoded display name in From is decoded and the address kept."""
    raw = crlf(b"From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.org>", b"", b"")

    assert summarise(raw).from_ == "Jörg Müller <joerg@example.org>"


def test_full_summary() -> None:
    """All five fields are extracted from a well-formed CRLF message, the Date converted to UTC."""
    raw = crlf(
        b"Return-Path: <anna@example.org>",
        b"Message-ID:   <1234@mail.example.org>  ",
        b"Date: Mon, 2 Mar 2026 10:15:30 +0100",
        b"From: Anna <anna@example.org>",
        b"To: Bob <bob@example.org>, Carl <carl@example.org>",
        b"Subject: Vertrag",
        b"",
        b"Subject: not a header",
    )

    assert summarise(raw) == HeaderSummary(
        message_id="<1234@mail.example.org>",
        date=datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC),
        from_="Anna <anna@example.org>",
        to="Bob <bob@example.org>, Carl <carl@example.org>",
        subject="Vertrag",
    )


def test_folded_header_is_unfolded() -> None:
    """A field folded over several lines (space or tab continuation) is joined with single spaces."""
    raw = crlf(b"Subject: a long", b"  subject line", b"\tcontinued", b"To: x@example.org", b"", b"")

    summary = summarise(raw)

    assert summary.subject == "a long subject line continued"
    assert summary.to == "x@example.org"


def test_folded_encoded_words_are_decoded() -> None:
    """Encoded-words split across folded lines decode to one text."""
    raw = crlf(b"Subject: =?UTF-8?B?R3LDvMOfZQ==?=", b" =?UTF-8?Q?_aus_K=C3=B6ln?=", b"", b"")

    assert summarise(raw).subject == "Grüße aus Köln"


def test_raw_utf8_header_is_decoded() -> None:
    """Unencoded 8-bit UTF-8 in a header (RFC 6532) is decoded as UTF-8."""
    raw = crlf("Subject: Grüße aus Köln".encode(), "From: Jörg <j@example.org>".encode(), b"", b"")

    summary = summarise(raw)

    assert summary.subject == "Grüße aus Köln"
    assert summary.from_ == "Jörg <j@example.org>"


def test_latin1_garbage_falls_back_to_latin1() -> None:
    """Raw 8-bit bytes that are not UTF-8 are read as Latin-1 instead of failing."""
    raw = crlf(b"Subject: Gr\xfc\xdfe \xe0 vous", b"", b"")

    assert summarise(raw).subject == "Grüße à vous"


def test_broken_encoded_word_is_kept_as_text() -> None:
    """An encoded-word with an unknown charset or bad base64 does not raise; some text is kept."""
    raw = crlf(b"Subject: =?x-unknown?Q?abc?= rest", b"To: =?UTF-8?B?!!!notbase64?=", b"", b"")

    summary = summarise(raw)

    assert summary.subject is not None
    assert "rest" in summary.subject
    assert summary.to is not None


def test_message_without_separator_is_all_header() -> None:
    """A message with no empty line is treated as header section only."""
    raw = crlf(b"Subject: only headers", b"From: a@example.org")

    summary = summarise(raw)

    assert summary.subject == "only headers"
    assert summary.from_ == "a@example.org"


def test_lf_only_message() -> None:
    """A message with bare LF line endings is parsed like a CRLF one, and body lines are not headers."""
    raw = b"Subject: lf\nFrom: a@example.org\nDate: Tue, 3 Mar 2026 08:00:00 +0000\n\nTo: not-a-header\n"

    summary = summarise(raw)

    assert summary.subject == "lf"
    assert summary.from_ == "a@example.org"
    assert summary.date == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert summary.to is None


def test_lf_headers_with_crlf_body_end_at_first_empty_line() -> None:
    """The header section ends at the first empty line even when the body uses CRLF line endings."""
    raw = b"Subject: lf head\nFrom: a@example.org\n\nMessage-ID: <inner@example.org>\r\n\r\nbody\r\n"

    assert header_section(raw) == b"Subject: lf head\nFrom: a@example.org"
    assert summarise(raw).message_id is None


def test_body_lines_after_crlf_separator_are_ignored() -> None:
    """Header-like lines after the empty line are body, not header fields."""
    raw = crlf(b"Subject: real", b"", b"To: body@example.org", b"Message-ID: <body@x>")

    summary = summarise(raw)

    assert summary.to is None
    assert summary.message_id is None


def test_missing_fields_are_none() -> None:
    """Absent fields and empty field bodies are None."""
    raw = crlf(b"X-Other: 1", b"Subject:   ", b"", b"body")

    assert summarise(raw) == HeaderSummary(None, None, None, None, None)


def test_empty_message_has_no_fields() -> None:
    """An empty message summarises to all None without raising."""
    assert summarise(b"") == HeaderSummary(None, None, None, None, None)


def test_first_occurrence_of_a_field_wins() -> None:
    """When a field appears twice, the first one is used."""
    raw = crlf(b"Subject: first", b"Subject: second", b"", b"")

    assert summarise(raw).subject == "first"


def test_field_names_are_case_insensitive() -> None:
    """Field names match regardless of case and of white space before the colon."""
    raw = crlf(b"SUBJECT : upper", b"message-id: <m@x>", b"fRoM:a@example.org", b"", b"")

    summary = summarise(raw)

    assert summary.subject == "upper"
    assert summary.message_id == "<m@x>"
    assert summary.from_ == "a@example.org"


def test_mbox_from_line_and_garbage_lines_are_skipped() -> None:
    """Lines that are not fields (an mbox "From " line, text without colon) do not break parsing."""
    raw = crlf(b"From anna@example.org Mon Mar  2 10:00:00 2026", b"garbage line", b"Subject: ok", b"", b"")

    summary = summarise(raw)

    assert summary.subject == "ok"
    assert summary.from_ is None


@pytest.mark.parametrize(
    "date",
    [
        b"not a date",
        b"Mon, 32 Foo 2026 99:99:99 +0100",
        b"2026-03-02T10:00:00Z",
        b"Mon, 2 Mar 2026 10:00:00 +2500",
    ],
)
def test_bad_date_is_none(date: bytes) -> None:
    """An unparseable Date field gives date None; the other fields are still parsed."""
    raw = crlf(b"Date: " + date, b"Subject: still here", b"", b"")

    summary = summarise(raw)

    assert summary.date is None
    assert summary.subject == "still here"


def test_date_without_zone_is_treated_as_utc() -> None:
    """A Date without a zone is taken as UTC and returned as an aware datetime."""
    raw = crlf(b"Date: Mon, 2 Mar 2026 10:00:00", b"", b"")

    assert summarise(raw).date == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_date_with_unknown_zone_marker_is_utc() -> None:
    """The RFC 5322 "-0000" zone (local time unknown) is treated as UTC."""
    assert parse_date("Mon, 2 Mar 2026 10:00:00 -0000") == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_date_is_converted_to_utc() -> None:
    """A Date with an offset comes back in UTC."""
    parsed = parse_date("Sun, 1 Mar 2026 23:30:00 -0500")

    assert parsed == datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
    assert parsed is not None
    assert parsed.utcoffset() is not None
    assert parsed.tzinfo == UTC


def test_date_overflowing_on_conversion_is_none() -> None:
    """A Date at the end of year 9999 west of UTC, which overflows when converted, gives None."""
    assert parse_date("Fri, 31 Dec 9999 23:59:59 -1200") is None


def test_header_section_is_capped() -> None:
    """The header section never exceeds MAX_HEADER_OCTETS, even without an empty line."""
    raw = b"Subject: x\r\n" + b"X-Pad: " + b"a" * (MAX_HEADER_OCTETS * 2)

    head = header_section(raw)

    assert len(head) == MAX_HEADER_OCTETS
    assert summarise(raw).subject == "x"


def test_decode_field_folds_white_space() -> None:
    """decode_field collapses runs of white space into single spaces and strips the ends."""
    assert decode_field(b"  a \t b\r\n c  ") == "a b c"


def test_sha256_hex_is_hashlib_sha256() -> None:
    """sha256_hex returns 64 lower-case hex digits equal to hashlib's SHA-256."""
    raw = b"Subject: x\r\n\r\n\x00\xff"

    digest = sha256_hex(raw)

    assert digest == hashlib.sha256(raw).hexdigest()
    assert len(digest) == 64
    assert digest == digest.lower()


def _stdlib_date(value: str) -> datetime | None:
    """parse_date as it was before its usual-form reading: the stdlib's parser alone."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


usual_dates = st.builds(
    lambda weekday, day, month, year, clock, zone: f"{weekday}{day} {month} {year} {clock} {zone}",
    st.sampled_from(["", "Mon, ", "Xyz, ", "mon, ", "Mon ", "Monday, "]),
    st.sampled_from(["1", "08", "31", "0", "32", "001", " 8"]),
    st.sampled_from(["Jan", "feb", "DEC", "Foo", "January", "Mär"]),
    st.sampled_from(["2024", "1000", "0999", "9999", "99", "20245"]),
    st.sampled_from(["08:56:00", "23:59:59", "24:00:00", "23:59:60", "8:56:00", "08:56"]),
    st.sampled_from(
        ["+0000", "-0000", "+0200", "-1200", "+2359", "+2400", "-0060", "+0299", "GMT", "+02", "+0200 (CET)"]
    ),
)


@given(st.one_of(usual_dates, st.text(alphabet="0123456789 ,:+-MonJaDecGT()", max_size=40)))
def test_the_usual_date_form_is_read_as_the_stdlib_reads_it(value: str) -> None:
    """A Date in the usual form (read without the stdlib's general parser) or close to it gives exactly
    the stdlib's instant, or None where that gives None."""
    assert parse_date(value) == _stdlib_date(value)
