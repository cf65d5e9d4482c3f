"""What one account's fetch cycle reads of the archive before the server answers: one call, one snapshot.

A cycle used to ask for these one query at a time, each query three round trips between the event
loop and aiosqlite's thread, and the account's locations up to three times (the mailboxes' sync
hints, the UIDVALIDITY check, the retrieval plan): about 45 round trips per IMAP account and cycle,
0.22 of scenario c's 0.569 cross-thread wake-ups per message (docs/performance.md, "Session 13:
fifty accounts' hand-offs"). :func:`read_account` reads all of them in one call of aiosqlite's
thread, inside one read transaction (one snapshot of the archive: no commit of another connection
lands between two of its reads), and returns them as one :class:`AccountReads`:

- the account's locations (:data:`maild.archive.locations.LOCATIONS_SQL`), also kept as the locations
  cache of :class:`~maild.archive.locations.LocationRecords` (a later ``store.locations`` of the
  cycle costs one ``PRAGMA data_version`` while nothing changed);
- its failure records (:data:`maild.archive.failures.RECORDS_SQL`);
- for IMAP: its mailboxes' sync records (:data:`maild.archive.sync_state.LOAD_SQL`) and recorded
  UIDVALIDITY states (:data:`maild.archive.mailboxes.STATES_SQL`).

Each is the same SQL and the same row reader as the separate read it replaces, so the snapshot equals
what those reads return (tests/unit/test_cycle_reads.py). What depends on the server's replies (the UID
map's sizes per mailbox listed, the messages' identities after a UIDVALIDITY change) and what must be
read after the commits (the move guard, the deletion re-check ``archived``, the locations for
retention) are read where they were. No RFC applies here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maild.archive.archive_errors import TransactionLeftOpen
from maild.archive.archive_file import _sqlite_problem
from maild.archive.failures import RECORDS_SQL, failures_from_rows
from maild.archive.locations import LOCATIONS_SQL, locations_from_rows
from maild.archive.mailboxes import STATES_SQL, MailboxState, states_from_rows
from maild.archive.sync_state import LOAD_SQL, SyncRecord, records_from_rows
from maild.errors import StoreError
from maild.model import FailureRecord, Location, MessageKey

if TYPE_CHECKING:
    from maild.archive.store import Store


@dataclass(frozen=True, slots=True)
class AccountReads:
    """One account's archive state at the start of a fetch cycle, read in one snapshot.

    Attributes:
        locations: every server identity recorded for the account (POP3Key or IMAPKey) to its
            :class:`~maild.model.Location`; the cycle's own dict (callers may keep it).
        failures: the account's failure records by server identity.
        sync_records: IMAP only (empty for POP3): readable mailbox name to its last complete
            listing's status (:class:`~maild.archive.sync_state.SyncRecord`).
        mailbox_states: IMAP only (empty for POP3): readable mailbox name to its recorded
            UIDVALIDITY and UIDNEXT (:class:`~maild.archive.mailboxes.MailboxState`).
    """

    locations: dict[MessageKey, Location]
    failures: dict[MessageKey, FailureRecord]
    sync_records: dict[str, SyncRecord]
    mailbox_states: dict[str, MailboxState]


def _rows(db: sqlite3.Connection, sql: str, account: str) -> list[tuple[object, ...]]:
    cur = db.execute(sql, (account,))
    try:
        return cur.fetchall()
    finally:
        cur.close()


def _read(db: sqlite3.Connection, account: str, imap: bool) -> tuple[int, AccountReads]:
    """In aiosqlite's thread: ``PRAGMA data_version``, then every read of :class:`AccountReads` in one
    read transaction (``BEGIN`` ... ``ROLLBACK``: it wrote nothing, so ending it either way is the
    same, and a rollback cannot fail for want of room; inside a transaction of this connection
    already open, in that one). The version is read first: a commit of another connection between it
    and the snapshot makes the cache look older than it is (read again next time), never newer."""
    cur = db.execute("PRAGMA data_version")
    try:
        version = int(cur.fetchone()[0])
    finally:
        cur.close()
    begun = not db.in_transaction
    if begun:
        db.execute("BEGIN")  # deferred: a read transaction from the first SELECT on
    try:
        reads = AccountReads(
            locations=locations_from_rows(_rows(db, LOCATIONS_SQL, account)),
            failures=failures_from_rows(_rows(db, RECORDS_SQL, account)),
            sync_records=records_from_rows(_rows(db, LOAD_SQL, account)) if imap else {},
            mailbox_states=states_from_rows(_rows(db, STATES_SQL, account)) if imap else {},
        )
    finally:
        if begun and db.in_transaction:
            try:
                db.execute("ROLLBACK")  # ends the read transaction (nothing was written)
            except sqlite3.Error as exc:  # a snapshot kept for good, every later write refused
                raise TransactionLeftOpen(str(exc)) from exc
    return version, reads


async def read_account(store: Store, account: str, *, imap: bool) -> AccountReads:
    """Read ``account``'s state for a fetch cycle in one call of aiosqlite's thread (see the module
    docstring); its locations become the locations cache (``store.locations``).

    Args:
        store: the open archive.
        account: the account's name.
        imap: read the IMAP mailboxes' sync records and states too.

    Raises:
        StoreError: SQLite failed; nothing was changed. When the read transaction could not be ended
            (its ``ROLLBACK`` failed), the archive guard fails from now on until restart
            (:meth:`~maild.archive.connection.ArchiveConnection._left_open`; QA of session 14).
    """
    db = store.db
    generation = db.locations_generation
    try:
        version, reads = await db._call(_read, account, imap)
    except TransactionLeftOpen as exc:
        db._left_open(f"reading account {account}")
        raise StoreError(f"archive {db.path}: {_sqlite_problem(exc, db.path)}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"archive {db.path}: {_sqlite_problem(exc, db.path)}") from None
    store.location_records.remember(account, generation, version, reads.locations)
    return AccountReads(dict(reads.locations), reads.failures, reads.sync_records, reads.mailbox_states)
