"""The archive's writer, :class:`Store`: the one class the daemon, ``maild fetch`` and the tests open.

:class:`Store` is composed of one class per kind of record, each in its own module over the shared
connection of :mod:`maild.archive.connection` (open, migrate, transactions, the archive guard):
:mod:`maild.archive.locations` (server identities, presence, the check before deleting),
:mod:`maild.archive.batches` (storing fetched messages), :mod:`maild.archive.deliveries` (Maildir
delivery rows), :mod:`maild.archive.mailboxes` (IMAP UIDVALIDITY per mailbox, RFC 9051 section
2.3.1.1) and :mod:`maild.archive.history` (each account's history). This module adds accounts, the
full-text index rebuild and the figures ``maild status`` reads, and re-exports the names callers
import from here. The archive file itself (modes, creation, side files) is
:mod:`maild.archive.archive_file`.

Only modules of :mod:`maild.archive` contain SQL. Layout: the tables and the version that added each
are listed in :mod:`maild.archive.schema` (``PRAGMA user_version``); docs/archive.md documents them
for readers such as the CRM.

Durability: WAL with ``synchronous=FULL``, so every commit is fsync'ed before it returns; a message
is deleted on a server only after the commit that stores it has returned (see ``fetch/cycle.py``).
Checkpoints (the WAL copied into the database file) are not part of it; they run in a thread of
their own (:mod:`maild.archive.checkpointer`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from maild.archive import fts
from maild.archive.archive_file import (
    ARCHIVE_DIR_MODE,
    ARCHIVE_FILE_MODE,
    SIDE_FILE_SUFFIXES,
    set_archive_mode,
)
from maild.archive.batches import LARGE_BLOB_OCTETS, BatchWriter
from maild.archive.connection import ArchiveReplaced
from maild.archive.counters import ArchiveCounters
from maild.archive.deliveries import DeliveryRecords, PendingDelivery
from maild.archive.history import HistoryRecords
from maild.archive.locations import LocationRecords
from maild.archive.mailboxes import MailboxRecords, MailboxState
from maild.archive.schema import parse_utc, utc_text
from maild.errors import StoreError
from maild.model import Protocol

if TYPE_CHECKING:  # the attachment-text modules are imported when used (zipfile, expat: start-up cost)
    from maild.archive.document_index import DocumentRun
    from maild.archive.document_worker import DocumentWorker
    from maild.archive.layout import CompactResult, Progress

__all__ = [
    "ARCHIVE_DIR_MODE",
    "ARCHIVE_FILE_MODE",
    "LARGE_BLOB_OCTETS",
    "SIDE_FILE_SUFFIXES",
    "ArchiveReplaced",
    "MailboxState",
    "PendingDelivery",
    "Store",
    "set_archive_mode",
]


class Store(LocationRecords, BatchWriter, DeliveryRecords, MailboxRecords, HistoryRecords):
    """The archive database. Use :meth:`open`; close with :meth:`close` or ``async with``.

    All methods raise :class:`StoreError` when SQLite fails. Each write method is one transaction:
    if cancelled before its commit returns, nothing of it is stored; the SQL already running in
    aiosqlite's thread completes or rolls back on its own.
    """

    # -- accounts ---------------------------------------------------------------------------------

    async def ensure_account(
        self, name: str, organisation: str, employee: str, protocol: Protocol, now: datetime
    ) -> None:
        """Record the account, or update its organisation and employee (no write when unchanged).

        Raises:
            StoreError: the account exists with another protocol (the protocol is fixed for an
                account's life; add the mailbox again under a new name instead).
        """
        rows = await self._all(
            "SELECT protocol, organisation, employee FROM accounts WHERE name = ?", (name,)
        )
        if rows and rows[0][0] != protocol:
            raise StoreError(
                f"account {name} was created as {rows[0][0]} and cannot become {protocol}; "
                "add the mailbox again as a new account (see 'Moving a mailbox from POP3 to IMAP')"
            )
        if rows and tuple(rows[0][1:]) == (organisation, employee):
            return  # nothing to write: a daemon starts on an archive that cannot be written (issue 15)
        await self._write(
            [
                (
                    "INSERT INTO accounts (name, organisation, employee, protocol, created_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET organisation = excluded.organisation,"
                    " employee = excluded.employee",
                    (name, organisation, employee, protocol, utc_text(now)),
                    False,
                )
            ]
        )

    # -- full-text index (v3 table ``messages_fts``) ------------------------------------------------

    async def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the full-text index from the stored messages; safe while the daemon stores more.

        A new index is filled beside the old one (:data:`maild.archive.fts.REBUILD_TABLE`), one
        transaction per chunk of :data:`maild.archive.fts.FILL_CHUNK_OCTETS`, so searches meanwhile
        use the old index and the daemon keeps storing (and indexing into the old one). A last
        transaction indexes what was stored meanwhile and puts the new index in the old one's place.
        If opening the archive just migrated it through a version that rebuilt the index (version
        8), that is not done twice.

        Args:
            progress: called with (messages done, total) after each chunk.

        Returns:
            The number of messages indexed.

        Raises:
            StoreError: SQLite failed, or messages were purged during the rebuild; the old index
                stays in use.
        """
        if self._index_rebuilt:  # opening just did it (schema migration): not twice
            self._index_rebuilt = False
            total = int(await self._scalar("SELECT count(*) FROM messages"))
            if progress is not None:
                progress(total, total)
            return total
        return await fts.rebuild(self._conn, self._atomic, progress)

    # -- attachment text (v11 table ``document_text``; the optional ``documents`` extra) ----------------

    async def index_documents(
        self,
        worker: DocumentWorker,
        after: int = 0,
        progress: Callable[[DocumentRun], None] | None = None,
    ) -> tuple[DocumentRun, int]:
        """Add the text of PDF and Office attachments to the index rows of pending messages
        (:func:`maild.archive.document_index.index_pending`; ``after``: only larger message ids).

        Raises:
            StoreError: SQLite failed; what earlier chunks wrote stays committed.
        """
        from maild.archive import document_index

        return await document_index.index_pending(self._conn, self._atomic, worker, progress, after)

    async def documents_pending(self) -> int:
        """Messages whose attachments the attachment-text indexer has not looked at yet."""
        from maild.archive import document_index

        return await document_index.pending_count(self._conn)

    async def forget_documents(self) -> int:
        """Remove all attachment text from the index and make every message pending again.

        Raises:
            StoreError: SQLite failed; nothing changed.
        """
        from maild.archive import document_index

        return await document_index.forget(self._conn, self._atomic)

    # -- layout of ``messages`` (schema 14: raw last) ---------------------------------------------------

    async def compact_layout(self, progress: Progress | None = None) -> CompactResult:
        """``maild compact``: rebuild ``messages`` with ``raw`` last (:func:`maild.archive.layout.compact`).

        For an archive that kept the old column order at its upgrade to schema 14 (too large, or too
        little free space). The caller holds the archive lock (daemon stopped); one transaction, so a
        crash at any moment leaves the old layout or the new one.

        Args:
            progress: called with (octets copied, octets of all messages) after each step.

        Raises:
            StoreError: not enough free space (nothing changed), or SQLite failed (the old layout stays).
        """
        from maild.archive import layout

        async with self._write_lock:
            self._generation += 1
            try:
                return await layout.compact(self._conn, progress)
            finally:
                self._generation += 1

    # -- status -----------------------------------------------------------------------------------

    async def message_counts(self) -> dict[str, int]:
        """Return account name to the number of distinct archived messages linked to it."""
        rows = await self._all("SELECT account, count(DISTINCT message) FROM locations GROUP BY account")
        return {r[0]: r[1] for r in rows}

    async def on_server_summary(self) -> dict[str, tuple[int, datetime | None]]:
        """Per account: (archived messages still on its server, earliest first-fetch time among them, UTC).

        "Still on the server" means not recorded as gone or deleted at the last cycle.
        """
        rows = await self._all(
            "SELECT account, count(*), min(first_fetched_at) FROM locations"
            " WHERE gone_at IS NULL AND deleted_at IS NULL GROUP BY account"
        )
        return {r[0]: (int(r[1]), parse_utc(r[2]) if r[2] else None) for r in rows}

    async def totals(self) -> tuple[int, int]:
        """Return (distinct messages, total octets) in the archive."""
        rows = await self._all("SELECT count(*), coalesce(sum(size_octets), 0) FROM messages")
        return int(rows[0][0]), int(rows[0][1])

    async def keep_counters(self) -> ArchiveCounters:
        """Count the archive once and keep the counts current with every committed batch from now
        on (:attr:`counters`; the daemon's status answers from them).

        Raises:
            StoreError: SQLite failed.
        """
        counters = ArchiveCounters()
        messages, octets = await self.totals()
        counters.replace(await self.message_counts(), messages, octets)
        self.counters = counters
        return counters

    async def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when healthy)."""
        rows = await self._all("PRAGMA integrity_check")
        return str(rows[0][0])
