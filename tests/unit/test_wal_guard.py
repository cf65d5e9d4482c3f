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
import subprocess
import sys
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


_OTHER_PROCESS = """
import asyncio, sqlite3, sys
from pathlib import Path
from maild.archive.move_queries import MigrationStore

async def main(path: Path) -> None:
    reader = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # a CRM, `maild messages`
    print(reader.execute("SELECT count(*) FROM messages").fetchone()[0])
    reader.close()
    store = await MigrationStore.open(path)  # `maild accounts list`: a writer, TRUNCATE at its close
    await store.close()

asyncio.run(main(Path(sys.argv[1])))
"""


def _other_process(db: Path) -> int:
    """Open and close ``db`` in another process as a CRM and ``maild accounts list`` do: what it read."""
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(db)], capture_output=True, text=True, check=True, timeout=120
    )
    return int(done.stdout.split()[0])


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_an_index_removed_or_replaced_under_the_daemon_stops_deletions_and_loses_nothing(
    tmp_path: Path, how: str
) -> None:
    """Steps: a batch committed; the ``-shm`` file removed (``rm``) or replaced by a copy; the guard
    raises ArchiveReplaced naming the index at once, before any other process rebuilds an index of its
    own. Then another process reads and writes (a CRM, ``maild accounts list``: it checkpoints and cuts
    the log at its close), the daemon's connection commits on (the guard stays failed), and after the
    close the archive passes its integrity check. Without the check the guard passed here, and the
    daemon's commits after the other process's close were lost at the next start (QA of session 12)."""
    db = tmp_path / "a.sqlite3"
    shm = Path(f"{db}-shm")
    store = await opened(db)
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        await store.db.verify_identity()
        if how == "deleted":
            os.unlink(shm)
        else:
            copy = shm.with_name("copy")
            copy.write_bytes(shm.read_bytes())
            os.replace(copy, shm)
        with pytest.raises(ArchiveReplaced, match=rf"index of its write-ahead log a\.sqlite3-shm .*{how}"):
            await store.db.verify_identity()
        assert await asyncio.to_thread(_other_process, db) >= 0
        with pytest.raises(ArchiveReplaced, match=r"a\.sqlite3-shm"):
            await store.db.verify_identity()
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (5,)


async def test_other_processes_reading_and_writing_never_look_like_a_removed_index(
    tmp_path: Path, small_bounds: None
) -> None:
    """The daemon's connection open; between its batches (checkpoints and restarts of the log among
    them) another process reads the archive and opens and closes a writer (a CRM, ``maild accounts
    list``) eight times: the guard passes after each, the other process sees every batch committed
    before it, and the ``-shm`` file is the one opened with the archive all along."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    shm = Path(f"{db}-shm")
    try:
        first = shm.stat().st_ino
        for n in range(1, 9):
            await store.store_batch("anna-pop", batch(), NOW)
            assert await asyncio.to_thread(_other_process, db) == 5 * n
            await store.db.verify_identity()
        assert shm.stat().st_ino == first
        stored = await count(store)
    finally:
        await store.close()
    assert stored == 40


async def test_a_log_cut_then_written_again_is_not_copied_by_sqlite_at_the_close(tmp_path: Path) -> None:
    """Steps: three batches checkpointed into the archive file, two more in the log; the log cut
    (``: >``) and then as long again (later frames written behind the cut: zeros where the listed
    frames were); the guard raises; the close. The close's guard connection cannot read (the schema
    page reads as zeros), but it still holds the archive: SQLite does not checkpoint at the writer's
    close, the side files stay, and the archive file still holds the three checkpointed batches.
    Without it, SQLite's checkpoint at the last close copied the zeros in ("file is not a database",
    QA of session 12: a daemon stopped after ``: > maild.sqlite3-wal`` under load)."""
    db = tmp_path / "a.sqlite3"
    wal = Path(f"{db}-wal")
    store = await opened(db)
    try:
        for _ in range(3):
            await store.store_batch("anna-pop", batch(), NOW)
        await store._scalar("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(2):
            await store.store_batch("anna-pop", batch(), NOW)
        size = wal.stat().st_size
        os.truncate(wal, 0)
        os.truncate(wal, size)
        with pytest.raises(ArchiveReplaced, match=r"write-ahead log a\.sqlite3-wal overwritten"):
            await store.db.verify_identity()
    finally:
        await store.close()
    assert wal.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (15,)
