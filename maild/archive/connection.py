"""The archive's connection: open, schema migration, transactions and the archive guard.

:class:`ArchiveConnection` holds the daemon's one ``aiosqlite`` connection. Opening creates the file
privately (:mod:`maild.archive.archive_file`), sets WAL with ``synchronous=FULL`` (every commit is
fsync'ed before it returns) and ``wal_autocheckpoint=0`` (the WAL is copied into the database file
by :mod:`maild.archive.checkpointer`'s thread, not after each commit; the writer keeps it under
:data:`~maild.archive.checkpointer.WAL_HARD_OCTETS`) and runs the migrations of
:mod:`maild.archive.schema` up to ``SCHEMA_VERSION`` (``PRAGMA user_version``), each in one
transaction. Every write goes through
:meth:`ArchiveConnection._atomic_call` (the whole transaction one call of aiosqlite's thread:
``BEGIN IMMEDIATE``, the statements, ``COMMIT``) or :meth:`ArchiveConnection._atomic` (a transaction
whose steps await between statements): one ``BEGIN IMMEDIATE`` ... ``COMMIT``, shielded from
cancellation. :meth:`ArchiveConnection.verify_identity` is the archive guard checked before every
deletion on a server. The record classes composed into :class:`maild.archive.store.Store` build on
this class. No RFC applies here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import structlog

from maild.archive import checkpointer as _checkpointer
from maild.archive import fts
from maild.archive.archive_file import (
    _close_guard,
    _create_private,
    _open_guard,
    _sqlite_problem,
    set_archive_mode,
)
from maild.archive.checkpointer import Checkpointer, wal_held
from maild.archive.counters import ArchiveCounters
from maild.archive.schema import _MIGRATIONS, PAGE_SIZE, SCHEMA_VERSION, _split_sql
from maild.archive.wal_guard import index_replaced, unrecovered_log_refusal, wal_problem
from maild.errors import ArchiveNeedsAdmin, StoreError
from maild.spool import Spool

T = TypeVar("T")
_log = structlog.get_logger("maild.archive")


TRANSACTION_LEFT_OPEN = "a transaction could not be rolled back and stays open"
"""The words of :attr:`ArchiveConnection.replaced` when the guard failed because a transaction was left
open (:meth:`ArchiveConnection._left_open`), not because the file was replaced: the ``archive_replaced``
alert then advises a restart only (the file on disk is sound), never putting another file back."""

BUSY_TIMEOUT_MS = 10_000
"""How long the writer's connection waits for a lock another connection holds (a reader's, a
checkpoint's), milliseconds; then the statement fails with "database is locked"."""


CACHED_STATEMENTS = 32
"""Prepared statements the writer's connection keeps for reuse (Python's ``sqlite3`` statement cache,
least recently used out; its default is 128). The store's ``IN (?,?,...)`` look-ups are one SQL text
per list length, 10-35 KB prepared each, so the default cache filled with up to a hundred of them
(1.2-1.8 MB of SQLite's memory at one account's peak: docs/performance.md, "Session 9: memory of one
account"). What runs again stays cached in 32: a batch's 8 statements and its few look-ups, the
daemon's status and scheduling queries. The look-ups are now padded to ten lengths per shape
(:mod:`maild.archive.in_list`), so they are few texts too."""


def _log_archive(level: str, event: str, **fields: Any) -> None:
    """Log an event of the archive's own (its write-ahead log), not of the account whose batch ran
    into it: in an empty context, so that the structlog context variables of that account's task
    (``account``, ``organisation``: :mod:`maild.service.scheduler`) are not merged into it."""
    contextvars.Context().run(getattr(_log, level), event, **fields)


class ArchiveFull(StoreError):
    """A write transaction failed because the archive's file system is full: SQLite's ``SQLITE_FULL``
    ("database or disk is full"), or ``ENOSPC``/``EDQUOT`` from a write of the archive's own. The
    transaction was rolled back: nothing of it is stored. A fetch cycle takes it as a failure on
    this machine's side (kind ``"local"``, :data:`maild.model.ARCHIVE_FULL_PREFIX`): the messages
    stay on the server and are retried at every cycle (:mod:`maild.fetch.cycle`)."""


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the archive's file system is full: SQLite's primary result code
    ``SQLITE_FULL`` (https://www.sqlite.org/rescode.html#full), or an OSError ``ENOSPC``/``EDQUOT``."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


class ArchiveReplaced(StoreError):
    """The open archive is no longer the file at its path (deleted, renamed, replaced), or its
    schema marker changed: nothing may be deleted on any server until maild is restarted."""


# The modules of the Python steps are imported by the step, when a migration runs: an archive whose
# schema is current (every open but the first after an upgrade) does not load them (some 3 ms of CPU
# per process; docs/performance.md, "Session 9: small start-up costs"; tests/unit/test_lazy_migrations.py).


async def _fill_cc_headers(conn: aiosqlite.Connection) -> None:
    from maild.archive.cc_fill import fill_cc_headers

    await fill_cc_headers(conn)


async def _add_document_flag(conn: aiosqlite.Connection) -> None:
    from maild.archive.document_flag import add_document_flag

    await add_document_flag(conn)


async def _upgrade_layout(conn: aiosqlite.Connection) -> None:
    from maild.archive.layout import upgrade_layout

    await upgrade_layout(conn)


async def _add_failure_kind(conn: aiosqlite.Connection) -> None:
    from maild.archive.failure_kind import add_failure_kind

    await add_failure_kind(conn)


_MIGRATION_STEPS: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    9: fts.migrate_to_contentless,
    12: _fill_cc_headers,
    13: _add_document_flag,
    14: _upgrade_layout,
    15: _add_failure_kind,
}
"""Python steps of schema versions, run after the version's SQL in its transaction; each imports its
module when it runs (``fts`` is loaded anyway: the store uses it)."""
_FOREIGN_KEYS_OFF: frozenset[int] = frozenset({14})
"""Versions whose transaction runs with foreign keys off (``messages`` rebuilt: SQLite's 12-step
ALTER procedure; the step itself runs ``PRAGMA foreign_key_check`` before the commit)."""


def _wal_path(path: Path) -> Path:
    """The write-ahead log of the archive at ``path`` (SQLite's name: the path plus ``-wal``)."""
    return path.with_name(path.name + "-wal")


def _shm_path(path: Path) -> Path:
    """The write-ahead log's index of the archive at ``path`` (SQLite's name: the path plus ``-shm``)."""
    return path.with_name(path.name + "-shm")


def _identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or None when it does not exist.

    Raises:
        OSError: it cannot be looked at (permissions, I/O).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _with_connection(conn: aiosqlite.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In aiosqlite's thread: ``fn`` called with the ``sqlite3`` connection and ``args``."""
    return fn(conn._conn, *args)


def _scalar_of(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    """In aiosqlite's thread: the first column of the first row of ``sql``, or None."""
    cur = db.execute(sql, params)
    try:
        row = cur.fetchone()
    finally:
        cur.close()
    return row[0] if row else None


def _rows_of(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """In aiosqlite's thread: every row of ``sql``."""
    cur = db.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()


def _run_statements(
    db: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]]
) -> None:
    """In aiosqlite's thread, inside the caller's transaction: each statement, ``many`` selecting
    ``executemany``."""
    for sql, params, many in statements:
        if many:
            db.executemany(sql, params)
        else:
            db.execute(sql, params)


def _still_open(db: sqlite3.Connection) -> bool:
    """In aiosqlite's thread: whether the connection is inside a transaction."""
    return db.in_transaction


class TransactionLeftOpen(sqlite3.OperationalError):
    """A read transaction begun in aiosqlite's thread could not be ended: its ``ROLLBACK`` failed
    (:func:`maild.archive.cycle_reads.read_account` then calls :meth:`ArchiveConnection._left_open`)."""


def _in_transaction(db: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In aiosqlite's thread: ``BEGIN IMMEDIATE``, ``fn(db, *args)``, ``COMMIT`` (fsync'ed,
    ``synchronous=FULL``), the whole transaction in one call; on any error ``ROLLBACK`` and the error
    raised (a failed ``ROLLBACK`` is logged: the first error is the one to report; the caller finds
    the transaction still open and stops trusting the connection: :meth:`ArchiveConnection._left_open`)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db, *args)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                _log_archive("warning", "archive.rollback.failed", error=str(exc))
        raise
    return result


def newer_schema_refusal(path: Path) -> str | None:
    """The refusal of an archive whose schema is newer than this maild's, read through a read-only
    connection (which never checkpoints the log into the file nor deletes the side files when it
    closes, as the writer's last connection does: QA of session 14); None when it is not newer, or
    when it cannot be read so (then the writer's open says why)."""
    if not path.is_file():
        return None
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = int(probe.execute("PRAGMA user_version").fetchone()[0])
        finally:
            probe.close()
    except sqlite3.Error:
        return None
    if version <= SCHEMA_VERSION:
        return None
    return (
        f"archive {path} has schema version {version}, newer than this maild ({SCHEMA_VERSION});"
        " upgrade maild"
    )


async def _shielded(transaction: Coroutine[Any, Any, T]) -> T:
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
        self._wal_restart_at = 0
        """WAL octets from which :meth:`_bound_wal` tries its next ``RESTART`` (0: from the bound)."""
        self._wal_held_frames = 0
        """While a reader holds the WAL: its frames when a ``RESTART`` last failed; fewer frames later
        mean the log started again (released). 0 when not held."""
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
        newer = newer_schema_refusal(path)
        if newer is not None:
            raise ArchiveNeedsAdmin(newer)
        try:
            _create_private(path)
            conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=CACHED_STATEMENTS)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open archive {path}: {exc}") from None
        store = cls(conn, path)
        try:
            await store._setup()
            set_archive_mode(path)  # after the version check: a newer maild's archive is left as it is
            store.checkpointer.committed()  # what the migrations left in the WAL, if that much
            store._guard_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            store._wal_identity = _identity(_wal_path(path))
            with contextlib.suppress(OSError):  # none: the log's contents go unchecked
                store._shm_fd = os.open(_shm_path(path), os.O_RDONLY | os.O_CLOEXEC)
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
        try:
            opened = os.fstat(fd)
        except OSError as exc:
            return f"cannot be checked: {exc.strerror}"
        if opened.st_nlink < 1:
            return "was deleted under the running daemon"
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return "was renamed or deleted under the running daemon"
        except OSError as exc:
            return f"cannot be checked: {exc.strerror}"
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            return "was replaced by another file under the running daemon"
        if self._wal_identity is not None:
            # Commits go to the write-ahead log first: once it is deleted, they go to a file with no
            # name, and a crash before the next checkpoint loses them (and the messages deleted on the
            # servers after them). Found by the QA of session 11 (`rm maild.sqlite3-wal`).
            wal = _wal_path(self.path)
            try:
                now = _identity(wal)
            except OSError as exc:
                return f"cannot be checked: {wal.name}: {exc.strerror}"
            if now is None:
                return f"lost its write-ahead log {wal.name} under the running daemon (deleted)"
            if now != self._wal_identity:
                return f"had its write-ahead log {wal.name} replaced under the running daemon"
            if self._shm_fd is not None:  # the -shm holds every process's locks (QA of session 12)
                replaced = index_replaced(_shm_path(self.path), self._shm_fd)
                if replaced is not None:
                    return replaced
            # cut or overwritten in place: the same file, without the commits SQLite lists in it
            # (QA of session 12); seen twice before it counts, as the stop lasts until a restart
            if self._shm_fd is not None and wal_problem(wal, self._shm_fd) is not None:
                cut = wal_problem(wal, self._shm_fd)
                if cut is not None:
                    return cut
        try:
            version = await self._scalar("PRAGMA user_version")
        except sqlite3.Error as exc:
            return f"cannot be read: {exc}"
        if version != SCHEMA_VERSION:
            return f"has schema marker {version}, not {SCHEMA_VERSION}"
        return None

    async def _setup(self) -> None:
        try:
            version = await self._scalar("PRAGMA user_version")
            if version > SCHEMA_VERSION:  # before any PRAGMA that writes (journal_mode): left untouched
                raise ArchiveNeedsAdmin(
                    f"archive {self.path} has schema version {version}, newer than this maild "
                    f"({SCHEMA_VERSION}); upgrade maild"
                )
            if version == 0:
                await self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"archive {self.path}: cannot enable WAL journal mode (got {mode})")
            await self._conn.execute("PRAGMA synchronous = FULL")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            await self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # a -wal file a reader let grow past the bound shrinks back to it at the first commit
            # after the log starts again (https://www.sqlite.org/pragma.html#pragma_journal_size_limit)
            await self._conn.execute(f"PRAGMA journal_size_limit = {_checkpointer.WAL_HARD_OCTETS}")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                await self._migrate_to(target, version)
            # checkpoints from now on in maild.archive.checkpointer's thread, not after each COMMIT
            await self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {_sqlite_problem(exc, self.path)}") from None

    async def _migrate_to(self, target: int, found: int) -> None:
        """Apply schema version ``target`` (its SQL, then its Python step) in one transaction.

        Raises:
            ArchiveFull: the file system is full (``SQLITE_FULL``): nothing of ``target`` is stored,
                the archive stays at ``target - 1``, which the next open upgrades again.
            StoreError: SQLite failed otherwise (rolled back alike).
        """
        keys_off = target in _FOREIGN_KEYS_OFF
        if keys_off:  # a no-op inside a transaction: set before BEGIN
            await self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(_MIGRATIONS[target]):
                    await self._conn.execute(statement)
                if target in _MIGRATION_STEPS:
                    await _MIGRATION_STEPS[target](self._conn)
                    self._index_rebuilt |= _MIGRATION_STEPS[target] is fts.migrate_to_contentless
                await self._conn.execute(f"PRAGMA user_version = {target}")
                await self._conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on SQLITE_FULL: a ROLLBACK then fails ("no transaction
                # is active") and hid the full disk behind its own words (QA of session 14)
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._conn.execute("ROLLBACK")
                raise
            finally:
                if keys_off:
                    await self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            problem = _sqlite_problem(exc, self.path)
            if disk_full(exc):
                problem += f"; free space on the file system holding {self.path.parent}"
            raise (ArchiveFull if disk_full(exc) else StoreError)(
                f"archive {self.path}: upgrading schema version {found} to {SCHEMA_VERSION} failed at"
                f" version {target}, which was rolled back (the archive is at version {target - 1},"
                f" the next start goes on from there): {problem}"
            ) from None

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
        cut = wal_problem(_wal_path(self.path), shm) if shm is not None else None
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
        result: T = await conn._execute(_with_connection, conn, fn, args)  # type: ignore[no-untyped-call]
        return result

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of one query, or None: one call of aiosqlite's thread
        (before session 14: three, the cursor's execute, fetch and close)."""
        return await self._call(_scalar_of, sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        """Every row of one query: one call of aiosqlite's thread (before session 14: three).

        Raises:
            StoreError: SQLite failed.
        """
        try:
            return await self._call(_rows_of, sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {_sqlite_problem(exc, self.path)}") from None

    async def _write(
        self,
        statements: Iterable[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]],
        *,
        keeps_locations: bool = False,
    ) -> None:
        """Run statements in one IMMEDIATE transaction; ``many`` selects executemany.
        ``keeps_locations``: the statements change no ``locations`` row (the locations cache stays)."""
        todo = list(statements)
        await self._atomic_call(_run_statements, todo, what="writing", keeps_locations=keeps_locations)

    async def _atomic_call(
        self, fn: Callable[..., T], *args: Any, what: str, keeps_locations: bool = False
    ) -> T:
        """Run ``fn(db, *args)`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, the whole
        transaction one call of aiosqlite's thread (:func:`_in_transaction`: no round trip for
        ``BEGIN`` and ``COMMIT`` of their own; session 14). Otherwise as :meth:`_atomic`: shielded
        from cancellation, the same lock, WAL bound, counters and errors; when this returns, the
        transaction is committed and fsync'ed (``synchronous=FULL``), exactly as after ``COMMIT``.

        Raises:
            StoreError: SQLite failed (``ArchiveFull``: the disk is full); the transaction was rolled
                back, nothing of it is stored.
        """

        async def run() -> T:
            return await self._call(_in_transaction, fn, args)

        return await _shielded(self._transaction(run, what, keeps_locations, whole=True))

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
        return await _shielded(self._transaction(work, what, keeps_locations))

    async def _transaction(
        self, work: Callable[[], Awaitable[T]], what: str, keeps_locations: bool, *, whole: bool = False
    ) -> T:
        """``work`` in a transaction under the write lock; ``whole``: ``work`` runs the transaction
        itself, ``BEGIN`` to ``COMMIT`` (:meth:`_atomic_call`), else it is wrapped in one here."""
        async with self._write_lock:
            self._generation += 1
            self._locations_generation += not keeps_locations
            try:
                await self._bound_wal()
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
            still_open = await self._call(_still_open)
        except ValueError:  # the connection is closed: nothing stays open
            return
        if still_open:
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

    async def _bound_wal(self) -> None:
        """Before a write transaction: if the WAL holds :data:`~maild.archive.checkpointer.WAL_HARD_OCTETS`
        or more, copy all of it into the database file now (``PRAGMA wal_checkpoint(RESTART)``, in
        aiosqlite's thread, after the checkpointer's copy under way, waiting up to
        :data:`BUSY_TIMEOUT_MS` for readers), so that this transaction starts the log again from its
        beginning.

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
        state = self.checkpointer.wal_state()
        if state is not None and state.frames < self._wal_held_frames:
            # the log started again on its own (the reader ended, the checkpointer's PASSIVE copy
            # caught up, and a transaction began after it): released without a RESTART of ours
            self._wal_restart_at = self._wal_held_frames = 0
            if self.checkpointer.note_released():
                _log_archive("info", "archive.wal.released", path=str(self.path))
        if state is None or state.octets < max(self._wal_restart_at, _checkpointer.WAL_HARD_OCTETS):
            return
        # the checkpointer's copy first (none starts meanwhile: they start after commits), so that
        # the RESTART does not poll SQLite's busy handler for it
        await asyncio.to_thread(self.checkpointer.wait_idle, BUSY_TIMEOUT_MS / 1000)
        try:
            async with self._conn.execute("PRAGMA wal_checkpoint(RESTART)") as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_LOCKED or disk_full(exc):
                # this connection's own reader, or no room to copy into the database file (not a
                # reader holding the log; the transaction itself then fails as ArchiveFull if it
                # needs room): try again before the next transaction
                _log_archive("debug", "archive.checkpoint.restart-deferred", reason=str(exc))
                return
            problem: str | None = str(exc)
        else:
            problem = None if row is None or not row[0] else "a reader kept it"
        _log_archive("debug", "archive.checkpoint.restart", wal_frames=state.frames, problem=problem)
        if problem is None:
            self._wal_restart_at = self._wal_held_frames = 0
            if self.checkpointer.note_released():
                _log_archive("info", "archive.wal.released", path=str(self.path))
            return
        self._wal_restart_at = state.octets + _checkpointer.WAL_HARD_OCTETS
        self._wal_held_frames = max(self._wal_held_frames, state.frames)
        words = wal_held(self.path, state, BUSY_TIMEOUT_MS / 1000, problem)
        if self.checkpointer.note_held(datetime.now(UTC), words):
            _log_archive("warning", "archive.wal.held", path=str(self.path), problem=words)
