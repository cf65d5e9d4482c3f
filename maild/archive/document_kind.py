"""Which MIME parts are documents whose text the attachment-text indexer reads (PDF, Office, OpenDocument).

Kept apart from :mod:`maild.archive.document_text` (which imports ``zipfile`` and expat) so that the
store path can record, at store time, whether a message has such a part at all
(``messages.has_documents``, schema version 13) without those imports: the fetch's start-up stays as it was.
Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

DocumentKind = Literal["pdf", "docx", "xlsx", "pptx", "odf"]
"""What :func:`maild.archive.document_text.extract` reads: PDF, the three Office Open XML formats, and
OpenDocument."""

_BY_TYPE: dict[str, DocumentKind] = {
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.oasis.opendocument.text": "odf",
    "application/vnd.oasis.opendocument.spreadsheet": "odf",
    "application/vnd.oasis.opendocument.presentation": "odf",
}
_BY_EXTENSION: dict[str, DocumentKind] = {
    "pdf": "pdf",
    "docx": "docx",
    "docm": "docx",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "pptx": "pptx",
    "odt": "odf",
    "ods": "odf",
    "odp": "odf",
}


class _Part(Protocol):
    @property
    def content_type(self) -> str: ...
    @property
    def filename(self) -> str | None: ...


def kind_of(content_type: str, filename: str | None) -> DocumentKind | None:
    """Which document format a MIME part holds, by its content type, else by its file name's extension.

    Args:
        content_type: the part's lower-case ``type/subtype``.
        filename: its decoded file name, or None.

    Returns:
        The kind, or None for anything else (text parts are indexed by :mod:`maild.archive.index_text`).
    """
    kind = _BY_TYPE.get(content_type)
    if kind is None and filename and "." in filename and not content_type.startswith("text/"):
        kind = _BY_EXTENSION.get(filename.rsplit(".", 1)[1].strip().lower())
    return kind


def has_documents(parts: Iterable[_Part]) -> bool:
    """Whether any of a message's leaf parts (:func:`maild.archive.mime.walk`) is a document
    :func:`kind_of` recognises: the value of ``messages.has_documents`` the store path records (v13).

    Standard: RFC 2045 section 5 (Content-Type), RFC 2183 (file names).
    """
    return any(kind_of(part.content_type, part.filename) is not None for part in parts)
