"""Kill tests: `maild compact` (the rebuild of ``messages`` with ``raw`` last, schema 14) SIGKILLed at chosen
statements and at a random moment from outside; the archive afterwards has the old layout or the new one,
never a mix, with every message, id, location, index entry and reference intact, and a second run finishes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maild.archive import layout, opening
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.store import Store
from tests.support.archive import build_archive, imap, pop

pytestmark = [pytest.mark.slow]

# Runs maild's CLI with aiosqlite's execute wrapped: the process SIGKILLs itself just before the KILL_NTH
# statement starting with KILL_AT. The rebuild moves CHUNK octets per step, so a small archive has many.
KILLING_MAILD = """
import os, signal, sys
import aiosqlite
import maild.archive.layout as layout
layout.LAYOUT_CHUNK_OCTETS = int(os.environ["CHUNK"])
prefix, nth = os.environ["KILL_AT"], int(os.environ["KILL_NTH"])
real, seen = aiosqlite.Connection.execute, [0]
def execute(self, sql, parameters=None):
    if sql.startswith(prefix):
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, sql, parameters)
aiosqlite.Connection.execute = execute
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
OLD = ["raw", "cc_header", "has_documents"]


def message(n: int, octets: int) -> bytes:
    """A distinct CRLF message of about ``octets`` with a Cc field and a searchable word."""
    body = b"".join(
        b"Zeile %d des Briefes %d, Mietvertrag Nummer %d\r\n" % (i, n, n) for i in range(octets // 44)
    )
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nCc: carla@example.org\r\n"
        b"Subject: Brief %d\r\nMessage-ID: <k%d@example.org>\r\n\r\n" % (n, n, n)
    ) + body


async def old_layout_archive(db: Path, count: int, octets: int) -> None:
    """A schema-13 archive (the old order) upgraded to 14 with the rebuild at open refused (bound 0)."""
    items = [
        ("anna-pop", pop(n), message(n, octets))
        if n % 2
        else ("anna-imap", imap("INBOX", n), message(n, octets))
        for n in range(count)
    ]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(opening, "SCHEMA_VERSION", 13)
        await build_archive(db, items)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(layout, "LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS", 0)
        async with await Store.open(db):
            pass
    assert columns(db)[-3:] == OLD


def columns(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM pragma_table_info('messages') ORDER BY cid")]


def snapshot(db: Path) -> dict[str, object]:
    """Rows by column name with ids, locations, index entries, a search, references and integrity; opened
    read-write first, so a leftover WAL is recovered as maild would."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        state = {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "broken": [tuple(r) for r in conn.execute("PRAGMA foreign_key_check")],
            "messages": [dict(r) for r in conn.execute("SELECT * FROM messages ORDER BY id")],
            "locations": [tuple(r) for r in conn.execute("SELECT * FROM locations ORDER BY id")],
            "fts": [tuple(r) for r in conn.execute("SELECT * FROM messages_fts_docsize ORDER BY id")],
            "indexes": sorted(
                r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'messages'")
            ),
            "tables": sorted(
                r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
            ),
        }
    with ArchiveReader(db) as reader:
        state["found"] = len(reader.search("mietvertrag", MessageFilter()))
    return state


def compact(db: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", KILLING_MAILD] if env else [sys.executable, "-m", "maild"]
    return subprocess.Popen(
        [*command, "compact", "--database", str(db)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish_and_check(db: Path, before: dict[str, object], layout_after: str = "old") -> None:
    """A second, undisturbed `maild compact` exits 0 and leaves raw last with everything as before (it
    rewrites an archive left in the old layout, and says there is nothing to do for the new one)."""
    proc = compact(db)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    said = b"rewritten with raw last" if layout_after == "old" else b"nothing to rewrite"
    assert said in out
    if layout_after == "old":  # stderr is not a terminal: a progress line per tenth, ending at 100 %
        assert "compacting 100%" in err.decode().splitlines(), err.decode()
    assert columns(db)[-1] == "raw"
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("kill_at", "nth", "layout_after"),
    [
        ("DELETE FROM messages", 3, "old"),  # mid-copy: some rows in both tables, uncommitted
        ("DROP TABLE messages", 1, "old"),  # all copied, old table still there
        ("ALTER TABLE messages_layout", 1, "old"),  # old table dropped, new one not yet renamed
        ("COMMIT", 1, "old"),  # everything done but the commit
        ("PRAGMA wal_checkpoint", 1, "new"),  # committed, not yet checkpointed into the main file
    ],
)
async def test_a_kill_at_any_step_leaves_the_old_or_the_new_layout(
    tmp_path: Path, kill_at: str, nth: int, layout_after: str
) -> None:
    """Steps: an archive in the old order (40 messages of about 20 KB with a Cc); `maild compact` with
    16 KiB steps SIGKILLs itself before the chosen statement; the archive is intact at schema 14 in the
    expected layout with every row, id, location, index entry and search hit as before, no table left
    over; a second run finishes with raw last."""
    db = tmp_path / "maild.sqlite3"
    await old_layout_archive(db, 40, 20_000)
    before = snapshot(db)
    assert before["found"] == 40

    proc = compact(db, {"KILL_AT": kill_at, "KILL_NTH": str(nth), "CHUNK": str(16 << 10)})
    proc.communicate(timeout=300)

    assert proc.returncode == -signal.SIGKILL
    assert columns(db)[-1 if layout_after == "new" else -3 :] == (["raw"] if layout_after == "new" else OLD)
    assert snapshot(db) == before
    finish_and_check(db, before, layout_after)


async def test_a_kill_from_outside_while_the_wal_grows_leaves_the_old_layout(tmp_path: Path) -> None:
    """Steps: an archive in the old order (48 messages of about 1.3 MB, stored as zeroblob + blob I/O);
    `maild compact` runs undisturbed until its WAL holds more than 8 MB (the rebuild's transaction under
    way), then gets SIGKILL from this test; the archive is intact in the old layout with everything as
    before; a second run finishes with raw last."""
    db = tmp_path / "maild.sqlite3"
    await old_layout_archive(db, 48, 1_300_000)
    before = snapshot(db)
    wal = db.with_name(db.name + "-wal")

    proc = compact(db, {"KILL_AT": "never", "KILL_NTH": "1", "CHUNK": str(4 << 20)})
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 8 << 20:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.communicate(timeout=60)

    assert proc.returncode == -signal.SIGKILL, (
        "compact ended before the WAL grew past 8 MB: nothing was killed"
    )
    assert columns(db)[-3:] == OLD
    assert snapshot(db) == before
    finish_and_check(db, before)
