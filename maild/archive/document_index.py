"""The attachment-text indexer: after a message is committed, the text of its PDF and Office attachments
is added to its full-text index row (the optional ``documents`` extra; issue 18, stretch goal).

Why after the commit and not in the message's own transaction: reading a PDF costs 1-10 ms of CPU per
page in pypdf and a hostile one may take until :data:`~maild.archive.document_worker.DOCUMENT_TIMEOUT_S`;
the fetch path stays as cheap as before and its deletion guarantee does not wait on a PDF parser
(docs/performance.md, "Session 5: text of PDF and Office attachments"). So a message is archived and
indexed as before (headers, body text, file names); this indexer then looks at every message without a
``document_text`` row (v11) that has a PDF or Office part, as recorded when it was stored
(``messages.has_documents``, v13; messages archived before are looked at once), oldest first, extracts
its documents in the worker process
(:class:`~maild.archive.document_worker.DocumentWorker`) and, in one transaction per chunk, replaces the
message's index row by one whose ``attachments`` column also holds that text, and records the text in
``document_text`` (the contentless index forgets a row only when handed the very text it indexed, so
:mod:`maild.archive.fts` reads it back from there). Until then the message is *pending*:
``maild messages search`` says how many are, and ``maild reindex`` indexes them.

An extraction failure never touches the message: it stays archived and indexed without that
attachment's text, the failure is logged in one line (``documents.failed``, naming the message and
the attachment; at info when the attachment is at fault: damaged, encrypted, too large; at warning
when the administrator can act: the extractor missing, timed out, out of memory or crashed) and
counted in ``document_text.failures``; the message is not tried again (``maild reindex
--documents`` tries all again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import structlog

from maild.archive import fts
from maild.archive.document_text import (
    MAX_DOCUMENT_OCTETS,
    MAX_DOCUMENTS_PER_MESSAGE,
    MAX_MESSAGE_DOCUMENT_CHARS,
    DocumentError,
    DocumentKind,
    kind_of,
)
from maild.archive.document_worker import DocumentWorker
from maild.archive.in_list import padded_in
from maild.archive.mime import walk
from maild.archive.schema import DOCUMENTS_PENDING_SQL, FTS_COLUMNS, FTS_TABLE, utc_text
from maild.errors import StoreError

DOCUMENT_CHUNK_MESSAGES = 50
"""Messages looked at per write transaction of the indexer."""
DOCUMENT_CHUNK_OCTETS = 4 * 2**20
"""Octets of mail read into memory at a time by the indexer (4 MiB; one message at least, whatever its
size). The chunk's messages are held whole while their documents are decoded and extracted, beside
SQLite's copy of each row as it is read, so the daemon's peak grows by a few times this: with 32 MiB,
the fifty-account benchmark's daemon peaked at 103-175 MiB whenever its indexer's poll fell inside a
fetch, against 68-75 MiB without (docs/performance.md, "Session 9: memory of one account"). 4 MiB is
half the fetch's own memory budget (:data:`maild.limits.MEMORY_BUDGET_OCTETS`), and one write
transaction per chunk stays cheap at that size."""
DOCUMENT_POLL_S = 30.0
"""Seconds the daemon's indexer waits before it looks for newly archived messages again."""
_MAX_ENCODED_OCTETS = MAX_DOCUMENT_OCTETS * 4 // 3 + 4096
"""Base64 octets of the largest attachment read (with line breaks); larger parts are skipped unread."""
_log = structlog.get_logger("maild.archive")

Atomic = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class DocumentRun:
    """What one run of the indexer did: messages looked at, attachments read, attachments that failed."""

    messages: int = 0
    documents: int = 0
    failures: int = 0

    def __add__(self, other: DocumentRun) -> DocumentRun:
        return DocumentRun(
            self.messages + other.messages, self.documents + other.documents, self.failures + other.failures
        )


@dataclass(frozen=True, slots=True)
class _Result:
    message: int
    sha256: str
    text: str
    documents: int
    failures: int
    old_row: fts.IndexRow | None
    new_row: fts.IndexRow | None


PENDING_SQL = DOCUMENTS_PENDING_SQL


def _documents(raw: bytes) -> list[tuple[str, str | None, DocumentKind, bytes | None]]:
    """(part, file name, kind, decoded octets or None when too large) of each PDF or Office part."""
    found: list[tuple[str, str | None, DocumentKind, bytes | None]] = []
    # Each part is decoded from a view of the message, not from a copy of its encoded octets (an 8 MB
    # message held once less): Leaf.decoded slices the view and hands the slice to binascii or re,
    # which take any buffer; a part with no transfer encoding comes back as a view, copied by bytes()
    # below (a bytes object is not copied again).
    view = memoryview(raw)
    for leaf in walk(raw):
        kind = kind_of(leaf.content_type, leaf.filename)
        if kind is None:
            continue
        if len(found) >= MAX_DOCUMENTS_PER_MESSAGE:
            break
        decoded = None if leaf.end - leaf.start > _MAX_ENCODED_OCTETS else leaf.decoded(view)
        data = None if decoded is None or len(decoded) > MAX_DOCUMENT_OCTETS else bytes(decoded)
        found.append((leaf.part, leaf.filename, kind, data))
    return found


_Found = tuple[int, str, bytes, list[tuple[str, str | None, DocumentKind, bytes | None]]]
"""(message id, SHA-256, raw octets, its documents) of a message read by the indexer."""


async def _read(conn: aiosqlite.Connection, ids: list[int]) -> list[_Found]:
    """Read the messages ``ids`` in one query and find their documents in one worker thread."""
    marks, params = padded_in(ids)  # at most DOCUMENT_CHUNK_MESSAGES; a few statement texts (in_list.py)
    async with conn.execute(f"SELECT id, sha256, raw FROM messages WHERE id IN ({marks})", params) as cur:  # noqa: S608
        rows = [(int(r[0]), str(r[1]), bytes(r[2])) for r in await cur.fetchall()]
    return await asyncio.to_thread(lambda: [(m, sha, raw, _documents(raw)) for m, sha, raw in rows])


async def _extract(found: _Found, worker: DocumentWorker) -> _Result:
    """Extract the documents of one message (one after the other, in the worker process)."""
    message, sha256, _raw, documents = found
    texts: list[str] = []
    failures = 0
    for part, filename, kind, data in documents:
        actionable = False
        if data is None:
            reason = f"larger than {MAX_DOCUMENT_OCTETS} octets (skipped)"
        else:
            try:
                texts.append(await worker.extract(kind, data))
                continue
            except DocumentError as exc:
                reason, actionable = str(exc), exc.actionable
        failures += 1
        # a damaged, encrypted or oversized attachment is the sender's problem (info); a missing,
        # timed-out or crashed extractor is the administrator's (warning)
        (_log.warning if actionable else _log.info)(
            "documents.failed",
            message=sha256[:12],
            part=part,
            filename=filename,
            kind=kind,
            reason=reason,
        )
    text = "\n".join(t for t in texts if t)[:MAX_MESSAGE_DOCUMENT_CHARS]
    return _Result(message, sha256, text, len(documents), failures, None, None)


def _all_rows(results: list[_Result], raws: dict[int, bytes]) -> list[_Result]:
    return [_with_rows(r, raws.get(r.message, b"")) for r in results]


def _with_rows(result: _Result, raw: bytes) -> _Result:
    """``result`` with the index rows before and after its text (computed from ``raw``)."""
    if not result.text:
        return result
    old, new = fts.index_row(result.message, raw), fts.index_row(result.message, raw, result.text)
    return replace(result, old_row=old, new_row=new)


async def _table_exists(conn: aiosqlite.Connection, name: str) -> bool:
    async with conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) as cur:
        return await cur.fetchone() is not None


async def _write(conn: aiosqlite.Connection, results: list[_Result]) -> None:
    """Inside the write transaction: swap the index rows and record the text, skipping messages deleted
    or recorded by another process meanwhile. The SHA-256 check also skips a message read while
    another task's transaction on the shared connection had it uncommitted and then rolled it back
    (its id may since hold another message): the rows were computed from the octets of that SHA-256."""
    tables = [FTS_TABLE] + ([fts.REBUILD_TABLE] if await _table_exists(conn, fts.REBUILD_TABLE) else [])
    now = utc_text(datetime.now(UTC))
    for r in results:
        async with conn.execute(
            "SELECT 1 FROM messages WHERE id = ? AND sha256 = ?"
            " AND id NOT IN (SELECT message FROM document_text)",
            (r.message, r.sha256),
        ) as cur:
            if await cur.fetchone() is None:
                continue
        if r.old_row is not None and r.new_row is not None:
            for table in tables:  # a `maild reindex` may be filling its new table meanwhile
                async with conn.execute(f"SELECT 1 FROM {table}_docsize WHERE id = ?", (r.message,)) as cur:  # noqa: S608
                    if await cur.fetchone() is None:
                        continue  # not indexed yet: its row will be made with the text (fts.rows_of)
                await conn.execute(
                    f"INSERT INTO {table} ({table}, rowid, {', '.join(FTS_COLUMNS)})"  # noqa: S608
                    " VALUES ('delete', ?, ?, ?, ?, ?, ?)",
                    r.old_row,
                )
                await conn.execute(fts.insert_sql(table), r.new_row)
        await conn.execute(
            "INSERT INTO document_text (message, text, documents, failures, indexed_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (r.message, r.text, r.documents, r.failures, now),
        )
        # a message archived before v13 was unknown; now it is looked at, record what it has
        await conn.execute(
            "UPDATE messages SET has_documents = ? WHERE id = ? AND has_documents IS NULL",
            (int(r.documents > 0), r.message),
        )


async def index_pending(
    conn: aiosqlite.Connection,
    atomic: Atomic,
    worker: DocumentWorker,
    progress: Callable[[DocumentRun], None] | None = None,
    after: int = 0,
) -> tuple[DocumentRun, int]:
    """Index the attachment text of every pending message with an id above ``after``, oldest first.

    Args:
        conn: the store's connection (reads outside transactions; each chunk written by ``atomic``).
        atomic: the store's transaction runner.
        worker: the extraction worker (its process is started on the first document).
        progress: called with the totals so far after each chunk.
        after: only messages with a larger id (the daemon's loop passes the last id it looked at).

    Returns:
        What was done, and the largest message id looked at (``after`` when none).

    Raises:
        StoreError: SQLite failed (from ``atomic``); what earlier chunks wrote stays committed.

    If cancelled, the chunk being read is dropped (not written); the worker is left for the caller
    to close.
    """
    total = DocumentRun()
    while True:
        async with conn.execute(
            f"SELECT m.id, m.size_octets FROM messages m WHERE m.id IN ({PENDING_SQL} ORDER BY id LIMIT ?)"  # noqa: S608
            " ORDER BY m.id",
            (after, DOCUMENT_CHUNK_MESSAGES),
        ) as cur:
            sized = [(int(r[0]), int(r[1])) for r in await cur.fetchall()]
        if not sized:
            return total, after
        ids: list[int] = []
        octets = 0
        for message, size in sized:  # at most DOCUMENT_CHUNK_OCTETS of mail in memory (one message at least)
            if ids and octets + size > DOCUMENT_CHUNK_OCTETS:
                break
            ids.append(message)
            octets += size
        found = await _read(conn, ids)
        results = [await _extract(f, worker) for f in found]
        raws = {f[0]: f[2] for f in found if f[3]}
        results = await asyncio.to_thread(_all_rows, results, raws)

        async def write(results: list[_Result] = results) -> None:
            await _write(conn, results)

        await atomic(write, "indexing attachment text")
        after = ids[-1]
        total = total + DocumentRun(
            len(results), sum(r.documents for r in results), sum(r.failures for r in results)
        )
        if progress is not None:
            progress(total)


async def forget(conn: aiosqlite.Connection, atomic: Atomic) -> int:
    """Make every message pending again (``maild reindex --documents``): the attachment text is removed
    from the index rows and from ``document_text``, to be extracted anew.

    Returns:
        The number of messages whose text was removed.

    Raises:
        StoreError: SQLite failed; nothing was changed.
    """

    async def work() -> int:
        await conn.execute("DROP TABLE IF EXISTS temp.documents_forgotten")
        await conn.execute(
            "CREATE TEMP TABLE documents_forgotten AS"
            " SELECT message AS id FROM document_text WHERE text <> ''"
        )
        removed = await fts.unindex(conn, "SELECT id FROM temp.documents_forgotten")
        await conn.execute("DELETE FROM document_text")
        # Indexed again without the text (the rows fts.rows_of makes now that document_text is empty).
        await fts.fill(conn, "SELECT id FROM temp.documents_forgotten")
        await conn.execute("DROP TABLE temp.documents_forgotten")
        return removed

    return int(await atomic(work, "forgetting attachment text"))


IndexPending = Callable[[DocumentWorker, int], Awaitable[tuple[DocumentRun, int]]]
"""``Store.index_documents`` bound to its store: (worker, after) -> (what was done, last id looked at)."""


async def run_indexer(index: IndexPending, stop: asyncio.Event, poll_s: float = DOCUMENT_POLL_S) -> None:
    """The daemon's background indexer: index pending attachment text, then every ``poll_s`` seconds
    what was archived meanwhile, until ``stop`` is set (or the task is cancelled).

    A failing store (:class:`~maild.errors.StoreError`) is logged and tried again after ``poll_s``; the
    worker process is stopped on the way out.
    """
    worker = DocumentWorker()
    _log.info("documents.indexer-started")
    try:
        while not stop.is_set():
            try:
                # From the first id each time: a purge may free an id that SQLite gives a new message
                # again (5 ms per 100,000 messages to find the pending ones).
                run, _ = await index(worker, 0)
            except StoreError as exc:
                _log.warning("documents.store-failed", error=str(exc))
            else:
                if run.messages:
                    _log.info(
                        "documents.indexed",
                        messages=run.messages,
                        documents=run.documents,
                        failures=run.failures,
                    )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
    finally:
        await worker.close()
