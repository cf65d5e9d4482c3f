"""The archive's writer, :class:`Store`: the one object the daemon, ``maild fetch`` and the tests open.

:class:`Store` owns the archive's connection (:class:`maild.archive.connection.ArchiveConnection`:
open, migrate, transactions, the archive guard) and holds one collaborator per kind of record, each
in its own module, each given that connection and testable on its own:
:class:`~maild.archive.locations.LocationRecords` (server identities, presence, the check before
deleting), :class:`~maild.archive.batches.BatchWriter` (storing fetched messages),
:class:`~maild.archive.deliveries.DeliveryRecords` (Maildir delivery rows),
:class:`~maild.archive.mailboxes.MailboxRecords` (IMAP UIDVALIDITY per mailbox, RFC 9051 section
2.3.1.1), :class:`~maild.archive.history.HistoryRecords` (each account's history) and
:class:`~maild.archive.figures.ArchiveFigures` (the counts ``maild status`` reads). Their public
methods are :class:`Store`'s, by delegation (:class:`Delegated`), so callers see one object. This
module adds accounts and the maintenance entry points (full-text index rebuild, attachment text,
``maild compact``), and re-exports the names callers import from here. The archive file itself
(modes, creation, side files) is :mod:`maild.archive.archive_file`.

Only modules of :mod:`maild.archive` contain SQL. Layout: the tables and the version that added each
are listed in :mod:`maild.archive.schema` (``PRAGMA user_version``); docs/archive.md documents them
for readers such as the CRM.

Durability: WAL with ``synchronous=FULL``, so every commit is fsync'ed before it returns; a message
is deleted on a server only after the commit that stores it has returned (see ``fetch/cycle.py``).
Checkpoints (the WAL copied into the database file) are not part of it; they run in a thread of
their own (:mod:`maild.archive.checkpointer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

import aiosqlite

from maild.archive import fts
from maild.archive.archive_errors import ArchiveFull, ArchiveReplaced
from maild.archive.archive_file import (
    ARCHIVE_DIR_MODE,
    ARCHIVE_FILE_MODE,
    SIDE_FILE_SUFFIXES,
    set_archive_mode,
)
from maild.archive.batches import LARGE_BLOB_OCTETS, BatchWriter
from maild.archive.checkpointer import WalSnapshot
from maild.archive.connection import ArchiveConnection
from maild.archive.counters import ArchiveCounters
from maild.archive.deliveries import DeliveryRecords, PendingDelivery
from maild.archive.figures import ArchiveFigures
from maild.archive.history import HistoryRecords
from maild.archive.in_list import padded_in
from maild.archive.locations import LocationRecords
from maild.archive.mailboxes import MailboxRecords, MailboxState
from maild.archive.schema import QUERY_CHUNK, utc_text
from maild.errors import ProtocolChanged
from maild.model import Protocol, RetrievedMessage, StoreOutcome
from maild.spool import Spool

if TYPE_CHECKING:  # the attachment-text modules are imported when used (zipfile, expat: start-up cost)
    from maild.archive.document_index import DocumentRun
    from maild.archive.document_worker import DocumentWorker
    from maild.archive.layout import CompactResult, Progress

__all__ = [
    "ARCHIVE_DIR_MODE",
    "ARCHIVE_FILE_MODE",
    "LARGE_BLOB_OCTETS",
    "SIDE_FILE_SUFFIXES",
    "ArchiveFull",
    "ArchiveReplaced",
    "MailboxState",
    "PendingDelivery",
    "Store",
    "set_archive_mode",
]

_Part = TypeVar("_Part")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class Delegated(Generic[_Part, _P, _R]):
    """A :class:`Store` method that is the same-named method of one of its collaborators.

    Looked up at each access (``getattr(store.<part>, name)``), so a collaborator replaced or patched
    on one store is what that store calls; the signature and docstring are the collaborator's. Read
    from the class (``Store.locations``) it is the descriptor, callable as an unbound method
    (``Store.locations(store, account)``), so wrapping it at class level works as for a function.
    """

    def __init__(self, part: str, method: Callable[Concatenate[_Part, _P], _R]) -> None:
        self._part = part
        self._name = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name != self._name:  # a slip such as ``archived = Delegated(..., X.locations)``
            raise TypeError(f"{owner.__name__}.{name} delegates to {self._name}: the names must match")

    def __call__(self, store: object, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return cast("Callable[_P, _R]", getattr(getattr(store, self._part), self._name))(*args, **kwargs)

    @overload
    def __get__(self, store: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, store: object, owner: type[Any]) -> Callable[_P, _R]: ...
    def __get__(self, store: object | None, owner: type[Any]) -> Self | Callable[_P, _R]:
        if store is None:
            return self
        return cast("Callable[_P, _R]", getattr(getattr(store, self._part), self._name))


class Store:
    """The archive database. Use :meth:`open`; close with :meth:`close` or ``async with``.

    Holds the connection (:attr:`db`) and one collaborator per kind of record, all over that
    connection (see the module docstring); their methods are this object's.

    All methods raise :class:`StoreError` when SQLite fails. Each write method is one transaction:
    if cancelled before its commit returns, nothing of it is stored; the SQL already running in
    aiosqlite's thread completes or rolls back on its own.
    """

    def __init__(self, db: ArchiveConnection) -> None:
        self.db = db
        """The archive's one connection, its transactions and the archive guard."""
        self.location_records = LocationRecords(db)
        self.batch_writer = BatchWriter(db)
        self.delivery_records = DeliveryRecords(db)
        self.mailbox_records = MailboxRecords(db)
        self.history_records = HistoryRecords(db)
        self.figures = ArchiveFigures(db)

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating if needed) the archive at ``path`` and migrate it to the current schema.

        Raises:
            StoreError: the file cannot be opened, is not a maild archive, or is newer than this maild.
        """
        return cls(await ArchiveConnection.open(path))

    # -- the connection ---------------------------------------------------------------------------

    verify_identity = Delegated("db", ArchiveConnection.verify_identity)
    close = Delegated("db", ArchiveConnection.close)
    # for the archive package's query modules (failures, alert memory, move queries ...) and tests
    _all = Delegated("db", ArchiveConnection._all)
    _scalar = Delegated("db", ArchiveConnection._scalar)
    _write = Delegated("db", ArchiveConnection._write)
    _atomic = Delegated("db", ArchiveConnection._atomic)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        return self.db._conn

    @property
    def path(self) -> Path:
        """The archive file's path."""
        return self.db.path

    @property
    def replaced(self) -> str | None:
        """Why the archive guard failed (sticky until restart), or None (see :meth:`verify_identity`)."""
        return self.db.replaced

    @property
    def writing(self) -> bool:
        """Whether a write transaction of this connection is running or waiting."""
        return self.db.writing

    @property
    def generation(self) -> int:
        """A number that changes whenever a write transaction of this connection begins or ends."""
        return self.db.generation

    @property
    def spool(self) -> Spool:
        """Where large messages wait between the socket and their commit (:mod:`maild.spool`)."""
        return self.db.spool

    @spool.setter
    def spool(self, spool: Spool) -> None:
        self.db.spool = spool

    @property
    def counters(self) -> ArchiveCounters | None:
        """Figures kept current by each committed batch once :meth:`keep_counters` made them (the
        daemon); None otherwise."""
        return self.db.counters

    def wal_snapshot(self) -> WalSnapshot:
        """The write-ahead log as an administrator sees it now: its size, and since when a reader holds
        it (:meth:`maild.archive.checkpointer.Checkpointer.snapshot`; no SQL, one ``pread``)."""
        return self.db.checkpointer.snapshot()

    async def recheck_wal(self) -> None:
        """While a reader holds the write-ahead log: end the episode now if the reader has ended
        (:meth:`maild.archive.checkpointer.Checkpointer.recheck_held`; nothing when not held)."""
        await self.db.checkpointer.recheck_held()

    # -- the collaborators' methods ---------------------------------------------------------------

    locations = Delegated("location_records", LocationRecords.locations)
    update_presence = Delegated("location_records", LocationRecords.update_presence)
    archived_sizes = Delegated("location_records", LocationRecords.archived_sizes)
    pop3_server_sizes = Delegated("location_records", LocationRecords.pop3_server_sizes)
    record_pop3_server_sizes = Delegated("location_records", LocationRecords.record_pop3_server_sizes)
    release_pop3_keys = Delegated("location_records", LocationRecords.release_pop3_keys)
    mark_deleted = Delegated("location_records", LocationRecords.mark_deleted)
    unrecorded_deletions = Delegated("location_records", LocationRecords.unrecorded_deletions)
    unlink = Delegated("location_records", LocationRecords.unlink)
    write_pending = Delegated("location_records", LocationRecords.write_pending)
    archived = Delegated("location_records", LocationRecords.archived)
    prepare_batch = Delegated("batch_writer", BatchWriter.prepare_batch)
    insert_batch = Delegated("batch_writer", BatchWriter.insert_batch)
    undelivered = Delegated("delivery_records", DeliveryRecords.undelivered)
    raw_messages = Delegated("delivery_records", DeliveryRecords.raw_messages)
    message_column = Delegated("delivery_records", DeliveryRecords.message_column)
    record_deliveries = Delegated("delivery_records", DeliveryRecords.record_deliveries)
    mailbox_states = Delegated("mailbox_records", MailboxRecords.mailbox_states)
    record_mailbox_states = Delegated("mailbox_records", MailboxRecords.record_mailbox_states)
    mailbox_identities = Delegated("mailbox_records", MailboxRecords.mailbox_identities)
    relink = Delegated("mailbox_records", MailboxRecords.relink)
    account_histories = Delegated("history_records", HistoryRecords.account_histories)
    record_history = Delegated("history_records", HistoryRecords.record_history)
    flush_history = Delegated("history_records", HistoryRecords.flush_history)
    message_counts = Delegated("figures", ArchiveFigures.message_counts)
    on_server_summary = Delegated("figures", ArchiveFigures.on_server_summary)
    totals = Delegated("figures", ArchiveFigures.totals)
    keep_counters = Delegated("figures", ArchiveFigures.keep_counters)
    integrity_check = Delegated("figures", ArchiveFigures.integrity_check)
    documents_pending = Delegated("figures", ArchiveFigures.documents_pending)

    # -- storing fetched messages ----------------------------------------------------------------

    async def store_batch(
        self, account: str, batch: Sequence[RetrievedMessage], now: datetime
    ) -> StoreOutcome:
        """Store a batch of retrieved messages for ``account`` in one durable transaction.

        Each distinct message (by SHA-256 of its raw octets) is stored once; each server identity is
        linked to it once. Storing the same batch twice changes nothing the second time. The same as
        :meth:`prepare_batch` followed by :meth:`insert_batch`.

        Returns:
            Counts of what was new (see :class:`StoreOutcome`).

        Raises:
            StoreError: SQLite failed, or a spooled message's file could not be read; nothing of
                the batch is stored.

        When this returns, the batch is on disk (WAL fsync'ed, ``synchronous=FULL``). If cancelled
        before that, nothing of it is stored.
        """
        if not batch:
            return StoreOutcome()
        # through this object's own two steps: a subclass or a patch of either sees every batch
        return await self.insert_batch(account, await self.prepare_batch(batch, now))

    # -- accounts ---------------------------------------------------------------------------------

    async def ensure_account(
        self, name: str, organisation: str, employee: str, protocol: Protocol, now: datetime
    ) -> None:
        """Record the account, or update its organisation and employee (no write when unchanged):
        :meth:`ensure_accounts` of one.

        Raises:
            StoreError: the account exists with another protocol (the protocol is fixed for an
                account's life; add the mailbox again under a new name instead).
        """
        await self.ensure_accounts([(name, organisation, employee, protocol)], now)

    async def ensure_accounts(
        self, accounts: Sequence[tuple[str, str, str, Protocol]], now: datetime
    ) -> None:
        """Record each (name, organisation, employee, protocol), or update its organisation and
        employee: one look-up per :data:`~maild.archive.schema.QUERY_CHUNK` accounts and at most one
        transaction for all (none when nothing changed: a daemon starts on an archive that cannot be
        written, issue 15). Fifty accounts were fifty look-ups at every ``maild fetch``.

        Raises:
            ProtocolChanged: an account exists with another protocol (the protocol is fixed for an
                account's life; add the mailbox again under a new name instead); nothing is written.
            StoreError: SQLite failed; nothing is written.
        """
        known: dict[str, tuple[Any, ...]] = {}
        names = [a[0] for a in accounts]
        for i in range(0, len(names), QUERY_CHUNK):
            marks, params = padded_in(names[i : i + QUERY_CHUNK])
            rows = await self._all(
                f"SELECT name, protocol, organisation, employee FROM accounts WHERE name IN ({marks})",  # noqa: S608
                params,
            )
            known.update((row[0], tuple(row[1:])) for row in rows)
        changed: list[tuple[str, str, str, str, str]] = []
        for name, organisation, employee, protocol in accounts:
            row = known.get(name)
            if row is not None and row[0] != protocol:
                raise ProtocolChanged(
                    f"account {name} was created as {row[0]} and cannot become {protocol}; "
                    "add the mailbox again as a new account (see 'Moving a mailbox from POP3 to IMAP'"
                    " in docs/moving-a-mailbox.md)"
                )
            if row is None or row[1:] != (organisation, employee):
                changed.append((name, organisation, employee, protocol, utc_text(now)))
        if changed:
            await self._write(
                [
                    (
                        "INSERT INTO accounts (name, organisation, employee, protocol, created_at)"
                        " VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET organisation = excluded.organisation,"
                        " employee = excluded.employee",
                        changed,
                        True,
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
        if self.db._index_rebuilt:  # opening just did it (schema migration): not twice
            self.db._index_rebuilt = False
            total = int(await self.db._scalar("SELECT count(*) FROM messages"))
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

        db = self.db
        async with db._write_lock:
            db._generation += 1
            db._locations_generation += 1
            try:
                return await layout.compact(db._conn, progress)
            finally:
                db._generation += 1
                db._locations_generation += 1
