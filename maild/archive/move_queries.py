"""The archive for moving a mailbox and administering accounts: :class:`MigrationStore`.

:class:`MigrationStore` is the :class:`~maild.archive.store.Store` with one more collaborator,
:class:`~maild.archive.moves.MoveRecords` (the SQL of ``maild compare``, ``migrate``, ``retire`` and
``accounts``), whose methods are its own by delegation. The fetch path opens the plain Store; only
the administrative commands open this one. The records it returns are re-exported from here.
"""

from __future__ import annotations

from pathlib import Path

from maild.archive.connection import ArchiveConnection
from maild.archive.moves import AccountRecord, AppendRecord, MoveRecords, UploadSource, as_keys
from maild.archive.store import Delegated, Store

__all__ = ["AccountRecord", "AppendRecord", "MigrationStore", "MoveRecords", "UploadSource", "as_keys"]


class MigrationStore(Store):
    """The archive plus the queries of the migration and account commands (see the module docstring).

    Open with :meth:`open`; all methods raise :class:`~maild.errors.StoreError` when SQLite fails.
    """

    def __init__(self, db: ArchiveConnection) -> None:
        super().__init__(db)
        self.move_records = MoveRecords(db, self.delivery_records)

    @classmethod
    async def open(cls, path: Path) -> MigrationStore:
        """Open (creating and migrating if needed) the archive at ``path``; see :meth:`Store.open`."""
        store = await super().open(path)
        assert isinstance(store, MigrationStore)
        return store

    linked_messages = Delegated("move_records", MoveRecords.linked_messages)
    archive_entries = Delegated("move_records", MoveRecords.archive_entries)
    message_octets = Delegated("move_records", MoveRecords.message_octets)
    upload_sources = Delegated("move_records", MoveRecords.upload_sources)
    append_records = Delegated("move_records", MoveRecords.append_records)
    accept_missing = Delegated("move_records", MoveRecords.accept_missing)
    accept_unfetched = Delegated("move_records", MoveRecords.accept_unfetched)
    forget_appends = Delegated("move_records", MoveRecords.forget_appends)
    end_move = Delegated("move_records", MoveRecords.end_move)
    start_move = Delegated("move_records", MoveRecords.start_move)
    record_append = Delegated("move_records", MoveRecords.record_append)
    account_records = Delegated("move_records", MoveRecords.account_records)
    retire = Delegated("move_records", MoveRecords.retire)
    unretire = Delegated("move_records", MoveRecords.unretire)
    exclusive_messages = Delegated("move_records", MoveRecords.exclusive_messages)
    purge_account = Delegated("move_records", MoveRecords.purge_account)
