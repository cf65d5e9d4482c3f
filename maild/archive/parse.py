"""One pass over a message's header section and MIME structure, shared by everything the store path needs.

The store path wants three things from each message: the header summary it keeps in ``messages``
(:func:`maild.message.summary_of`: Message-ID, Date, From, To, Cc, Subject), the MIME leaf parts
(:func:`maild.archive.mime.walk`) and the full-text index row made from both
(:func:`maild.archive.index_text.index_text`). Before, each found the header section and its fields
on its own (three scans of the same octets). :func:`parse` scans the top-level header section once
for the summary's fields and the MIME fields together, then walks the parts from there.

Standard: RFC 5322 section 2.1 (header section), RFC 2045/2046 (MIME parts).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiosqlite

from maild.archive.mime import MAX_PART_HEADER_OCTETS, MIME_FIELDS, Leaf, walk
from maild.message import MAX_HEADER_OCTETS, SUMMARY_FIELDS, scan_header, summary_of
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


def _cc_of(rows: list[tuple[int, bytes]]) -> list[tuple[str | None, int]]:
    """(decoded Cc or None, message id) of each (message id, header octets)."""
    return [(summary_of(scan_header(head, (b"cc",)).fields).cc, message) for message, head in rows]


CC_FILL_CHUNK = 500
"""Messages read at a time by :func:`fill_cc_headers` (each only up to
:data:`maild.message.MAX_HEADER_OCTETS` octets)."""


async def fill_cc_headers(conn: aiosqlite.Connection) -> None:
    """Schema version 11's step after its SQL: fill ``messages.cc_header`` of every archived message.

    Runs in the migration's transaction (all rows or none). Adds the column (unless there) first:
    ``ALTER TABLE messages ADD COLUMN cc_header TEXT``. Then reads each message's first
    :data:`maild.message.MAX_HEADER_OCTETS` octets, :data:`CC_FILL_CHUNK` messages at a time, and
    decodes its Cc field exactly as :func:`parse` does for a new message (in a worker thread).

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back).
    """
    async with conn.execute("SELECT name FROM pragma_table_info('messages')") as cur:
        columns = {row[0] for row in await cur.fetchall()}
    if "cc_header" not in columns:
        await conn.execute("ALTER TABLE messages ADD COLUMN cc_header TEXT")
    after = 0
    while True:
        async with conn.execute(
            "SELECT id, substr(raw, 1, ?) FROM messages WHERE id > ? ORDER BY id LIMIT ?",
            (MAX_HEADER_OCTETS, after, CC_FILL_CHUNK),
        ) as cur:
            rows = [(int(r[0]), bytes(r[1])) for r in await cur.fetchall()]
        if not rows:
            return
        after = rows[-1][0]
        found = await asyncio.to_thread(_cc_of, rows)
        await conn.executemany(
            "UPDATE messages SET cc_header = ? WHERE id = ?", [(cc, i) for cc, i in found if cc is not None]
        )
