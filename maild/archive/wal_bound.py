"""The writer's bound on the archive's write-ahead log, kept before each write transaction.

The checkpointer (:mod:`maild.archive.checkpointer`) copies the WAL into the database file in its own
thread; :class:`WALBound` makes sure the log never grows far past
:data:`~maild.archive.checkpointer.WAL_HARD_OCTETS` while a write waits, without ever refusing to
store. Held by :class:`maild.archive.connection.ArchiveConnection`, run under its write lock before
every write transaction. No RFC applies here (SQLite: https://www.sqlite.org/pragma.html#pragma_wal_checkpoint).

May import: the standard library, aiosqlite, structlog and the archive's checkpointer, opening and
thread-call modules.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from maild.archive import checkpointer as _checkpointer
from maild.archive import opening
from maild.archive.archive_errors import disk_full
from maild.archive.checkpointer import Checkpointer, wal_held
from maild.archive.thread_calls import log_archive


class WALBound:
    """The WAL bound of one writer's connection: what a held log was, and when to try again."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, checkpointer: Checkpointer) -> None:
        self._conn = conn
        self._path = path
        self._checkpointer = checkpointer
        self._restart_at = 0
        """WAL octets from which :meth:`before_write` tries its next ``RESTART`` (0: from the bound)."""
        self._held_frames = 0
        """While a reader holds the WAL: its frames when a ``RESTART`` last failed; fewer frames later
        mean the log started again (released). 0 when not held."""

    async def before_write(self) -> None:
        """Before a write transaction: if the WAL holds :data:`~maild.archive.checkpointer.WAL_HARD_OCTETS`
        or more, copy all of it into the database file now (``PRAGMA wal_checkpoint(RESTART)``, in
        aiosqlite's thread, after the checkpointer's copy under way, waiting up to
        :data:`~maild.archive.opening.BUSY_TIMEOUT_MS` for readers), so that this transaction starts the
        log again from its beginning.

        The bound is kept whenever it can be, and never at the price of storing: when a reader (a
        CRM's long query, ``maild backup``) keeps the WAL from emptying for the whole busy timeout,
        storing goes on, the WAL grows past the bound (as SQLite's own default would let it), one
        warning ``archive.wal.held`` names the cause, and the next ``RESTART`` is tried only after
        another :data:`~maild.archive.checkpointer.WAL_HARD_OCTETS` (so a held WAL does not stall
        every batch for the busy timeout); ``archive.wal.released`` follows when one succeeds, or
        when the log is found to have started again on its own (fewer frames than when held: the
        reader ended and the checkpointer's copy caught up; seen at the next transaction). A
        ``RESTART`` refused because a statement of this same connection is still reading
        (``SQLITE_LOCKED``, "database table is locked": another account's query between its steps)
        is tried again before the next transaction. The disk itself is guarded as before (a full
        disk stops deletions: docs/guarantee.md).
        """
        state = self._checkpointer.wal_state()
        if state is not None and state.frames < self._held_frames:
            # the log started again on its own (the reader ended, the checkpointer's PASSIVE copy
            # caught up, and a transaction began after it): released without a RESTART of ours
            self._restart_at = self._held_frames = 0
            if self._checkpointer.note_released():
                log_archive("info", "archive.wal.released", path=str(self._path))
        if state is None or state.octets < max(self._restart_at, _checkpointer.WAL_HARD_OCTETS):
            return
        busy_s = opening.BUSY_TIMEOUT_MS / 1000
        # the checkpointer's copy first (none starts meanwhile: they start after commits), so that
        # the RESTART does not poll SQLite's busy handler for it
        await asyncio.to_thread(self._checkpointer.wait_idle, busy_s)
        try:
            async with self._conn.execute("PRAGMA wal_checkpoint(RESTART)") as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_LOCKED or disk_full(exc):
                # this connection's own reader, or no room to copy into the database file (not a
                # reader holding the log; the transaction itself then fails as ArchiveFull if it
                # needs room): try again before the next transaction
                log_archive("debug", "archive.checkpoint.restart-deferred", reason=str(exc))
                return
            problem: str | None = str(exc)
        else:
            problem = None if row is None or not row[0] else "a reader kept it"
        log_archive("debug", "archive.checkpoint.restart", wal_frames=state.frames, problem=problem)
        if problem is None:
            self._restart_at = self._held_frames = 0
            if self._checkpointer.note_released():
                log_archive("info", "archive.wal.released", path=str(self._path))
            return
        self._restart_at = state.octets + _checkpointer.WAL_HARD_OCTETS
        self._held_frames = max(self._held_frames, state.frames)
        words = wal_held(self._path, state, busy_s, problem)
        if self._checkpointer.note_held(datetime.now(UTC), words):
            log_archive("warning", "archive.wal.held", path=str(self._path), problem=words)
