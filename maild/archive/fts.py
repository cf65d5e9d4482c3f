"""The full-text index's table (``messages_fts``): its layout, and filling, rebuilding and unindexing it.

Layout (schema version 9): a *contentless* FTS5 table (``content=''``): it keeps each word's
positions (so phrases and ``NEAR`` work) and each column's size in words (``messages_fts_docsize``,
for BM25), but no copy of the text. That copy was 80 % of the index's size and a third of its
writing cost (docs/performance.md, "Full-text search"); snippets are made from the message itself
(:mod:`maild.archive.snippet`). The price, with SQLite before 3.43 (no ``contentless_delete``): a row
can only be removed by handing FTS5 the very text it indexed (the ``'delete'`` command), so
:func:`unindex` recomputes it with :func:`index_row`. Hence the rule: **a change to what
:func:`maild.archive.index_text.index_text` extracts needs a schema migration that rebuilds the
index** (as version 9 does), or such a delete would leave stale words behind.

Everything runs on the caller's connection inside the caller's transaction: the store indexes a
message in the transaction that stores it, so search is never behind the archive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite

from maild.archive.in_list import padded_in
from maild.archive.schema import FTS_COLUMNS, FTS_TABLE, fts_create_sql
from maild.errors import StoreError

REBUILD_TABLE = "messages_fts_rebuild"
"""The table :meth:`maild.archive.store.Store.reindex` fills before it replaces ``messages_fts``."""
FILL_CHUNK_OCTETS = 32 * 2**20
"""Octets of messages read (and their index rows computed) at a time when an index is filled; bounds
the memory of :func:`fill` and :meth:`maild.archive.store.Store.reindex`."""
FILL_CHUNK_MESSAGES = 500
"""Messages read at a time when an index is filled (below SQLite's variable limit)."""

IndexRow = tuple[int, str, str, str, str, str]
"""``(message row id, sender, recipients, subject, body, attachments)``."""


def create_sql(table: str = FTS_TABLE) -> str:
    """The ``CREATE VIRTUAL TABLE`` statement of the index (schema version 9) under the name ``table``."""
    return fts_create_sql(table)


def insert_sql(table: str = FTS_TABLE) -> str:
    """The statement that indexes one :data:`IndexRow` in ``table``."""
    return f"INSERT INTO {table} (rowid, {', '.join(FTS_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608


def index_row(message: int, raw: bytes, documents: str = "") -> IndexRow:
    """The index row of one archived message: always computed the same way (store, rebuild, unindex).

    Args:
        message: ``messages.id``.
        raw: the message's octets.
        documents: the text of its PDF and Office attachments as stored in ``document_text``
            (v11; :mod:`maild.archive.document_index`), appended to the ``attachments`` column.
    """
    # Imported here: a `maild fetch` that finds no new mail never extracts index text, and this
    # module is loaded with every archive writer (start-up time, docs/performance.md, session 8).
    from maild.archive.index_text import index_text

    row = index_text(raw).row()
    if documents:
        row = (*row[:4], f"{row[4]}\n{documents}" if row[4] else documents)
    return (message, *row)


async def message_chunks(conn: aiosqlite.Connection, ids_sql: str) -> list[list[int]]:
    """The ids ``ids_sql`` selects (a ``SELECT`` of ``messages.id`` values), in chunks of at most
    :data:`FILL_CHUNK_OCTETS` octets of mail and :data:`FILL_CHUNK_MESSAGES` messages."""
    async with conn.execute(
        f"SELECT id, size_octets FROM messages WHERE id IN ({ids_sql}) ORDER BY id"  # noqa: S608
    ) as cur:
        rows = await cur.fetchall()
    chunks: list[list[int]] = []
    chunk: list[int] = []
    octets = 0
    for message, size in rows:
        chunk.append(int(message))
        octets += int(size)
        if octets >= FILL_CHUNK_OCTETS or len(chunk) >= FILL_CHUNK_MESSAGES:
            chunks.append(chunk)
            chunk, octets = [], 0
    if chunk:
        chunks.append(chunk)
    return chunks


async def rows_of(conn: aiosqlite.Connection, ids: Sequence[int]) -> list[IndexRow]:
    """Read the messages ``ids`` and compute their index rows (in a worker thread, off the event loop)."""
    marks, params = padded_in(ids)  # at most FILL_CHUNK_MESSAGES: a few statement texts (in_list.py)
    async with conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'document_text'"
    ) as cur:
        documents = await cur.fetchone() is not None  # v11; absent while older migrations run
    sql = (
        f"SELECT m.id, m.raw, coalesce(d.text, '') FROM messages m"  # noqa: S608
        f" LEFT JOIN document_text d ON d.message = m.id WHERE m.id IN ({marks})"
        if documents
        else f"SELECT id, raw, '' FROM messages WHERE id IN ({marks})"  # noqa: S608
    )
    async with conn.execute(sql, params) as cur:
        raws = [(int(r[0]), bytes(r[1]), str(r[2])) for r in await cur.fetchall()]
    return await asyncio.to_thread(lambda: [index_row(message, raw, text) for message, raw, text in raws])


async def fill(
    conn: aiosqlite.Connection,
    ids_sql: str,
    table: str = FTS_TABLE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Index in ``table`` the messages ``ids_sql`` selects, chunk by chunk, in the current transaction.

    Args:
        conn: the store's connection, inside a write transaction.
        ids_sql: a ``SELECT`` of ``messages.id`` values (no parameters).
        table: the index table.
        progress: called with the number of messages indexed so far after each chunk.

    Returns:
        The number of messages indexed.

    Raises:
        sqlite3.Error: SQLite failed (the caller's transaction is then rolled back).
    """
    done = 0
    for chunk in await message_chunks(conn, ids_sql):
        await conn.executemany(insert_sql(table), await rows_of(conn, chunk))
        done += len(chunk)
        if progress is not None:
            progress(done)
    return done


async def unindex(conn: aiosqlite.Connection, ids_sql: str) -> int:
    """Remove from ``messages_fts`` the rows of the messages ``ids_sql`` selects (before they are deleted).

    A contentless FTS5 table forgets a row only when given the text it indexed (FTS5 ``'delete'``
    command), so each message's row is computed again from its octets.

    Args:
        conn: the store's connection, inside the write transaction that deletes the messages.
        ids_sql: a ``SELECT`` of ``messages.id`` values (no parameters); those not indexed are skipped.

    Returns:
        The number of rows removed.

    Raises:
        sqlite3.Error: SQLite failed.
    """
    indexed = f"SELECT id FROM {FTS_TABLE}_docsize WHERE id IN ({ids_sql})"  # noqa: S608
    statement = (
        f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, {', '.join(FTS_COLUMNS)})"  # noqa: S608
        " VALUES ('delete', ?, ?, ?, ?, ?, ?)"
    )
    done = 0
    for chunk in await message_chunks(conn, indexed):
        await conn.executemany(statement, await rows_of(conn, chunk))
        done += len(chunk)
    return done


Atomic = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]
"""The store's ``_atomic``: runs a coroutine function in one write transaction (what: for errors)."""


async def rebuild(
    conn: aiosqlite.Connection, atomic: Atomic, progress: Callable[[int, int], None] | None
) -> int:
    """Rebuild the index beside the old one, then put it in the old one's place (``maild reindex``).

    :data:`REBUILD_TABLE` is filled in one transaction per chunk (:func:`message_chunks`), so searches
    meanwhile use the old index and the daemon keeps storing (and indexing into the old one). A last
    transaction indexes what was stored meanwhile and replaces the old table.

    Args:
        conn: the store's connection.
        atomic: the store's transaction runner.
        progress: called with (messages done, total) after each chunk.

    Returns:
        The number of messages indexed.

    Raises:
        StoreError: SQLite failed (from ``atomic``), or messages were purged during the rebuild (their
            rows in the new table cannot be removed); the old index stays in use.
    """

    async def start() -> list[list[int]]:
        await conn.execute(f"DROP TABLE IF EXISTS {REBUILD_TABLE}")
        await conn.execute(create_sql(REBUILD_TABLE))
        return await message_chunks(conn, "SELECT id FROM messages")

    chunks: list[list[int]] = await atomic(start, "starting the index rebuild")
    total = sum(len(chunk) for chunk in chunks)
    done = 0
    for chunk in chunks:

        async def fill_chunk(chunk: list[int] = chunk) -> None:
            await conn.executemany(insert_sql(REBUILD_TABLE), await rows_of(conn, chunk))

        await atomic(fill_chunk, "rebuilding the index")
        done += len(chunk)
        if progress is not None:
            progress(done, total)

    async def finish() -> int:
        async with conn.execute(
            f"SELECT count(*) FROM {REBUILD_TABLE}_docsize WHERE id NOT IN (SELECT id FROM messages)"  # noqa: S608
        ) as cur:
            (purged,) = await cur.fetchone() or (0,)
        if purged:  # deleted meanwhile (maild accounts remove --purge)
            raise StoreError(f"{purged} messages were deleted during the rebuild; run `maild reindex` again")
        late = await fill(
            conn, f"SELECT id FROM messages EXCEPT SELECT id FROM {REBUILD_TABLE}_docsize", REBUILD_TABLE  # noqa: S608
        )
        await conn.execute(f"DROP TABLE {FTS_TABLE}")
        await conn.execute(f"ALTER TABLE {REBUILD_TABLE} RENAME TO {FTS_TABLE}")
        await conn.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')")  # noqa: S608
        return late

    late: int = await atomic(finish, "replacing the index")
    return done + late


async def migrate_to_contentless(conn: aiosqlite.Connection) -> None:
    """Schema version 9's step after its SQL: index every archived message in the new table.

    Runs in the migration's transaction, so the upgraded archive is never without its index.
    """
    indexed = await fill(conn, "SELECT id FROM messages")
    if indexed:
        await conn.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')")  # noqa: S608
