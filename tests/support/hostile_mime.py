"""Hostile and broken messages for the message parse (header summary, MIME walk, index text).

``hostile_messages()`` is a fixed list of hand-written cases (each a known way mail breaks parsers)
followed by seeded mutations of corpus messages (cut short, bytes flipped, lines duplicated, line
endings mixed). Every message is a pure function of its position: the golden digests in
``tests/unit/golden/parse_digests.json`` were made from these bytes by the parse code before it was
merged into one pass, and ``tests/unit/test_message_parse.py`` checks the merged parse against them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tests.support import corpus

_CASES: tuple[bytes, ...] = (
    b"",
    b"\r\n",
    b"\n\nbody only",
    b"no header at all and no blank line",
    b"From: a@example.org",  # header only, no line ending
    b"From: a@example.org\r\nTo: b@example.org\r\nCc: c@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
    b"From: a@example.org\nCc: one@example.org\nCc: two@example.org\nCC: =?utf-8?q?Dr=C3=BCber?= <d@x>\n\nLF\n",
    b"cc:   \r\n\tfolded@example.org,\r\n  second@example.org\r\nSubject: folded cc\r\n\r\nx",
    b"Cc: =?iso-8859-1?q?J=FCrgen?= <j@example.de>\r\nTo: =?bogus-charset?q?x?= <y@z>\r\n\r\n",
    b"Cc: \xfc\xe4\xf6 latin-1 raw <l@example.de>\r\nFrom: \xc3\xbc utf-8 raw <u@example.de>\r\n\r\n",
    b"Subject: =?utf-8?b?broken base64===?=\r\nCc: =?utf-8?q?unterminated\r\n\r\n",
    b"X-Cc: not-cc@example.org\r\nBcc: hidden@example.org\r\nCcx: no@example.org\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\nContent-Type: text/html\r\n\r\n"
    b"<p>second</p>\r\n",  # no close delimiter
    b"Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nno boundary parameter\r\n--b--\r\n",
    b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n\r\nempty boundary\r\n',
    b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain; charset=rot13\r\n\r\n"
    b"Uryyb\r\n--x\r\nContent-Type: text/html; charset=\"utf-8\r\n\r\n<b>unterminated quote</b>\r\n--x--\r\n",
    b"Content-Type: text/html\r\n\r\n<script>alert('x')</script><style>p{}</style><!-- c --><p>Hallo&nbsp;&amp;"
    b"<br>Welt</p><div>unclosed <b>tag<i\r\n",
    b"Content-Type: text/html\r\n\r\n<!-- never closed <p>inside a comment</p>",
    b"Content-Type: text/html\r\n\r\n<scr<script>ipt>nested</script>text<",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64$$$\r\nSGFs\r\n",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbroken =Z1 soft=\r\nbreak=3D\r\n",
    b"Content-Type: application/pdf; name*0*=UTF-8''Rech; name*1*=nung%20M%C3%A4rz; name*2=.pdf\r\n"
    b"Content-Disposition: weird\r\n\r\n%PDF",
    b"Content-Type: application/x; name*=unknown-charset''%FF%FE\r\nContent-Disposition: attachment;"
    b' filename="=?utf-8?q?a=2Fb?=\\"q"\r\n\r\nx',
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n\r\nx\r\n",
    b"Subject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n" % (n, n) for n in range(40)
    ) + b"\r\ninnermost\r\n",
    b"Content-Type: multipart/mixed; boundary=m\r\n\r\n" + b"--m\r\nContent-Type: text/plain\r\n\r\np\r\n" * 1100,
    b"Subject: " + b"x" * 300_000 + b"\r\n\r\nbody after a huge header",
    b"From: a@example.org\r\n" + b"X-Filler: y\r\n" * 30_000 + b"Cc: late@example.org\r\n\r\nbody",
    b"From: a@example.org\r\r\nSubject: cr cr lf\r\n\r\n\r\nbody",
    b"From: a@example.org\r\nSubject: lf body\r\n\nbody\r\n\r\nmore",
    b"\x00\x01\x02From: nul@example.org\r\n\r\n\x00",
    b"Date: Mon, 32 Foo 2024 99:99:99 +9999\r\nMessage-ID: <  spaced@id  >\r\n\r\n",
    b"Date: Tue, 31 Dec 9999 23:59:59 -1200\r\n\r\n",
    b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfeH\x00i\x00",
    b"Content-Type: TEXT/PLAIN; CHARSET=ISO-8859-1\r\nContent-Transfer-Encoding: 8BIT\r\n\r\nGr\xfc\xdfe",
    b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q \r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n"
    b"attached text\r\n--qq\r\nnot a delimiter\r\n--q--\r\n",
)
MUTATIONS = 150
"""Seeded mutations of corpus messages appended to the hand-written cases."""


def _mutate(raw: bytes, rnd: random.Random) -> bytes:
    kind = rnd.randrange(5)
    if kind == 0 and raw:  # cut short anywhere
        return raw[: rnd.randrange(len(raw))]
    if kind == 1:  # flip bytes
        data = bytearray(raw)
        for _ in range(rnd.randrange(1, 20)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        return bytes(data)
    lines = raw.split(b"\n")
    if kind == 2 and lines:  # duplicate or drop lines (boundaries, blank lines, header fields)
        for _ in range(rnd.randrange(1, 10)):
            i = rnd.randrange(len(lines))
            if rnd.random() < 0.5:
                lines.insert(i, lines[i])
            else:
                del lines[i]
            if not lines:
                break
        return b"\n".join(lines)
    if kind == 3:  # mixed line endings
        return b"".join(line + (b"\n" if rnd.random() < 0.5 else b"\r\n") for line in raw.split(b"\r\n"))
    # a boundary line of the message inserted elsewhere
    delims = [line for line in lines if line.startswith(b"--")]
    if delims and lines:
        lines.insert(rnd.randrange(len(lines)), rnd.choice(delims))
    return b"\n".join(lines)


def hostile_messages() -> Iterator[bytes]:
    """The hand-written cases, then :data:`MUTATIONS` seeded mutations of corpus messages."""
    yield from _CASES
    rnd = random.Random(18)
    base = list(corpus.generate(60, seed=3))
    for _ in range(MUTATIONS):
        yield _mutate(rnd.choice(base), rnd)
