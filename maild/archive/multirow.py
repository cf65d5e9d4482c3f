"""Multi-row statements: many rows in one ``INSERT ... VALUES (...), (...)``, not one step each.

Why (docs/performance.md, "Session 9: SQLite's thread"): Python's ``sqlite3`` releases the GIL around
each ``sqlite3_step`` and must take it back afterwards. While another thread runs Python (the next
batch's parse, the event loop's receive path), taking it back waits up to the interpreter's switch
interval (5 ms) once the step was long enough for the other thread to take the GIL: a message row
(tens of KB copied into pages) or a full-text row (tokenising) is. ``executemany`` of a batch's 75-200
rows paid that wait per row; one statement of many rows pays it once. Measured with a busy Python
thread beside it: 750 rows of 100 KB, ``executemany`` 3.5 s, multi-row 1.4 s (alone 0.8 s both).

Runs in aiosqlite's thread (a plain :class:`sqlite3.Connection`), inside the caller's transaction.
No RFC applies here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

STATEMENT_OCTETS = 2**20
"""At most this many octets of bound values (message octets, index text) in one statement (1 MiB):
SQLite copies every bound blob and text (``SQLITE_TRANSIENT``) and holds the copies until the statement
is reset, so this bounds the memory a multi-row statement adds (``executemany`` held one row's)."""
STATEMENT_ROWS = 500
"""At most this many rows in one statement (SQLite's own limit on bound variables is checked too)."""


def _value_octets(row: Sequence[Any]) -> int:
    return sum(len(v) for v in row if isinstance(v, bytes | bytearray | str))


def row_chunks(db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> Iterator[Sequence[Sequence[Any]]]:
    """Split ``rows`` (each of the same length) into runs that fit one statement: at most
    :data:`STATEMENT_ROWS` rows, :data:`STATEMENT_OCTETS` octets of values (a single larger row
    alone) and SQLite's variable limit; each run's length a power of two, so that a table's
    statements take at most ten shapes (Python's ``sqlite3`` caches each text it prepared: a new
    row count would be a new statement to prepare and keep)."""
    if not rows:
        return
    limit = min(
        STATEMENT_ROWS, max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // max(1, len(rows[0])))
    )
    start = 0
    while start < len(rows):
        end = start + 1
        octets = _value_octets(rows[start])
        while end < len(rows) and end - start < limit:
            octets += _value_octets(rows[end])
            if octets > STATEMENT_OCTETS:
                break
            end += 1
        end = start + (1 << ((end - start).bit_length() - 1))
        yield rows[start:end]
        start = end


def insert_rows(db: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` as ``head VALUES (?, ...), (?, ...)``, in as few statements as
    :func:`row_chunks` allows. ``head`` must be an ``INSERT OR IGNORE`` into a table with a ``NOT
    NULL`` column and no foreign keys (``messages``).

    After each statement, the same statement runs once more with every value NULL, which the ``NOT
    NULL`` columns make it skip (``OR IGNORE``): Python's ``sqlite3`` keeps the statement in its cache
    with its last bindings, and SQLite's copies of the bound messages would otherwise stay in memory
    as long as the statement does (measured: +43 MB for 40 statements of different row counts; the
    one-shot fetch's peak RSS 125.6 MB against 58.8). Not ``INSERT ... SELECT * FROM (VALUES ...)
    WHERE ?`` with a false guard for that run: its subquery makes a deep copy of every value (``Copy``
    in ``EXPLAIN``), one more copy of every message. No ``RETURNING``: SQLite then materialises the
    rows in a temporary table first (another copy). ``OR IGNORE`` (or ``OR FAIL``), no foreign keys, not
    a virtual table: a statement writing several rows that may abort half-way (the default
    ``ABORT``, a foreign key, any insert into a virtual table such as FTS5) gets a statement journal,
    the prior content of the pages it changes, in a temporary file once past 64 KiB (measured: 1,076
    ``pwrite`` to it per 300 messages with ``ABORT``, 96 without; +138 for FTS5 rows, +158 for
    locations).

    Raises:
        sqlite3.Error: as the statement does (the caller's transaction rolls back).
    """
    for chunk in row_chunks(db, rows):
        width = len(chunk[0])
        one = "(" + ", ".join("?" * width) + ")"
        sql = f"{head} VALUES {', '.join([one] * len(chunk))}"
        db.execute(sql, [value for row in chunk for value in row]).close()
        db.execute(sql, [None] * (width * len(chunk))).close()
