"""Multi-row statements (maild/archive/multirow.py) and a batch stored through them."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive import multirow
from maild.archive.multirow import STATEMENT_OCTETS, STATEMENT_ROWS, insert_rows, row_chunks
from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _octets(row: Sequence[object]) -> int:
    return sum(len(v) for v in row if isinstance(v, bytes | str))


@pytest.mark.parametrize(
    "sizes",
    [[100_000] * 75, [1_000] * 1200, [3 * STATEMENT_OCTETS, 10, 10], [10, 3 * STATEMENT_OCTETS, 10], [5], []],
)
def test_runs_keep_order_and_limits(sizes: list[int]) -> None:
    """The runs are the rows in order, each a power of two long, at most STATEMENT_ROWS rows and
    STATEMENT_OCTETS octets of values unless a single row is larger."""
    db = sqlite3.connect(":memory:")
    rows = [(b"x" * size, n) for n, size in enumerate(sizes)]
    runs = list(row_chunks(db, rows))
    assert [row for run in runs for row in run] == rows
    for run in runs:
        assert len(run) & (len(run) - 1) == 0
        assert len(run) <= STATEMENT_ROWS
        assert len(run) == 1 or sum(_octets(row) for row in run) <= STATEMENT_OCTETS


def test_runs_respect_the_variable_limit() -> None:
    """A run never binds more variables than SQLite allows."""
    db = sqlite3.connect(":memory:")
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    runs = list(row_chunks(db, [(1, 2, 3)] * 90))
    assert max(len(run) * 3 for run in runs) <= 100
    db.execute("CREATE TABLE t (a NOT NULL, b, c)")
    insert_rows(db, "INSERT OR IGNORE INTO t (a, b, c)", [(n, 2, 3) for n in range(90)])
    assert db.execute("SELECT count(*), sum(a) FROM t").fetchone() == (90, sum(range(90)))


def test_insert_rows_inserts_each_row_once_and_nothing_else() -> None:
    """Every row is inserted once, in order, and the runs that free the bindings insert nothing; a
    row whose key is already there is skipped (OR IGNORE) and the first one kept."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB)")
    rows = [(f"k{n}", bytes([n % 256]) * (n * 997)) for n in range(300)]
    insert_rows(db, "INSERT OR IGNORE INTO t (k, v)", rows)
    assert db.execute("SELECT k, v FROM t ORDER BY id").fetchall() == rows
    insert_rows(db, "INSERT OR IGNORE INTO t (k, v)", [("k1", b"new"), ("k999", b"y")])
    assert db.execute("SELECT v FROM t WHERE k = 'k1'").fetchone() == (rows[1][1],)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (301,)


def _sqlite_memory_used() -> int:
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        pytest.skip("libsqlite3 not found for ctypes")
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_no_copy_of_the_values_stays_with_the_cached_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the inserts, SQLite holds no copy of the bound values: without the second run with NULLs,
    each cached statement would keep its last bindings (here 40 x 256 KiB)."""
    if _sqlite_memory_used() == 0:
        pytest.skip("this SQLite does not count its memory")
    db = sqlite3.connect(":memory:", isolation_level=None)
    monkeypatch.setattr(multirow, "STATEMENT_ROWS", 1)  # one row per statement, many texts
    before = _sqlite_memory_used()
    for n in range(40):
        db.execute(f"CREATE TABLE t{n} (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        insert_rows(db, f"INSERT OR IGNORE INTO t{n} (v)", [(bytes([n]) * 2**18,)])
        db.execute(f"DELETE FROM t{n}")
    assert _sqlite_memory_used() - before < 10 * 2**18


async def test_a_batch_over_many_statements_keeps_ids_and_index_rows_together(tmp_path: Path) -> None:
    """A batch of 90 messages (several statements' worth) stores each message once, with its own
    index row: a word only one message holds finds exactly that message."""
    store = await Store.open(tmp_path / "maild.sqlite3")
    try:
        await store.ensure_account("a", "O", "E", "pop3", NOW)
        raws = [
            f"Subject: Nachricht {n}\r\nFrom: x@example.org\r\n\r\nwort{n}zeichen ".encode()
            + b"z" * (30_000 + n)
            for n in range(90)
        ]
        batch = [RetrievedMessage(POP3Key(f"u{n}"), raw) for n, raw in enumerate(raws)]
        batch.append(RetrievedMessage(POP3Key("dup"), raws[7]))  # the same message under another UIDL
        outcome = await store.store_batch("a", batch, NOW)
        assert (outcome.new_messages, outcome.new_links) == (90, 91)
        async with store._conn.execute("SELECT sha256, raw FROM messages") as cur:
            stored = {sha: bytes(raw) for sha, raw in await cur.fetchall()}
        assert stored == {hashlib.sha256(raw).hexdigest(): raw for raw in raws}
        for n in (0, 7, 45, 89):
            sql = "SELECT m.raw FROM messages_fts f JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH ?"
            async with store._conn.execute(sql, (f"wort{n}zeichen",)) as cur:
                assert [bytes(r[0]) for r in await cur.fetchall()] == [raws[n]]
        async with store._conn.execute(
            "SELECT l.uidl FROM locations l JOIN messages m ON m.id = l.message WHERE m.sha256 = ? ORDER BY 1",
            (hashlib.sha256(raws[7]).hexdigest(),),
        ) as cur:
            assert [r[0] for r in await cur.fetchall()] == ["dup", "u7"]
    finally:
        await store.close()
