"""``Leaf.decoded`` takes the message as bytes or as a view of them (the attachment indexer passes a
view, so a part's encoded octets are not copied first) and decodes the same octets either way."""

from __future__ import annotations

import base64

import pytest

from maild.archive.mime import walk

BOUNDARY = b"b1"
PDF = b"%PDF-1.4 " + bytes(range(256)) * 4


def _message() -> bytes:
    parts = [
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=C3=BC=C3=9Fe, lange Zeile =\r\nweiter\r\n",
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(PDF).replace(b"\n", b"\r\n"),
        b"Content-Type: application/pdf; name=broken.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBE!!Ri0x*LjQK\r\n",
        b"Content-Type: text/plain\r\n\r\nplain 7bit text\r\n",
    ]
    body = b"".join(b"--" + BOUNDARY + b"\r\n" + p for p in parts) + b"--" + BOUNDARY + b"--\r\n"
    return b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" + body


@pytest.mark.parametrize("limit", [None, 40])
def test_a_view_decodes_every_encoding_as_bytes_do(limit: int | None) -> None:
    """Quoted-printable, base64, damaged base64 and 7bit parts: the same octets from a memoryview
    of the message as from the bytes; an unencoded part comes back as a view of the message."""
    raw = _message()
    leaves = walk(raw)

    assert len(leaves) == 4
    for leaf in leaves:
        from_bytes = leaf.decoded(raw, limit)
        from_view = leaf.decoded(memoryview(raw), limit)

        assert isinstance(from_bytes, bytes)
        assert bytes(from_view) == from_bytes
    assert leaves[1].decoded(memoryview(raw)) == PDF
    assert leaves[0].decoded(raw).startswith("Grüße".encode())
    assert isinstance(leaves[3].decoded(memoryview(raw)), memoryview)
