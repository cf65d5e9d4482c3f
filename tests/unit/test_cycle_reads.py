"""One account's archive reads for a fetch cycle in one call (:mod:`maild.archive.cycle_reads`, session
14): the snapshot equals what the separate reads return (locations, failure records, IMAP sync
records and mailbox states), for this account only, and a write between two cycles is seen by the
next snapshot; it is one call of aiosqlite's thread and leaves the locations cache filled."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.archive import sync_state
from maild.archive.cycle_reads import AccountReads, read_account
from maild.archive.failures import failure_records, record_failures
from maild.archive.store import Store
from maild.model import IMAPKey, MessageKey, POP3Key, RetrievalFailure, RetrievedMessage

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
ACCOUNTS = ("anna", "bert")


def _key(account: str, imap: bool, n: int) -> MessageKey:
    return IMAPKey("INBOX" if n % 2 else "Sent", 7 + n % 3, n) if imap else POP3Key(f"{account}-{n}")


def _raw(n: int) -> bytes:
    return b"Subject: Brief %d\r\n\r\nText %d\r\n" % (n % 5, n % 5)  # shared contents: deduplicated


# one account's writes: (kind, number) in order, applied through the store's own write paths
WRITES = st.lists(
    st.tuples(st.sampled_from(("store", "gone", "back", "deleted", "failed", "synced", "mailbox")), st.integers(0, 12)),
    max_size=25,
)


async def _apply(store: Store, account: str, imap: bool, writes: list[tuple[str, int]], at: datetime) -> None:
    """Apply ``writes`` for ``account`` (each a small change of one kind of the snapshot's records)."""
    for i, (kind, n) in enumerate(writes):
        now = at + timedelta(minutes=i)
        key = _key(account, imap, n)
        if kind == "store":
            await store.store_batch(account, [RetrievedMessage(key, _raw(n))], now)
        elif kind == "gone":
            await store.update_presence(account, [key], [], now)
        elif kind == "back":
            await store.update_presence(account, [], [key], now)
        elif kind == "deleted":
            await store.mark_deleted(account, [key], now)
        elif kind == "failed":
            await record_failures(store, account, [RetrievalFailure(key, f"refused {n}")], now)
        elif kind == "synced":
            record = sync_state.SyncRecord(7 + n % 3, 100 + n, n, None if n % 2 else n * 10, now)
            forget = [f"Box{n - 1}"] if n % 3 == 0 else []
            await sync_state.save(store, account, {f"Box{n}": record}, forget)
        else:
            await store.record_mailbox_states(account, [(f"Box{n % 4}", 7 + n % 2, n or None)], now)


async def _separate(store: Store, account: str, imap: bool) -> AccountReads:
    """What the cycle read before session 14, one query at a time (the cache emptied first, so that
    the locations are the table's rows, not a copy kept from earlier)."""
    store.location_records._locations_cache.clear()
    return AccountReads(
        locations=await store.locations(account),
        failures=await failure_records(store, account),
        sync_records=await sync_state.load(store, account) if imap else {},
        mailbox_states=await store.mailbox_states(account) if imap else {},
    )


async def _scenario(path: Path, imap: bool, first: dict[str, list[tuple[str, int]]], then: list[tuple[str, int]]) -> None:
    store = await Store.open(path)
    try:
        for account in ACCOUNTS:
            await store.ensure_account(account, "Kanzlei", account, "imap" if imap else "pop3", NOW)
            await _apply(store, account, imap, first[account], NOW)
        before = await read_account(store, "anna", imap=imap)
        assert before == await _separate(store, "anna", imap)
        # a write between two cycles (of this account and of the other) is seen by the next snapshot
        await _apply(store, "anna", imap, then, NOW + timedelta(days=1))
        await _apply(store, "bert", imap, [("store", 11), ("failed", 12)], NOW + timedelta(days=2))
        after = await read_account(store, "anna", imap=imap)
        assert after == await _separate(store, "anna", imap)
        assert await read_account(store, "bert", imap=imap) == await _separate(store, "bert", imap)
    finally:
        await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(imap=st.booleans(), anna=WRITES, bert=WRITES, then=WRITES)
def test_the_snapshot_equals_the_separate_reads_and_sees_a_write_between_cycles(
    imap: bool, anna: list[tuple[str, int]], bert: list[tuple[str, int]], then: list[tuple[str, int]]
) -> None:
    """For any history of writes to two accounts, the one-call snapshot of each equals the separate
    reads of its locations, failure records, sync records and mailbox states (POP3: no IMAP records),
    before and after more writes (a stale or mixed-up field fails)."""
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_scenario(Path(directory) / "a.sqlite3", imap, {"anna": anna, "bert": bert}, then))


async def test_a_snapshot_sees_each_kind_of_write_made_after_the_previous_one(tmp_path: Path) -> None:
    """Every field of the snapshot changes with a write of its own kind between two snapshots (an IMAP
    account): a new location, a presence change, a failure record, a sync record and a mailbox state."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna", "Kanzlei", "Anna", "imap", NOW)
        first = await read_account(store, "anna", imap=True)
        assert first == AccountReads({}, {}, {}, {})
        await _apply(store, "anna", True, [("store", 1)], NOW)
        second = await read_account(store, "anna", imap=True)
        assert set(second.locations) == {_key("anna", True, 1)}
        await _apply(store, "anna", True, [("gone", 1)], NOW + timedelta(hours=1))
        third = await read_account(store, "anna", imap=True)
        assert third.locations[_key("anna", True, 1)].gone_at == NOW + timedelta(hours=1)
        await _apply(store, "anna", True, [("failed", 2), ("synced", 3), ("mailbox", 5)], NOW)
        fourth = await read_account(store, "anna", imap=True)
        assert set(fourth.failures) == {_key("anna", True, 2)}
        assert set(fourth.sync_records) == {"Box3"}
        assert set(fourth.mailbox_states) == {"Box1"}
    finally:
        await store.close()


async def test_the_snapshot_is_one_call_of_sqlites_thread_and_fills_the_locations_cache(tmp_path: Path) -> None:
    """``read_account`` hands one job to aiosqlite's thread (not three per query); right after it,
    ``store.locations`` answers without reading the table; after a write of the account's locations
    it reads them again."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna", "Kanzlei", "Anna", "imap", NOW)
        await _apply(store, "anna", True, [("store", 1), ("store", 2), ("failed", 3), ("synced", 4)], NOW)
        conn = store.db._conn
        calls = 0
        real = conn._execute

        async def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(fn, *args, **kwargs)

        conn._execute = counting  # type: ignore[method-assign]
        reads = await read_account(store, "anna", imap=True)
        assert calls == 1
        conn._execute = real  # type: ignore[method-assign]

        traced: list[str] = []
        await conn.set_trace_callback(lambda sql: traced.append(sql) if "FROM locations" in sql else None)
        assert await store.locations("anna") == reads.locations
        assert traced == []
        await _apply(store, "anna", True, [("gone", 1)], NOW + timedelta(hours=1))
        assert (await store.locations("anna"))[_key("anna", True, 1)].gone_at is not None
        assert len(traced) == 1
    finally:
        await store.close()
