"""The archive's queries for migration and account administration, on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maild.archive.move_queries import MigrationStore, as_keys
from maild.archive.store import Store
from maild.model import IMAPKey, POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
INTERNALDATE = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def raw(n: int) -> bytes:
    return (
        b"Message-ID: <s%d@example.org>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\nSubject: %d\r\n\r\nText\r\n"
        % (
            n,
            n,
        )
    )


@pytest.fixture
def store_class() -> type[Store]:
    """This module tests the MigrationStore queries."""
    return MigrationStore


@pytest.fixture
async def store(store: Store) -> MigrationStore:
    """An archive with POP3 account "old" (messages 1-3; 1 still on its server) and IMAP "new" (3-4)."""
    s = store
    assert isinstance(s, MigrationStore)
    await s.ensure_account("old", "Kanzlei", "Anna", "pop3", NOW)
    await s.ensure_account("new", "Kanzlei", "Anna", "imap", NOW)
    await s.store_batch("old", [RetrievedMessage(POP3Key(f"u{n}"), raw(n)) for n in (1, 2, 3)], NOW)
    await s.update_presence("old", [POP3Key("u2"), POP3Key("u3")], [], NOW + timedelta(days=1))
    await s.store_batch(
        "new",
        [
            RetrievedMessage(
                IMAPKey("INBOX", 9, n), raw(n), INTERNALDATE, frozenset({"\\Seen"} if n == 3 else set())
            )
            for n in (3, 4)
        ],
        NOW,
    )
    return s


async def ids(store: MigrationStore, account: str) -> dict[bytes, int]:
    linked = await store.linked_messages(account)
    octets = await store.message_octets(list(linked))
    return {v: k for k, v in octets.items()}


async def test_archive_entries_cover_gone_messages_and_say_where(store: MigrationStore) -> None:
    """Every message ever linked is listed, gone ones as archive only, present ones as on the server."""
    entries = {e.message_id: e for e in await store.archive_entries("old")}
    assert set(entries) == {"<s1@example.org>", "<s2@example.org>", "<s3@example.org>"}
    assert entries["<s1@example.org>"].on_server
    assert not entries["<s2@example.org>"].on_server
    progress: list[tuple[int, int]] = []
    await store.archive_entries("old", lambda done, total: progress.append((done, total)))
    assert progress[-1] == (3, 3)


async def test_upload_sources_take_dates_and_flags_of_the_source_account(store: MigrationStore) -> None:
    """Upload sources carry the octets, the IMAP INTERNALDATE and flags of that account, the Date field."""
    by_raw = await ids(store, "new")
    sources = await store.upload_sources("new", [by_raw[raw(3)], by_raw[raw(4)]])
    three = sources[by_raw[raw(3)]]
    assert three.raw == raw(3)
    assert three.internaldate == INTERNALDATE
    assert three.flags == {"\\Seen"}
    assert three.date == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert three.first_fetched_at == NOW
    assert sources[by_raw[raw(4)]].flags == frozenset()
    pop = await store.upload_sources("old", [by_raw[raw(3)]])
    assert pop[by_raw[raw(3)]].internaldate is None


async def test_append_records_round_trip_and_replace(store: MigrationStore) -> None:
    """An upload record is stored durably, replaced for the same mailbox, and turned into keys."""
    message = (await ids(store, "old"))[raw(1)]
    await store.record_append(message, "new", "INBOX", 9, 17, NOW)
    await store.record_append(message, "new", "Archiv", 3, None, NOW)
    await store.record_append(message, "new", "INBOX", 10, 2, NOW + timedelta(seconds=1))
    records = await store.append_records("new")
    assert {(r.mailbox, r.uidvalidity, r.uid) for r in records} == {("INBOX", 10, 2), ("Archiv", 3, None)}
    assert as_keys(records) == {message: {IMAPKey("INBOX", 10, 2)}}


async def test_retire_is_recorded(store: MigrationStore) -> None:
    """Retiring sets retired_at and retired_into; other accounts are untouched."""
    await store.retire("old", "new", NOW)
    records = await store.account_records()
    assert records["old"].retired_at == NOW
    assert records["old"].retired_into == "new"
    assert records["new"].retired_into is None
    assert records["old"].protocol == "pop3"


async def test_purge_drops_only_what_no_other_account_links(store: MigrationStore) -> None:
    """A purge deletes the account, its links and its exclusive messages; shared messages stay."""
    by_raw = await ids(store, "old")
    assert sorted(await store.exclusive_messages("old")) == sorted([by_raw[raw(1)], by_raw[raw(2)]])
    await store.record_append(by_raw[raw(1)], "new", "INBOX", 9, 5, NOW)
    await store.retire("old", "new", NOW)
    assert await store.purge_account("old") == 2
    assert "old" not in await store.account_records()
    assert await store.linked_messages("old") == {}
    assert sorted(await store.message_octets(list(by_raw.values()))) == [by_raw[raw(3)]]
    assert await store.append_records("new") == []
    assert await store.integrity_check() == "ok"
    assert (await store.message_counts())["new"] == 2
