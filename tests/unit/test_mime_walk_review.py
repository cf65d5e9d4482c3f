"""Review of the MIME walk's delimiter search (session 11's hyphen-first ``_find_delimiter``) against
the stdlib's parser: nested multiparts whose boundaries are prefixes of each other, bodies full of
hyphen runs and delimiter look-alikes, CRLF or LF line ends, transport padding after delimiters.
Each leaf part's body as the walk finds it is the body ``email.parser`` finds (RFC 2046 section
5.1.1), and the fast search gives what ``bytes.find`` of the whole delimiter gives.
"""

from __future__ import annotations

import base64
import email
import email.message

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from maild.archive import mime
from maild.archive.mime import HYPHEN_HOPS, walk

#: Boundaries that are prefixes of one another, hyphen-heavy, or with a blank (quoted).
_BOUNDARIES = [
    "b",
    "b1",
    "b-",
    "b_1",
    "bb",
    "----=_Part_0",
    "----=_Part_0_1",
    "-",
    "x--y",
    "=_a",
    "a b",
    "--",
]
#: What body lines are made of: hyphen runs, and the start of delimiters of every boundary above.
_TOKENS = [
    b"-",
    b"--",
    b"---",
    b"x",
    b"=",
    b"\t",
    b" ",
    b"--b",
    b"b",
    b"QUJD",
    b"--=",
    b"-" * 20,
    b"--a",
    b"--x",
]


def _lines(draw: st.DrawFn, enclosing: list[str]) -> list[bytes]:
    lines = draw(st.lists(st.lists(st.sampled_from(_TOKENS), max_size=8).map(b"".join), max_size=5))
    # a line that starts with an enclosing part's delimiter is not allowed in its body (RFC 2046
    # section 5.1.1): such lines are kept out of the bodies, where both parsers would cut the part
    return [
        b"y" + line if any(line.startswith(b"--" + b.encode()) for b in enclosing) else line for line in lines
    ]


@st.composite
def _entity(draw: st.DrawFn, depth: int, enclosing: list[str], nl: bytes) -> bytes:
    usable = [b for b in _BOUNDARIES if not any(b.startswith(e) for e in enclosing)]
    if depth < 2 and usable and draw(st.integers(0, 9)) < 4:
        boundary = draw(st.sampled_from(usable))
        inner = [*enclosing, boundary]
        delim = b"--" + boundary.encode()
        out = b'Content-Type: multipart/mixed; boundary="' + boundary.encode() + b'"' + nl + nl
        out += b"".join(line + nl for line in _lines(draw, inner))  # the preamble
        for child in draw(st.lists(_entity(depth + 1, inner, nl), min_size=1, max_size=3)):
            out += delim + draw(st.sampled_from([b"", b" ", b"\t ", b"  "])) + nl + child + nl
        out += delim + b"--" + draw(st.sampled_from([b"", b" ", b"\t"])) + nl
        return out + b"".join(line + nl for line in _lines(draw, enclosing))  # the epilogue
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=120))
        encoded = base64.encodebytes(payload).replace(b"\n", nl)
        return (
            b"Content-Type: application/octet-stream"
            + nl
            + b"Content-Transfer-Encoding: base64"
            + nl
            + nl
            + encoded
        )
    return b"Content-Type: text/plain" + nl + nl + nl.join(_lines(draw, enclosing))


@st.composite
def _message(draw: st.DrawFn) -> bytes:
    nl = draw(st.sampled_from([b"\r\n", b"\n"]))
    return b"Subject: t" + nl + draw(_entity(0, [], nl))


def _stdlib_leaves(raw: bytes) -> list[bytes]:
    parsed = email.message_from_bytes(raw)
    out = []
    for part in parsed.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append(payload)
    return out


def _found_by_find(raw: bytes, delim: bytes, start: int, end: int) -> int:
    return raw.find(delim, start, end)


_CLOSE_OF_A_LONGER_BOUNDARY = (
    b'Subject: t\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
    b'Content-Type: multipart/mixed; boundary="b-"\r\n\r\n--b-\r\nContent-Type: text/plain\r\n\r\none\r\n'
    b"--b---\r\n--b\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--b--\r\n"
)


@settings(max_examples=1500, deadline=None)
@given(_message())
@example(_CLOSE_OF_A_LONGER_BOUNDARY)  # "--b---" closes "b-", not "b"
@example(
    b'Subject: t\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
    b"one\n--b junk\nstill one\n--b\nContent-Type: text/plain\n\ntwo\n--b--\n"
)  # "--b junk" is no delimiter line: only blanks may follow one
def test_every_leaf_body_is_the_one_the_stdlib_parser_finds(raw: bytes) -> None:
    """Each leaf part's decoded body, in order, is what ``email.parser`` gives; with the general
    delimiter search the walk finds the same parts."""
    leaves = walk(raw)
    assert [leaf.decoded(raw) for leaf in leaves] == _stdlib_leaves(raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mime, "_find_delimiter", _found_by_find)
        assert walk(raw) == leaves


def test_the_delimiter_after_every_number_of_hyphens_around_the_hop_bound() -> None:
    """Hyphens (apart, in one run, or as ``--`` look-alikes) before the delimiter, from none to twice
    :data:`HYPHEN_HOPS` + 1: the fast search switches to the whole-delimiter search at every count
    and still finds the delimiter where ``bytes.find`` does."""
    delim = b"--bnd"
    for count in range(2 * HYPHEN_HOPS + 2):
        for filler in (b"-x" * count, b"-" * count, b"--bn\n" * count, b"--bnd-" * 0 + b"x--" * count):
            for tail in (delim, b"\n" + delim, b"-" + delim[:-1]):
                raw = filler + tail + b"\nafter"
                for start in (0, 1, len(filler)):
                    assert mime._find_delimiter(raw, delim, start, len(raw)) == raw.find(delim, start), (
                        count,
                        filler,
                        tail,
                        start,
                    )
