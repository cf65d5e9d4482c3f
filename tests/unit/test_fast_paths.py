"""The store path's fast paths give exactly what the general code gives: RFC 2047 encoded-words decoded
without ``email.header``, MIME delimiters found with a one-octet search first, UTC text without
``strftime``."""

from __future__ import annotations

import base64
import binascii
import email.charset
import email.errors
import email.header
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from maild.archive import mime
from maild.archive.mime import _boundary_parts, _find_delimiter
from maild.archive.schema import parse_utc, utc_text
from maild.message import _SAME_CODEC_CHARSETS, _decode_field, _only_encoded_words


def _stdlib(text: str) -> str:
    """What ``_decode_field`` gave for an ASCII ``text`` with ``=?`` before the fast path."""
    try:
        decoded = str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        decoded = text
    return " ".join(decoded.split())


_CHARSETS = [*sorted(_SAME_CODEC_CHARSETS), "UTF-8", "ISO-8859-1", "koi8-r", "utf-8*de", "x-unknown", ""]


@st.composite
def _word(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(_CHARSETS))
    octets = draw(st.one_of(st.text(max_size=12).map(lambda t: t.encode("utf-8")), st.binary(max_size=12)))
    kind = draw(st.sampled_from(["B", "b", "Q", "q", "raw"]))
    if kind in "Bb":
        payload = base64.b64encode(octets).decode()
        if draw(st.booleans()):  # padding left off, or a broken tail
            payload = payload.rstrip("=") + draw(st.sampled_from(["", "=", "A", "!", "===="]))
    elif kind in "Qq":
        payload = "".join(
            chr(o) if 0x21 <= o <= 0x7E and chr(o) not in "=?_" else ("_" if o == 0x20 else f"={o:02X}")
            for o in octets
        )
        if draw(st.booleans()):
            payload = payload.lower()
    else:  # anything at all between the markers
        payload = draw(st.text(alphabet="aZ09=_ ?-+/\t", max_size=10))
    return f"=?{charset}?{kind if kind != 'raw' else draw(st.sampled_from('QBx'))}?{payload}?="


_GAPS = st.sampled_from(["", " ", "  ", "\t", " \t ", "x", " - ", "\r", "\n", "\x0c", "\x1e", "é"])


@st.composite
def _field(draw: st.DrawFn) -> str:
    words = draw(st.lists(_word(), min_size=1, max_size=4))
    text = draw(st.sampled_from(["", "", "Re: ", " "]))
    for n, word in enumerate(words):
        text += (draw(_GAPS) if n else "") + word
    return text + draw(st.sampled_from(["", "", " ", "x", " tail"]))


@settings(max_examples=300, deadline=None)
@given(_field())
@example("=?utf-8?B?w4RuZGVydW5n?= =?utf-8?B?IGRlcg==?=")
@example("=?utf-8?B?w4?= =?utf-8?B?Ru?=")  # one character's octets split across two words
@example("=?iso-8859-1?Q?Gr=FC=dfe_aus=5FK=F6ln?=")
@example("=?windows-1252?Q?=81?=")  # undefined in windows-1252: the stdlib keeps the raw text
@example("=?us-ascii?Q?=C3=A4?=")
@example("=?utf-8?B?QUJD?==?utf-8?Q?_x?=")  # adjacent words without white space
@example("=?utf-8?B??=")
@example("=?utf-8?B?QUJ?=")  # a broken base64 tail: the stdlib refuses it
def test_encoded_words_decode_as_the_stdlib_decodes_them(text: str) -> None:
    """Every field of encoded-words (any charset, B or Q, padded or not, broken, with any text between
    and around them) decodes exactly as ``email.header`` decodes it; the fast path declines what it
    cannot do the same way."""
    assert _decode_field(text.encode("utf-8")) == _stdlib(text)
    fast = _only_encoded_words(text)
    if fast is not None:
        assert " ".join(fast.split()) == _stdlib(text)


def test_the_fast_path_takes_the_usual_subjects() -> None:
    """The usual encoded Subject (one charset, one or more B or Q words, folded) is the fast path's."""
    for text in [
        "=?utf-8?B?w4RuZGVydW5nIGRlciBNw7xsbGFiZnVocnRlcm1pbmU=?=",
        "=?iso-8859-1?Q?R=FCckfrage_zur_K=FCndigung?=",
        "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?Q?_aus_K=C3=B6ln?=",
        "=?utf-8?B?QVc6IE3DpG5nZWxhbnplaWdlOiBIZWl6dW5n?=\t=?utf-8?B?Nik=?=",
    ]:
        assert _only_encoded_words(text) == str(email.header.make_header(email.header.decode_header(text)))


def test_the_fast_charsets_decode_and_encode_with_their_own_codec() -> None:
    """The premise of the fast path: each of its charsets is its own input and output codec in the stdlib."""
    for name in _SAME_CODEC_CHARSETS:
        charset = email.charset.Charset(name)
        assert (charset.input_codec or "us-ascii") == name
        assert (charset.output_codec or "us-ascii") == name


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=200).map(lambda b: b.translate(bytes.maketrans(b"\x00\x01\x02\x03", b"-\r\nb"))),
    st.integers(0, 200),
    st.integers(0, 220),
)
@example(b"---bnd\r\n--bnd", 0, 14)
@example(b"a-b--bn--bnd", 0, 12)
def test_the_delimiter_is_found_where_bytes_find_finds_it(raw: bytes, start: int, end: int) -> None:
    """The one-octet-first search gives ``bytes.find``'s answer for every text, start and end."""
    for delim in (b"--bnd", b"--b", b"--"):
        assert _find_delimiter(raw, delim, start, end) == raw.find(delim, start, end)


def _found_by_find(raw: bytes, delim: bytes, start: int, end: int) -> int:
    """The general search the fast one stands in for."""
    return raw.find(delim, start, end)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"--b", b"-", b"--b--", b"\r\n", b"\n", b"x", b"QUJD", b" "]), max_size=40))
def test_the_parts_are_the_same_as_before(pieces: list[bytes]) -> None:
    """Multipart bodies made of delimiters, stray hyphens and line breaks split into the same parts as
    with the general search (``bytes.find`` of the whole delimiter)."""
    raw = b"".join(pieces)
    fast = _boundary_parts(raw, 0, len(raw), b"b")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mime, "_find_delimiter", _found_by_find)
        assert _boundary_parts(raw, 0, len(raw), b"b") == fast
    assert binascii.a2b_base64(b"QUJD") == b"ABC"  # the filler is base64: no hyphen in it


@settings(max_examples=400, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60, 23 * 60),
)
@example(datetime(999, 12, 31, 23, 59, 59), 0)
@example(datetime(1000, 1, 1, 0, 30), 60)  # a year before 1000 once in UTC
@example(datetime(2024, 1, 8, 8, 56, 0, 999_999), 120)
def test_utc_text_is_what_strftime_wrote(moment: datetime, offset_minutes: int) -> None:
    """Any aware datetime, in any zone, gives the text ``strftime`` gave, which ``parse_utc`` reads back."""
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc_text(aware) == expected
    if aware.astimezone(UTC).year >= 1000:
        assert parse_utc(expected) == aware.astimezone(UTC).replace(microsecond=0)
