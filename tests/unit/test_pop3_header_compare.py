"""maild.message.same_header_section: the archived message against a TOP n 0 reply or an IMAP BODY[HEADER]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.message import MAX_HEADER_OCTETS, same_header_section

_FIELD = st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,10}: [ -~]{0,30}\Z", fullmatch=True)
_HEADERS = st.lists(_FIELD, min_size=1, max_size=6).map(lambda fields: b"".join(f + b"\r\n" for f in fields))
_BODY = st.binary(max_size=40).map(lambda body: body.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r"))


@given(_HEADERS, _BODY)
def test_top_with_the_empty_line_matches_the_message_it_came_from(headers: bytes, body: bytes) -> None:
    assert same_header_section(headers + b"\r\n" + body, headers + b"\r\n")


@given(_HEADERS)
def test_a_message_without_an_empty_line_matches_top_with_or_without_one(headers: bytes) -> None:
    assert same_header_section(headers, headers)
    assert same_header_section(headers, headers + b"\r\n")


@given(_HEADERS, _HEADERS, _BODY)
def test_other_header_sections_never_match(first: bytes, second: bytes, body: bytes) -> None:
    assert same_header_section(first + b"\r\n" + body, second + b"\r\n") == (first == second)
    assert same_header_section(first, second + b"\r\n") == (first == second)


def test_one_changed_octet_or_a_missing_field_does_not_match() -> None:
    archived = b"From: a\r\nSubject: b\r\n\r\nbody\r\n"
    assert not same_header_section(archived, b"From: a\r\nSubject: c\r\n\r\n")
    assert not same_header_section(archived, b"From: a\r\n\r\n")
    assert not same_header_section(archived, b"From: a\r\nSubject: b \r\n\r\n")
    assert not same_header_section(archived, b"")


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_header_sections_alike_in_their_first_256_kib_but_not_after_do_not_match(extra: int) -> None:
    """The comparison is not cut at MAX_HEADER_OCTETS (the TOP replies it reads may be longer)."""
    filler = b"X-Filler: " + b"f" * 86 + b"\r\n"
    common = (
        filler * (MAX_HEADER_OCTETS // len(filler))
        + b"X-Pad: "
        + b"p" * (MAX_HEADER_OCTETS % len(filler))
        + b"\r\n"
    )
    common = common[: MAX_HEADER_OCTETS + extra]
    assert not same_header_section(common + b"Subject: one\r\n\r\nbody\r\n", common + b"Subject: two\r\n\r\n")
    assert same_header_section(common + b"Subject: one\r\n\r\nbody\r\n", common + b"Subject: one\r\n\r\n")


@pytest.mark.parametrize("archived", [b"", b"\r\n", b"\r\nbody\r\n", b"\n\nbody\n"])
@pytest.mark.parametrize("top", [b"", b"\r\n", b"\r\nother\r\n"])
def test_an_empty_header_section_never_matches(archived: bytes, top: bytes) -> None:
    """A message without a header section (0 octets, or starting with the empty line) proves nothing."""
    assert not same_header_section(archived, top)
