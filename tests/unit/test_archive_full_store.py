"""The archive's disk full while a batch commits (QA finding F8 of session 8): SQLite's
``SQLITE_FULL`` becomes :class:`~maild.archive.store.ArchiveFull` (a StoreError), the transaction is
rolled back cleanly, and the next batch stores once there is room. The full disk is SQLite's own
limit here (``PRAGMA max_page_count``: "database or disk is full", the same result code); the real
full file system over both protocols is tests/integration/test_archive_full.py."""

from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.archive_errors import disk_full
from maild.archive.failures import failure_records
from maild.archive.store import ArchiveFull, Store
from maild.fetch.cycle import fetch_cycle
from maild.model import POP3Key, RetrievedMessage
from tests.support.accounts import pop3_account
from tests.support.fetching import Clock, prepare
from tests.unit.fakes import FakeServer, SessionPlan

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def batch(first: int, n: int) -> list[RetrievedMessage]:
    """``n`` distinct messages of about 60 kB."""
    return [
        RetrievedMessage(POP3Key(f"u{i}"), b"Subject: Brief %d\r\n\r\n" % i + b"Zeile %d\r\n" % i * 6000)
        for i in range(first, first + n)
    ]


async def test_sqlite_full_is_archive_full_rolled_back_and_the_next_batch_stores(tmp_path: Path) -> None:
    """The archive may not grow: the batch raises ArchiveFull naming SQLite's words, nothing of it is
    stored and no transaction stays open; allowed to grow again, the same batch stores once."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        await store.store_batch("anna-pop", batch(0, 2), NOW)
        pages = await store._scalar("PRAGMA page_count")
        await store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ArchiveFull, match="database or disk is full"):
            await store.store_batch("anna-pop", batch(2, 20), NOW)
        assert not store._conn.in_transaction
        assert await store._scalar("SELECT count(*) FROM messages") == 2
        await store._conn.execute("PRAGMA max_page_count = 1073741823")
        outcome = await store.store_batch("anna-pop", batch(2, 20), NOW)
        assert outcome.new_messages == 20
        assert await store._scalar("SELECT count(*) FROM messages") == 22
        assert await store._scalar("PRAGMA integrity_check") == "ok"
    finally:
        await store.close()


def test_disk_full_knows_sqlite_full_enospc_and_edquot_and_nothing_else() -> None:
    """SQLITE_FULL and OSError ENOSPC/EDQUOT are a full disk; a locked database or EIO are not."""
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert disk_full(full)
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not disk_full(locked)
    assert not disk_full(OSError(errno.EIO, "Input/output error"))


async def test_failure_records_that_do_not_fit_do_not_fail_the_cycle(tmp_path: Path) -> None:
    """The server refuses 600 messages (reasons of 500 characters, about 10 pages of records) and the
    archive may not grow: the
    failure records do not fit (ArchiveFull), yet the cycle ends with its failures, as one whose
    spool had no room on a full disk must (the records are bookkeeping; nothing was to be stored)."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        account = await prepare(store, pop3_account())
        server = FakeServer.with_pop3(600)
        reason = "-ERR [SYS/TEMP] " + "x" * 500
        server.plan(refuse={POP3Key(f"uidl-{i}"): reason for i in range(1, 601)})
        pages = await store._scalar("PRAGMA page_count")
        await store._conn.execute(f"PRAGMA max_page_count = {pages}")
        result = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert len(result.failures) == 600
        assert await failure_records(store, account.name) == {}
    finally:
        await store.close()


def letters(n: int) -> FakeServer:
    """A POP3 maildrop of ``n`` letters of about 50-60 kB each (UIDLs ``uidl-1`` ...)."""
    return FakeServer(
        (POP3Key(f"uidl-{i}"), b"Subject: Brief %d\r\n\r\n" % i + b"Zeile %d\r\n" % i * 6000)
        for i in range(1, n + 1)
    )


async def hold_size(store: Store) -> None:
    """The archive may not grow past its pages now: SQLite answers SQLITE_FULL, as on a full disk."""
    pages = await store._scalar("PRAGMA page_count")
    await store._conn.execute(f"PRAGMA max_page_count = {pages}")


async def test_a_full_archive_at_the_commit_makes_local_failures_and_deletes_nothing(tmp_path: Path) -> None:
    """A POP3 account deleting what it archived, the archive unable to grow: the cycle ends (no error)
    with every message that arrived as a local failure "local archive: ...", no failure record,
    nothing deleted on the server; once it may grow, the next cycle stores all and deletes them."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        account = await prepare(store, pop3_account(retention="delete"))
        server = letters(30)
        await hold_size(store)
        full = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert {(f.kind, f.reason.startswith("local archive: ")) for f in full.failures} == {("local", True)}
        assert len(full.failures) == 30 and full.new_messages == 0 and full.deleted == 0
        assert await failure_records(store, account.name) == {}
        assert len(server.messages) == 30 and server.deleted == []
        await store._conn.execute("PRAGMA max_page_count = 1073741823")
        again = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert (again.new_messages, again.deleted, again.failures) == (30, 30, [])
    finally:
        await store.close()


async def test_the_messages_a_full_archive_left_unasked_are_counted_in_a_warning(tmp_path: Path) -> None:
    """More new mail than one batch and the archive unable to grow: the cycle stops at the first
    commit; what arrived is local failures, and the rest of the plan, never asked for, is named in
    one warning with its count (QA of session 9: "0 new messages, 46 not retrieved" of 63 waiting)."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        account = await prepare(store, pop3_account(retention="delete"))
        server = letters(200)
        # one the server refuses: a failure of its own, and not "not asked for" (QA of session 10:
        # it was counted in both, so the line said one more than the server had)
        server.default_plan = SessionPlan(refuse={POP3Key("uidl-3"): "-ERR locked"})
        await hold_size(store)
        full = await fetch_cycle(account, store, server.session(), clock=Clock())
        (warning,) = [w for w in full.warnings if w.startswith("the archive's disk is full")]
        assert POP3Key("uidl-3") in {f.key for f in full.failures}
        not_asked = 200 - len(full.failures)
        assert 0 < len(full.failures) < 200 and full.deleted == 0 and server.deleted == []
        assert f"; {not_asked} more new messages on the server not asked for" in warning
    finally:
        await store.close()
