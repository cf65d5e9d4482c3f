"""Status answers while another process holds the archive's write lock (issue 15, item 7)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from maild.archive.store import Store
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import ARCHIVE_WAIT_S, status_reply

STARTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_status_under_a_foreign_lock_answers_from_the_figures_it_has(tmp_path: Path) -> None:
    """Steps: a first status reads the archive's figures; another process takes the write lock
    (BEGIN IMMEDIATE) and the daemon's own write then waits behind it for the busy timeout; a
    status request meanwhile answers (within a 5 s hang guard, the busy timeout being 10 s) with
    the figures read before; once the lock is gone, status reads the new ones."""
    path = tmp_path / "maild.sqlite3"
    store = await Store.open(path)
    foreign = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await store.ensure_account("a", "O", "E", "pop3", STARTED)
        accounts = cast("dict[str, AccountRuntime]", {})
        first = await status_reply(accounts, store, STARTED)
        assert first.archive.read_at is not None
        foreign.execute("BEGIN IMMEDIATE")
        blocked_write = asyncio.create_task(store.ensure_account("b", "O", "E", "pop3", STARTED))
        await asyncio.sleep(0.1)  # the write is now waiting in the archive's one thread
        assert not blocked_write.done()
        async with asyncio.timeout(5):
            during = await status_reply(accounts, store, STARTED)
        assert during.archive.read_at == first.archive.read_at
        assert not blocked_write.done()
        foreign.execute("COMMIT")
        await blocked_write
        await asyncio.sleep(ARCHIVE_WAIT_S)
        after = await status_reply(accounts, store, STARTED)
        assert after.archive.read_at is not None
    finally:
        foreign.close()
        await store.close()
