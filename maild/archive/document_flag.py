"""Schema version 13's Python step: ``messages.has_documents`` added (NULL for the messages archived before).

Run by :func:`maild.archive.opening.set_up` after the version's (empty) SQL, in its
transaction. A Python step because ``ALTER TABLE ... ADD COLUMN`` has no ``IF NOT EXISTS``. The old
messages are not read here (that would read the whole archive during the upgrade): NULL means
unknown, and the attachment-text indexer (:mod:`maild.archive.document_index`) looks at each such
message once and records what it found.
"""

from __future__ import annotations

import aiosqlite

from maild.archive.columns import add_column_unless_there

DOCUMENTS_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS messages_documents ON messages (id) WHERE has_documents IS NOT 0"
)
"""The partial index the indexer's pending query (:data:`maild.archive.schema.DOCUMENTS_PENDING_SQL`)
reads: only messages with documents or not known to have none, so finding them does not scan every
message."""


async def add_document_flag(conn: aiosqlite.Connection) -> None:
    """Schema version 13's step: add ``messages.has_documents`` (unless there) and its partial index.

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back).
    """
    await add_column_unless_there(conn, "messages", "has_documents", "INTEGER")
    await conn.execute(DOCUMENTS_INDEX_SQL)
