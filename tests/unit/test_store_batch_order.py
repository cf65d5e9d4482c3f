"""``Store.store_batch(after=...)``: a batch prepared while an earlier one commits is written after it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
async def store(store: Store) -> Store:
    """The shared open archive with the POP3 account "anna-pop"."""
    await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
    return store


def pop(uidl: str) -> RetrievedMessage:
    return RetrievedMessage(POP3Key(uidl), f"Subject: {uidl}\r\n\r\nbody {uidl}\r\n".encode())


async def message_ids(store: Store) -> dict[str, int]:
    """Each stored message's id by its UIDL."""
    async with store._conn.execute("SELECT uidl, message FROM locations") as cur:
        return {str(row[0]): int(row[1]) for row in await cur.fetchall()}


async def test_a_batch_after_an_unfinished_commit_waits_for_it_and_is_written_after_it(store: Store) -> None:
    """With ``after`` not yet done, nothing of the batch is written; once it is, the batch is written,
    and its messages get ids after those of the earlier commit."""
    earlier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    later = asyncio.ensure_future(store.store_batch("anna-pop", [pop("u2")], NOW, after=earlier))
    for _ in range(200):  # the preparation runs in a worker thread: give it time to finish
        await asyncio.sleep(0.005)
    assert not later.done()
    assert await message_ids(store) == {}

    await store.store_batch("anna-pop", [pop("u1")], NOW)
    earlier.set_result(None)
    outcome = await later

    ids = await message_ids(store)
    assert outcome.new_messages == 1
    assert ids["u1"] < ids["u2"]


async def test_a_failed_earlier_commit_does_not_stop_the_later_one(store: Store) -> None:
    """``after`` ending in an error only orders the write: the later batch is stored."""
    earlier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    earlier.set_exception(OSError("disk full"))
    earlier.exception()  # retrieved: no warning at garbage collection

    outcome = await store.store_batch("anna-pop", [pop("u3")], NOW, after=earlier)

    assert outcome.new_messages == 1
    assert set(await message_ids(store)) == {"u3"}
