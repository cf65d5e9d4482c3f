"""The archive's connection: its transactions, its write lock and the archive guard.

:class:`ArchiveConnection` holds the daemon's one ``aiosqlite`` connection, opened and migrated by
:mod:`maild.archive.opening`. Every write goes through :meth:`ArchiveConnection._atomic_call` (the
whole transaction one call of aiosqlite's thread: ``BEGIN IMMEDIATE``, the statements, ``COMMIT``;
:func:`maild.archive.thread_calls.in_transaction`) or :meth:`ArchiveConnection._atomic` (a transaction
whose steps await between statements): one ``BEGIN IMMEDIATE`` ... ``COMMIT``, shielded from
cancellation (:func:`maild.archive.thread_calls.shielded`), after the WAL bound
(:mod:`maild.archive.wal_bound`). :meth:`ArchiveConnection.verify_identity` is the archive guard
checked before every deletion on a server (:mod:`maild.archive.file_guard`). The errors are those of
:mod:`maild.archive.archive_errors`. The record classes composed into
:class:`maild.archive.store.Store` build on this class. No RFC applies here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import structlog

from maild.archive import opening
from maild.archive.archive_errors import (
    TRANSACTION_LEFT_OPEN,
    ArchiveFull,
    ArchiveReplaced,
    disk_full,
)
from maild.archive.archive_file import _close_guard, _open_guard, _sqlite_problem, set_archive_mode
from maild.archive.checkpointer import Checkpointer
from maild.archive.counters import ArchiveCounters
from maild.archive.file_guard import file_identity, file_problem, shm_path, wal_path
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.thread_calls import (
    Statement,
    in_transaction,
    rows_of,
    run_statements,
    scalar_of,
    shielded,
    still_open,
    with_connection,
)
from maild.archive.wal_bound import WALBound
from maild.archive.wal_guard import unrecovered_log_refusal, wal_problem
from maild.errors import ArchiveNeedsAdmin, StoreError
from maild.spool import Spool

T = TypeVar("T")
_log = structlog.get_logger("maild.archive")


class ArchiveConnection:
    """The archive's connection and its transactions; :class:`maild.archive.store.Store` holds it
    (``store.db``) and hands it to each of its collaborators.

    All methods raise :class:`StoreError` when SQLite fails. Each write is one transaction: if
    cancelled before its commit returns, nothing of it is stored. What the collaborators share
    beyond the connection (the counters, the spool) is set here, once.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path, guard_fd: int | None = None) -> None:
        self._conn = conn
        self.path = path
        self._guard_fd = guard_fd
        """A descriptor of the file opened, kept to tell whether it is still the one at :attr:`path`."""
        self._shm_fd: int | None = None
        """A descriptor of the ``-shm`` file (the log's index) as opened with the archive, for
        :func:`~maild.archive.wal_guard.wal_problem`; None when it could not be opened."""
        self._wal_identity: tuple[int, int] | None = None
        """Device and inode of the write-ahead log when the archive was opened (it lives as long as the
        connection: SQLite deletes it only when the last connection closes), or None (not checked)."""
        self.replaced: str | None = None
        """Why the archive guard failed (sticky until restart), or None; see :meth:`verify_identity`."""
        self.left_open: str | None = None
        """Why a transaction of this connection stays open (its ``ROLLBACK`` failed: :meth:`_left_open`),
        or None; only a new connection (a restart of maild) ends it."""
        self.on_left_open: Callable[[str], None] | None = None
        """Called once, with :attr:`left_open`'s text, when a transaction is found left open: the daemon
        stops and exits for systemd to restart it (:mod:`maild.service.daemon`); None: nothing more
        than the sticky guard."""
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._generation = 0
        """Bumped when any transaction of this connection begins and ends."""
        self._locations_generation = 0
        """Bumped as :attr:`_generation`, except by transactions that declare they change no
        ``locations`` row (an account's history after each cycle: ``keeps_locations``); the locations
        cache of :class:`~maild.archive.locations.LocationRecords` follows it, so a no-op cycle of
        fifty accounts is not fifty reads of every location."""
        self._index_rebuilt = False
        """True when opening migrated the archive through a version that rebuilt the full-text index."""
        self.counters: ArchiveCounters | None = None
        """Figures kept current by each committed batch once :meth:`keep_counters`
        made them (the daemon); None otherwise."""
        self.checkpointer = Checkpointer(path)
        """Copies the WAL into the database file in its own thread (:mod:`maild.archive.checkpointer`)."""
        self._wal_bound = WALBound(conn, path, self.checkpointer)
        """Keeps the WAL near its bound before each write transaction (:mod:`maild.archive.wal_bound`)."""
        self.spool = Spool(path.parent)
        """Where large messages wait between the socket and their commit (:mod:`maild.spool`): files
        beside the archive, on its file system."""

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating if needed) the archive at ``path`` and migrate it to :data:`SCHEMA_VERSION`.

        Raises:
            StoreError: the file cannot be opened or is not a maild archive; ArchiveNeedsAdmin (a
                StoreError): it is newer than this maild, or its write-ahead log lost commits
                (:func:`~maild.archive.wal_guard.unrecovered_log`).
        """
        lost = unrecovered_log_refusal(path)  # before SQLite rebuilds the index from what is left
        if lost is not None:
            raise ArchiveNeedsAdmin(lost)
        newer = opening.newer_schema(path)
        if newer is not None:
            raise ArchiveNeedsAdmin(newer)
        conn = await opening.connect(path)
        store = cls(conn, path)
        try:
            store._index_rebuilt = await opening.set_up(conn, path)
            set_archive_mode(path)  # after the version check: a newer maild's archive is left as it is
            store.checkpointer.committed()  # what the migrations left in the WAL, if that much
            store._guard_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            store._wal_identity = file_identity(wal_path(path))
            with contextlib.suppress(OSError):  # none: the log's contents go unchecked
                store._shm_fd = os.open(shm_path(path), os.O_RDONLY | os.O_CLOEXEC)
            swept = await asyncio.to_thread(store.spool.sweep)  # named files left by a crash
            if swept:
                _log.info("archive.spool.swept", files=swept)
        except OSError as exc:
            await conn.close()
            raise StoreError(f"cannot open archive {path}: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        return store

    @property
    def writing(self) -> bool:
        """Whether a write transaction of this connection is running or waiting (a read now would
        wait behind it, up to the busy timeout when another process holds the lock)."""
        return self._write_lock.locked()

    @property
    def generation(self) -> int:
        """A number that changes whenever a write transaction of this connection begins or ends."""
        return self._generation

    @property
    def locations_generation(self) -> int:
        """A number that changes whenever a write transaction of this connection that may change
        ``locations`` rows begins or ends (every one but those run with ``keeps_locations``)."""
        return self._locations_generation

    async def verify_identity(self) -> None:
        """Check that the open archive is still the file at :attr:`path` with this maild's schema.

        Run at the start of every fetch cycle and immediately before every server-side deletion:
        a message committed into a file that was deleted or replaced meanwhile is not durable at
        all. Checked: the device and inode at :attr:`path` equal those of the file opened, its link
        count is above zero, its write-ahead log (``-wal``) and the log's index (``-shm``) are still
        the ones there at the open (not deleted, not replaced), and ``PRAGMA user_version`` (the
        schema marker) is :data:`~maild.archive.schema.SCHEMA_VERSION`. A mismatch is sticky: every
        later call raises at once, for every account, until maild is restarted; it is logged once at
        error level.

        Raises:
            ArchiveReplaced: the check failed now or earlier (the text says what was found).
        """
        if self.replaced is not None:
            raise ArchiveReplaced(self.replaced)
        problem = await self._identity_problem()
        if problem is None:
            return
        self.replaced = (
            f"archive {self.path} {problem}; deletions on every server stopped until maild is restarted"
        )
        _log.error("archive.replaced", path=str(self.path), problem=problem)
        raise ArchiveReplaced(self.replaced)

    async def _identity_problem(self) -> str | None:
        fd = self._guard_fd
        if fd is None:
            return None
        problem = file_problem(self.path, fd, self._wal_identity, self._shm_fd)
        if problem is not None:
            return problem
        try:
            version = await self._scalar("PRAGMA user_version")
        except sqlite3.Error as exc:
            return f"cannot be read: {exc}"
        if version != SCHEMA_VERSION:
            return f"has schema marker {version}, not {SCHEMA_VERSION}"
        return None

    async def close(self) -> None:
        """Checkpoint the WAL, then close the connection, keeping the ``-wal`` and ``-shm`` files. Idempotent.

        The checkpointer's thread ends first (a checkpoint it is running finishes).
        SQLite deletes the side files when its last connection closes, and a reader without write
        access to the directory cannot open a WAL database without them. So the WAL is checkpointed
        to empty (``TRUNCATE``: every commit is then in the main file), a read-only guard connection
        starts a read, the writer closes (it cannot take the exclusive lock it needs to delete
        them) and the guard closes (read-only, it never deletes). A failure here leaves the archive
        intact: at worst the side files are deleted as before, or the WAL is not yet checkpointed.
        """
        if self._closed:
            return
        self._closed = True
        await self.checkpointer.stop()
        fd, self._guard_fd = self._guard_fd, None
        if fd is not None:
            os.close(fd)
        shm, self._shm_fd = self._shm_fd, None
        cut = wal_problem(wal_path(self.path), shm) if shm is not None else None
        if shm is not None:
            os.close(shm)
        guard: sqlite3.Connection | None = None
        try:
            if cut is None:  # a log cut under the daemon: copying it would write zeros into the archive
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            guard = await asyncio.to_thread(_open_guard, self.path)
        except sqlite3.Error:
            pass
        try:
            await self._conn.close()
        finally:
            if guard is not None:
                await asyncio.to_thread(_close_guard, guard)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in aiosqlite's thread, ``db`` being the ``sqlite3`` connection:
        one hand-off to that thread and one back, whatever ``fn`` does there (aiosqlite 0.22's
        queue, pinned: tests/unit/test_store.py). ``fn`` must not keep a cursor open past its return.

        Raises:
            whatever ``fn`` raises (``sqlite3.Error`` unmapped); ValueError: the connection is closed.
        """
        conn = self._conn
        result: T = await conn._execute(with_connection, conn, fn, args)  # type: ignore[no-untyped-call]
        return result

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of one query, or None: one call of aiosqlite's thread
        (before session 14: three, the cursor's execute, fetch and close)."""
        return await self._call(scalar_of, sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        """Every row of one query: one call of aiosqlite's thread (before session 14: three).

        Raises:
            StoreError: SQLite failed.
        """
        try:
            return await self._call(rows_of, sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {_sqlite_problem(exc, self.path)}") from None

    async def _write(
        self,
        statements: Iterable[Statement],
        *,
        keeps_locations: bool = False,
    ) -> None:
        """Run statements in one IMMEDIATE transaction; ``many`` selects executemany.
        ``keeps_locations``: the statements change no ``locations`` row (the locations cache stays)."""
        todo = list(statements)
        await self._atomic_call(run_statements, todo, what="writing", keeps_locations=keeps_locations)

    async def _atomic_call(
        self, fn: Callable[..., T], *args: Any, what: str, keeps_locations: bool = False
    ) -> T:
        """Run ``fn(db, *args)`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, the whole
        transaction one call of aiosqlite's thread (:func:`~maild.archive.thread_calls.in_transaction`:
        no round trip for ``BEGIN`` and ``COMMIT`` of their own; session 14). Otherwise as
        :meth:`_atomic`: shielded from cancellation, the same lock, WAL bound, counters and errors;
        when this returns, the transaction is committed and fsync'ed (``synchronous=FULL``), exactly
        as after ``COMMIT``.

        Raises:
            StoreError: SQLite failed (``ArchiveFull``: the disk is full); the transaction was rolled
                back, nothing of it is stored.
        """

        async def run() -> T:
            return await self._call(in_transaction, fn, args)

        return await shielded(self._transaction(run, what, keeps_locations, whole=True))

    async def _atomic(
        self, work: Callable[[], Awaitable[T]], what: str, *, keeps_locations: bool = False
    ) -> T:
        """Run ``work`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, atomically.

        The transaction runs in a task of its own, shielded from cancellation: if the caller is
        cancelled, the transaction still ends (committed, or rolled back on error) before the
        cancellation propagates, so the connection never stays inside a half-done transaction.

        Raises:
            StoreError: SQLite failed; the transaction was rolled back.
        """
        return await shielded(self._transaction(work, what, keeps_locations))

    async def _transaction(
        self, work: Callable[[], Awaitable[T]], what: str, keeps_locations: bool, *, whole: bool = False
    ) -> T:
        """``work`` in a transaction under the write lock; ``whole``: ``work`` runs the transaction
        itself, ``BEGIN`` to ``COMMIT`` (:meth:`_atomic_call`), else it is wrapped in one here."""
        async with self._write_lock:
            self._generation += 1
            self._locations_generation += not keeps_locations
            try:
                await self._wal_bound.before_write()
                if whole:
                    result = await work()
                    self.checkpointer.committed()
                    return result
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = await work()
                    await self._conn.execute("COMMIT")
                    self.checkpointer.committed()
                except BaseException:
                    if self._conn.in_transaction:
                        try:
                            await self._conn.execute("ROLLBACK")
                        except sqlite3.Error as exc:  # the first error is the one to report
                            _log.warning("archive.rollback.failed", error=str(exc))
                    raise
            except sqlite3.Error as exc:
                await self._check_ended(what)
                problem = f"archive {self.path}: {what}: {_sqlite_problem(exc, self.path)}"
                raise (ArchiveFull if disk_full(exc) else StoreError)(problem) from None
            except OSError as exc:
                await self._check_ended(what)
                if not disk_full(exc):
                    raise
                raise ArchiveFull(f"archive {self.path}: {what}: {exc.strerror}") from None
            except BaseException:
                await self._check_ended(what)
                raise
            finally:
                self._generation += 1
                self._locations_generation += not keeps_locations
        return result

    async def _check_ended(self, what: str) -> None:
        """After a write transaction failed, under the write lock: if it is still open (its
        ``ROLLBACK`` failed too), mark the connection untrustworthy (:meth:`_left_open`). Asked in
        aiosqlite's thread, in turn with the other calls (a read of another task may be inside a read
        transaction of its own at this moment, and one call later has ended it)."""
        try:
            is_open = await self._call(still_open)
        except ValueError:  # the connection is closed: nothing stays open
            return
        if is_open:
            self._left_open(what)

    def _left_open(self, what: str) -> None:
        """A transaction of this connection could not be ended: its statements stay applied but not
        committed, visible to every later read of this connection (a batch's rows would look archived,
        and a cycle would delete those messages on the server) and lost at the restart. So the archive
        guard fails from now on, as for a replaced archive (:attr:`replaced`, sticky, logged once at
        error level): no cycle decides and nothing is deleted on any server until maild is restarted
        (QA of session 14). Every later write fails too (SQLite refuses a transaction within one).
        :attr:`on_left_open` is then told once: the daemon stops and exits 75 for systemd to restart
        it, and the new connection starts without the transaction (session 15)."""
        if self.left_open is not None:
            return
        self.left_open = f"archive {self.path}: {what}: {TRANSACTION_LEFT_OPEN}"
        if self.replaced is None:
            self.replaced = f"{self.left_open}; deletions on every server stopped until maild is restarted"
        _log.error("archive.transaction.left-open", path=str(self.path), what=what)
        if self.on_left_open is not None:
            self.on_left_open(self.left_open)
