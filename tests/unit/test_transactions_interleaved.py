"""The archive's one connection shared by a transaction that awaits between its statements
(:meth:`ArchiveConnection._atomic`: ``relink``, ``purge_account``) and the session-14 one-call paths
(:meth:`ArchiveConnection._atomic_call`, :func:`maild.archive.cycle_reads.read_account`) (QA of session
14, found holding): a one-call write waits for the open transaction (no "cannot start a transaction
within a transaction"), and a snapshot read while it is open, which sees its uncommitted rows (one
connection), does not leave them in the locations cache once it rolls back."""

from __future__ import annotations

import asyncio

import pytest

from maild.archive.cycle_reads import read_account
from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import POP3Key
from tests.unit.test_archive_full_store import batch
from tests.unit.test_commit_one_call import NOW


class Abandoned(Exception):
    """The open transaction's own failure (it rolls back)."""


async def open_transaction(store: Store, sql: str, go_on: asyncio.Event, entered: asyncio.Event) -> None:
    """An ``_atomic`` transaction running ``sql``, then waiting for ``go_on``, then failing."""

    async def work() -> None:
        await store.db._conn.execute(sql)
        entered.set()
        await go_on.wait()
        raise Abandoned

    await store.db._atomic(work, "an interleaved transaction")


@pytest.fixture
async def store(store: Store) -> Store:
    """The test archive (conftest's ``store``) with the POP3 account "anna"."""
    await store.ensure_account("anna", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
    return store


async def test_a_snapshot_inside_an_open_transaction_is_not_cached_past_its_rollback(store: Store) -> None:
    await store.store_batch("anna", batch(0, 2), NOW)
    go_on, entered = asyncio.Event(), asyncio.Event()
    other = asyncio.create_task(
        open_transaction(store, "DELETE FROM locations WHERE account = 'anna'", go_on, entered)
    )
    await entered.wait()
    inside = await read_account(store, "anna", imap=False)
    assert inside.locations == {}  # the open transaction's uncommitted view: one connection
    go_on.set()
    with pytest.raises(Abandoned):
        await other
    assert set(await store.locations("anna")) == {POP3Key("u0"), POP3Key("u1")}
    assert set((await read_account(store, "anna", imap=False)).locations) == {POP3Key("u0"), POP3Key("u1")}


async def test_a_one_call_write_waits_for_an_open_transaction(store: Store) -> None:
    go_on, entered = asyncio.Event(), asyncio.Event()
    other = asyncio.create_task(
        open_transaction(store, "UPDATE accounts SET employee = 'x' WHERE name = 'anna'", go_on, entered)
    )
    await entered.wait()
    write = asyncio.create_task(store.store_batch("anna", batch(0, 3), NOW))
    await asyncio.sleep(0.05)  # not a timing assertion: gives the write every chance to run early
    assert not write.done()  # behind the write lock, not refused inside the open transaction
    go_on.set()
    with pytest.raises(Abandoned):
        await other
    outcome = await write
    assert outcome.new_messages == 3
    assert await store._scalar("SELECT employee FROM accounts WHERE name = 'anna'") == "Anna Berger"
    assert not store._conn.in_transaction
    await store.verify_identity()


async def test_the_open_transactions_failure_is_not_a_store_error_of_the_reader(store: Store) -> None:
    """The boundary: a snapshot read after the other transaction ended reads the committed state."""
    await store.store_batch("anna", batch(0, 1), NOW)
    go_on, entered = asyncio.Event(), asyncio.Event()
    go_on.set()
    with pytest.raises(Abandoned):
        await open_transaction(store, "DELETE FROM locations", go_on, entered)
    try:
        reads = await read_account(store, "anna", imap=False)
    except StoreError:  # pragma: no cover - the failure asserted below
        pytest.fail("the reader must not inherit the other transaction's failure")
    assert set(reads.locations) == {POP3Key("u0")}
