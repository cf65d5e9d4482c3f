"""Storing a batch of fetched messages in one durable transaction, in two steps (:class:`BatchWriter`).

:meth:`BatchWriter.prepare_batch` (CPU work in a worker thread, nothing stored) and
:meth:`BatchWriter.insert_batch` (the transaction) are separate so that a fetch cycle can prepare the
next batch while the previous one's transaction runs; :meth:`maild.archive.store.Store.store_batch`
is the two in a row.

Each distinct message (by SHA-256 of its raw octets) is stored once, with its header summary and its
full-text index row; each server identity (POP3 UIDL, RFC 1939 section 7; IMAP mailbox, UIDVALIDITY
and UID, RFC 9051 section 2.3.1.1) is linked to it once; the account's fetched counts and its
failure records change in the same transaction. Hashing, summarising and extracting index text
run in a worker thread; messages of at least :data:`LARGE_BLOB_OCTETS` are written through
incremental blob I/O, a spooled message (:mod:`maild.spool`) copied from its file in parts of
:data:`~maild.spool.SPOOL_PART_OCTETS`, never read whole. The transaction's body is one call in
aiosqlite's thread (:func:`_insert_batch`), its small messages in multi-row statements
(:mod:`maild.archive.multirow`): Python's ``sqlite3`` takes the GIL back after every step, and while
the next batch's parse or the event loop holds it, each of those waits (docs/performance.md,
"Session 9: SQLite's thread").

A spooled message is stored exactly as one in memory would be: its SHA-256 was computed while it was
spooled; its header summary, MIME parts, index text and ``has_documents`` are read by the same
functions through a :class:`~maild.spool_view.SpooledView`, which answers them from the octets kept
while it was written (the head, and the octets around every ``--`` past it: boundary lines and part
headers), so they are the same values (tests/unit/test_spool_store.py, test_spool_view.py) and the
file is read once, by the copy into the blob (a part header or text part past the head longer
than the kept octets is the exception, read from the file: :mod:`maild.spool_view`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from maild.archive import fts
from maild.archive.document_kind import has_documents
from maild.archive.history import _COUNT_FETCHED
from maild.archive.in_list import padded_in
from maild.archive.multirow import insert_rows
from maild.archive.schema import QUERY_CHUNK, failure_key_text, utc_text
from maild.errors import StoreError
from maild.message import sha256_hex
from maild.model import IMAPKey, MessageKey, POP3Key, RetrievedMessage, SpooledBody, StoreOutcome
from maild.spool_view import SpooledView

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


@dataclass(frozen=True, slots=True)
class _Prepared:
    key: MessageKey
    msg: RetrievedMessage
    sha256: str
    row: tuple[Any, ...]
    index: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch hashed, parsed and indexed by :meth:`BatchWriter.prepare_batch`, not yet stored.

    It holds the messages' raw octets (a fetch cycle counts them as held until it is inserted).
    Dropping it stores nothing and changes nothing.

    Attributes:
        stamp: the time it was prepared for (``stored_at`` and ``first_fetched_at``), UTC text.
        items: one entry per message of the batch, in the batch's order.
        octets: the raw octets of its messages, summed.
    """

    stamp: str
    items: tuple[_Prepared, ...]
    octets: int

    def __len__(self) -> int:
        return len(self.items)


_INSERT_MESSAGE_HEAD = (
    "INSERT OR IGNORE INTO messages (sha256, size_octets, message_id, date, from_header, to_header,"
    " cc_header, subject, stored_at, has_documents, raw)"
)
_INSERT_LARGE = (
    _INSERT_MESSAGE_HEAD.replace(" OR IGNORE", "") + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, zeroblob(?))"
)
_INSERT_FTS = fts.insert_sql()
LARGE_BLOB_OCTETS = 256 * 2**10
"""Messages at least this large (256 KiB) are written with :func:`_insert_large`, not bound as a
parameter: binding a blob costs SQLite two copies of it, the bound value and the row's record
(measured: +52 MB for 25 MB, against +2 MB). From 256 KiB on, each copy is also a fresh mapping
(``maild.service.memory.MMAP_THRESHOLD_OCTETS``): every page of it page-faulted in, then unmapped
(docs/performance.md, "Session 10: the system time"). A message written through the blob goes
straight from its buffer into SQLite's pages; up to SQLite's page cache (2,000 KiB) its zero-filled
pages are the newest in the cache, so none is spilled before it is written."""
_BLOB_CHUNK_OCTETS = 2**20


def _insert_large(db: sqlite3.Connection, row: tuple[Any, ...]) -> int:
    """Insert one message row with its raw octets written through incremental blob I/O.

    Runs in aiosqlite's thread, inside the caller's transaction (so it is stored with the batch or
    not at all): ``zeroblob(n)`` reserves the octets, then ``blobopen`` writes them in place, from
    a memoryview, without SQLite copying the whole message first. Returns the new row's id.
    """
    raw: bytes | SpooledBody = row[-1]
    size = _size(raw)
    cur = db.execute(_INSERT_LARGE, (*row[:-1], size))
    rowid = cur.lastrowid
    cur.close()
    assert rowid is not None
    with db.blobopen("messages", "raw", rowid) as blob:
        if not isinstance(raw, bytes | bytearray):  # from the spool file, a part at a time
            try:
                for part in raw.parts(_BLOB_CHUNK_OCTETS):
                    blob.write(part)
            except (OSError, ValueError) as exc:  # the transaction rolls back: a StoreError
                raise sqlite3.OperationalError(f"reading a spooled message: {exc}") from None
            return rowid
        with memoryview(raw) as view:
            for start in range(0, len(view), _BLOB_CHUNK_OCTETS):
                blob.write(view[start : start + _BLOB_CHUNK_OCTETS])
    return rowid


def _size(raw: bytes | SpooledBody) -> int:
    return len(raw) if isinstance(raw, bytes | bytearray) else raw.size_octets


def _is_large(raw: bytes | SpooledBody) -> bool:
    return not isinstance(raw, bytes | bytearray) or len(raw) >= LARGE_BLOB_OCTETS


def _prepare(batch: Sequence[RetrievedMessage], stored_at: str) -> list[_Prepared]:
    """Hash, parse once (summary, MIME parts) and extract the index text of a batch (CPU work, in a
    worker thread)."""
    # The parsers (MIME walk, index text, html and email.* beneath) are imported by the first batch,
    # not with the archive writer: a `maild fetch` that finds no new mail never loads them (start-up
    # time, docs/performance.md "Session 8: start-up").
    from maild.archive.index_text import index_text
    from maild.archive.parse import parse

    out = []
    for msg in batch:
        raw = msg.raw
        octets: bytes
        if isinstance(raw, bytes | bytearray):
            digest = sha256_hex(raw)
            octets = raw
        else:  # hashed while spooled; parsed through a view of its file
            digest = raw.sha256
            octets = cast(bytes, SpooledView(raw))  # has the bytes methods the parsers use
        parsed = parse(octets)  # one pass: the summary and the index text share it
        h = parsed.summary
        row = (
            digest,
            msg.size_octets,
            h.message_id,
            utc_text(h.date) if h.date else None,
            h.from_,
            h.to,
            h.cc,
            h.subject,
            stored_at,
            has_documents(parsed.leaves),  # the attachment-text indexer reads only these (v13)
            raw,
        )
        out.append(_Prepared(msg.key, msg, digest, row, index_text(octets, parsed).row()))
    return out


class BatchWriter:
    """Storing fetched messages over one archive connection; held by :class:`maild.archive.store.Store`.

    Counted into the connection's :attr:`~maild.archive.connection.ArchiveConnection.counters` when
    the daemon keeps them."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db

    async def prepare_batch(self, batch: Sequence[RetrievedMessage], now: datetime) -> PreparedBatch:
        """Hash (SHA-256), parse (header summary, MIME parts) and extract the index text of ``batch``.

        CPU work in a worker thread (:func:`asyncio.to_thread`); it touches neither the archive nor
        its connection, so it may run while another batch's transaction does.

        Args:
            batch: retrieved messages, raw octets with CRLF line endings.
            now: aware datetime, the batch's ``stored_at`` (converted to UTC).

        Returns:
            The prepared batch, for :meth:`insert_batch`; nothing is stored yet.

        Raises:
            StoreError: a spooled message's file could not be read; nothing is stored.

        Cancelled or failed: nothing is stored (the worker thread may finish its work, which is then
        dropped).
        """
        stamp = utc_text(now)
        try:
            items = await asyncio.to_thread(_prepare, batch, stamp)
        except (OSError, ValueError) as exc:  # a spool file unreadable (or closed): nothing stored
            raise StoreError(f"preparing a batch: reading a spooled message: {exc}") from None
        return PreparedBatch(stamp, tuple(items), sum(m.size_octets for m in batch))

    async def insert_batch(self, account: str, prepared: PreparedBatch) -> StoreOutcome:
        """Store a batch made by :meth:`prepare_batch` for ``account`` in one durable transaction.

        Each distinct message (by SHA-256 of its raw octets) is stored once; each server identity
        (RFC 1939 section 7 UIDL; RFC 9051 section 2.3.1.1 mailbox, UIDVALIDITY, UID) is linked to it
        once; the account's fetched counts and its failure records change in the same transaction.

        Returns:
            Counts of what was new (see :class:`StoreOutcome`).

        Raises:
            StoreError: SQLite failed, or the batch names one server identity for two different
                contents (a server identity names one message; which one is meant cannot be told, and
                storing both left one without a location); nothing of the batch is stored.

        When this returns, the batch is on disk (WAL fsync'ed, ``synchronous=FULL``). If cancelled
        before that, nothing of it is stored.
        """
        if not prepared.items:
            return StoreOutcome()
        _refuse_ambiguous_keys(prepared.items)
        # the whole transaction (BEGIN, the batch, COMMIT) in one call in SQLite's thread (aiosqlite
        # 0.22's queue, pinned; tests/unit/test_store.py checks it; one round trip, not three: session
        # 14), its messages in multi-row statements: the GIL is taken back a few times per batch, not
        # several times per message (maild.archive.multirow)
        outcome = await self._db._atomic_call(
            _insert_batch, account, prepared.items, prepared.stamp, what=f"storing for account {account}"
        )
        if self._db.counters is not None:
            self._db.counters.add(account, outcome)
        return outcome


def _refuse_ambiguous_keys(items: Sequence[_Prepared]) -> None:
    """Raise StoreError when two items of a batch have the same server identity and different
    SHA-256 digests (the same identity twice with the same octets is one message: linked once)."""
    digests: dict[MessageKey, str] = {}
    for p in items:
        if digests.setdefault(p.key, p.sha256) != p.sha256:
            what = f"UIDL {p.key.uidl}" if isinstance(p.key, POP3Key) else f"{p.key.mailbox} UID {p.key.uid}"
            raise StoreError(f"a batch names {what} twice with different octets; nothing stored")


_INSERT_POP3 = (
    "INSERT INTO locations (account, message, uidl, first_fetched_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (account, uidl) WHERE uidl IS NOT NULL DO NOTHING"
)
_INSERT_IMAP = (
    "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
    " first_fetched_at, missing_items) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (account, mailbox, uidvalidity, uid) WHERE uid IS NOT NULL DO NOTHING"
)


def _insert_batch(
    db: sqlite3.Connection, account: str, prepared: Sequence[_Prepared], stamp: str
) -> StoreOutcome:
    """The body of one batch's transaction, in aiosqlite's thread (the caller began it and commits it).

    Messages go in multi-row statements (:func:`maild.archive.multirow.insert_rows`, ``OR IGNORE``:
    no statement journal; a row it skipped for its digest is the same message, already stored, and
    the lookup after it finds that row; one skipped for a NULL fails the check below);
    each message of at least :data:`LARGE_BLOB_OCTETS` (or spooled) by :func:`_insert_large`. Keys
    already linked are found first (inside this transaction, so nobody adds one meanwhile); the
    batch's own duplicates are linked once, as ON CONFLICT DO NOTHING did one row at a time.
    """
    existing = _lookup_ids(db, list(dict.fromkeys(p.sha256 for p in prepared)))
    new_rows = {p.sha256: p.row for p in prepared if p.sha256 not in existing}
    if new_rows:
        # in the batch's order (the messages' ids are their storing order): runs of small messages
        # in multi-row statements, each large one through blob I/O where it comes
        small: list[tuple[Any, ...]] = []
        run: list[tuple[Any, ...]] = []
        for digest, row in new_rows.items():
            if not _is_large(row[-1]):
                run.append(row)
                continue
            insert_rows(db, _INSERT_MESSAGE_HEAD, run)
            small += run
            run = []
            existing[digest] = _insert_large(db, row)
        insert_rows(db, _INSERT_MESSAGE_HEAD, run)
        small += run
        existing.update(_lookup_ids(db, [row[0] for row in small]))
        if any(row[0] not in existing for row in small):
            raise sqlite3.IntegrityError("a message row was not stored")
        indexed = {p.sha256: p.index for p in prepared if p.sha256 in new_rows}
        # one row per step: an insert of several rows into a virtual table gets a statement journal,
        # a temporary file (docs/performance.md, "Session 9: SQLite's thread")
        db.executemany(_INSERT_FTS, [(existing[digest], *values) for digest, values in indexed.items()])
    linked = _linked_keys(db, account, [p.key for p in prepared])
    pop_rows: list[tuple[Any, ...]] = []
    imap_rows: list[tuple[Any, ...]] = []
    octets = 0
    for p in prepared:
        key = p.key
        if key in linked:
            continue
        linked.add(key)
        octets += p.msg.size_octets
        if isinstance(key, POP3Key):
            pop_rows.append((account, existing[p.sha256], key.uidl, stamp))
        else:
            msg = p.msg
            imap_rows.append(
                (
                    account,
                    existing[p.sha256],
                    key.mailbox,
                    key.uidvalidity,
                    key.uid,
                    utc_text(msg.internaldate) if msg.internaldate else None,
                    " ".join(sorted(msg.flags)) if msg.flags else None,
                    stamp,
                    " ".join(msg.missing) if msg.missing else None,
                )
            )
    linked_ids = {row[1] for row in pop_rows} | {row[1] for row in imap_rows}
    account_messages = len(linked_ids - _messages_of(db, account, linked_ids))
    # one row per step: the foreign keys would give a multi-row statement a statement journal (a
    # temporary file), and these steps are short (docs/performance.md, "Session 9: SQLite's thread")
    if pop_rows:
        db.executemany(_INSERT_POP3, pop_rows)
    if imap_rows:
        db.executemany(_INSERT_IMAP, imap_rows)
    # a message that arrived has no failure record any more (schema v4, maild.archive.failures);
    # most accounts have none, and one lookup saves a DELETE per message
    if db.execute("SELECT 1 FROM retrieval_failures WHERE account = ? LIMIT 1", (account,)).fetchone():
        db.executemany(
            "DELETE FROM retrieval_failures WHERE account = ? AND key = ?",
            [(account, failure_key_text(p.key)) for p in prepared],
        )
    links = len(pop_rows) + len(imap_rows)
    if links:  # the account's history counts in this transaction (issue 17: no undercount after a crash)
        db.execute(_COUNT_FETCHED, (account, links, octets))
    return StoreOutcome(
        new_messages=len(new_rows),
        new_links=links,
        octets=octets,
        account_messages=account_messages,
        new_octets=sum(_size(row[-1]) for row in new_rows.values()),
    )


def _messages_of(db: sqlite3.Connection, account: str, ids: Iterable[int]) -> set[int]:
    """The subset of message row ``ids`` already linked to ``account``."""
    found: set[int] = set()
    wanted = sorted(ids)
    for i in range(0, len(wanted), QUERY_CHUNK):
        chunk = wanted[i : i + QUERY_CHUNK]
        marks, params = padded_in(chunk)  # a few statement texts for every length (in_list.py)
        sql = f"SELECT DISTINCT message FROM locations WHERE account = ? AND message IN ({marks})"  # noqa: S608
        found.update(row[0] for row in db.execute(sql, (account, *params)).fetchall())
    return found


def _linked_keys(db: sqlite3.Connection, account: str, keys: Sequence[MessageKey]) -> set[MessageKey]:
    """The subset of ``keys`` that already have a location row for ``account``."""
    found: set[MessageKey] = set()
    uidls = list({k.uidl for k in keys if isinstance(k, POP3Key)})
    for i in range(0, len(uidls), QUERY_CHUNK):
        chunk = uidls[i : i + QUERY_CHUNK]
        marks, params = padded_in(chunk)
        sql = f"SELECT uidl FROM locations WHERE account = ? AND uidl IN ({marks})"  # noqa: S608
        found.update(POP3Key(row[0]) for row in db.execute(sql, (account, *params)).fetchall())
    by_box: dict[tuple[str, int], list[int]] = {}
    for k in keys:
        if isinstance(k, IMAPKey):
            by_box.setdefault((k.mailbox, k.uidvalidity), []).append(k.uid)
    for (mailbox, uidvalidity), uids in by_box.items():
        unique = sorted(set(uids))
        for i in range(0, len(unique), QUERY_CHUNK):
            marks, params = padded_in(unique[i : i + QUERY_CHUNK])
            sql = (
                "SELECT uid FROM locations WHERE account = ? AND mailbox = ? AND uidvalidity = ?"  # noqa: S608
                f" AND uid IN ({marks})"
            )
            rows = db.execute(sql, (account, mailbox, uidvalidity, *params)).fetchall()
            found.update(IMAPKey(mailbox, uidvalidity, row[0]) for row in rows)
    return found


def _lookup_ids(db: sqlite3.Connection, digests: Sequence[str]) -> dict[str, int]:
    """SHA-256 hex digest -> message row id, for each of ``digests`` present in the archive."""
    found: dict[str, int] = {}
    for i in range(0, len(digests), QUERY_CHUNK):
        chunk = digests[i : i + QUERY_CHUNK]
        marks, params = padded_in(chunk)
        sql = f"SELECT sha256, id FROM messages WHERE sha256 IN ({marks})"  # noqa: S608
        found.update({row[0]: row[1] for row in db.execute(sql, params).fetchall()})
    return found
