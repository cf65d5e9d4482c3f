"""The locations cache survives the account history written after every cycle (it changes no
location), so a no-op cycle of fifty accounts reads no location row; every other write of the
connection still invalidates it (tests/unit/test_store.py has those cases)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from maild.archive.failures import record_failures
from maild.archive.store import Store
from maild.model import AccountHistory, POP3Key, RetrievalFailure, RetrievedMessage

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


async def _location_reads(store: Store) -> list[str]:
    """A list that grows by one statement text each time this store's connection reads locations."""
    reads: list[str] = []
    await store.db._conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM locations" in sql else None)
    return reads


async def test_a_history_write_keeps_the_cached_locations_and_a_failure_record_does_not(tmp_path: Path) -> None:
    """After ``record_history`` (as after every cycle) ``locations()`` answers from its cache: no read
    of the table, the same keys; after a write that declares nothing (a failure record) it reads
    again."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna", "Kanzlei", "Anna", "pop3", NOW)
        await store.store_batch("anna", [RetrievedMessage(POP3Key("u1"), b"Subject: a\r\n\r\nx\r\n")], NOW)
        reads = await _location_reads(store)
        assert set(await store.locations("anna")) == {POP3Key("u1")}
        assert len(reads) == 1

        await store.record_history(AccountHistory("anna", last_success=NOW, cycles_ok=1))

        assert set(await store.locations("anna")) == {POP3Key("u1")}
        assert len(reads) == 1
        assert (await store.account_histories())["anna"].cycles_ok == 1

        await record_failures(store, "anna", [RetrievalFailure(POP3Key("u2"), "broken")], NOW)

        assert set(await store.locations("anna")) == {POP3Key("u1")}
        assert len(reads) == 2
    finally:
        await store.close()
