"""A write-ahead log lost or cut while no maild had the archive open (QA of session 14).

The writer is killed with commits in its log only (here a process that commits with checkpoints
off and exits without closing, as SIGKILL leaves it); then the log is deleted or cut. SQLite's next
connection rebuilt its index from what was left and those commits vanished without a word, in the
daemon, ``maild backup`` ("integrity ok") and the readers alike. Now each refuses with one line, and
leaves the index in place, so that putting the log back recovers every commit; removing the index
accepts the loss.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.backup import backup
from maild.archive.reader import ArchiveReader
from maild.archive.store import Store
from maild.errors import StoreError
from tests.support.archive import build_archive, letter, pop

KILLED_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
for n in range(5):
    conn.execute("INSERT INTO accounts VALUES (?, 'O', 'E', 'pop3', '2026-03-02T09:00:00Z', NULL, NULL)",
                 (f"late-{n}",))
os._exit(0)  # as SIGKILL: no close, no checkpoint
"""


async def _killed_with_commits_in_the_log(tmp_path: Path) -> Path:
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], check=True)
    return db


def _accounts(db: Path) -> int:
    with ArchiveReader(db) as reader:
        return len(reader.account_protocols())


async def test_a_deleted_log_is_refused_by_every_opener_and_recovered_when_put_back(tmp_path: Path) -> None:
    db = await _killed_with_commits_in_the_log(tmp_path)
    wal = tmp_path / "maild.sqlite3-wal"
    kept = tmp_path / "kept-wal"
    shutil.move(wal, kept)

    with pytest.raises(StoreError) as opened:
        await Store.open(db)
    with pytest.raises(StoreError) as read:
        ArchiveReader(db)
    (tmp_path / "backups").mkdir()
    with pytest.raises(StoreError) as copied:
        backup(db, tmp_path / "backups", compress=False, now=datetime(2026, 3, 2, tzinfo=UTC))

    for raised in (opened, read, copied):
        text = str(raised.value)
        assert text.startswith(f"archive {db} lost its write-ahead log maild.sqlite3-wal: its index")
        assert "committed frames not yet in the archive file" in text
        assert "remove maild.sqlite3-shm" in text
        assert "\n" not in text
    assert list((tmp_path / "backups").iterdir()) == []

    shutil.move(kept, wal)
    assert _accounts(db) == 6  # anna-pop and the five late commits: nothing lost
    async with await Store.open(db):
        pass


async def test_removing_the_index_accepts_the_loss(tmp_path: Path) -> None:
    db = await _killed_with_commits_in_the_log(tmp_path)
    (tmp_path / "maild.sqlite3-wal").unlink()
    (tmp_path / "maild.sqlite3-shm").unlink()

    async with await Store.open(db):
        pass

    assert _accounts(db) == 1


async def test_a_log_cut_while_the_daemon_was_down_is_refused(tmp_path: Path) -> None:
    db = await _killed_with_commits_in_the_log(tmp_path)
    with (tmp_path / "maild.sqlite3-wal").open("r+b") as fh:
        fh.truncate(100)

    with pytest.raises(StoreError, match=r"had its write-ahead log maild.sqlite3-wal cut to 100 octets \("):
        await Store.open(db)


async def test_a_clean_stop_and_a_killed_writer_with_its_log_open_normally(tmp_path: Path) -> None:
    """No false alarm: the daemon's clean close (an empty log, an index listing nothing) and a killed
    writer whose log is whole both open, and see every commit."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    assert (tmp_path / "maild.sqlite3-shm").exists()
    assert _accounts(db) == 1

    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], check=True)
    assert _accounts(db) == 6
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (6,)
    conn.close()
