"""Upgrading a real archive from every older schema version (QA of session 14).

Each archive holds rows in every table its version has (:mod:`tests.support.old_archives`): after
:meth:`Store.open` it is at :data:`SCHEMA_VERSION`, every row means what it meant, the later
versions' fills are done (Cc, the full-text index, the failure kinds, the moves), and SQLite's own
checks are clean.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import Store
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
