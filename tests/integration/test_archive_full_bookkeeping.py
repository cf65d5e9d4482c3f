"""The archive's disk full at a bookkeeping write of a fetch cycle, not at a batch's commit (session 13,
defect 1): before, such a write (the presence of archived messages, IMAP's UIDVALIDITY records, the
mailbox-sync records written after the batches) failed the cycle as ``StoreError "archive ...:
writing: database or disk is full"`` (account in error, ``maild check`` CRITICAL) instead of the
calm "no room on this machine" a full disk gets at a commit; ``test_archive_full.py[imap]`` flaked
on it under load. Now a full disk at any write ends the cycle the same way (``maild.fetch.no_room``)
and deletes nothing.

The disk fills at exactly the write under test: the archive's SQLite connection answers that one
statement as a full disk does (``SQLITE_FULL`` "database or disk is full", or ``ENOSPC`` from the
write-ahead log's growth), through the real transaction code that classifies it
(:meth:`maild.archive.connection.ArchiveConnection._transaction`), against the real Dovecot for POP3
and IMAP. A real full file system at a commit is ``test_archive_full.py``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from maild.archive.store import Store
from maild.fetch.cycle import CycleResult
from maild.model import ARCHIVE_FULL_PREFIX
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import Clock, cycle, prepare

pytestmark = pytest.mark.dovecot

PRESENCE = "gone_at = ?"
"""The statement of ``update_presence`` marking archived messages gone from the server."""
UIDVALIDITY_RECORD = "INSERT INTO mailboxes"
"""IMAP's record of each mailbox's UIDVALIDITY (``resync.reconcile``): a write that decides safety."""
SYNC_RECORD = "INSERT OR REPLACE INTO mailbox_sync"
"""IMAP's mailbox-sync records, written after the batches and before any deletion (``folders.record``)."""
DELETIONS = "deleted_at = ?"
"""The deletions recorded after ``+OK`` to QUIT (POP3) or after EXPUNGE (IMAP)."""


def full_error(kind: str) -> Exception:
    """What SQLite or the file system raises when the disk is full."""
    if kind == "enospc":
        return OSError(errno.ENOSPC, "No space left on device")
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return exc


@contextmanager
def disk_full_at(store: Store, statement: str, kind: str = "sqlite") -> Iterator[list[str]]:
    """The archive's disk is full for every write statement containing ``statement`` while inside.

    The ``sqlite3`` connection beneath aiosqlite is replaced by a stand-in refusing those statements, so
    that a statement run in aiosqlite's thread by a function of the archive (a whole transaction in
    one call, session 14) is refused as one sent through aiosqlite's ``execute`` is.

    Yields the statements refused (so a test can tell that its write was reached)."""
    conn: Any = store.db._conn
    refused: list[str] = []
    raw = conn._connection

    class FullDisk:
        """The real connection, refusing the chosen statements as a full disk would."""

        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        @staticmethod
        def check(sql: str) -> None:
            if statement in sql:
                refused.append(sql)
                raise full_error(kind)

        def execute(self, sql: str, *args: Any) -> Any:
            self.check(sql)
            return raw.execute(sql, *args)

        def executemany(self, sql: str, *args: Any) -> Any:
            self.check(sql)
            return raw.executemany(sql, *args)

    stand_in = FullDisk()
    conn._connection = stand_in
    try:
        yield refused
    finally:
        if conn._connection is stand_in:  # not when the archive was closed meanwhile (aiosqlite's None)
            conn._connection = raw


def assert_no_room(result: CycleResult, words: str) -> None:
    """Every failure of ``result`` is a local one for the archive's full disk, naming ``words``."""
    assert result.failures
    assert {f.kind for f in result.failures} == {"local"}
    assert all(f.reason.startswith(ARCHIVE_FULL_PREFIX) and words in f.reason for f in result.failures)
    assert result.no_room == len(result.failures)


@pytest.mark.parametrize(
    ("protocol", "kind"), [("pop3", "sqlite"), ("pop3", "enospc"), ("imap", "sqlite"), ("imap", "enospc")]
)
async def test_a_full_disk_at_the_presence_write_is_no_room_and_deletes_nothing(
    dovecot: Dovecot,
    mail_user: MailUser,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    protocol: str,
    kind: str,
) -> None:
    """Steps: two messages archived (retention keep); one removed on the server, three new arrive;
    retention ``delete``; the disk full at the presence write: the cycle ends without an error, the
    three new messages are local failures "local archive: ... full", nothing stored, nothing deleted
    (the archived one still on the server); room again: the next cycle stores the three and deletes
    all four."""
    clock = Clock()
    account = await prepare(store, dovecot_account(dovecot, mail_user, protocol))  # type: ignore[arg-type]
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"alt {i}") for i in range(2)])
    first = await cycle(account, store, executor, clock=clock)
    assert first.new_messages == 2
    dovecot.maildir_files(mail_user.name)[0].unlink()
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"neu {i}") for i in range(3)])
    deleting = replace(account, retention="delete")
    words = "No space left on device" if kind == "enospc" else "database or disk is full"
    with disk_full_at(store, PRESENCE, kind) as refused:
        full = await cycle(deleting, store, executor, clock=clock)
    assert refused  # the write under test ran into the full disk
    assert_no_room(full, words)
    assert (len(full.failures), full.new_messages, full.deleted) == (3, 0, 0)
    assert len(dovecot.maildir_messages(mail_user.name)) == 4
    again = await cycle(deleting, store, executor, clock=clock)
    assert (again.new_messages, again.deleted, again.failures) == (3, 4, [])
    assert dovecot.maildir_messages(mail_user.name) == []
    assert await store._scalar("PRAGMA integrity_check") == "ok"


async def test_a_full_disk_at_the_uidvalidity_record_stops_the_cycle_before_anything(
    dovecot: Dovecot, mail_user: MailUser, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """IMAP, retention ``delete``, first cycle: the disk full when the mailbox's UIDVALIDITY is
    recorded (a write that decides safety): the cycle stops there, retrieves and deletes nothing, and
    the four messages on the server are local failures; room again: all stored, then deleted."""
    clock = Clock()
    account = await prepare(store, dovecot_account(dovecot, mail_user, "imap", retention="delete"))
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"Brief {i}") for i in range(4)])
    with disk_full_at(store, UIDVALIDITY_RECORD) as refused:
        full = await cycle(account, store, executor, clock=clock)
    assert refused
    assert_no_room(full, "database or disk is full")
    assert (len(full.failures), full.new_messages, full.deleted) == (4, 0, 0)
    assert await store.mailbox_states(account.name) == {}
    assert len(dovecot.maildir_messages(mail_user.name)) == 4
    again = await cycle(account, store, executor, clock=clock)
    assert (again.new_messages, again.deleted, again.failures) == (4, 4, [])


async def test_a_full_disk_after_the_batches_deletes_nothing_and_warns(
    dovecot: Dovecot, mail_user: MailUser, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """IMAP, retention ``delete``: every batch committed, then the disk full at the mailbox-sync
    record (between the commits and the deletions): no message is blocked, so the cycle ends with a
    warning naming the full disk, no error, and nothing deleted; the next cycle deletes."""
    clock = Clock()
    account = await prepare(store, dovecot_account(dovecot, mail_user, "imap", retention="delete"))
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"Brief {i}") for i in range(3)])
    with disk_full_at(store, SYNC_RECORD) as refused:
        full = await cycle(account, store, executor, clock=clock)
    assert refused
    assert (full.new_messages, full.deleted, full.failures) == (3, 0, [])
    (warning,) = [w for w in full.warnings if w.startswith("the archive's disk is full")]
    assert "database or disk is full" in warning and "before deleting anything" in warning
    assert len(dovecot.maildir_messages(mail_user.name)) == 3
    again = await cycle(account, store, executor, clock=clock)
    assert (again.new_messages, again.deleted) == (0, 3)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_full_disk_when_deletions_are_recorded_does_not_fail_the_cycle(
    dovecot: Dovecot,
    mail_user: MailUser,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    protocol: str,
) -> None:
    """Retention ``delete``: the deletions done on the server (POP3 ``+OK`` to QUIT), the disk full
    when they are recorded: the cycle ends with a warning, not an error; the next cycle records the
    messages as gone; all are archived once."""
    clock = Clock()
    account = await prepare(store, dovecot_account(dovecot, mail_user, protocol, retention="delete"))  # type: ignore[arg-type]
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"Brief {i}") for i in range(3)])
    with disk_full_at(store, DELETIONS) as refused:
        done = await cycle(account, store, executor, clock=clock)
    assert refused
    assert (done.new_messages, done.deleted, done.failures) == (3, 3, [])
    assert any("deletions done on the server are not recorded" in w for w in done.warnings)
    assert dovecot.maildir_messages(mail_user.name) == []
    await cycle(account, store, executor, clock=clock)
    locations = await store.locations(account.name)
    assert len(locations) == 3 and all(loc.gone_at is not None for loc in locations.values())
    assert await store._scalar("SELECT count(*) FROM messages") == 3
