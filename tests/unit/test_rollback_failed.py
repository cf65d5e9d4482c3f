"""A write transaction whose ``COMMIT`` and then ``ROLLBACK`` both fail (an I/O error: EIO from the disk,
an interrupt) leaves the archive's one connection inside that transaction, its statements applied but not
committed (QA of session 14: found in review of the one-call transactions, the old multi-call path the
same). Every later read of that connection sees those rows, although a restart drops them: a cycle read
them as archived and deleted the messages on the server. Now the connection is marked unusable for
decisions (sticky, as a replaced archive: :meth:`ArchiveConnection.verify_identity` raises until maild
is restarted), so that nothing is deleted on any server and no cycle decides from rows that may vanish."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from maild.archive.archive_errors import ArchiveReplaced
from maild.archive.cycle_reads import read_account
from maild.archive.store import Store
from maild.errors import StoreError
from maild.fetch.cycle import fetch_cycle
from maild.model import POP3Key
from tests.support.accounts import pop3_account
from tests.support.fetching import Clock, prepare
from tests.unit.test_archive_full_store import batch, letters
from tests.unit.test_commit_one_call import NOW


def io_error() -> sqlite3.OperationalError:
    """What SQLite raises when a write or sync of the archive fails (SQLITE_IOERR)."""
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
    return exc


@contextmanager
def commit_and_rollback_fail(store: Store) -> Iterator[list[str]]:
    """While inside, ``COMMIT`` fails with an I/O error and so does every ``ROLLBACK`` after it (the
    transaction stays open, as SQLite leaves it when neither could run); yields the statements refused."""
    conn: Any = store.db._conn
    raw = conn._connection
    refused: list[str] = []

    class FailingEnd:
        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def execute(self, sql: str, *args: Any) -> Any:
            word = sql.strip().upper()
            if word == "COMMIT" or (word == "ROLLBACK" and "COMMIT" in refused):
                refused.append(sql)
                raise io_error()
            return raw.execute(sql, *args)

    conn._connection = FailingEnd()
    try:
        yield refused
    finally:
        conn._connection = raw


async def test_a_batch_whose_commit_and_rollback_fail_stops_every_decision(tmp_path: Path) -> None:
    """The batch raises; its rows are never reported as stored: the archive guard refuses from now on
    (sticky), so the next cycle neither plans from nor deletes what was never committed."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        with commit_and_rollback_fail(store) as refused, pytest.raises(StoreError):
            await store.store_batch("anna-pop", batch(0, 2), NOW)
        assert refused == ["COMMIT", "ROLLBACK"]
        with pytest.raises(ArchiveReplaced, match="roll"):
            await store.verify_identity()
        with pytest.raises(ArchiveReplaced):  # sticky
            await store.verify_identity()
    finally:
        await store.close()
    again = await Store.open(tmp_path / "a.sqlite3")  # what was durable: nothing of the batch
    try:
        assert await again._scalar("SELECT count(*) FROM messages") == 0
        await again.verify_identity()  # a restart clears it
    finally:
        await again.close()


async def test_a_cycle_after_a_failed_rollback_deletes_nothing(tmp_path: Path) -> None:
    """POP3 deleting what it archived: the first cycle's COMMIT and ROLLBACK fail; the next cycle (the
    disk working again) must not take the batch's uncommitted rows for archived messages and delete
    them on the server (before the fix it deleted all 6, and a restart lost them)."""
    store = await Store.open(tmp_path / "a.sqlite3")
    server = letters(6)
    try:
        account = await prepare(store, pop3_account(retention="delete"))
        with commit_and_rollback_fail(store) as refused, pytest.raises(StoreError):
            await fetch_cycle(account, store, server.session(), clock=Clock())
        assert refused
        with pytest.raises(StoreError):  # ArchiveReplaced: refused before anything is decided
            await fetch_cycle(account, store, server.session(), clock=Clock())
        assert len(server.messages) == 6 and server.deleted == []
    finally:
        await store.close()
    again = await Store.open(tmp_path / "a.sqlite3")
    try:
        assert await again._scalar("SELECT count(*) FROM messages") == 0
        assert set(await again.locations("anna-pop")) == set()
        assert POP3Key("uidl-1") not in await again.locations("anna-pop")
    finally:
        await again.close()


async def test_a_read_snapshot_whose_rollback_fails_stops_every_decision(tmp_path: Path) -> None:
    """The cycle's snapshot (:func:`read_account`: ``BEGIN`` ... ``ROLLBACK`` in one call) cannot be
    ended: the read raises, and the archive guard refuses from now on (before the fix the guard passed
    while the connection kept that snapshot for good and every later write failed with "cannot start
    a transaction within a transaction")."""
    store = await Store.open(tmp_path / "a.sqlite3")
    conn: Any = store.db._conn
    raw = conn._connection
    refused: list[str] = []

    class FailingRollback:
        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.strip().upper() == "ROLLBACK":
                refused.append(sql)
                raise io_error()
            return raw.execute(sql, *args)

    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        conn._connection = FailingRollback()
        try:
            with pytest.raises(StoreError, match="disk I/O error"):
                await read_account(store, "anna-pop", imap=False)
        finally:
            conn._connection = raw
        assert refused == ["ROLLBACK"]
        with pytest.raises(ArchiveReplaced, match="reading account anna-pop"):
            await store.verify_identity()
    finally:
        await store.close()


async def test_a_failed_write_whose_rollback_works_keeps_the_guard(tmp_path: Path) -> None:
    """The boundary: a COMMIT failing whose ROLLBACK works leaves nothing open, and the guard passes."""
    store = await Store.open(tmp_path / "a.sqlite3")
    conn: Any = store.db._conn
    raw = conn._connection

    class FailingCommit:
        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.strip().upper() == "COMMIT":
                raise io_error()
            return raw.execute(sql, *args)

    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        conn._connection = FailingCommit()
        try:
            with pytest.raises(StoreError):
                await store.store_batch("anna-pop", batch(0, 2), NOW)
        finally:
            conn._connection = raw
        await store.verify_identity()
        assert await store._scalar("SELECT count(*) FROM messages") == 0
        assert (await store.store_batch("anna-pop", batch(0, 2), NOW)).new_messages == 2
    finally:
        await store.close()


async def test_the_alert_for_a_transaction_left_open_advises_a_restart_not_another_file(tmp_path: Path) -> None:
    """The guard's text after a failed ROLLBACK reaches the ``archive_replaced`` alert; its next step is
    a restart only: the file on disk is sound, and putting "the right archive file back" (a restore of
    an older backup, as for a replaced file) would lose what was archived since. A replaced file keeps
    that advice (docs/operations.md, alerts)."""
    from maild.config.alerts import AlertsConfig
    from maild.service.alerts import AlertMonitor

    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        with commit_and_rollback_fail(store), pytest.raises(StoreError):
            await store.store_batch("anna-pop", batch(0, 2), NOW)
        reason = store.replaced
    finally:
        await store.close()
    assert reason is not None
    monitor = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0))
    (fired,) = monitor.evaluate([], NOW, archive_replaced=reason)
    assert fired.message == reason
    assert "systemctl restart maild" in fired.next_step
    assert "put the right archive file back" not in fired.next_step
    assert "restore" not in fired.next_step

    replaced = "archive /x was deleted under the running daemon; deletions on every server stopped"
    (other,) = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0)).evaluate(
        [], NOW, archive_replaced=replaced
    )
    assert "put the right archive file back" in other.next_step
