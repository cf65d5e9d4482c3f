"""Small real documents made in the test: PDF (written by hand, no library), DOCX, XLSX, ODT, and hostile ones.

The PDFs use the standard Helvetica font with WinAnsiEncoding, the form most office software writes
for Latin text; the Office files hold only the members a reader needs (ECMA-376, OpenDocument 1.2).
"""

from __future__ import annotations

import io
import zipfile
import zlib


def _pdf_string(text: str) -> bytes:
    data = text.encode("cp1252")
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(pages: list[str], *, compress: bool = True) -> bytes:
    """A PDF with one page per text in ``pages`` (each text may hold several lines)."""
    objects: list[bytes] = []
    n_pages = len(pages)
    page_ids = [4 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(b"%d 0 R" % p for p in page_ids)
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n_pages)
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        ops = [b"BT /F1 12 Tf 72 770 Td 14 TL"]
        for line in text.split("\n"):
            ops.append(_pdf_string(line) + b" Tj T*")
        ops.append(b"ET")
        content = b"\n".join(ops)
        if compress:
            stream = zlib.compress(content)
            head = b"<< /Length %d /Filter /FlateDecode >>" % len(stream)
        else:
            stream = content
            head = b"<< /Length %d >>" % len(stream)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % (page_ids[i] + 1)
        )
        objects.append(head + b"\nstream\n" + stream + b"\nendstream")
    return _assemble(objects)


def _assemble(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def make_pdf_bomb(octets: int = 200 * 2**20) -> bytes:
    """A one-page PDF whose content stream inflates to ``octets`` octets of blanks (~0.1 % of it on disk)."""
    packer = zlib.compressobj(9)
    chunk = b" " * 2**20
    stream = b"".join(packer.compress(chunk) for _ in range(octets // len(chunk))) + packer.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return _assemble(objects)


def make_pdf_cyclic() -> bytes:
    """A PDF whose page tree contains itself (a /Kids loop): a naive reader recurses for ever."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
    ]
    return _assemble(objects)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx(paragraphs: list[str]) -> bytes:
    """A DOCX with one paragraph per text."""
    body = "".join(f'<w:p><w:r><w:t xml:space="preserve">{_xml(p)}</w:t></w:r></w:p>' for p in paragraphs)
    document = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'
    return _zip(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
            "word/document.xml": document.encode("utf-8"),
        }
    )


def make_xlsx(strings: list[str]) -> bytes:
    """An XLSX whose shared strings are ``strings`` (what a sheet's text cells hold)."""
    items = "".join(f"<si><t>{_xml(s)}</t></si>" for s in strings)
    shared = (
        '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"{items}</sst>"
    )
    return _zip({"[Content_Types].xml": b"<Types/>", "xl/sharedStrings.xml": shared.encode("utf-8")})


def make_odt(paragraphs: list[str]) -> bytes:
    """An ODT (OpenDocument text) with one paragraph per text."""
    body = "".join(f"<text:p>{_xml(p)}</text:p>" for p in paragraphs)
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0">'
        f"<office:body><office:text>{body}</office:text></office:body></office:document-content>"
    )
    return _zip(
        {"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": content.encode("utf-8")}
    )


def make_docx_bomb(octets: int = 500 * 2**20) -> bytes:
    """A DOCX whose document.xml inflates to ``octets`` octets (a decompression bomb)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as member,
    ):
        member.write(f'<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>'.encode())
        chunk = b"A" * 2**20
        for _ in range(octets // len(chunk)):
            member.write(chunk)
        member.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return out.getvalue()


def make_docx_entities() -> bytes:
    """A DOCX whose XML declares nested entities (the "billion laughs")."""
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        f'<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>&c;</w:t></w:r></w:p></w:body></w:document>'
    )
    return _zip({"word/document.xml": laughs.encode()})


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def make_pdf_encrypted(text: str, password: str = "geheim") -> bytes:
    """A PDF readable only with ``password`` (RC4, 128 bits; needs pypdf, the documents extra)."""
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(make_pdf([text])))
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def mail_with(
    n: int,
    attachments: list[tuple[str, str, bytes]],
    *,
    subject: str = "",
    body: str = "Anbei die Unterlagen.",
) -> bytes:
    """A CRLF message numbered ``n`` with a text body and ``attachments`` as (file name, content type, data),
    each base64-encoded with ``Content-Disposition: attachment``."""
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Hausverwaltung Krause <buchhaltung{n}@krause.example>"
    msg["To"] = "anna@example.com"
    msg["Subject"] = subject or f"Unterlagen {n}"
    msg["Date"] = f"Mon, {n % 28 + 1:02d} Feb 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<doc{n}@krause.example>"
    msg.set_content(body)
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
