"""Each write transaction is one call of aiosqlite's thread (session 14): ``BEGIN IMMEDIATE``, the
statements and ``COMMIT`` run together there (:meth:`ArchiveConnection._atomic_call`), and the
durability point stays where it was: a batch counts as stored only when its ``COMMIT`` returned, so a
``COMMIT`` that fails (the disk full as the WAL is written and synced) raises, leaves nothing of the
batch in the archive and no transaction open, and the cycle deletes nothing on the server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maild.archive.failures import failure_records, record_failures
from maild.archive.store import ArchiveFull, Store
from maild.fetch.cycle import fetch_cycle
from maild.model import POP3Key, RetrievalFailure
from tests.integration.test_archive_full_bookkeeping import disk_full_at
from tests.support.accounts import pop3_account
from tests.support.fetching import Clock, prepare
from tests.unit.test_archive_full_store import batch, letters

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


@contextmanager
def counted_calls(store: Store) -> Iterator[list[str]]:
    """The names of the functions handed to aiosqlite's thread while inside."""
    conn: Any = store.db._conn
    real = conn._execute
    names: list[str] = []

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    conn._execute = counting
    try:
        yield names
    finally:
        del conn._execute


async def test_a_batch_and_a_write_are_each_one_call_of_sqlites_thread(tmp_path: Path) -> None:
    """Storing a batch (its transaction: BEGIN, the batch, COMMIT) and writing failure records (BEGIN,
    the statements, COMMIT) each hand exactly one job to aiosqlite's thread (three and four before)."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        prepared = await store.batch_writer.prepare_batch(batch(0, 5), NOW)
        with counted_calls(store) as calls:
            outcome = await store.batch_writer.insert_batch("anna-pop", prepared)
        assert outcome.new_messages == 5
        assert len(calls) == 1
        with counted_calls(store) as calls:
            await record_failures(store, "anna-pop", [RetrievalFailure(POP3Key("u9"), "refused")], NOW)
        assert len(calls) == 1
        assert set(await failure_records(store, "anna-pop")) == {POP3Key("u9")}
        assert not store._conn.in_transaction
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "enospc"])
async def test_a_failed_commit_raises_stores_nothing_and_the_next_batch_stores(tmp_path: Path, kind: str) -> None:
    """The disk full at the batch's COMMIT (SQLITE_FULL or ENOSPC): ArchiveFull, none of the batch's
    messages or locations in the archive, no transaction left open; with room again the same batch
    stores once."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        await store.store_batch("anna-pop", batch(0, 2), NOW)
        with disk_full_at(store, "COMMIT", kind) as refused, pytest.raises(ArchiveFull):
            await store.store_batch("anna-pop", batch(2, 3), NOW)
        assert refused == ["COMMIT"]
        assert not store._conn.in_transaction
        assert await store._scalar("SELECT count(*) FROM messages") == 2
        assert set(await store.locations("anna-pop")) == {POP3Key("u0"), POP3Key("u1")}
        outcome = await store.store_batch("anna-pop", batch(2, 3), NOW)
        assert outcome.new_messages == 3
        assert await store._scalar("PRAGMA integrity_check") == "ok"
    finally:
        await store.close()


async def test_a_cycle_whose_commit_fails_deletes_nothing_and_the_next_one_does(tmp_path: Path) -> None:
    """A POP3 account deleting what it archived: every COMMIT of the cycle fails (the disk full):
    the messages are local failures, none is stored, none deleted on the server; the next cycle
    stores and deletes all of them."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        account = await prepare(store, pop3_account(retention="delete"))
        server = letters(12)
        with disk_full_at(store, "COMMIT") as refused:
            full = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert refused
        assert {f.kind for f in full.failures} == {"local"} and len(full.failures) == 12
        assert (full.new_messages, full.deleted) == (0, 0)
        assert len(server.messages) == 12 and server.deleted == []
        assert await store._scalar("SELECT count(*) FROM messages") == 0
        again = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert (again.new_messages, again.deleted, again.failures) == (12, 12, [])
    finally:
        await store.close()
