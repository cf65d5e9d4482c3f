"""The archive's disk full while a batch commits (QA finding F8 of session 8): SQLite's
``SQLITE_FULL`` becomes :class:`~maild.archive.store.ArchiveFull` (a StoreError), the transaction is
rolled back cleanly, and the next batch stores once there is room. The full disk is SQLite's own
limit here (``PRAGMA max_page_count``: "database or disk is full", the same result code); the real
full file system over both protocols is tests/integration/test_archive_full.py."""

from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.connection import disk_full
from maild.archive.store import ArchiveFull, Store
from maild.model import POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def batch(first: int, n: int) -> list[RetrievedMessage]:
    """``n`` distinct messages of about 60 kB."""
    return [
        RetrievedMessage(POP3Key(f"u{i}"), b"Subject: Brief %d\r\n\r\n" % i + b"Zeile %d\r\n" % i * 6000)
        for i in range(first, first + n)
    ]


async def test_sqlite_full_is_archive_full_rolled_back_and_the_next_batch_stores(tmp_path: Path) -> None:
    """The archive may not grow: the batch raises ArchiveFull naming SQLite's words, nothing of it is
    stored and no transaction stays open; allowed to grow again, the same batch stores once."""
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
        await store.store_batch("anna-pop", batch(0, 2), NOW)
        pages = await store._scalar("PRAGMA page_count")
        await store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ArchiveFull, match="database or disk is full"):
            await store.store_batch("anna-pop", batch(2, 20), NOW)
        assert not store._conn.in_transaction
        assert await store._scalar("SELECT count(*) FROM messages") == 2
        await store._conn.execute("PRAGMA max_page_count = 1073741823")
        outcome = await store.store_batch("anna-pop", batch(2, 20), NOW)
        assert outcome.new_messages == 20
        assert await store._scalar("SELECT count(*) FROM messages") == 22
        assert await store._scalar("PRAGMA integrity_check") == "ok"
    finally:
        await store.close()


def test_disk_full_knows_sqlite_full_enospc_and_edquot_and_nothing_else() -> None:
    """SQLITE_FULL and OSError ENOSPC/EDQUOT are a full disk; a locked database or EIO are not."""
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert disk_full(full)
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not disk_full(locked)
    assert not disk_full(OSError(errno.EIO, "Input/output error"))
