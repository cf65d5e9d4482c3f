"""The archive's writer: connection, schema migration, transactions, locations and batches.

The ``store_*`` modules are the only ones that contain SQL: this one (the daemon's ``aiosqlite``
connection), :mod:`maild.archive.schema` (migration scripts), :mod:`maild.archive.reader` (read-only
queries) and :mod:`maild.archive.move_queries` (``maild migrate``'s records).

Layout: the tables and the version that added each are listed in :mod:`maild.archive.schema`
(``PRAGMA user_version``); docs/archive.md documents them for readers such as the CRM.

Durability: WAL with ``synchronous=FULL``, so every commit is fsync'ed before it returns; a message
is deleted on a server only after the commit that stores it has returned (see ``fetch.py``).

Readers in the archive's group: the database file is made :data:`ARCHIVE_FILE_MODE` (``0640``) and
SQLite gives its ``-wal`` and ``-shm`` side files the same mode. A read-only reader (``mode=ro``)
needs both side files to exist, and one without write access to the directory cannot create them;
SQLite deletes them when its last writing connection closes. :meth:`Store.close` therefore
checkpoints the WAL to empty and closes while a read-only guard connection of its own still reads,
so SQLite keeps both files (see docs/archive.md, "Reading while the daemon is stopped").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite
import structlog

from maild.archive import fts
from maild.archive.counters import ArchiveCounters
from maild.archive.index_text import index_text
from maild.archive.schema import (
    _MIGRATIONS,
    PAGE_SIZE,
    QUERY_CHUNK,
    SCHEMA_VERSION,
    _split_sql,
    failure_key_text,
    parse_utc,
    utc_text,
)
from maild.errors import StoreError
from maild.message import sha256_hex, summarise
from maild.model import (
    AccountHistory,
    IMAPKey,
    Location,
    MessageKey,
    POP3Key,
    Protocol,
    RetrievedMessage,
    StoreOutcome,
)

T = TypeVar("T")
_log = structlog.get_logger("maild.archive")


class ArchiveReplaced(StoreError):
    """The open archive is no longer the file at its path (deleted, renamed, replaced), or its
    schema marker changed: nothing may be deleted on any server until maild is restarted."""

ARCHIVE_FILE_MODE = 0o640
"""Mode of the archive file; SQLite gives its ``-wal`` and ``-shm`` files the same mode when it creates
them. Group-readable, so members of the archive's group (the daemon's group; the state directory is
``0750``) may read it, never write it."""
SIDE_FILE_SUFFIXES = ("-wal", "-shm")


@dataclass(frozen=True, slots=True)
class _Prepared:
    key: MessageKey
    msg: RetrievedMessage
    sha256: str
    row: tuple[Any, ...]
    index: tuple[str, ...]


_INSERT_MESSAGE = (
    "INSERT INTO messages (sha256, size_octets, message_id, date, from_header, to_header,"
    " subject, stored_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FTS = fts.insert_sql()
LARGE_BLOB_OCTETS = 2**20
"""Messages at least this large are written with :func:`_insert_large`, not bound as a parameter:
binding a blob costs SQLite two copies of it (measured: +52 MB for 25 MB, against +2 MB)."""
_BLOB_CHUNK_OCTETS = 2**20
_MIGRATION_STEPS: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    9: fts.migrate_to_contentless,
}
"""Python steps of schema versions, run after the version's SQL in its transaction."""


def _insert_large(db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Insert one message row with its raw octets written through incremental blob I/O.

    Runs in aiosqlite's thread, inside the caller's transaction (so it is stored with the batch or
    not at all): ``zeroblob(n)`` reserves the octets, then ``blobopen`` writes them in place, from
    a memoryview, without SQLite copying the whole message first.
    """
    raw = row[-1]
    cur = db.execute(_INSERT_MESSAGE.replace("?)", "zeroblob(?))"), (*row[:-1], len(raw)))
    rowid = cur.lastrowid
    cur.close()
    assert rowid is not None
    with db.blobopen("messages", "raw", rowid) as blob, memoryview(raw) as view:
        for start in range(0, len(view), _BLOB_CHUNK_OCTETS):
            blob.write(view[start : start + _BLOB_CHUNK_OCTETS])


def set_archive_mode(path: Path) -> None:
    """Give the archive file and its existing ``-wal``/``-shm`` files :data:`ARCHIVE_FILE_MODE`.

    Raises:
        OSError: chmod failed (the file belongs to another user).
    """
    for name in (path, *(path.with_name(path.name + s) for s in SIDE_FILE_SUFFIXES)):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o777 != ARCHIVE_FILE_MODE:
                os.chmod(name, ARCHIVE_FILE_MODE)


def _open_guard(path: Path) -> sqlite3.Connection:
    """A read-only connection inside a read transaction: while it reads, no other connection of this
    process can take the exclusive lock that deleting the WAL side files needs (see :meth:`Store.close`)."""
    guard = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        guard.execute("BEGIN")
        guard.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlite3.Error:
        guard.close()
        raise
    return guard


def _close_guard(guard: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        guard.execute("COMMIT")
    guard.close()


def _prepare(batch: Sequence[RetrievedMessage], stored_at: str) -> list[_Prepared]:
    """Hash, summarise and extract the index text of a batch (CPU work, in a worker thread)."""
    out = []
    for msg in batch:
        digest = sha256_hex(msg.raw)
        h = summarise(msg.raw)
        row = (
            digest,
            len(msg.raw),
            h.message_id,
            utc_text(h.date) if h.date else None,
            h.from_,
            h.to,
            h.subject,
            stored_at,
            msg.raw,
        )
        out.append(_Prepared(msg.key, msg, digest, row, index_text(msg.raw, h).row()))
    return out


#: Mode of directories created for the archive.
ARCHIVE_DIR_MODE = 0o750


def _create_private(path: Path) -> None:
    """Create the archive's directory (0750) and an empty archive file (0640) if missing, whatever
    the umask, so that SQLite never creates them world-readable; an existing file keeps its mode.

    Raises:
        OSError: the directory or file cannot be created.
    """
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=ARCHIVE_DIR_MODE)
            os.chmod(directory, ARCHIVE_DIR_MODE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, ARCHIVE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, ARCHIVE_FILE_MODE)
    finally:
        os.close(fd)


def _sqlite_problem(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's words for ``exc``, made specific where they are vague: a read-only file system
    ("disk I/O error" or "attempt to write a readonly database") is named as such."""
    text = str(exc)
    if "readonly" in text or "disk I/O error" in text:
        with contextlib.suppress(OSError):
            if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
                return f"the file system holding {path.parent} is read-only ({text})"
        if not os.access(path, os.W_OK):
            return f"the archive file is not writable by this user ({text})"
    return text


class Store:
    """The archive database. Use :meth:`open`; close with :meth:`close` or ``async with``.

    All methods raise :class:`StoreError` when SQLite fails. Each write method is one transaction:
    if cancelled before its commit returns, nothing of it is stored; the SQL already running in
    aiosqlite's thread completes or rolls back on its own.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path, guard_fd: int | None = None) -> None:
        self._conn = conn
        self.path = path
        self._guard_fd = guard_fd
        """A descriptor of the file opened, kept to tell whether it is still the one at :attr:`path`."""
        self.replaced: str | None = None
        """Why the archive guard failed (sticky until restart), or None; see :meth:`verify_identity`."""
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._generation = 0
        """Bumped when any transaction of this connection begins and ends (see :meth:`locations`)."""
        self._locations_cache: dict[str, tuple[tuple[int, int], dict[MessageKey, Location]]] = {}
        self._index_rebuilt = False
        """True when opening migrated the archive through a version that rebuilt the full-text index."""
        self.counters: ArchiveCounters | None = None
        """Figures kept current by each committed batch once :meth:`keep_counters`
        made them (the daemon); None otherwise."""

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) the archive at ``path`` and migrate it to :data:`SCHEMA_VERSION`.

        Raises:
            StoreError: the file cannot be opened, is not a maild archive, or is newer than this maild.
        """
        try:
            _create_private(path)
            conn = await aiosqlite.connect(path, isolation_level=None)
            set_archive_mode(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open archive {path}: {exc}") from None
        store = cls(conn, path)
        try:
            await store._setup()
            store._guard_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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

    async def verify_identity(self) -> None:
        """Check that the open archive is still the file at :attr:`path` with this maild's schema.

        Run at the start of every fetch cycle and immediately before every server-side deletion:
        a message committed into a file that was deleted or replaced meanwhile is not durable at
        all. Checked: the device and inode at :attr:`path` equal those of the file opened, its link
        count is above zero, and ``PRAGMA user_version`` (the schema marker) is
        :data:`~maild.archive.schema.SCHEMA_VERSION`. A mismatch is sticky: every later call raises
        at once, for every account, until maild is restarted; it is logged once at error level.

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
            if version == 0:
                await self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"archive {self.path}: cannot enable WAL journal mode (got {mode})")
            await self._conn.execute("PRAGMA synchronous = FULL")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            await self._conn.execute("PRAGMA busy_timeout = 10000")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"archive {self.path} has schema version {version}, newer than this maild "
                    f"({SCHEMA_VERSION}); upgrade maild"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
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
                    await self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {_sqlite_problem(exc, self.path)}") from None

    async def close(self) -> None:
        """Checkpoint the WAL, then close the connection, keeping the ``-wal`` and ``-shm`` files. Idempotent.

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
        fd, self._guard_fd = self._guard_fd, None
        if fd is not None:
            os.close(fd)
        guard: sqlite3.Connection | None = None
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            guard = await asyncio.to_thread(_open_guard, self.path)
        except sqlite3.Error:
            pass
        try:
            await self._conn.close()
        finally:
            if guard is not None:
                await asyncio.to_thread(_close_guard, guard)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        try:
            async with self._conn.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {_sqlite_problem(exc, self.path)}") from None

    async def _write(
        self, statements: Iterable[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]]
    ) -> None:
        """Run statements in one IMMEDIATE transaction; ``many`` selects executemany."""
        todo = list(statements)

        async def work() -> None:
            for sql, params, many in todo:
                if many:
                    await self._conn.executemany(sql, params)
                else:
                    await self._conn.execute(sql, params)

        await self._atomic(work, "writing")

    async def _atomic(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``work`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, atomically.

        The transaction runs in a task of its own, shielded from cancellation: if the caller is
        cancelled, the transaction still ends (committed, or rolled back on error) before the
        cancellation propagates, so the connection never stays inside a half-done transaction.

        Raises:
            StoreError: SQLite failed; the transaction was rolled back.
        """
        task = asyncio.ensure_future(self._transaction(work, what))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it; the cancellation wins
            raise

    async def _transaction(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        async with self._write_lock:
            self._generation += 1
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = await work()
                    await self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"archive {self.path}: {what}: {_sqlite_problem(exc, self.path)}") from None
            finally:
                self._generation += 1
        return result

    # -- accounts ---------------------------------------------------------------------------------

    async def ensure_account(
        self, name: str, organisation: str, employee: str, protocol: Protocol, now: datetime
    ) -> None:
        """Record the account, or update its organisation and employee (no write when unchanged).

        Raises:
            StoreError: the account exists with another protocol (the protocol is fixed for an
                account's life; add the mailbox again under a new name instead).
        """
        rows = await self._all(
            "SELECT protocol, organisation, employee FROM accounts WHERE name = ?", (name,)
        )
        if rows and rows[0][0] != protocol:
            raise StoreError(
                f"account {name} was created as {rows[0][0]} and cannot become {protocol}; "
                "add the mailbox again as a new account (see 'Moving a mailbox from POP3 to IMAP')"
            )
        if rows and tuple(rows[0][1:]) == (organisation, employee):
            return  # nothing to write: a daemon starts on an archive that cannot be written (issue 15)
        await self._write(
            [
                (
                    "INSERT INTO accounts (name, organisation, employee, protocol, created_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET organisation = excluded.organisation,"
                    " employee = excluded.employee",
                    (name, organisation, employee, protocol, utc_text(now)),
                    False,
                )
            ]
        )

    # -- locations --------------------------------------------------------------------------------

    async def locations(self, account: str) -> dict[MessageKey, Location]:
        """Return every server identity recorded for ``account``: POP3Key or IMAPKey to its Location.

        The result is cached per account and reused (as a fresh dict) while nothing changed: no
        transaction of this connection began or ended since (:attr:`_generation`) and no other
        connection committed (SQLite's ``PRAGMA data_version``). A no-op cycle so costs one PRAGMA
        instead of reading and parsing every row.
        """
        generation = self._generation
        version = (generation, int(await self._scalar("PRAGMA data_version")))
        cached = self._locations_cache.get(account)
        if cached is not None and cached[0] == version and self._generation == generation:
            return dict(cached[1])
        out = await self._read_locations(account)
        if self._generation == generation:  # no transaction began or ended meanwhile
            self._locations_cache[account] = (version, out)
            return dict(out)
        self._locations_cache.pop(account, None)
        return out

    async def _read_locations(self, account: str) -> dict[MessageKey, Location]:
        rows = await self._all(
            "SELECT uidl, mailbox, uidvalidity, uid, message, first_fetched_at, gone_at, deleted_at"
            " FROM locations WHERE account = ?",
            (account,),
        )
        out: dict[MessageKey, Location] = {}
        # A batch's rows share one timestamp: parse each distinct text once (a no-op cycle reads every row).
        moments: dict[str, datetime] = {}

        def moment(text: str) -> datetime:
            parsed = moments.get(text)
            if parsed is None:
                parsed = moments[text] = parse_utc(text)
            return parsed

        for uidl, mailbox, uidvalidity, uid, message, first, gone, deleted in rows:
            key: MessageKey = POP3Key(uidl) if uidl is not None else IMAPKey(mailbox, uidvalidity, uid)
            out[key] = Location(
                message=message,
                first_fetched_at=moment(first),
                gone_at=moment(gone) if gone else None,
                deleted_at=moment(deleted) if deleted else None,
            )
        return out

    async def store_batch(
        self, account: str, batch: Sequence[RetrievedMessage], now: datetime
    ) -> StoreOutcome:
        """Store a batch of retrieved messages for ``account`` in one durable transaction.

        Each distinct message (by SHA-256 of its raw octets) is stored once; each server identity is
        linked to it once. Storing the same batch twice changes nothing the second time.

        Returns:
            Counts of what was new (see :class:`StoreOutcome`).

        Raises:
            StoreError: SQLite failed; nothing of the batch is stored.

        When this returns, the batch is on disk (WAL fsync'ed, ``synchronous=FULL``). If cancelled
        before that, nothing of it is stored.
        """
        if not batch:
            return StoreOutcome()
        stamp = utc_text(now)
        prepared = await asyncio.to_thread(_prepare, batch, stamp)
        outcome = await self._atomic(
            lambda: self._insert_batch(account, prepared, stamp), f"storing for account {account}"
        )
        if self.counters is not None:
            self.counters.add(account, outcome)
        return outcome

    async def _insert_batch(self, account: str, prepared: list[_Prepared], stamp: str) -> StoreOutcome:
        digests = list(dict.fromkeys(p.sha256 for p in prepared))
        existing: dict[str, int] = {}
        await self._lookup_ids(digests, existing)
        new_rows = {p.sha256: p.row for p in prepared if p.sha256 not in existing}
        new_messages = len(new_rows)
        if new_rows:
            small = [row for row in new_rows.values() if len(row[-1]) < LARGE_BLOB_OCTETS]
            if small:
                await self._conn.executemany(_INSERT_MESSAGE, small)
            for row in new_rows.values():
                if len(row[-1]) >= LARGE_BLOB_OCTETS:
                    # aiosqlite 0.22's queue to its thread (pinned; tests/unit/test_store.py checks it)
                    await self._conn._execute(_insert_large, self._conn._conn, row)  # type: ignore[no-untyped-call]
            await self._lookup_ids(list(new_rows), existing)
            indexed = {p.sha256: p.index for p in prepared if p.sha256 in new_rows}
            await self._conn.executemany(
                _INSERT_FTS, [(existing[digest], *values) for digest, values in indexed.items()]
            )
        # One executemany per key kind instead of one round trip to SQLite's thread per message. Keys
        # already linked are found first (inside this transaction, so nobody adds one meanwhile); the
        # batch's own duplicates are linked once, as ON CONFLICT DO NOTHING did one row at a time.
        linked = await self._linked_keys(account, [p.key for p in prepared])
        pop_rows: list[tuple[Any, ...]] = []
        imap_rows: list[tuple[Any, ...]] = []
        octets = 0
        for p in prepared:
            key = p.key
            if key in linked:
                continue
            linked.add(key)
            octets += len(p.msg.raw)
            if isinstance(key, POP3Key):
                pop_rows.append((account, existing[p.sha256], key.uidl, stamp))
            else:
                internaldate = utc_text(p.msg.internaldate) if p.msg.internaldate else None
                flags = " ".join(sorted(p.msg.flags)) if p.msg.flags else None
                missing = " ".join(p.msg.missing) if p.msg.missing else None
                imap_rows.append(
                    (
                        account,
                        existing[p.sha256],
                        key.mailbox,
                        key.uidvalidity,
                        key.uid,
                        internaldate,
                        flags,
                        stamp,
                        missing,
                    )
                )
        linked_ids = {row[1] for row in pop_rows} | {row[1] for row in imap_rows}
        account_messages = len(linked_ids - await self._messages_of(account, linked_ids))
        if pop_rows:
            await self._conn.executemany(
                "INSERT INTO locations (account, message, uidl, first_fetched_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (account, uidl) WHERE uidl IS NOT NULL DO NOTHING",
                pop_rows,
            )
        if imap_rows:
            await self._conn.executemany(
                "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
                " first_fetched_at, missing_items) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account, mailbox, uidvalidity, uid) WHERE uid IS NOT NULL DO NOTHING",
                imap_rows,
            )
        # a message that arrived has no failure record any more (schema v4, maild.archive.failures)
        await self._conn.executemany(
            "DELETE FROM retrieval_failures WHERE account = ? AND key = ?",
            [(account, failure_key_text(p.key)) for p in prepared],
        )
        links = len(pop_rows) + len(imap_rows)
        if links:  # the account's history counts in this transaction (issue 17: no undercount after a crash)
            await self._conn.execute(_COUNT_FETCHED, (account, links, octets))
        return StoreOutcome(
            new_messages=new_messages,
            new_links=links,
            octets=octets,
            account_messages=account_messages,
            new_octets=sum(len(row[-1]) for row in new_rows.values()),
        )

    async def _messages_of(self, account: str, ids: Iterable[int]) -> set[int]:
        """The subset of message row ``ids`` already linked to ``account``."""
        found: set[int] = set()
        wanted = sorted(ids)
        for i in range(0, len(wanted), QUERY_CHUNK):
            chunk = wanted[i : i + QUERY_CHUNK]
            sql = (
                "SELECT DISTINCT message FROM locations WHERE account = ?"  # noqa: S608
                f" AND message IN ({','.join('?' * len(chunk))})"
            )
            async with self._conn.execute(sql, (account, *chunk)) as cur:
                found.update(row[0] for row in await cur.fetchall())
        return found

    async def _linked_keys(self, account: str, keys: Sequence[MessageKey]) -> set[MessageKey]:
        """The subset of ``keys`` that already have a location row for ``account``."""
        found: set[MessageKey] = set()
        uidls = list({k.uidl for k in keys if isinstance(k, POP3Key)})
        for i in range(0, len(uidls), QUERY_CHUNK):
            chunk = uidls[i : i + QUERY_CHUNK]
            sql = f"SELECT uidl FROM locations WHERE account = ? AND uidl IN ({','.join('?' * len(chunk))})"  # noqa: S608
            async with self._conn.execute(sql, (account, *chunk)) as cur:
                found.update(POP3Key(row[0]) for row in await cur.fetchall())
        by_box: dict[tuple[str, int], list[int]] = {}
        for k in keys:
            if isinstance(k, IMAPKey):
                by_box.setdefault((k.mailbox, k.uidvalidity), []).append(k.uid)
        for (mailbox, uidvalidity), uids in by_box.items():
            unique = sorted(set(uids))
            for i in range(0, len(unique), QUERY_CHUNK):
                some = unique[i : i + QUERY_CHUNK]
                sql = (
                    "SELECT uid FROM locations WHERE account = ? AND mailbox = ? AND uidvalidity = ?"  # noqa: S608
                    f" AND uid IN ({','.join('?' * len(some))})"
                )
                async with self._conn.execute(sql, (account, mailbox, uidvalidity, *some)) as cur:
                    found.update(IMAPKey(mailbox, uidvalidity, row[0]) for row in await cur.fetchall())
        return found

    async def _lookup_ids(self, digests: Sequence[str], into: dict[str, int]) -> None:
        """Add SHA-256 hex digest -> message row id for each of ``digests`` present in the archive."""
        for i in range(0, len(digests), QUERY_CHUNK):
            chunk = digests[i : i + QUERY_CHUNK]
            sql = f"SELECT sha256, id FROM messages WHERE sha256 IN ({','.join('?' * len(chunk))})"  # noqa: S608
            async with self._conn.execute(sql, chunk) as cur:
                into.update({row[0]: row[1] for row in await cur.fetchall()})

    async def update_presence(
        self, account: str, gone: Sequence[MessageKey], back: Sequence[MessageKey], now: datetime
    ) -> None:
        """Record that ``gone`` keys are no longer on the server and ``back`` keys are there again."""
        if not gone and not back:
            return
        stamp = utc_text(now)
        await self._write(
            [
                *(_key_update(account, "gone_at = ?", (stamp,), gone)),
                *(_key_update(account, "gone_at = NULL", (), back)),
            ]
        )

    async def mark_deleted(self, account: str, keys: Sequence[MessageKey], now: datetime) -> None:
        """Record that maild deleted ``keys`` on the server (POP3: after ``+OK`` to QUIT)."""
        stamp = utc_text(now)
        await self._write(
            _key_update(account, "deleted_at = ?, gone_at = coalesce(gone_at, ?)", (stamp, stamp), keys)
        )

    async def archived(
        self, account: str, keys: Sequence[MessageKey], *, require_delivery: bool = False
    ) -> set[MessageKey]:
        """Return the subset of ``keys`` whose message is in the archive for ``account`` right now.

        Checked immediately before any server-side deletion: a key qualifies only if its location row
        exists and the linked message row holds raw octets of the recorded size, and, with
        ``require_delivery`` (the account has ``deliver_maildir``), a delivery row records that the
        message's Maildir file is durable too.
        """
        found: set[MessageKey] = set()
        delivered = (
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.account = l.account AND d.message = l.message)"
            if require_delivery
            else ""
        )
        pop = [k for k in keys if isinstance(k, POP3Key)]
        for i in range(0, len(pop), QUERY_CHUNK):
            chunk = pop[i : i + QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self._all(
                "SELECT l.uidl FROM locations l JOIN messages m ON m.id = l.message"  # noqa: S608
                f" WHERE l.account = ? AND l.uidl IN ({marks}) AND length(m.raw) = m.size_octets{delivered}",
                (account, *(k.uidl for k in chunk)),
            )
            found.update(POP3Key(r[0]) for r in rows)
        imap = [k for k in keys if isinstance(k, IMAPKey)]
        for k in imap:
            rows = await self._all(
                "SELECT 1 FROM locations l JOIN messages m ON m.id = l.message WHERE l.account = ?"  # noqa: S608
                " AND l.mailbox = ? AND l.uidvalidity = ? AND l.uid = ? AND length(m.raw) = m.size_octets"
                + delivered,
                (account, k.mailbox, k.uidvalidity, k.uid),
            )
            if rows:
                found.add(k)
        return found

    # -- deliveries to the account's Maildir (see maildir.py) -------------------------------------

    async def undelivered(self, account: str) -> list[PendingDelivery]:
        """Messages linked to ``account`` without a delivery row for it, in the order they were linked.

        The mailbox is that of the message's first location for the account (None for POP3); a message
        in several mailboxes of one account is delivered once.
        """
        rows = await self._all(
            "SELECT l.message, m.sha256, m.size_octets, l.mailbox FROM locations l"
            " JOIN messages m ON m.id = l.message WHERE l.account = ? AND NOT EXISTS"
            " (SELECT 1 FROM deliveries d WHERE d.account = l.account AND d.message = l.message)"
            " ORDER BY l.first_fetched_at, l.id",
            (account,),
        )
        out: dict[int, PendingDelivery] = {}
        for message, digest, size, mailbox in rows:
            out.setdefault(message, PendingDelivery(message, digest, size, mailbox))
        return list(out.values())

    async def raw_messages(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Return message row id -> raw octets for each of ``ids`` in the archive."""
        return {message: bytes(raw) for message, raw in (await self._message_column("raw", ids)).items()}

    async def _message_column(
        self, column: Literal["raw", "size_octets"], ids: Sequence[int]
    ) -> dict[int, Any]:
        """Return message row id -> ``column`` of ``messages`` for each of ``ids``, in chunked queries."""
        out: dict[int, Any] = {}
        for i in range(0, len(ids), QUERY_CHUNK):
            chunk = list(ids[i : i + QUERY_CHUNK])
            rows = await self._all(
                f"SELECT id, {column} FROM messages WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            )
            out.update({int(r[0]): r[1] for r in rows})
        return out

    async def record_deliveries(
        self, account: str, deliveries: Sequence[tuple[int, str]], now: datetime
    ) -> None:
        """Record in one durable transaction that each (message row id, file path) is in the Maildir.

        A row already there is kept (the first path wins). The row is the "delivered" marker: a message
        with a row is never delivered again, even if the office deleted or moved its file.
        """
        if not deliveries:
            return
        stamp = utc_text(now)
        await self._write(
            [
                (
                    "INSERT INTO deliveries (account, message, path, delivered_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (account, message) DO NOTHING",
                    [(account, message, path, stamp) for message, path in deliveries],
                    True,
                )
            ]
        )

    # -- IMAP mailboxes: UIDVALIDITY per mailbox (v2 table ``mailboxes``) --------------------------

    async def mailbox_states(self, account: str) -> dict[str, MailboxState]:
        """Return readable mailbox name to its recorded UIDVALIDITY state, for IMAP ``account``."""
        rows = await self._all(
            "SELECT mailbox, uidvalidity, uidnext, changed_at FROM mailboxes WHERE account = ?", (account,)
        )
        return {r[0]: MailboxState(int(r[1]), r[2], parse_utc(r[3])) for r in rows}

    async def record_mailbox_states(
        self, account: str, states: Sequence[tuple[str, int, int | None]], now: datetime
    ) -> None:
        """Record (mailbox, UIDVALIDITY, UIDNEXT or None) as last seen, in one durable transaction.

        ``changed_at`` becomes ``now`` when a mailbox is first recorded or its UIDVALIDITY differs
        from the recorded one; when only UIDNEXT moved it keeps its value.
        """
        if not states:
            return
        stamp = utc_text(now)
        await self._write(
            [
                (
                    "INSERT INTO mailboxes (account, mailbox, uidvalidity, uidnext, changed_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, mailbox) DO UPDATE SET"
                    " changed_at = CASE WHEN mailboxes.uidvalidity = excluded.uidvalidity"
                    " THEN mailboxes.changed_at ELSE excluded.changed_at END,"
                    " uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext",
                    [(account, mailbox, validity, uidnext, stamp) for mailbox, validity, uidnext in states],
                    True,
                )
            ]
        )

    async def mailbox_identities(self, account: str, mailbox: str) -> list[tuple[int, str | None, int]]:
        """Return (message row id, Message-ID or None, size in octets) of each distinct message that
        IMAP ``account`` holds or held in ``mailbox``, under any UIDVALIDITY."""
        rows = await self._all(
            "SELECT DISTINCT m.id, m.message_id, m.size_octets FROM locations l"
            " JOIN messages m ON m.id = l.message"
            " WHERE l.account = ? AND l.mailbox = ? AND l.uid IS NOT NULL",
            (account, mailbox),
        )
        return [(int(r[0]), r[1], int(r[2])) for r in rows]

    async def relink(self, account: str, links: Sequence[tuple[IMAPKey, int]], now: datetime) -> int:
        """Record that each IMAPKey now names an archived message (row id), in one durable transaction.

        Used after a UIDVALIDITY change, for messages recognised without downloading them. Each new
        location row copies first-fetch time, INTERNALDATE and flags from the message's earliest
        location for the account in that mailbox (so ``delete-after`` counts from the first fetch),
        falling back to ``now``. A key already recorded is left as it is.

        Returns:
            The number of location rows added.
        """
        if not links:
            return 0
        stamp = utc_text(now)

        async def work() -> int:
            added = 0
            for key, message in links:
                async with self._conn.execute(
                    "SELECT first_fetched_at, internaldate, flags FROM locations"
                    " WHERE account = ? AND message = ? AND mailbox = ? AND uid IS NOT NULL"
                    " ORDER BY first_fetched_at, id LIMIT 1",
                    (account, message, key.mailbox),
                ) as cur:
                    row = await cur.fetchone()
                first, internaldate, flags = row if row is not None else (stamp, None, None)
                cur = await self._conn.execute(
                    "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
                    " first_fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, mailbox, uidvalidity, uid) WHERE uid IS NOT NULL DO NOTHING",
                    (account, message, key.mailbox, key.uidvalidity, key.uid, internaldate, flags, first),
                )
                added += cur.rowcount
                await cur.close()
            return added

        return await self._atomic(work, f"relinking for account {account}")

    # -- full-text index (v3 table ``messages_fts``) ------------------------------------------------

    async def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the full-text index from the stored messages; safe while the daemon stores more.

        A new index is filled beside the old one (:data:`maild.archive.fts.REBUILD_TABLE`), one
        transaction per chunk of :data:`maild.archive.fts.FILL_CHUNK_OCTETS`, so searches meanwhile
        use the old index and the daemon keeps storing (and indexing into the old one). A last
        transaction indexes what was stored meanwhile and puts the new index in the old one's place.
        If opening the archive just migrated it through a version that rebuilt the index (version
        8), that is not done twice.

        Args:
            progress: called with (messages done, total) after each chunk.

        Returns:
            The number of messages indexed.

        Raises:
            StoreError: SQLite failed, or messages were purged during the rebuild; the old index
                stays in use.
        """
        if self._index_rebuilt:  # opening just did it (schema migration): not twice
            self._index_rebuilt = False
            total = int(await self._scalar("SELECT count(*) FROM messages"))
            if progress is not None:
                progress(total, total)
            return total
        return await fts.rebuild(self._conn, self._atomic, progress)

    # -- status -----------------------------------------------------------------------------------

    async def message_counts(self) -> dict[str, int]:
        """Return account name to the number of distinct archived messages linked to it."""
        rows = await self._all("SELECT account, count(DISTINCT message) FROM locations GROUP BY account")
        return {r[0]: r[1] for r in rows}

    async def on_server_summary(self) -> dict[str, tuple[int, datetime | None]]:
        """Per account: (archived messages still on its server, earliest first-fetch time among them, UTC).

        "Still on the server" means not recorded as gone or deleted at the last cycle.
        """
        rows = await self._all(
            "SELECT account, count(*), min(first_fetched_at) FROM locations"
            " WHERE gone_at IS NULL AND deleted_at IS NULL GROUP BY account"
        )
        return {r[0]: (int(r[1]), parse_utc(r[2]) if r[2] else None) for r in rows}

    async def totals(self) -> tuple[int, int]:
        """Return (distinct messages, total octets) in the archive."""
        rows = await self._all("SELECT count(*), coalesce(sum(size_octets), 0) FROM messages")
        return int(rows[0][0]), int(rows[0][1])

    async def keep_counters(self) -> ArchiveCounters:
        """Count the archive once and keep the counts current with every committed batch from now
        on (:attr:`counters`; the daemon's status answers from them).

        Raises:
            StoreError: SQLite failed.
        """
        counters = ArchiveCounters()
        messages, octets = await self.totals()
        counters.replace(await self.message_counts(), messages, octets)
        self.counters = counters
        return counters

    # -- account history (schema version 6) ----------------------------------------------------

    async def account_histories(self) -> dict[str, AccountHistory]:
        """Every account's remembered history, by account name (accounts without cycles are absent)."""
        rows = await self._all(_SELECT_HISTORY)

        def moment(text: str | None) -> datetime | None:
            return parse_utc(text) if text else None

        return {
            r[0]: AccountHistory(
                r[0], moment(r[1]), moment(r[2]), r[3], moment(r[4]), moment(r[5]), *map(int, r[6:])
            )
            for r in rows
        }

    async def record_history(self, history: AccountHistory) -> None:
        """Replace an account's history row in one durable transaction.

        ``fetched_messages`` and ``fetched_octets`` are written only when the row is new: each
        committed batch adds to them in its own transaction (see :meth:`store_batch`).

        Raises:
            StoreError: SQLite failed (for example the disk is full); the old row stays.
        """

        def text(moment: datetime | None) -> str | None:
            return utc_text(moment) if moment is not None else None

        h = history
        row = (
            h.account, text(h.last_success), text(h.last_push), h.last_error, text(h.last_error_at),
            text(h.failing_since), h.consecutive_failures, h.cycles_ok, h.cycles_failed,
            h.fetched_messages, h.fetched_octets, h.auth_failures,
        )  # fmt: skip
        await self._write([(_REPLACE_HISTORY, row, False)])

    async def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when healthy)."""
        rows = await self._all("PRAGMA integrity_check")
        return str(rows[0][0])


_HISTORY_COLUMNS = (
    "account", "last_success", "last_push", "last_error", "last_error_at", "failing_since",
    "consecutive_failures", "cycles_ok", "cycles_failed", "fetched_messages", "fetched_octets",
    "auth_failures",
)  # fmt: skip
_SELECT_HISTORY = f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM account_history"  # noqa: S608 - constants
_BATCH_COUNTED = ("fetched_messages", "fetched_octets")
"""Columns :meth:`Store.store_batch` counts in each batch's transaction; :meth:`Store.record_history`
writes them only into a new row."""
_REPLACE_HISTORY = (
    f"INSERT INTO account_history ({', '.join(_HISTORY_COLUMNS)})"  # noqa: S608 - constants
    f" VALUES ({', '.join('?' * len(_HISTORY_COLUMNS))}) ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _HISTORY_COLUMNS[1:] if c not in _BATCH_COUNTED)
)
_COUNT_FETCHED = (
    "INSERT INTO account_history (account, fetched_messages, fetched_octets) VALUES (?, ?, ?)"
    " ON CONFLICT (account) DO UPDATE SET fetched_messages = fetched_messages + excluded.fetched_messages,"
    " fetched_octets = fetched_octets + excluded.fetched_octets"
)


@dataclass(frozen=True, slots=True)
class MailboxState:
    """What the archive recorded about one IMAP mailbox of an account.

    Attributes:
        uidvalidity: the UIDVALIDITY last seen (RFC 9051 section 2.3.1.1).
        uidnext: the UIDNEXT last seen, or None when the server did not send it.
        changed_at: when this UIDVALIDITY was first recorded (UTC).
    """

    uidvalidity: int
    uidnext: int | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """An archived message not yet delivered to an account's Maildir.

    Attributes:
        message: the ``messages.id`` row id.
        sha256: its SHA-256, hex.
        size_octets: its size in octets.
        mailbox: the IMAP mailbox it was fetched from (readable name), or None for POP3.
    """

    message: int
    sha256: str
    size_octets: int
    mailbox: str | None


def _key_update(
    account: str, assignment: str, values: tuple[Any, ...], keys: Iterable[MessageKey]
) -> list[tuple[str, list[Sequence[Any]], bool]]:
    pop: list[Sequence[Any]] = [(*values, account, k.uidl) for k in keys if isinstance(k, POP3Key)]
    imap: list[Sequence[Any]] = [
        (*values, account, k.mailbox, k.uidvalidity, k.uid) for k in keys if isinstance(k, IMAPKey)
    ]
    out: list[tuple[str, list[Sequence[Any]], bool]] = []
    if pop:
        out.append((f"UPDATE locations SET {assignment} WHERE account = ? AND uidl = ?", pop, True))  # noqa: S608
    if imap:
        out.append(
            (
                f"UPDATE locations SET {assignment} WHERE account = ? AND mailbox = ? AND uidvalidity = ?"  # noqa: S608
                " AND uid = ?",
                imap,
                True,
            )
        )
    return out
