"""Review of the encoded-word fast path (session 11, ``maild.message._only_encoded_words``) against
the general path it stands in for (``email.header`` through ``_decode_field``): raw field bodies as
they arrive, with words of mixed charsets (fast ones mixed with each other, upper case, aliases,
RFC 2231 languages, unknown names), broken base64 and quoted-printable, octets that are not UTF-8
(surrogate encodings, Latin-1) around and between the words, and every kind of white space.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from maild import message
from maild.message import _SAME_CODEC_CHARSETS, _decode_field

_CHARSETS = [
    *sorted(_SAME_CODEC_CHARSETS),
    *(name.upper() for name in sorted(_SAME_CODEC_CHARSETS)),
    "utf8",
    "latin-1",
    "latin_1",
    "ascii",
    "cp1252",
    "iso-8859-1*fr",
    "utf-8*",
    "UTF-8*en-us",
    "koi8-r",
    "gb2312",
    "x-unknown",
    "unknown-8bit",
    "",
    " utf-8",
]
_OCTETS = st.one_of(
    st.text(max_size=10).map(lambda t: t.encode("utf-8")),
    st.binary(max_size=10),
    st.sampled_from([b"\xed\xa0\x80", b"\xc3", b"\xe4\xf6\xfc", b"\x80\x81\x8d\x9d", b"\xef\xbf\xbd"]),
)


@st.composite
def _word(draw: st.DrawFn) -> bytes:
    charset = draw(st.sampled_from(_CHARSETS))
    octets = draw(_OCTETS)
    kind = draw(st.sampled_from("BbQq"))
    if kind in "Bb":
        payload = base64.b64encode(octets)
        payload = draw(
            st.sampled_from(
                [payload, payload.rstrip(b"="), payload + b"=", payload[:-1], payload + b"!", b"A" + payload]
            )
        )
    else:
        payload = b"".join(
            bytes((o,)) if 0x21 <= o <= 0x7E and o not in b"=?_" else (b"_" if o == 0x20 else b"=%02X" % o)
            for o in octets
        )
        payload = draw(
            st.sampled_from([payload, payload.lower(), payload + b"=", payload + b"=4", payload + b"=zz"])
        )
    return b"=?" + charset.encode() + b"?" + kind.encode() + b"?" + payload + b"?="


_GAPS = st.sampled_from(
    [
        b"",
        b" ",
        b"  ",
        b"\t",
        b" \t ",
        b"\x1f",
        b"\x0b",
        b"\x1c",
        b"x",
        b" - ",
        b"\xc3\xa4",
        b"\xe4",
        b" \xed\xa0\x80 ",
    ]
)


@st.composite
def _field(draw: st.DrawFn) -> bytes:
    words = draw(st.lists(_word(), min_size=1, max_size=4))
    out = draw(st.sampled_from([b"", b"", b"Re: ", b"\xe4 "]))
    for n, word in enumerate(words):
        out += (draw(_GAPS) if n else b"") + word
    return out + draw(st.sampled_from([b"", b"", b"x", b" \xff"]))


def _general(value: bytes) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message, "_only_encoded_words", lambda text: None)
        return _decode_field(value)


@settings(max_examples=2000, deadline=None)
@given(_field())
@example(b"=?utf-8?B?w6Q=?= =?iso-8859-1?Q?=E4?=")  # two fast charsets: the stdlib's two chunks
@example(b"=?UTF-8?Q?=C3?= =?utf-8?Q?=A4?=")  # one character across words whose names differ in case
@example(b"=?utf-8?B?7aCA?=")  # a UTF-8-encoded surrogate: refused by a strict decode
@example(b"=?us-ascii?Q?=E4?=")  # 8-bit in us-ascii
@example(b"=?utf-8?Q?a?=\x1f=?utf-8?Q?b?=")  # a blank that str.isspace knows and splitlines does not
@example(b"=?utf-8?Q?a\x0bb?=")  # a line break of str.splitlines inside a word: no word for the stdlib
@example(b"=?utf-8?Q?a\x1cb?= =?utf-8?Q?c?=")
@example(b"=?latin-1?Q?=E4?=")  # an alias the fast path leaves to the stdlib
def test_raw_fields_decode_as_the_general_path_decodes_them(value: bytes) -> None:
    """Every raw field body decodes, with the fast path, to exactly the general path's text."""
    assert _decode_field(value) == _general(value)
