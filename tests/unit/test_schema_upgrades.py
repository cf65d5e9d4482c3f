"""Upgrading a real archive from every older schema version (QA of session 14).

Each archive holds rows in every table its version has (:mod:`tests.support.old_archives`): after
:meth:`Store.open` it is at :data:`SCHEMA_VERSION`, every row means what it meant, the later
versions' fills are done (Cc, the full-text index, the failure kinds, the moves), and SQLite's own
checks are clean.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import aiosqlite
import pytest

from maild.archive import opening
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import ArchiveFull, Store
from maild.errors import StoreError
from tests.support.old_archives import MESSAGES, build_at_version, logical_rows

OLD_VERSIONS = range(1, SCHEMA_VERSION)


@pytest.mark.parametrize("version", OLD_VERSIONS)
async def test_an_archive_of_every_older_version_upgrades_keeping_every_row(
    tmp_path: Path, version: int
) -> None:
    """Every row of every table is kept through the upgrade; the new columns are filled."""
    path = tmp_path / "maild.sqlite3"
    await build_at_version(path, version)
    before = logical_rows(path, version)

    async with await Store.open(path):
        pass

    assert logical_rows(path, version) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        ccs = [row[0] for row in conn.execute("SELECT cc_header FROM messages ORDER BY id")]
        indexed = conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'hallo'"
        ).fetchone()
        kinds = dict(conn.execute("SELECT key, kind FROM retrieval_failures"))
        moves = conn.execute("SELECT source, target, finished_at FROM moves ORDER BY 1").fetchall()
        last_column = conn.execute(
            "SELECT name FROM pragma_table_info('messages') ORDER BY cid DESC"
        ).fetchone()
    conn.close()
    with_cc = sum(1 for raw in MESSAGES if b"\r\nCc: " in raw)
    assert ccs == ["Carl <c@z.example>"] * with_cc + [None] * (len(MESSAGES) - with_cc)
    assert indexed == (with_cc,)  # the twelve letters say "Hallo"; the index was filled at version 9
    if version >= 4:
        assert kinds == {"pop3 U99": "local", "imap 7 99 INBOX": "message"}
    # schema 5 made the moves from the uploads (appends, schema 2): 'old' was retired into 'imap'
    expected_moves = [("old", "imap", "2026-02-01T00:00:00Z"), ("pop", "imap", None)] if version >= 2 else []
    assert moves == expected_moves
    assert last_column == ("raw",)


@pytest.mark.parametrize("version", [1, 11])
async def test_a_zero_octet_message_does_not_stop_the_cc_fill(tmp_path: Path, version: int) -> None:
    """Schema 12's step reads each message's header section with ``substr(raw, 1, n)``, which SQLite
    answers with NULL for a 0-octet blob: the upgrade of an archive holding an empty message (a POP3
    server may hold one; maild archives it) stopped with a TypeError, and the daemon never started."""
    path = tmp_path / "maild.sqlite3"
    await build_at_version(path, version)

    async with await Store.open(path):
        pass

    with sqlite3.connect(path) as conn:
        empty = conn.execute("SELECT size_octets, cc_header, length(raw) FROM messages WHERE size_octets = 0")
        assert empty.fetchall() == [(0, None, 0)]
    conn.close()


@pytest.mark.parametrize("version", [8, 11])
async def test_a_full_disk_during_the_upgrade_is_one_clear_error_and_the_next_open_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """The archive's disk fills during a version's step (here SQLite's own limit, ``max_page_count``:
    the same ``SQLITE_FULL``): SQLite rolls the transaction back itself, and the ROLLBACK that followed
    failed ("cannot rollback - no transaction is active"), which was all the admin saw. Now
    ArchiveFull names the full disk and the version the archive stays at; nothing of the failed
    version is stored, and the next open, with room, finishes the upgrade with every row kept."""
    path = tmp_path / "maild.sqlite3"
    await build_at_version(path, version)
    before = logical_rows(path, version)
    failing = version + 1
    real_step = opening._MIGRATION_STEPS.get(failing)

    async def filling_the_disk(conn: aiosqlite.Connection) -> None:
        async with conn.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await conn.execute(f"PRAGMA max_page_count = {row[0]}")
        await conn.execute("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)", (10**6, "x " * 400_000))
        if real_step is not None:
            await real_step(conn)

    monkeypatch.setitem(opening._MIGRATION_STEPS, failing, filling_the_disk)
    with pytest.raises(ArchiveFull) as raised:
        await Store.open(path)
    text = str(raised.value)
    assert "database or disk is full" in text
    assert f"failed at version {failing}" in text
    assert f"the archive is at version {version}" in text
    assert "\n" not in text
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (version,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert logical_rows(path, version) == before

    monkeypatch.undo()
    async with await Store.open(path):
        pass
    assert logical_rows(path, version) == before


async def test_an_archive_of_a_newer_version_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    """An archive a newer maild wrote (here in SQLite's rollback-journal mode, mode 0644) is refused
    with one line naming both versions, and not changed at all: before, ``PRAGMA journal_mode = WAL``
    ran ahead of the version check and rewrote the file's header, and the file was chmodded."""
    path = tmp_path / "maild.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    path.chmod(0o644)
    octets = path.read_bytes()

    with pytest.raises(StoreError) as raised:
        await Store.open(path)

    assert str(raised.value) == (
        f"archive {path} has schema version {SCHEMA_VERSION + 1}, newer than this maild ({SCHEMA_VERSION});"
        " upgrade maild"
    )
    assert path.read_bytes() == octets
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maild.sqlite3"]


async def test_a_newer_archive_with_commits_in_its_log_keeps_its_log_and_index(tmp_path: Path) -> None:
    """A newer maild killed with commits in its write-ahead log: the refusal leaves the file and the log
    as they were, and the log's index in place. Before, the refusing connection was the last to close, so SQLite copied
    the log into the file and deleted both side files (which readers that may not write the
    directory need)."""
    path = tmp_path / "maild.sqlite3"
    subprocess.run(
        [sys.executable, "-c", KILLED_NEWER_WRITER, str(path), str(SCHEMA_VERSION + 1)], check=True
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "maild.sqlite3-shm"}
    assert sorted(before) == ["maild.sqlite3", "maild.sqlite3-wal"]

    with pytest.raises(StoreError, match="newer than this maild"):
        await Store.open(path)

    # the index is shared memory that every reader marks: it stays, its content is SQLite's
    assert (tmp_path / "maild.sqlite3-shm").exists()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "maild.sqlite3-shm"} == before


KILLED_NEWER_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("CREATE TABLE from_the_future (x)")
conn.execute(f"PRAGMA user_version = {int(sys.argv[2])}")
os._exit(0)  # as SIGKILL: the commits stay in the log
"""
