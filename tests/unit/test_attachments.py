"""MIME parts as data: part numbers, decoded file names, byte-exact decoding, safe file names, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild.archive.attachments import MAX_FILENAME_OCTETS, safe_filename, write_all
from maild.archive.mime import find_part, walk
from maild.cli.main import main
from tests.support.archive import build_archive, pop

PDF = bytes(range(256)) * 40 + b"\r\n\r\n--not-a-boundary\r\n"
NESTED = (
    b"From: a@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b1x"\r\n\r\n'
    b"--b1x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe\r\n"
    b"--b1x\r\nContent-Type: text/html\r\n\r\n<p>Gr&uuml;&szlig;e</p>\r\n"
    b"--b1x--\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PDF).replace(b"\n", b"\r\n") + b"--b1\r\n"
    b'Content-Type: application/octet-stream; name="=?utf-8?q?K=C3=BCndigung?=.docx"\r\n\r\nDOCX\r\n'
    b"--b1--\r\nepilogue\r\n"
)


def test_parts_are_numbered_as_imap_body_sections() -> None:
    """Children of a multipart are 1, 2, ...; those of part 1 are 1.1, 1.2 (RFC 9051 section 6.4.5)."""
    leaves = walk(NESTED)

    assert [(p.part, p.content_type) for p in leaves] == [
        ("1.1", "text/plain"),
        ("1.2", "text/html"),
        ("2", "application/pdf"),
        ("3", "application/octet-stream"),
    ]


def test_single_part_message_is_part_one() -> None:
    """A message that is not multipart has one part, numbered 1, its body."""
    (leaf,) = walk(b"Subject: x\r\n\r\nHallo\r\n")

    assert (leaf.part, leaf.content_type, leaf.decoded(b"Subject: x\r\n\r\nHallo\r\n")) == ("1", "text/plain", b"Hallo\r\n")


def test_file_names_are_decoded_from_rfc2231_and_rfc2047() -> None:
    """filename*=UTF-8''... (RFC 2231) and an encoded word in name= (RFC 2047, as Outlook writes it) are decoded."""
    names = {p.part: p.filename for p in walk(NESTED)}

    assert names["2"] == "Rechnung März.pdf"
    assert names["3"] == "Kündigung.docx"


def test_decoding_is_byte_exact_for_base64_and_quoted_printable() -> None:
    """The decoded body equals the octets that were encoded, including CRLFs and a boundary look-alike."""
    pdf = find_part(NESTED, "2")
    text = find_part(NESTED, "1.1")
    assert pdf is not None and text is not None

    assert pdf.decoded(NESTED) == PDF
    assert text.decoded(NESTED) == "Grüße".encode("latin-1")  # the CRLF before --b1x is the delimiter's


def test_boundary_prefix_inside_a_part_does_not_split_it() -> None:
    """A line starting with the boundary followed by more characters (--b1x) is not a delimiter of b1."""
    assert len([p for p in walk(NESTED) if p.part.startswith("1.")]) == 2


def test_attachment_flag_follows_disposition_and_file_name() -> None:
    """Parts with disposition attachment, or a file name and not inline text, are attachments."""
    assert {p.part: p.is_attachment for p in walk(NESTED)} == {"1.1": False, "1.2": False, "2": True, "3": True}


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/cron.d/evil", "evil"),
        ("..\\..\\windows\\system32\\x.dll", "x.dll"),
        ("..", "part-2.pdf"),
        ("", "part-2.pdf"),
        (".bashrc", "bashrc"),
        ("a\x00b\x1b[31m\nc.txt", "ab[31mc.txt"),
        ('con<>:"|?*.txt', "con.txt"),
        ("   ", "part-2.pdf"),
    ],
)
def test_safe_filename_never_leaves_the_directory(hostile: str, expected: str) -> None:
    """A hostile file name becomes its last component, cleaned; nothing usable becomes part-N.ext."""
    assert safe_filename(hostile, "2", "application/pdf") == expected


def test_safe_filename_bounds_the_length_and_keeps_the_extension() -> None:
    """A very long name is cut to MAX_FILENAME_OCTETS UTF-8 octets, keeping its extension."""
    name = safe_filename("ä" * 400 + ".pdf", "2", "application/pdf")

    assert len(name.encode()) <= MAX_FILENAME_OCTETS
    assert name.endswith(".pdf")


def _hostile_message() -> bytes:
    m = EmailMessage()
    m["From"] = "x@example.org"
    m["Subject"] = "hostile"
    m.set_content("see attached")
    for name in ("../../../tmp/escape.txt", "/etc/passwd", "link.txt", "same.txt", "same.txt"):
        m.add_attachment(name.encode(), maintype="application", subtype="octet-stream", filename=name)
    return m.as_bytes()


def test_write_all_stays_inside_the_directory_and_never_follows_or_overwrites(tmp_path: Path) -> None:
    """Hostile names land inside DIR; a planted symlink is not followed; equal names get -2."""
    target = tmp_path / "out"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (target / "link.txt").symlink_to(victim)

    written = write_all(_hostile_message(), target)

    assert victim.read_bytes() == b"keep"
    assert all(w.path.parent == target for w in written)
    assert sorted(p.name for p in target.iterdir()) == [
        "escape.txt", "link-2.txt", "link.txt", "passwd", "same-2.txt", "same.txt",
    ]  # fmt: skip
    assert (target / "escape.txt").read_bytes() == b"../../../tmp/escape.txt"
    assert not (tmp_path.parent / "escape.txt").exists()


async def test_cli_lists_parts_and_writes_them_byte_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show --json lists parts with size and SHA-256; attachment PART -o and --all write the decoded octets."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), NESTED)])
    msg_id = hashlib.sha256(NESTED).hexdigest()

    assert main(["messages", "show", "--database", str(db), "--json", msg_id[:12]]) == 0
    parts = {p["part"]: p for p in json.loads(capsys.readouterr().out)["parts"]}
    assert parts["2"] == {
        "part": "2", "content_type": "application/pdf", "filename": "Rechnung März.pdf",
        "disposition": "attachment", "attachment": True, "size_octets": len(PDF),
        "sha256": hashlib.sha256(PDF).hexdigest(),
    }  # fmt: skip

    out = tmp_path / "r.pdf"
    assert main(["messages", "attachment", "--database", str(db), msg_id[:12], "2", "-o", str(out)]) == 0
    assert out.read_bytes() == PDF

    assert main(["messages", "attachment", "--database", str(db), msg_id[:12], "--all", str(tmp_path / "all")]) == 0
    assert sorted(os.listdir(tmp_path / "all")) == ["Kündigung.docx", "Rechnung März.pdf"]
    assert (tmp_path / "all" / "Rechnung März.pdf").read_bytes() == PDF


async def test_cli_names_a_missing_part_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown part number is one error line pointing to show --json; exit 1."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), NESTED)])

    assert main(["messages", "attachment", "--database", str(db), hashlib.sha256(NESTED).hexdigest()[:12], "9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no part '9'" in err
