"""``Store.ensure_accounts``: every configured account recorded with one look-up and at most one
transaction (``maild fetch`` and the daemon's start and reload made one look-up per account)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.errors import StoreError

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


async def _statements(store: Store) -> list[str]:
    seen: list[str] = []
    await store.db._conn.set_trace_callback(seen.append)
    return seen


async def test_fifty_accounts_are_one_look_up_and_one_transaction_then_none(tmp_path: Path) -> None:
    """Fifty new accounts: one SELECT and one transaction; the same again: one SELECT, no write; one
    employee renamed: one SELECT and one transaction, and the archive has the new name."""
    accounts = [(f"acc{n}", "Kanzlei", f"Person {n}", "pop3" if n % 2 else "imap") for n in range(50)]
    async with await Store.open(tmp_path / "a.sqlite3") as store:
        seen = await _statements(store)
        await store.ensure_accounts(accounts, NOW)
        assert sum(s.startswith("SELECT") for s in seen) == 1
        assert sum(s.startswith("BEGIN") for s in seen) == 1

        seen.clear()
        await store.ensure_accounts(accounts, NOW)
        assert [s.split()[0] for s in seen] == ["SELECT"]

        seen.clear()
        accounts[7] = ("acc7", "Kanzlei", "Renamed", "pop3")
        await store.ensure_accounts(accounts, NOW)
        assert sum(s.startswith("BEGIN") for s in seen) == 1
        rows = await store.db._all("SELECT count(*), max(employee = 'Renamed') FROM accounts")
        assert tuple(rows[0]) == (50, 1)


async def test_a_changed_protocol_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """One account of the list recorded with another protocol: StoreError naming it, and neither it
    nor the new accounts before it in the list are written."""
    async with await Store.open(tmp_path / "a.sqlite3") as store:
        await store.ensure_account("anna", "Kanzlei", "Anna", "pop3", NOW)

        with pytest.raises(StoreError, match="account anna was created as pop3 and cannot become imap"):
            await store.ensure_accounts([("ben", "Kanzlei", "Ben", "pop3"), ("anna", "Kanzlei", "Anna", "imap")], NOW)

        rows = await store.db._all("SELECT name FROM accounts")
        assert [r[0] for r in rows] == ["anna"]
