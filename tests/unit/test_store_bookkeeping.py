"""What the archive keeps beside the messages, on a real SQLite file: history counted in each batch's
transaction (issue 17 item 4), the counters status answers from (issue 15 item 7), the alert memory
and the auth lockout counter across restarts (schema v7)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.archive.alert_memory import AlertRecord, load_alerts, save_alerts
from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import AccountHistory, IMAPKey, POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MSG_A = b"Subject: a\r\n\r\nbody A\r\n"
MSG_B = b"Subject: b\r\n\r\nbody B, longer\r\n"


def pop(uidl: str, raw: bytes) -> RetrievedMessage:
    """A retrieved POP3 message."""
    return RetrievedMessage(POP3Key(uidl), raw)


@pytest.fixture
async def archive(tmp_path: Path) -> Store:
    """An archive with the accounts ``a`` (POP3) and ``b`` (IMAP)."""
    store = await Store.open(tmp_path / "maild.sqlite3")
    await store.ensure_account("a", "O", "E", "pop3", NOW)
    await store.ensure_account("b", "O", "E", "imap", NOW)
    return store


async def test_each_batch_counts_into_the_history_in_its_own_transaction(archive: Store) -> None:
    """fetched_messages/octets grow with every committed batch, with no record_history call (a crash
    after the batch loses nothing); record_history afterwards does not overwrite them."""
    await archive.store_batch("a", [pop("u1", MSG_A)], NOW)
    await archive.store_batch("a", [pop("u2", MSG_B), pop("u1", MSG_A)], NOW)  # u1 again: not counted

    counted = (await archive.account_histories())["a"]
    assert (counted.fetched_messages, counted.fetched_octets) == (2, len(MSG_A) + len(MSG_B))

    await archive.record_history(AccountHistory("a", last_success=NOW, cycles_ok=1))
    after = (await archive.account_histories())["a"]
    assert (after.fetched_messages, after.fetched_octets, after.cycles_ok) == (2, len(MSG_A) + len(MSG_B), 1)
    await archive.close()


async def test_a_rolled_back_batch_counts_nothing(archive: Store) -> None:
    """A batch that fails (here: its account does not exist, a foreign-key error) leaves the history as it was."""
    with pytest.raises(StoreError):
        await archive.store_batch("nobody", [pop("u1", MSG_A)], NOW)
    assert await archive.account_histories() == {}
    await archive.close()


async def test_the_lockout_counter_survives_a_restart(tmp_path: Path) -> None:
    """auth_failures written by record_history is read back after the archive is closed and opened."""
    path = tmp_path / "maild.sqlite3"
    async with await Store.open(path) as store:
        await store.ensure_account("a", "O", "E", "pop3", NOW)
        await store.record_history(
            AccountHistory("a", last_error="refused", consecutive_failures=3, auth_failures=3)
        )
    async with await Store.open(path) as store:
        assert (await store.account_histories())["a"].auth_failures == 3


async def test_counters_follow_every_batch_like_a_full_count(archive: Store) -> None:
    """After keep_counters, each batch updates messages per account (distinct) and the totals exactly
    as counting the archive again would: same content under two keys, and via two accounts."""
    counters = await archive.keep_counters()
    assert (counters.by_account, counters.messages, counters.octets) == ({}, 0, 0)

    await archive.store_batch("a", [pop("u1", MSG_A), pop("u2", MSG_A)], NOW)
    await archive.store_batch(
        "b",
        [RetrievedMessage(IMAPKey("INBOX", 7, 1), MSG_A), RetrievedMessage(IMAPKey("Sent", 7, 1), MSG_B)],
        NOW,
    )
    await archive.store_batch("b", [RetrievedMessage(IMAPKey("Archive", 7, 9), MSG_B)], NOW)

    assert counters.by_account == await archive.message_counts() == {"a": 1, "b": 2}
    assert (counters.messages, counters.octets) == await archive.totals() == (2, len(MSG_A) + len(MSG_B))
    await archive.close()


async def test_alert_memory_remembers_sent_alerts_and_forgets_cleared_ones(tmp_path: Path) -> None:
    """save_alerts replaces a row per account and kind, deletes cleared ones; a reopened archive
    reads back the same records (daemon-wide alerts with account None)."""
    path = tmp_path / "maild.sqlite3"
    failing = AlertRecord("a", "failing", NOW, NOW + timedelta(hours=1), "connection refused", "check")
    disk = AlertRecord(None, "disk_full", NOW, NOW, "5 % free", "free space")
    async with await Store.open(path) as store:
        await save_alerts(store, [failing, disk], [])
        await save_alerts(
            store, [AlertRecord("a", "failing", NOW, NOW + timedelta(hours=25), "again", "check")], []
        )
        await save_alerts(store, [], [(None, "disk_full")])
    async with await Store.open(path) as store:
        assert await load_alerts(store) == [
            AlertRecord("a", "failing", NOW, NOW + timedelta(hours=25), "again", "check")
        ]


async def test_an_archive_of_schema_6_is_migrated_keeping_its_history(tmp_path: Path) -> None:
    """Opening a version-6 archive adds alert_memory and auth_failures (0) and keeps the history rows."""
    from maild.archive.schema import _MIGRATIONS, _split_sql

    path = tmp_path / "maild.sqlite3"
    db = sqlite3.connect(path)
    for version in range(1, 7):
        for statement in _split_sql(_MIGRATIONS[version]):
            db.execute(statement)
    db.execute("INSERT INTO accounts VALUES ('a', 'O', 'E', 'pop3', '2026-03-01T00:00:00Z', NULL, NULL)")
    db.execute("INSERT INTO account_history (account, cycles_ok, fetched_messages) VALUES ('a', 5, 9)")
    db.execute("PRAGMA user_version = 6")
    db.commit()
    db.close()
    async with await Store.open(path) as store:
        history = (await store.account_histories())["a"]
        assert (history.cycles_ok, history.fetched_messages, history.auth_failures) == (5, 9, 0)
        assert await load_alerts(store) == []
