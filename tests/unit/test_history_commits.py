"""Account histories are written in group commits (maild/archive/history.py): rows handed in while a
commit runs go into the next one together, deferred rows (quiet cycles) wait for the next commit or
``flush_history``, and every caller of a failed commit gets its StoreError."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import AccountHistory
from maild.service.scheduler import Scheduler

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def _on_disk(path: Path) -> dict[str, int]:
    """cycles_ok by account, as another connection reads the archive file (committed rows only)."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT account, cycles_ok FROM account_history").fetchall())
    finally:
        db.close()


async def _accounts(store: Store, *names: str) -> None:
    for name in names:
        await store.ensure_account(name, "Kanzlei", name, "pop3", NOW)


def _history_scheduler(store: Store) -> Scheduler:
    """A Scheduler with only what ``_keep_history`` and ``flush_history`` use (no accounts yet)."""
    scheduler = Scheduler.__new__(Scheduler)
    scheduler.store = store
    scheduler.history_error = None
    scheduler.history = {}
    return scheduler


async def _transactions(store: Store) -> list[str]:
    """A list that grows by one each time the store's connection begins a write transaction."""
    begun: list[str] = []
    await store.db._conn.set_trace_callback(lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None)
    return begun


async def test_rows_handed_in_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Twenty accounts' rows handed in at once are committed in two transactions (the first row's,
    then all that waited meanwhile), not twenty; each call returns with its row on disk."""
    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, *(f"acc{n}" for n in range(20)))
        begun = await _transactions(store)

        await asyncio.gather(
            *(store.record_history(AccountHistory(f"acc{n}", last_success=NOW, cycles_ok=n)) for n in range(20))
        )

        assert _on_disk(path) == {f"acc{n}": n for n in range(20)}
        assert len(begun) == 2


async def test_a_deferred_row_waits_for_the_next_commit_or_the_flush(tmp_path: Path) -> None:
    """A deferred row is not on disk when its call returns; the next row that is not deferred takes
    it along; a deferred row alone is written by flush_history, and a second flush writes nothing."""
    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, "anna", "ben")
        await store.record_history(AccountHistory("anna", last_success=NOW, cycles_ok=1), defer=True)
        assert _on_disk(path) == {}

        await store.record_history(AccountHistory("ben", last_error="refused", cycles_failed=1))
        assert _on_disk(path) == {"anna": 1, "ben": 0}

        later = NOW + timedelta(minutes=5)
        await store.record_history(AccountHistory("anna", last_success=later, cycles_ok=2), defer=True)
        assert _on_disk(path) == {"anna": 1, "ben": 0}
        begun = await _transactions(store)
        await store.flush_history()
        await store.flush_history()

        assert _on_disk(path) == {"anna": 2, "ben": 0}
        assert len(begun) == 1
        assert (await store.account_histories())["anna"].last_success == later


async def test_every_caller_of_a_failed_commit_gets_the_error(tmp_path: Path) -> None:
    """When the shared commit fails (here a trigger refuses it), each account's call raises
    StoreError and nothing of the round is written."""
    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, *(f"acc{n}" for n in range(5)))
        await store.db._conn.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON account_history BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )

        results = await asyncio.gather(
            *(store.record_history(AccountHistory(f"acc{n}", cycles_ok=1)) for n in range(5)),
            return_exceptions=True,
        )

        assert all(isinstance(r, StoreError) for r in results), results
        assert _on_disk(path) == {}


@pytest.mark.parametrize("quiet", [True, False])
async def test_the_scheduler_defers_only_a_quiet_cycles_row(tmp_path: Path, quiet: bool) -> None:
    """``Scheduler._keep_history``: a row that differs from the account's last only in its last
    success and count of successes is deferred (not on disk until ``flush_history``); one with
    anything else changed (here the end of a failure streak) is committed at once."""
    from types import SimpleNamespace

    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, "anna")
        scheduler = _history_scheduler(store)
        before = AccountHistory("anna", last_success=NOW, cycles_ok=1)
        if not quiet:
            before = AccountHistory("anna", last_success=NOW, last_error="refused", cycles_ok=1)
        scheduler.history = {"anna": before}
        after = AccountHistory("anna", last_success=NOW + timedelta(minutes=5), cycles_ok=2)

        await scheduler._keep_history(SimpleNamespace(history=lambda: after))  # type: ignore[arg-type]

        assert _on_disk(path) == ({} if quiet else {"anna": 2})
        await scheduler.flush_history()
        assert _on_disk(path) == {"anna": 2}


async def test_a_waiting_row_of_a_purged_account_is_skipped_not_an_error(tmp_path: Path) -> None:
    """An account removed from the archive (``accounts remove --purge``, another process) while its
    quiet row waited: the next commit skips that row and writes the others."""
    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, "anna", "ben")
        await store.record_history(AccountHistory("anna", last_success=NOW, cycles_ok=1), defer=True)
        other = sqlite3.connect(path)
        try:
            other.execute("DELETE FROM accounts WHERE name = 'anna'")
            other.commit()
        finally:
            other.close()

        await store.record_history(AccountHistory("ben", last_success=NOW, cycles_ok=3))

        assert _on_disk(path) == {"ben": 3}


async def test_a_history_commit_that_failed_is_shown_until_a_later_one_succeeds(tmp_path: Path) -> None:
    """A failed history commit (the disk full) is shown (``history_error``: the daemon's problem and
    its alert) and ends as soon as a later one succeeds, also when only quiet cycles follow, whose
    rows are deferred otherwise (QA of session 10: it stayed shown, and the alert on, until new mail
    or a failure came, days on a quiet mailbox); a flush with nothing waiting does not end it."""
    from types import SimpleNamespace

    path = tmp_path / "a.sqlite3"
    async with await Store.open(path) as store:
        await _accounts(store, "anna")
        scheduler = _history_scheduler(store)
        scheduler.history = {"anna": AccountHistory("anna", last_success=NOW, cycles_ok=1)}

        async def cycle(n: int, fetched: int = 0) -> None:
            row = AccountHistory(
                "anna", last_success=NOW + timedelta(minutes=n), cycles_ok=n, fetched_messages=fetched
            )
            await scheduler._keep_history(SimpleNamespace(history=lambda: row))  # type: ignore[arg-type]

        await store.db._conn.execute(
            "CREATE TEMP TRIGGER full BEFORE INSERT ON account_history BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        await cycle(2, fetched=3)  # new mail: committed at once, and refused
        assert scheduler.history_error is not None and "disk full" in scheduler.history_error
        await scheduler.flush_history()  # nothing waits: says nothing about the disk
        assert scheduler.history_error is not None
        await store.db._conn.execute("DROP TRIGGER full")

        await cycle(3, fetched=3)  # quiet, but the problem shown: committed at once
        assert scheduler.history_error is None
        assert _on_disk(path) == {"anna": 3}
        await cycle(4, fetched=3)  # quiet and healthy: deferred again
        assert _on_disk(path) == {"anna": 3}
