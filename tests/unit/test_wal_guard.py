"""The archive guard against a write-ahead log cut or overwritten in place (maild/archive/wal_guard.py).

QA of session 12: ``: > maild.sqlite3-wal`` under the running daemon kept the file's device and inode,
so the guard let the next cycle delete its messages on the server while their commits went behind a
log header that was gone: after a restart the archive had lost them, and the close's checkpoint copied
zeros into the archive file ("file is not a database"). Now the log is compared with SQLite's index of
it; the checkpointer and the close copy nothing from such a log. And never a false alarm (the stop
lasts until a restart): a stream of commits, checkpoints and log restarts checked all along.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive import checkpointer
from maild.archive.store import ArchiveReplaced
from maild.archive.wal_guard import wal_problem
from tests.unit.test_checkpointer import MIB, NOW, batch, count, opened


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints from 1 MiB not yet copied, the writer's bound (log restarts) at 4 MiB."""
    monkeypatch.setattr(checkpointer, "CHECKPOINT_WAL_OCTETS", MIB)
    monkeypatch.setattr(checkpointer, "WAL_HARD_OCTETS", 4 * MIB)


async def test_commits_checkpoints_and_restarts_never_look_like_a_cut_log(
    tmp_path: Path, small_bounds: None
) -> None:
    """Forty batches with checkpoints and restarts of the log between them, the guard run after each
    commit and, from another thread, without pause all along (between any two steps of SQLite's):
    no problem is ever reported, and every message is stored."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    shm = os.open(f"{db}-shm", os.O_RDONLY)
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            problem = wal_problem(Path(f"{db}-wal"), shm)
            if problem is not None:
                seen.append(problem)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(40):
            await store.store_batch("anna-pop", batch(), NOW)
            await store.db.verify_identity()
        stored = await count(store)
    finally:
        stop.set()
        watcher.join()
        os.close(shm)
        await store.close()
    assert seen == []
    assert stored == 200
    assert store.db.checkpointer.checkpoints > 0


@pytest.mark.parametrize("how", ["cut", "cut-in-part", "header-zeroed"])
async def test_a_log_cut_or_overwritten_in_place_stops_deletions_and_is_never_copied(
    tmp_path: Path, how: str
) -> None:
    """Steps: a batch committed (in the log, not yet in the archive file); the log cut to nothing, by
    one octet, or its header overwritten with zeros; the guard raises ArchiveReplaced naming the log;
    the checkpointer refuses to copy it (logged once, at error); after the close the archive file is
    still a database (what the last checkpoint left), not one with zero pages copied in."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    wal = Path(f"{db}-wal")
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        await store.db.verify_identity()
        if how == "cut":
            os.truncate(wal, 0)
        elif how == "cut-in-part":
            os.truncate(wal, wal.stat().st_size - 1)
        else:
            with open(wal, "r+b") as fh:
                fh.write(bytes(32))
        with pytest.raises(ArchiveReplaced, match=r"write-ahead log a\.sqlite3-wal (cut|overwritten)"):
            await store.db.verify_identity()
        assert store.db.checkpointer.wal_state() is not None  # the checkpointer's own -shm is open
        with capture_logs() as logs:
            await asyncio.to_thread(store.db.checkpointer._checkpoint, None)
            await asyncio.to_thread(store.db.checkpointer._checkpoint, None)
        assert [e["event"] for e in logs] == ["archive.checkpoint.refused"]
        assert store.db.checkpointer.failure is not None
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
