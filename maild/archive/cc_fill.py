"""Schema version 12's Python step: ``messages.cc_header`` added and filled for the messages archived before.

Run by :func:`maild.archive.opening.set_up` after the version's (empty) SQL, in its
transaction. Kept apart from :mod:`maild.archive.parse`, which the read-only query commands load
without asyncio and aiosqlite.
"""

from __future__ import annotations

import asyncio

import aiosqlite

from maild.archive.columns import add_column_unless_there
from maild.message import MAX_HEADER_OCTETS, scan_header, summary_of


def _cc_of(rows: list[tuple[int, bytes]]) -> list[tuple[str | None, int]]:
    """(decoded Cc or None, message id) of each (message id, header octets)."""
    return [(summary_of(scan_header(head, (b"cc",)).fields).cc, message) for message, head in rows]


CC_FILL_CHUNK = 500
"""Messages read at a time by :func:`fill_cc_headers` (each only up to
:data:`maild.message.MAX_HEADER_OCTETS` octets)."""


async def fill_cc_headers(conn: aiosqlite.Connection) -> None:
    """Schema version 12's step after its SQL: fill ``messages.cc_header`` of every archived message.

    Runs in the migration's transaction (all rows or none). Adds the column (unless there) first:
    ``ALTER TABLE messages ADD COLUMN cc_header TEXT``. Then reads each message's first
    :data:`maild.message.MAX_HEADER_OCTETS` octets, :data:`CC_FILL_CHUNK` messages at a time, and
    decodes its Cc field exactly as :func:`maild.archive.parse.parse` does for a new message (in a
    worker thread).

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back).
    """
    await add_column_unless_there(conn, "messages", "cc_header", "TEXT")
    after = 0
    while True:
        async with conn.execute(
            "SELECT id, substr(raw, 1, ?) FROM messages WHERE id > ? ORDER BY id LIMIT ?",
            (MAX_HEADER_OCTETS, after, CC_FILL_CHUNK),
        ) as cur:
            # SQLite's substr() of a 0-octet blob is NULL, not b'': an empty message has no Cc
            rows = [(int(r[0]), bytes(r[1] or b"")) for r in await cur.fetchall()]
        if not rows:
            return
        after = rows[-1][0]
        found = await asyncio.to_thread(_cc_of, rows)
        await conn.executemany(
            "UPDATE messages SET cc_header = ? WHERE id = ?", [(cc, i) for cc, i in found if cc is not None]
        )
