"""The column order of ``messages``: ``raw`` last (schema 14), and the rebuild that puts it there.

Why: :mod:`maild.archive.batches` inserts a large message as ``zeroblob(n)`` and then writes its octets
through incremental blob I/O. SQLite keeps a zeroblob lazy only when nothing but NULLs follows it in the
record; schema 12 added ``cc_header`` after ``raw`` (``ALTER TABLE ... ADD COLUMN``), so every large
message with a Cc had its n zero octets built in memory and copied (docs/performance.md, "Session 7:
raw last"). The layout rule is written down in :mod:`maild.archive.schema`.

The rebuild is SQLite's 12-step ``ALTER TABLE`` procedure (https://sqlite.org/lang_altertable.html,
section 7) in ONE transaction, with foreign keys off: a table ``messages_layout`` in the order of
:data:`~maild.archive.schema.MESSAGES_COLUMNS`, every row copied with its ``id`` (the rowid that
``messages_fts``, ``locations``, ``deliveries``, ``appends`` and ``document_text`` key on), the old
table dropped, the new one renamed, its indexes made again, ``PRAGMA foreign_key_check`` empty before
the commit. Rows move in chunks (copied, then deleted from the old table), so the pages the old rows
free are reused by the next chunk: the file grows by about one chunk, and the WAL holds about one copy
of the messages until the checkpoint (so the free space needed is a little more than the archive's
size: :func:`space_needed`). A crash (SIGKILL, power loss) at any moment leaves the old layout (the
transaction is not committed) or the new one: never a mix.

Two callers: schema 14's migration step :func:`upgrade_layout` (at open, only below
:data:`LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS` and with the room on disk; otherwise the old order stays,
which works because every query names its columns, and one warning names ``maild compact``), and
``maild compact`` (:func:`compact`, daemon stopped, under the archive lock). No RFC applies here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import aiosqlite
import structlog

from maild.archive.schema import MESSAGES_COLUMNS, messages_create_sql
from maild.errors import StoreError

_log = structlog.get_logger("maild.archive")

_COMPACT_FOLLOWS: ContextVar[bool] = ContextVar("maild_layout_compact_follows", default=False)
"""Set by :func:`compact_follows`: the archive is opened by ``maild compact``, which rewrites it next."""


@contextlib.contextmanager
def compact_follows() -> Iterator[None]:
    """Open the archive inside this block when ``maild compact`` rewrites its layout right after: an
    upgrade that keeps the old order then logs ``archive.layout_kept`` at debug, not the warning to
    stop the daemon and run ``maild compact`` (the command that fixes the layout should not first
    tell the admin to run it). The context follows the task (and the tasks it starts)."""
    token = _COMPACT_FOLLOWS.set(True)
    try:
        yield
    finally:
        _COMPACT_FOLLOWS.reset(token)


LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS = 1 << 30
"""Opening an archive at schema 13 or older rebuilds ``messages`` only when the archive file is at
most this large (1 GiB, about 20 s of disk writes at 100 MB/s; the 273 MB benchmark archive took the
time docs/performance.md records); a larger archive keeps the old column order until ``maild compact``,
so that a daemon's start (systemd's start timeout) never waits for a rewrite of many gigabytes."""
LAYOUT_SPACE_MARGIN_OCTETS = 64 << 20
"""Free space required beyond the WAL's share (:func:`space_needed`) before a rebuild starts (64 MiB):
the file grows by about one chunk before freed pages are reused, and the indexes are made again."""
LAYOUT_CHUNK_OCTETS = 16 << 20
"""Messages copied (then deleted from the old table) per step of the rebuild, by their size (16 MiB; at
least one message): the bound on how much the file grows before freed pages are reused, and the
progress step."""
LAYOUT_BLOB_COPY_OCTETS = 1 << 20
"""Messages at least this large (1 MiB; new ones are stored so from
:data:`maild.archive.batches.LARGE_BLOB_OCTETS`) are copied through incremental blob I/O in parts of
this size, not as one value: ``INSERT ... SELECT`` would hold each such message two or three times
in SQLite's memory (17.4 MB for the benchmark archive, whose largest message is 5 MB)."""
LAYOUT_CHUNK_MESSAGES = 2000
"""At most this many messages per step of the rebuild, whatever their size."""
REBUILD_TABLE = "messages_layout"
"""The new table while the rebuild runs (inside its transaction only: never seen committed)."""

Progress = Callable[[int, int], None]
"""Called with (octets of messages copied, octets of all messages) after each step."""


@dataclass(frozen=True)
class LayoutDecision:
    """What to do with an archive whose ``raw`` is not the last column of ``messages``.

    ``action``: ``"rebuild"`` or ``"keep"``; ``reason``: one line for the log or the admin, naming the
    figures (empty for a rebuild).
    """

    action: Literal["rebuild", "keep"]
    reason: str = ""


@dataclass(frozen=True)
class CompactResult:
    """What :func:`compact` did: ``rebuilt`` False when ``raw`` was already last; messages and their
    octets; seconds of the rebuild (wall time)."""

    rebuilt: bool
    messages: int
    octets: int
    seconds: float


LAYOUT_SPACE_FACTOR_EIGHTHS = 9
"""The WAL of a rebuild, in eighths of the archive's size: 287 MB for the 274 MB benchmark archive
(1.05 times: b-tree pages written again within the transaction), so 9/8 with room to spare."""


def space_needed(archive_octets: int) -> int:
    """Free octets on the archive's file system a rebuild needs: 9/8 of the archive's size (the WAL,
    :data:`LAYOUT_SPACE_FACTOR_EIGHTHS`) plus :data:`LAYOUT_SPACE_MARGIN_OCTETS` (growth by a chunk)."""
    return archive_octets * LAYOUT_SPACE_FACTOR_EIGHTHS // 8 + LAYOUT_SPACE_MARGIN_OCTETS


def decide_at_open(archive_octets: int, free_octets: int, bound_octets: int) -> LayoutDecision:
    """Whether schema 14's step rebuilds ``messages`` now (at open) or keeps the old column order.

    Args:
        archive_octets: size of the archive file (pages times page size), in octets.
        free_octets: free space for an unprivileged user on its file system, in octets.
        bound_octets: the largest archive rebuilt at open (:data:`LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS`).

    Returns:
        ``rebuild`` when the archive is at most ``bound_octets`` and the free space is at least
        :func:`space_needed`; ``keep`` with the reason otherwise (the size is checked first).
    """
    mib = 1 << 20
    if archive_octets > bound_octets:
        return LayoutDecision(
            "keep",
            f"archive of {archive_octets // mib} MiB is above the {bound_octets // mib} MiB rebuilt at open",
        )
    need = space_needed(archive_octets)
    if free_octets < need:
        return LayoutDecision(
            "keep", f"{free_octets // mib} MiB free on its file system, the rebuild needs {need // mib} MiB"
        )
    return LayoutDecision("rebuild")


async def messages_columns(conn: aiosqlite.Connection) -> list[str]:
    """The column names of ``messages``, in their order in each record."""
    async with conn.execute("SELECT name FROM pragma_table_info('messages') ORDER BY cid") as cur:
        return [str(row[0]) for row in await cur.fetchall()]


async def in_layout(conn: aiosqlite.Connection) -> bool:
    """Whether ``messages`` has exactly the columns of :data:`~maild.archive.schema.MESSAGES_COLUMNS`,
    in that order (so ``raw`` last)."""
    return await messages_columns(conn) == [name for name, _decl in MESSAGES_COLUMNS]


async def _archive_octets(conn: aiosqlite.Connection) -> tuple[str, int]:
    """(path of the main database file, its size in octets as pages times page size)."""
    async with conn.execute("SELECT file FROM pragma_database_list WHERE name = 'main'") as cur:
        row = await cur.fetchone()
    path = str(row[0]) if row else ""
    async with conn.execute("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size") as cur:
        size = await cur.fetchone()
    return path, int(size[0]) if size else 0


def free_octets(path: str) -> int:
    """Free octets for an unprivileged user on the file system of the file ``path`` (``statvfs``).

    Raises:
        OSError: the file system cannot be asked.
    """
    st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    return st.f_bavail * st.f_frsize


async def upgrade_layout(conn: aiosqlite.Connection) -> None:
    """Schema 14's step: rebuild ``messages`` with ``raw`` last, or keep the old order (see the module).

    Runs inside the migration's transaction, which :func:`maild.archive.opening.set_up`
    began with foreign keys off for this version. An empty ``messages`` (a new archive) is rebuilt
    always. When kept, one warning ``archive.layout_kept`` names the reason and ``maild compact``
    (at debug inside :func:`compact_follows`: ``maild compact`` itself).

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back: the archive stays at 13).
        StoreError: ``messages`` holds a column this maild does not know (nothing changed).
    """
    if await in_layout(conn):
        return
    path, size = await _archive_octets(conn)
    async with conn.execute("SELECT EXISTS (SELECT 1 FROM messages)") as cur:
        row = await cur.fetchone()
    if row is not None and row[0]:
        try:
            free = await asyncio.to_thread(free_octets, path) if path else 0
        except OSError:
            free = 0
        decision = decide_at_open(size, free, LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS)
        if decision.action == "keep":
            (_log.debug if _COMPACT_FOLLOWS.get() else _log.warning)(
                "archive.layout_kept",
                path=path,
                reason=decision.reason,
                effect="large messages with a Cc cost SQLite twice their size in memory while stored",
                action="stop the daemon and run `maild compact` (rewrites every message once)",
            )
            return
    started = time.monotonic()
    messages, octets = await rebuild_messages(conn)
    if messages:
        _log.info(
            "archive.layout_rebuilt",
            path=path,
            messages=messages,
            octets=octets,
            seconds=round(time.monotonic() - started, 3),
        )


async def rebuild_messages(conn: aiosqlite.Connection, progress: Progress | None = None) -> tuple[int, int]:
    """Copy ``messages`` into the schema 14 column order, keeping every ``id``; in the caller's transaction.

    The caller has turned foreign keys off before beginning the transaction (``PRAGMA foreign_keys``
    is a no-op inside one) and commits or rolls back. Each step copies up to
    :data:`LAYOUT_CHUNK_OCTETS` of messages in id order and deletes them from the old table.

    Args:
        conn: the archive's connection, inside a write transaction, foreign keys off.
        progress: called with (octets copied, octets of all messages) after each step.

    Returns:
        (messages copied, their octets by ``size_octets``).

    Raises:
        sqlite3.Error: SQLite failed, or ``PRAGMA foreign_key_check`` found a row referencing a
            message that is not there (the caller rolls back).
        StoreError: ``messages`` holds a column this maild does not know (it would be lost).
    """
    known = [name for name, _decl in MESSAGES_COLUMNS]
    old = await messages_columns(conn)
    unknown = [c for c in old if c not in known]
    if unknown:
        raise StoreError(
            f"archive's messages table has columns this maild does not know ({', '.join(unknown)}):"
            " is the archive from a newer maild? Nothing changed"
        )
    names = ", ".join(c for c in known if c in old)
    async with conn.execute(
        "SELECT sql FROM sqlite_schema WHERE tbl_name = 'messages' AND type IN ('index', 'trigger')"
        " AND sql IS NOT NULL ORDER BY type, name"
    ) as cur:
        remake = [str(r[0]) for r in await cur.fetchall()]
    async with conn.execute("SELECT count(*), coalesce(sum(size_octets), 0) FROM messages") as cur:
        row = await cur.fetchone()
    total_messages, total_octets = (int(row[0]), int(row[1])) if row else (0, 0)
    await conn.execute(f"DROP TABLE IF EXISTS {REBUILD_TABLE}")
    await conn.execute(messages_create_sql(REBUILD_TABLE))
    copy_sql = (  # names: of MESSAGES_COLUMNS, never from input
        f"INSERT INTO {REBUILD_TABLE} ({names}) SELECT {names} FROM messages"  # noqa: S608
        " WHERE (? IS NULL OR id > ?) AND id <= ? AND length(raw) < ? ORDER BY id"
    )
    fields = ", ".join(c for c in known if c in old and c != "raw")
    large_sql = (  # the row with its octets reserved (a lazy zeroblob: raw is last), then copied in parts
        f"INSERT INTO {REBUILD_TABLE} ({fields}, raw)"  # noqa: S608
        f" SELECT {fields}, zeroblob(length(raw)) FROM messages WHERE id = ?"
    )
    done_messages = done_octets = 0
    after: int | None = None
    while True:
        async with conn.execute(  # length() of a blob reads its size only, not its octets
            "SELECT id, size_octets, length(raw) FROM messages WHERE ? IS NULL OR id > ? ORDER BY id LIMIT ?",
            (after, after, LAYOUT_CHUNK_MESSAGES),
        ) as cur:
            rows = [(int(r[0]), int(r[1]), int(r[2])) for r in await cur.fetchall()]
        if not rows:
            break
        taken = rows[:1]
        octets = rows[0][1]
        for candidate in rows[1:]:
            if octets + candidate[1] > LAYOUT_CHUNK_OCTETS:
                break
            taken.append(candidate)
            octets += candidate[1]
        last, count = taken[-1][0], len(taken)
        bounds = (after, after, last)
        await conn.execute(copy_sql, (*bounds, LAYOUT_BLOB_COPY_OCTETS))
        for message, _size, length in taken:
            if length >= LAYOUT_BLOB_COPY_OCTETS:
                # aiosqlite 0.22's queue to its thread, as maild.archive.batches does for the insert
                await conn._execute(_copy_large, conn._conn, large_sql, message)  # type: ignore[no-untyped-call]
        await conn.execute("DELETE FROM messages WHERE (? IS NULL OR id > ?) AND id <= ?", bounds)
        after = last
        done_messages += count
        done_octets += octets
        if progress is not None:
            progress(done_octets, total_octets)
    if done_messages != total_messages:  # cannot happen inside one transaction; never drop rows
        raise sqlite3.IntegrityError(f"rebuild copied {done_messages} of {total_messages} messages")
    await conn.execute("DROP TABLE messages")
    await conn.execute(f"ALTER TABLE {REBUILD_TABLE} RENAME TO messages")
    for sql in remake:
        await conn.execute(sql)
    async with conn.execute("PRAGMA foreign_key_check") as cur:
        broken = list(await cur.fetchall())
    if broken:
        raise sqlite3.IntegrityError(
            f"rebuild of messages: foreign_key_check found {len(broken)} rows, e.g. {tuple(broken[0])}"
        )
    return done_messages, done_octets


def _copy_large(db: sqlite3.Connection, large_sql: str, message: int) -> None:
    """Copy message ``message`` into the new table in parts of :data:`LAYOUT_BLOB_COPY_OCTETS`.

    Runs in aiosqlite's thread, inside the rebuild's transaction. ``large_sql`` inserts the row with
    ``zeroblob(length(raw))``, lazy because ``raw`` is the new table's last column; both blobs are then
    opened by rowid and the octets moved a part at a time, so SQLite never holds the whole message.
    """
    db.execute(large_sql, (message,)).close()
    with (
        db.blobopen("messages", "raw", message, readonly=True) as source,
        db.blobopen(REBUILD_TABLE, "raw", message) as target,
    ):
        while part := source.read(LAYOUT_BLOB_COPY_OCTETS):
            target.write(part)


async def compact(conn: aiosqlite.Connection, progress: Progress | None = None) -> CompactResult:
    """``maild compact``: rebuild ``messages`` with ``raw`` last whatever the archive's size, crash-safe.

    The caller holds the archive lock (no daemon, no one-shot fetch) and no transaction is open on
    ``conn``. Free space is checked first. Foreign keys are turned off, the rebuild runs in one
    ``BEGIN IMMEDIATE`` ... ``COMMIT``, foreign keys are turned on again, and the WAL is checkpointed
    and truncated (giving its space back). Readers (``maild messages``, the CRM) keep reading
    meanwhile: they see the old layout until the commit.

    If cancelled or killed at any moment: before the commit returns, nothing changed (old layout);
    after, the new layout is durable (``synchronous=FULL``).

    Raises:
        StoreError: not enough free space (one line with both figures; nothing changed), or SQLite
            failed (rolled back: the old layout stays).
    """
    if await in_layout(conn):
        return CompactResult(False, 0, 0, 0.0)
    path, size = await _archive_octets(conn)
    try:
        free = await asyncio.to_thread(free_octets, path)
    except OSError as exc:
        raise StoreError(f"archive {path}: cannot check the free space: {exc.strerror}") from None
    need = space_needed(size)
    if free < need:
        mib = 1 << 20
        raise StoreError(
            f"archive {path}: {free // mib} MiB free on its file system, compacting needs {need // mib} MiB"
            f" ({LAYOUT_SPACE_FACTOR_EIGHTHS}/8 of the archive's {size // mib} MiB for the WAL, plus"
            f" {LAYOUT_SPACE_MARGIN_OCTETS // mib} MiB); free some space and run it again"
            " (nothing changed)"
        )
    started = time.monotonic()
    try:
        await conn.execute("PRAGMA foreign_keys = OFF")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            messages, octets = await rebuild_messages(conn, progress)
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        finally:
            await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise StoreError(f"archive {path}: compacting failed, the old layout stays: {exc}") from None
    seconds = time.monotonic() - started
    _log.info(
        "archive.layout_rebuilt", path=path, messages=messages, octets=octets, seconds=round(seconds, 3)
    )
    return CompactResult(True, messages, octets, seconds)
