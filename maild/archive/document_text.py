"""The text of PDF and Office attachments for the full-text index (issue 18; the ``documents`` extra).

This module only *extracts*; it runs inside the worker process of :mod:`maild.archive.document_worker`
(address space and CPU limited, killed on a timeout), never in the daemon's own process, because a
crafted document can loop or balloon. Every input is hostile, so everything is bounded:

- input: attachments over :data:`MAX_DOCUMENT_OCTETS` (decoded) are not read at all;
- output: :data:`MAX_DOCUMENT_CHARS` characters per attachment (and :data:`MAX_PDF_PAGES` pages);
- ZIP-based formats (DOCX, XLSX, PPTX, ODF): at most :data:`MAX_ZIP_MEMBERS` members, each XML member
  read refused when its *declared* size exceeds :data:`MAX_XML_OCTETS` or its declared ratio
  :data:`MAX_ZIP_RATIO`, and its *actual* decompressed octets are counted too (a lying header is
  caught when more than declared comes out);
- XML: a document type declaration or an entity declaration is refused (no entity expansion at all:
  the "billion laughs"), elements nest at most :data:`MAX_XML_DEPTH` deep.

PDF text comes from pypdf (the ``documents`` extra: ``pip install 'maild[documents]'``). The Office
formats are ZIP archives of XML whose text sits in a handful of elements; the standard library's
:mod:`zipfile` and expat read them with the checks above, which python-docx, openpyxl and odfpy
(object models of the whole document, no size control of ZIP members) would not give us. Whether
any of it runs is decided by :func:`available`: without pypdf no attachment text is indexed at all,
so maild behaves exactly as before the extra existed (docs/archive.md, "Text of PDF and Office
attachments").

Standard: ISO 32000 (PDF), ECMA-376 (Office Open XML: DOCX, XLSX, PPTX), OASIS OpenDocument 1.2
(ODT, ODS, ODP), APPNOTE (ZIP).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from xml.parsers import expat

from maild.archive.document_kind import DocumentKind, kind_of

__all__ = ["DocumentError", "DocumentKind", "available", "extract", "kind_of"]

MAX_DOCUMENT_OCTETS = 20 * 2**20
"""Decoded octets of one attachment read for its text (20 MiB); larger attachments are skipped."""
MAX_DOCUMENT_CHARS = 20_000
"""Characters of text indexed per attachment (about 3,000 words, eight pages of prose); the rest is
not searchable."""
MAX_MESSAGE_DOCUMENT_CHARS = 50_000
"""Characters of attachment text indexed per message, all attachments together."""
MAX_DOCUMENTS_PER_MESSAGE = 20
"""Attachments of one message read for their text; the others are skipped."""
MAX_PDF_PAGES = 200
"""Pages of one PDF read for text; what follows is not searchable."""
MAX_ZIP_MEMBERS = 10_000
"""Members of a ZIP-based document (DOCX, XLSX, PPTX, ODF); more and it is refused."""
MAX_XML_OCTETS = 50 * 2**20
"""Decompressed octets of one XML member read (declared and actual; 50 MiB); more and it is refused."""
MAX_XML_TOTAL_OCTETS = 100 * 2**20
"""Decompressed octets of all XML members read from one document together (100 MiB)."""
MAX_ZIP_RATIO = 200
"""Largest declared decompressed/compressed size ratio of a member over :data:`RATIO_CHECK_OCTETS`;
XML compresses 5-30:1, a decompression bomb up to 1000:1 (deflate's maximum)."""
RATIO_CHECK_OCTETS = 2**20
"""Members declaring fewer decompressed octets (1 MiB) are read whatever their ratio."""
MAX_XML_DEPTH = 256
"""Element nesting depth accepted in an Office XML member."""
_READ_CHUNK = 256 * 1024

_SLIDE_RE = re.compile(r"ppt/slides/slide(\d+)\.xml")
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")
_LINES_RE = re.compile(r"\n\s*\n+")


class DocumentError(Exception):
    """The attachment's text cannot be read: damaged, encrypted, too large, a bomb, or unsupported.

    The message is one line naming the cause (no document content); the archive stores the message
    all the same, without this attachment's text.

    Attributes:
        actionable: True when the administrator can do something about it (the extractor is missing,
            timed out, ran out of memory or crashed): logged at warning. False (the default) when the
            attachment itself is at fault (damaged, encrypted, too large, a bomb): the sender's
            problem, logged at info.
    """

    def __init__(self, reason: str, *, actionable: bool = False) -> None:
        super().__init__(reason)
        self.actionable = actionable


def available() -> bool:
    """True when the ``documents`` extra (pypdf) is installed, so attachment text is indexed at all.

    Asks the import system where ``pypdf`` would come from without importing it (no
    ``importlib.metadata``, whose import costs a one-shot ``maild fetch`` ~12 ms; the import of pypdf
    itself takes ~150 ms).
    """
    from importlib.util import find_spec

    try:
        return find_spec("pypdf") is not None
    except ValueError:  # sys.modules["pypdf"] is None: its import is blocked
        return False


def extract(kind: DocumentKind, data: bytes) -> str:
    """The text of one document, at most :data:`MAX_DOCUMENT_CHARS` characters, blanks folded.

    Args:
        kind: its format (:func:`kind_of`).
        data: its decoded octets, at most :data:`MAX_DOCUMENT_OCTETS`.

    Returns:
        The text; an empty string when it holds none (a scanned PDF).

    Raises:
        DocumentError: the document is too large, damaged, encrypted with a password, a
            decompression bomb, or pypdf is missing (for a PDF).
    """
    if len(data) > MAX_DOCUMENT_OCTETS:
        raise DocumentError(f"larger than {MAX_DOCUMENT_OCTETS} octets")
    text = _pdf_text(data) if kind == "pdf" else _office_text(kind, data)
    text = _LINES_RE.sub("\n", _SPACE_RE.sub(" ", text)).strip()
    return text[:MAX_DOCUMENT_CHARS]


def _pdf_text(data: bytes) -> str:
    try:
        import pypdf
    except ImportError:
        raise DocumentError("pypdf is not installed (the documents extra)", actionable=True) from None
    from pypdf.errors import PdfReadError

    pieces: list[str] = []
    size = 0
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            _encrypted()
        for n, page in enumerate(reader.pages):
            if n >= MAX_PDF_PAGES or size >= MAX_DOCUMENT_CHARS:
                break
            text = page.extract_text() or ""
            pieces.append(text)
            size += len(text)
    except DocumentError:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
        NotImplementedError,
        RecursionError,
        AssertionError,
        UnicodeError,
        ZeroDivisionError,
    ) as exc:
        # pypdf raises many kinds on damaged input; its message names the cause, never the text.
        raise DocumentError(f"damaged PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    except MemoryError:
        raise DocumentError("the PDF needs more memory than allowed", actionable=True) from None
    return "\n".join(pieces)


def _encrypted() -> None:
    raise DocumentError("encrypted with a password")


class _TextCollector:
    """Expat handlers gathering the character data of the text elements of an Office XML member."""

    def __init__(self, text_elements: frozenset[str] | None, budget: int) -> None:
        self.text_elements = text_elements
        self.pieces: list[str] = []
        self.size = 0
        self.budget = budget
        self.depth = 0
        self.inside = 0

    def start(self, name: str, _attrs: object) -> None:
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise DocumentError(f"XML nested deeper than {MAX_XML_DEPTH} elements")
        local = name.rsplit(" ", 1)[-1]
        if self.text_elements is None or local in self.text_elements:
            self.inside += 1
        if local in ("tab", "s"):
            self._add(" ")

    def end(self, name: str) -> None:
        self.depth -= 1
        local = name.rsplit(" ", 1)[-1]
        if self.text_elements is not None and local in self.text_elements:
            self.inside -= 1
        if local in ("p", "h", "si", "br", "line-break", "table-cell", "tc"):
            self._add("\n")

    def data(self, text: str) -> None:
        if self.inside:
            self._add(text)

    def _add(self, text: str) -> None:
        if self.size < self.budget:
            self.pieces.append(text)
            self.size += len(text)


def _refuse_dtd(*_args: object) -> None:
    raise DocumentError("XML with a document type declaration (entity expansion refused)")


def _xml_text(
    read: Callable[[int], bytes], text_elements: frozenset[str] | None, budget: int, total: list[int]
) -> str:
    """Parse one XML member chunk by chunk; ``total`` counts the decompressed octets of the document."""
    collector = _TextCollector(text_elements, budget)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.data
    octets = 0
    try:
        while chunk := read(_READ_CHUNK):
            octets += len(chunk)
            total[0] += len(chunk)
            if octets > MAX_XML_OCTETS or total[0] > MAX_XML_TOTAL_OCTETS:
                raise DocumentError("decompresses to more than allowed (a decompression bomb?)")
            parser.Parse(chunk, False)
            if collector.size >= budget:
                break
        else:
            parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise DocumentError(f"damaged XML ({exc})") from None
    return "".join(collector.pieces)


def _members(kind: DocumentKind, names: list[str]) -> tuple[list[str], frozenset[str] | None]:
    """The XML members holding the text of a ``kind`` document, in reading order, and its text elements
    (None: all character data)."""
    if kind == "docx":
        return ["word/document.xml"], frozenset({"t"})
    if kind == "xlsx":
        return ["xl/sharedStrings.xml"], frozenset({"t"})
    if kind == "pptx":
        slides = sorted((int(m.group(1)), n) for n in names if (m := _SLIDE_RE.fullmatch(n)))
        return [n for _, n in slides], frozenset({"t"})
    return ["content.xml"], frozenset({"p", "h"})


def _office_text(kind: DocumentKind, data: bytes) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DocumentError(f"not a readable ZIP archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise DocumentError(f"more than {MAX_ZIP_MEMBERS} ZIP members")
        by_name = {info.filename: info for info in infos}
        wanted, elements = _members(kind, list(by_name))
        pieces: list[str] = []
        size = 0
        total = [0]
        for name in wanted:
            info = by_name.get(name)
            if info is None:
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > MAX_XML_OCTETS or (
                info.file_size > RATIO_CHECK_OCTETS and ratio > MAX_ZIP_RATIO
            ):
                raise DocumentError(f"{name} declares {info.file_size} octets (a decompression bomb?)")
            if info.flag_bits & 0x1:
                raise DocumentError("encrypted ZIP member")
            try:
                with archive.open(info) as member:
                    pieces.append(_xml_text(member.read, elements, MAX_DOCUMENT_CHARS - size, total))
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise DocumentError(f"damaged ZIP member {name} ({exc})") from None
            size += len(pieces[-1])
            if size >= MAX_DOCUMENT_CHARS:
                break
    return "\n".join(pieces)
