"""What the archive's connection runs in aiosqlite's thread, and the shield around a transaction.

:meth:`maild.archive.connection.ArchiveConnection._call` hands one of these functions to aiosqlite's
thread with the ``sqlite3`` connection: one hand-off there and one back, whatever the function does
(session 14). :func:`in_transaction` is the one-call transaction path: ``BEGIN IMMEDIATE``, the
statements, ``COMMIT``, all in one call. :func:`shielded` runs a transaction in a task of its own, so
that a cancelled caller never leaves the connection inside a half-done transaction. No RFC applies here.

May import: the standard library, aiosqlite and structlog.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aiosqlite
import structlog

T = TypeVar("T")
_log = structlog.get_logger("maild.archive")

Statement = tuple[str, Sequence[Any] | list[Sequence[Any]], bool]
"""One statement of a write: SQL text, its parameters (a list of parameter rows when ``many``), and
``many`` (run with ``executemany``)."""


def log_archive(level: str, event: str, **fields: Any) -> None:
    """Log an event of the archive's own (its write-ahead log), not of the account whose batch ran
    into it: in an empty context, so that the structlog context variables of that account's task
    (``account``, ``organisation``: :mod:`maild.service.scheduler`) are not merged into it."""
    contextvars.Context().run(getattr(_log, level), event, **fields)


def with_connection(conn: aiosqlite.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In aiosqlite's thread: ``fn`` called with the ``sqlite3`` connection and ``args``."""
    return fn(conn._conn, *args)


def scalar_of(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    """In aiosqlite's thread: the first column of the first row of ``sql``, or None."""
    cur = db.execute(sql, params)
    try:
        row = cur.fetchone()
    finally:
        cur.close()
    return row[0] if row else None


def rows_of(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """In aiosqlite's thread: every row of ``sql``."""
    cur = db.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()


def run_statements(db: sqlite3.Connection, statements: Sequence[Statement]) -> None:
    """In aiosqlite's thread, inside the caller's transaction: each statement, ``many`` selecting
    ``executemany``."""
    for sql, params, many in statements:
        if many:
            db.executemany(sql, params)
        else:
            db.execute(sql, params)


def still_open(db: sqlite3.Connection) -> bool:
    """In aiosqlite's thread: whether the connection is inside a transaction."""
    return db.in_transaction


def in_transaction(db: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In aiosqlite's thread: ``BEGIN IMMEDIATE``, ``fn(db, *args)``, ``COMMIT`` (fsync'ed,
    ``synchronous=FULL``), the whole transaction in one call; on any error ``ROLLBACK`` and the error
    raised (a failed ``ROLLBACK`` is logged: the first error is the one to report; the caller finds
    the transaction still open and stops trusting the connection:
    :meth:`~maild.archive.connection.ArchiveConnection._left_open`)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db, *args)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log_archive("warning", "archive.rollback.failed", error=str(exc))
        raise
    return result


async def shielded(transaction: Coroutine[Any, Any, T]) -> T:
    """Run ``transaction`` in a task of its own, shielded from the caller's cancellation: a cancelled
    caller waits until the transaction has ended (committed, or rolled back on error), then the
    cancellation propagates, so the connection never stays inside a half-done transaction."""
    task = asyncio.ensure_future(transaction)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it; the cancellation wins
        raise
