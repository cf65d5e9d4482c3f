"""Text of PDF and Office attachments (maild/archive/document_text.py, document_worker.py): real files
made in the test, and hostile ones that must be refused or contained."""

from __future__ import annotations

import pytest

from maild.archive.document_text import (
    MAX_DOCUMENT_CHARS,
    MAX_DOCUMENT_OCTETS,
    DocumentError,
    extract,
    kind_of,
)
from maild.archive.document_worker import DocumentWorker
from tests.support import documents as docs


def test_kind_follows_the_content_type_then_the_file_name() -> None:
    """A PDF sent as application/octet-stream is still a PDF; text parts are never documents."""
    assert kind_of("application/pdf", None) == "pdf"
    assert kind_of("application/octet-stream", "Abrechnung 2025.PDF") == "pdf"
    assert kind_of(docs.DOCX, "x.bin") == "docx"
    assert kind_of("application/vnd.oasis.opendocument.spreadsheet", None) == "odf"
    assert kind_of("text/plain", "notiz.pdf") is None
    assert kind_of("image/png", "scan.png") is None


def test_docx_xlsx_and_odt_text_is_read_with_the_standard_library() -> None:
    """Paragraphs become lines; umlauts and escaped markup characters come out as written."""
    assert extract("docx", docs.make_docx(["Mietvertrag Lindenstraße", "Miete < 900 & Nebenkosten"])) == (
        "Mietvertrag Lindenstraße\nMiete < 900 & Nebenkosten"
    )
    assert extract("xlsx", docs.make_xlsx(["Zählerstand", "Heizung"])) == "Zählerstand\nHeizung"
    assert extract("odf", docs.make_odt(["Kündigung", "zum 31.12.2026"])) == "Kündigung\nzum 31.12.2026"


def test_office_text_is_cut_at_the_per_attachment_limit() -> None:
    """However long the document, at most MAX_DOCUMENT_CHARS characters come out."""
    text = extract("docx", docs.make_docx([f"Wort {n} " * 20 for n in range(2000)]))
    assert len(text) == MAX_DOCUMENT_CHARS


def test_a_zip_bomb_is_refused_by_its_declared_size() -> None:
    """A DOCX whose document.xml inflates to 500 MiB is refused before anything is inflated."""
    with pytest.raises(DocumentError, match="decompression bomb"):
        extract("docx", docs.make_docx_bomb())


def test_a_zip_member_lying_about_its_size_is_refused_when_more_comes_out() -> None:
    """A member whose header declares fewer octets than it holds fails the size/CRC check, not the reader."""
    honest = docs.make_docx(["Abrechnung"])
    # Patch the central directory's and the local header's uncompressed size of document.xml to 10.
    import io
    import struct
    import zipfile

    info = zipfile.ZipFile(io.BytesIO(honest)).getinfo("word/document.xml")
    data = bytearray(honest)
    struct.pack_into("<I", data, info.header_offset + 22, 10)
    central = data.rfind(b"PK\x01\x02", 0, len(data))
    while central >= 0 and data[central + 46 : central + 46 + 17] != b"word/document.xml":
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", data, central + 24, 10)
    with pytest.raises(DocumentError):
        extract("docx", bytes(data))


def test_xml_entities_are_refused() -> None:
    """A document type declaration with nested entities (the billion laughs) is refused, not expanded."""
    with pytest.raises(DocumentError, match="document type declaration"):
        extract("docx", docs.make_docx_entities())


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04broken", docs.make_docx(["x"])[:200]])
def test_damaged_office_files_raise_one_clear_error(data: bytes) -> None:
    """Truncated or garbage ZIP data is a DocumentError naming the cause."""
    with pytest.raises(DocumentError):
        extract("odf", data)


def test_documents_over_the_input_limit_are_not_read() -> None:
    """Input over MAX_DOCUMENT_OCTETS is refused unread."""
    with pytest.raises(DocumentError, match="larger than"):
        extract("pdf", b"%PDF" + b"\0" * MAX_DOCUMENT_OCTETS)


@pytest.mark.usefixtures("documents_extra")
def test_pdf_text_of_every_page_is_read() -> None:
    """pypdf reads the text of a two-page PDF written by hand (Helvetica, WinAnsiEncoding)."""
    pdf = docs.make_pdf(["Heizkostenabrechnung 2025\nBetrag 1.234,56 EUR", "Zählerstände Seite 2"])
    assert extract("pdf", pdf) == "Heizkostenabrechnung 2025\nBetrag 1.234,56 EUR\nZählerstände Seite 2"


@pytest.mark.usefixtures("documents_extra")
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: docs.make_pdf_encrypted("Geheim"), "encrypted"),
        (docs.make_pdf_cyclic, "cyclic"),
        (lambda: docs.make_pdf(["Abrechnung"])[:300], "damaged"),
        (lambda: b"%PDF-1.7\n" + b"garbage " * 100, "damaged"),
    ],
    ids=["encrypted", "cyclic-page-tree", "truncated", "garbage"],
)
def test_hostile_pdfs_raise_one_clear_error(make: object, reason: str) -> None:
    """An encrypted, looping, truncated or garbage PDF is a DocumentError whose reason names the cause,
    and the document's fault (not actionable by the administrator)."""
    with pytest.raises(DocumentError, match=reason) as raised:
        extract("pdf", make())  # type: ignore[operator]
    assert not raised.value.actionable


@pytest.mark.usefixtures("documents_extra")
async def test_a_pdf_bomb_is_contained_in_the_worker_and_the_worker_goes_on() -> None:
    """A PDF whose stream inflates to 200 MiB fails in the worker (pypdf's limit or the memory limit);
    the next document is read by a worker all the same."""
    worker = DocumentWorker()
    try:
        with pytest.raises(DocumentError):
            await worker.extract("pdf", docs.make_pdf_bomb())
        assert await worker.extract("pdf", docs.make_pdf(["Danach"])) == "Danach"
    finally:
        await worker.close()


async def test_a_worker_out_of_time_is_killed_and_replaced() -> None:
    """A document that takes longer than the timeout is given up (one error) and the worker killed; a new
    worker serves the next request."""
    slow = DocumentWorker(timeout_s=0.001)  # not even the worker's start-up fits
    with pytest.raises(DocumentError, match="took longer than") as raised:
        await slow.extract("docx", docs.make_docx(["x"]))
    assert raised.value.actionable  # a timeout is the administrator's to look at, not the sender's
    assert slow._proc is None
    await slow.close()
    worker = DocumentWorker()
    try:
        assert await worker.extract("docx", docs.make_docx(["Mietvertrag"])) == "Mietvertrag"
        assert await worker.extract("odf", docs.make_odt(["Kündigung"])) == "Kündigung"
        assert worker.started == 1
    finally:
        await worker.close()


async def test_the_worker_limits_its_address_space() -> None:
    """The worker process runs under RLIMIT_AS, so a balloon fails there, not in the daemon."""
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import resource, sys; from maild.archive import document_worker as w; w._limit_self();"
        " print(resource.getrlimit(resource.RLIMIT_AS)[0]);"
        " b = bytearray(w.WORKER_MEMORY_OCTETS)",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    from maild.archive.document_worker import WORKER_MEMORY_OCTETS

    assert int(out) == WORKER_MEMORY_OCTETS
    assert proc.returncode != 0
    assert b"MemoryError" in err
