"""The archive's batch write in two steps (prepare, then insert), on a real SQLite file: what a fetch
cycle relies on to prepare the next batch while the previous one's transaction runs."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage, StoreOutcome

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MSG_A = b"Subject: a\r\n\r\nbody A\r\n"
MSG_B = b"Subject: b\r\n\r\nbody B, longer\r\n"


def pop(uidl: str, raw: bytes) -> RetrievedMessage:
    """A retrieved POP3 message."""
    return RetrievedMessage(POP3Key(uidl), raw)


def rows(path: Path) -> tuple[int, int]:
    """(messages, locations) rows in the archive file, read by a connection of its own."""
    with sqlite3.connect(path) as db:
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        locations = db.execute("SELECT count(*) FROM locations").fetchone()[0]
    return messages, locations


@pytest.fixture
async def archive(tmp_path: Path) -> Store:
    """An archive with the POP3 accounts ``a`` and ``b``."""
    store = await Store.open(tmp_path / "maild.sqlite3")
    await store.ensure_account("a", "O", "E", "pop3", NOW)
    await store.ensure_account("b", "O", "E", "pop3", NOW)
    return store


async def test_a_prepared_batch_that_is_never_inserted_stores_nothing(archive: Store, tmp_path: Path) -> None:
    """Preparing hashes and parses only: dropping the prepared batch leaves the archive empty."""
    prepared = await archive.prepare_batch([pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    assert (len(prepared), prepared.octets) == (2, len(MSG_A) + len(MSG_B))
    del prepared
    assert rows(tmp_path / "maild.sqlite3") == (0, 0)
    assert await archive.locations("a") == {}
    await archive.close()


async def test_prepare_then_insert_stores_what_store_batch_stores(archive: Store, tmp_path: Path) -> None:
    """The two steps give the same outcome and rows as store_batch of the same messages."""
    one = await archive.insert_batch(
        "a", await archive.prepare_batch([pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    )
    other = await archive.store_batch("b", [pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    assert one == StoreOutcome(
        new_messages=2,
        new_links=2,
        octets=len(MSG_A) + len(MSG_B),
        account_messages=2,
        new_octets=len(MSG_A) + len(MSG_B),
    )
    assert (other.new_messages, other.new_links) == (0, 2)
    assert rows(tmp_path / "maild.sqlite3") == (2, 4)
    await archive.close()


async def test_a_batch_prepared_during_another_insert_is_deduplicated_at_its_own_insert(
    archive: Store, tmp_path: Path
) -> None:
    """A batch prepared while another transaction stores the same message finds it at insert time:
    the message is stored once, each identity linked once (the lookups run inside the transaction)."""
    first = await archive.prepare_batch([pop("u1", MSG_A)], NOW)
    inserting = asyncio.ensure_future(archive.insert_batch("a", first))
    second = await archive.prepare_batch([pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    assert (await inserting).new_messages == 1
    outcome = await archive.insert_batch("a", second)
    assert (outcome.new_messages, outcome.new_links) == (1, 1)
    assert rows(tmp_path / "maild.sqlite3") == (2, 2)
    assert set(await archive.locations("a")) == {POP3Key("u1"), POP3Key("u2")}
    await archive.close()


async def test_an_empty_prepared_batch_inserts_nothing(archive: Store, tmp_path: Path) -> None:
    """An empty batch is prepared and inserted without a transaction: nothing changes."""
    assert await archive.insert_batch("a", await archive.prepare_batch([], NOW)) == StoreOutcome()
    assert rows(tmp_path / "maild.sqlite3") == (0, 0)
    await archive.close()
