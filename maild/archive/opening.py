"""Opening the archive's file: the connection's settings and the schema upgrade to this maild's version.

:func:`connect` creates the file privately (:mod:`maild.archive.archive_file`) and opens the writer's
``aiosqlite`` connection; :func:`set_up` sets WAL with ``synchronous=FULL`` (every commit is fsync'ed
before it returns) and ``wal_autocheckpoint=0`` (the WAL is copied into the database file by
:mod:`maild.archive.checkpointer`'s thread, not after each commit; the writer keeps it under
:data:`~maild.archive.checkpointer.WAL_HARD_OCTETS`: :mod:`maild.archive.wal_bound`) and runs the
migrations of :mod:`maild.archive.schema` up to ``SCHEMA_VERSION`` (``PRAGMA user_version``), each in
one transaction with its Python step (:data:`_MIGRATION_STEPS`). Run by
:meth:`maild.archive.connection.ArchiveConnection.open`. No RFC applies here.

May import: the standard library, aiosqlite and the archive's file, schema and error modules.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from maild.archive import checkpointer as _checkpointer
from maild.archive import fts
from maild.archive.archive_errors import ArchiveFull, disk_full
from maild.archive.archive_file import _create_private, _sqlite_problem
from maild.archive.schema import _MIGRATIONS, PAGE_SIZE, SCHEMA_VERSION, _split_sql
from maild.archive.thread_calls import scalar_of, with_connection
from maild.errors import ArchiveNeedsAdmin, StoreError

BUSY_TIMEOUT_MS = 10_000
"""How long the writer's connection waits for a lock another connection holds (a reader's, a
checkpoint's), milliseconds; then the statement fails with "database is locked". Read at each use
(:mod:`maild.archive.wal_bound` waits as long for readers before a ``RESTART``)."""

CACHED_STATEMENTS = 32
"""Prepared statements the writer's connection keeps for reuse (Python's ``sqlite3`` statement cache,
least recently used out; its default is 128). The store's ``IN (?,?,...)`` look-ups are one SQL text
per list length, 10-35 KB prepared each, so the default cache filled with up to a hundred of them
(1.2-1.8 MB of SQLite's memory at one account's peak: docs/performance.md, "Session 9: memory of one
account"). What runs again stays cached in 32: a batch's 8 statements and its few look-ups, the
daemon's status and scheduling queries. The look-ups are now padded to ten lengths per shape
(:mod:`maild.archive.in_list`), so they are few texts too."""


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


def newer_schema(path: Path) -> str | None:
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


async def connect(path: Path) -> aiosqlite.Connection:
    """The writer's connection to the archive at ``path``, the file created ``0600`` first when missing
    (autocommit: every transaction is begun explicitly; :data:`CACHED_STATEMENTS`).

    Raises:
        StoreError: the file cannot be created or opened.
    """
    try:
        _create_private(path)
        return await aiosqlite.connect(path, isolation_level=None, cached_statements=CACHED_STATEMENTS)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open archive {path}: {exc}") from None


async def set_up(conn: aiosqlite.Connection, path: Path) -> bool:
    """Set the writer's connection up (WAL, ``synchronous=FULL``, foreign keys, busy timeout, WAL size
    limit) and migrate the archive at ``path`` to :data:`~maild.archive.schema.SCHEMA_VERSION`.

    Returns:
        Whether a migration rebuilt the full-text index (the store then does not rebuild it again).

    Raises:
        ArchiveNeedsAdmin: the archive is newer than this maild (left untouched).
        ArchiveFull: the file system is full (the migration under way rolled back).
        StoreError: SQLite failed; a migration that failed was rolled back.
    """
    rebuilt = False
    try:
        version = await _scalar(conn, "PRAGMA user_version")
        if version > SCHEMA_VERSION:  # before any PRAGMA that writes (journal_mode): left untouched
            raise ArchiveNeedsAdmin(
                f"archive {path} has schema version {version}, newer than this maild "
                f"({SCHEMA_VERSION}); upgrade maild"
            )
        if version == 0:
            await conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = await _scalar(conn, "PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise StoreError(f"archive {path}: cannot enable WAL journal mode (got {mode})")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # a -wal file a reader let grow past the bound shrinks back to it at the first commit
        # after the log starts again (https://www.sqlite.org/pragma.html#pragma_journal_size_limit)
        await conn.execute(f"PRAGMA journal_size_limit = {_checkpointer.WAL_HARD_OCTETS}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            rebuilt |= await _migrate_to(conn, path, target, version)
        # checkpoints from now on in maild.archive.checkpointer's thread, not after each COMMIT
        await conn.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error as exc:
        raise StoreError(f"archive {path}: {_sqlite_problem(exc, path)}") from None
    return rebuilt


async def _scalar(conn: aiosqlite.Connection, sql: str) -> Any:
    """The first column of the first row of ``sql``, or None: one call of aiosqlite's thread, as
    :meth:`~maild.archive.connection.ArchiveConnection._scalar`."""
    return await conn._execute(with_connection, conn, scalar_of, (sql, ()))  # type: ignore[no-untyped-call]


async def _migrate_to(conn: aiosqlite.Connection, path: Path, target: int, found: int) -> bool:
    """Apply schema version ``target`` (its SQL, then its Python step) in one transaction; whether its
    step rebuilt the full-text index.

    Raises:
        ArchiveFull: the file system is full (``SQLITE_FULL``): nothing of ``target`` is stored,
            the archive stays at ``target - 1``, which the next open upgrades again.
        StoreError: SQLite failed otherwise (rolled back alike).
    """
    keys_off = target in _FOREIGN_KEYS_OFF
    rebuilt = False
    if keys_off:  # a no-op inside a transaction: set before BEGIN
        await conn.execute("PRAGMA foreign_keys = OFF")
    try:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(_MIGRATIONS[target]):
                await conn.execute(statement)
            if target in _MIGRATION_STEPS:
                await _MIGRATION_STEPS[target](conn)
                rebuilt = _MIGRATION_STEPS[target] is fts.migrate_to_contentless
            await conn.execute(f"PRAGMA user_version = {target}")
            await conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on SQLITE_FULL: a ROLLBACK then fails ("no transaction
            # is active") and hid the full disk behind its own words (QA of session 14)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
            raise
        finally:
            if keys_off:
                await conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        problem = _sqlite_problem(exc, path)
        if disk_full(exc):
            problem += f"; free space on the file system holding {path.parent}"
        raise (ArchiveFull if disk_full(exc) else StoreError)(
            f"archive {path}: upgrading schema version {found} to {SCHEMA_VERSION} failed at"
            f" version {target}, which was rolled back (the archive is at version {target - 1},"
            f" the next start goes on from there): {problem}"
        ) from None
    return rebuilt
