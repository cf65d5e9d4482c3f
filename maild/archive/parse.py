"""One pass over a message's header section and MIME structure, shared by everything the store path needs.

The store path wants three things from each message: the header summary it keeps in ``messages``
(:func:`maild.message.summary_of`: Message-ID, Date, From, To, Cc, Subject), the MIME leaf parts
(:func:`maild.archive.mime.walk`) and the full-text index row made from both
(:func:`maild.archive.index_text.index_text`). Before, each found the header section and its fields
on its own (three scans of the same octets). :func:`parse` scans the top-level header section once
for the summary's fields and the MIME fields together, then walks the parts from there.

Pure functions, no I/O: the read-only query commands use it for snippets (no asyncio, no aiosqlite).

Standard: RFC 5322 section 2.1 (header section), RFC 2045/2046 (MIME parts).
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.archive.mime import MAX_PART_HEADER_OCTETS, MIME_FIELDS, Leaf, walk
from maild.message import SUMMARY_FIELDS, scan_header, summary_of
from maild.model import HeaderSummary

_TOP_FIELDS = SUMMARY_FIELDS + MIME_FIELDS


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What the store path reads from one message.

    Attributes:
        summary: the header summary (or the one the caller passed in).
        cc_fields: the raw bodies of every Cc field, in order (the index holds them all).
        leaves: the MIME leaf parts.
    """

    summary: HeaderSummary
    cc_fields: tuple[bytes, ...]
    leaves: list[Leaf]


def parse(raw: bytes, summary: HeaderSummary | None = None) -> ParsedMessage:
    """Scan ``raw``'s header section once and walk its MIME parts. Never raises on a malformed message.

    Args:
        raw: the message as stored (or its first octets, for a snippet).
        summary: the header summary when the caller has it already (a search hit's row): it is used
            as given, and only Cc and the MIME fields are read from ``raw``.

    Returns:
        The summary, the Cc field bodies and the leaf parts; exactly what :func:`maild.message.summarise`,
        a Cc scan and :func:`maild.archive.mime.walk` give separately (tests/unit/test_message_parse.py).
    """
    scan = scan_header(raw, _TOP_FIELDS)
    cc = tuple(body for name, body in scan.fields if name == b"cc")
    if summary is None:
        summary = summary_of(scan.fields)
    # The walk reads a part's header within MAX_PART_HEADER_OCTETS; a top-level header section longer
    # than that (but within the summary's MAX_HEADER_OCTETS) is scanned again with the walk's own window.
    top = scan if scan.body_start <= MAX_PART_HEADER_OCTETS else None
    return ParsedMessage(summary, cc, walk(raw, top))
