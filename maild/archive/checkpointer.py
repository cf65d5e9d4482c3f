"""Checkpoints of the archive's write-ahead log off the commit path: a thread of its own copies the
WAL into the database file while the writer commits the next batch.

Why this is safe: in WAL mode a transaction is durable once its ``COMMIT`` has appended its pages to
the ``-wal`` file and fsync'ed it (``synchronous=FULL``). A checkpoint only copies pages already
committed from the WAL into the database file; a crash before, during or after one loses nothing,
because the next connection to open the archive reads the WAL again (SQLite, "Write-Ahead Logging",
sections 2.1-2.2 and 3, https://www.sqlite.org/wal.html; ``PRAGMA synchronous``,
https://www.sqlite.org/pragma.html#pragma_synchronous). So the checkpoint is not part of maild's
durability, and a message may be deleted on its server once its batch's ``COMMIT`` has returned,
whether the checkpoint has run or not.

Why it is here: SQLite's automatic checkpoint (``wal_autocheckpoint``) runs in the committing
connection, right after its ``COMMIT``, so every thousandth page of a batch made that batch's commit
wait for the copy of the whole WAL, and the next batch's transaction waited behind it. The writer
(:mod:`maild.archive.opening`) now runs with ``wal_autocheckpoint=0`` and tells
:meth:`Checkpointer.committed` after each commit; when the WAL holds :data:`CHECKPOINT_WAL_OCTETS`
not yet copied, the checkpointer's thread runs a ``PASSIVE`` checkpoint on its own connection
(https://www.sqlite.org/c3ref/wal_checkpoint_v2.html), on the second core, while the writer goes on.

The bound. A ``PASSIVE`` checkpoint copies what it can; the log restarts from its beginning only when
a write transaction begins after everything was copied, which a writer that never pauses may not
give it. So before each transaction the writer reads :meth:`Checkpointer.wal_state`; from
:data:`WAL_HARD_OCTETS` on, it runs a ``RESTART`` checkpoint itself (waiting, up to its busy timeout,
for the checkpointer and for readers), and the log starts again from its beginning. A reader that
keeps a read transaction open (a CRM's long query, ``maild backup``) holds back every checkpoint at
the point it reads from: the writer's ``RESTART`` then fails after the busy timeout, and storing goes
on regardless (the WAL grows past the bound, as SQLite's default would let it; one warning
``archive.wal.held`` says so; the next ``RESTART`` is tried after another :data:`WAL_HARD_OCTETS`),
because a reader must never stop the mail from being fetched (docs/archive.md, "Long reads and the
write-ahead log"). Without such a reader the ``-wal`` file stays under the bound plus one transaction.
The daemon's shutdown and the one-shot end with a ``TRUNCATE`` checkpoint, as before
(:meth:`maild.archive.connection.ArchiveConnection.close`).

How full the WAL is comes from the wal-index header in the ``-shm`` file (``mxFrame``, ``nBackfill``;
its format is part of SQLite's stable file format, shared by processes of different SQLite
versions: https://www.sqlite.org/walformat.html, sections 2.2.1-2.2.2), read with one ``pread`` of
:data:`_SHM_HEADER_OCTETS` octets from a file SQLite keeps mapped in memory.

No RFC applies here. May import: the standard library, structlog.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import struct
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from maild.archive.wal_guard import wal_problem

__all__ = [
    "CHECKPOINT_WAL_OCTETS",
    "WAL_HARD_OCTETS",
    "Checkpointer",
    "WalSnapshot",
    "WalState",
]

CHECKPOINT_WAL_OCTETS = 32 * 2**20
"""Octets of pages in the WAL not yet copied into the database file at which the checkpointer runs a
``PASSIVE`` checkpoint (default 32 MiB: SQLite's own 1,000 pages at maild's 32 KiB page size)."""
WAL_HARD_OCTETS = 4 * CHECKPOINT_WAL_OCTETS
"""Octets of pages in the WAL (copied or not; default 128 MiB) from which the writer, before its next
transaction, runs a ``RESTART`` checkpoint itself so that the log starts again from its beginning. The
``-wal`` file stays under this plus one transaction's pages (and one transaction is at most a batch,
bounded by the fetch's memory budget)."""
CHECKPOINTER_BUSY_TIMEOUT_MS = 1000
"""Busy timeout of the checkpointer's own connection, milliseconds (opening it may wait for a lock;
a ``PASSIVE`` checkpoint itself never waits)."""
RECHECK_TIMEOUT_S = 1.0
"""How long :meth:`Checkpointer.recheck_held` waits for the checkpoint it asks for, seconds (default
1): ``maild status`` and the daemon's housekeeping wait at most this long, and only while a reader
holds the WAL."""

_SHM_HEADER_OCTETS = 136
"""The wal-index header: two copies of ``WalIndexHdr`` (48 octets each), then ``WalCkptInfo``."""
_WALINDEX_VERSION = 3007000
_HDR = struct.Struct("=IIIBBHII")  # iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage
_U32 = struct.Struct("=I")
_NBACKFILL_AT = 96
_NBACKFILL_ATTEMPTED_AT = 128
_READ_TRIES = 4

log = structlog.get_logger("maild.archive")


@dataclass(frozen=True, slots=True)
class WalState:
    """How full the WAL is, from the wal-index header (https://www.sqlite.org/walformat.html 2.2).

    Attributes:
        page_size: octets per page (each frame holds one page and a 24-octet header).
        frames: valid frames in the WAL (``mxFrame``); 0 after the log restarted.
        backfilled: of those, frames copied into the database file (``nBackfill``).
        attempted: frames the last checkpoint set out to copy (``nBackfillAttempted``); above
            ``backfilled`` while a checkpoint is copying, or after one was interrupted.
    """

    page_size: int
    frames: int
    backfilled: int
    attempted: int

    @property
    def octets(self) -> int:
        """Octets of pages in the WAL (frame headers not counted)."""
        return self.frames * self.page_size

    @property
    def pending_octets(self) -> int:
        """Octets of pages in the WAL not yet copied into the database file."""
        return max(0, self.frames - self.backfilled) * self.page_size


@dataclass(frozen=True, slots=True)
class WalSnapshot:
    """What an administrator sees of the WAL (``maild status``, ``maild check``, metrics, alerts):
    :meth:`Checkpointer.snapshot`. A stable, read-only view; how checkpoints run is not part of it.

    Attributes:
        octets: octets of pages in the WAL now (:attr:`WalState.octets`), or None when that cannot be
            read (no ``-shm`` file yet).
        held_since: when the writer first found a reader holding the WAL past
            :data:`WAL_HARD_OCTETS` in the current episode (aware, UTC; ``archive.wal.held``), or None
            when it is not held (cleared at ``archive.wal.released``).
        problem: the held episode's cause in words (:func:`wal_held`), or None.
    """

    octets: int | None
    held_since: datetime | None = None
    problem: str | None = None


def read_wal_state(shm_fd: int) -> WalState | None:
    """Read the wal-index header from the ``-shm`` file open at ``shm_fd``.

    Returns None when the header is not there or not initialised, or when its two copies differed
    on every try (a writer was changing it: SQLite's own readers retry likewise).
    """
    for _ in range(_READ_TRIES):
        try:
            data = os.pread(shm_fd, _SHM_HEADER_OCTETS, 0)
        except OSError:
            return None
        if len(data) < _SHM_HEADER_OCTETS:
            return None
        if data[:48] != data[48:96]:
            continue
        version, _, _, is_init, _, size_field, frames, _ = _HDR.unpack_from(data, 0)
        if version != _WALINDEX_VERSION or not is_init:
            return None
        page_size = 65536 if size_field == 1 else size_field
        (backfilled,) = _U32.unpack_from(data, _NBACKFILL_AT)
        (attempted,) = _U32.unpack_from(data, _NBACKFILL_ATTEMPTED_AT)
        return WalState(page_size, frames, backfilled, attempted)
    return None


class Checkpointer:
    """The archive's checkpoints, in a thread of their own with a connection of their own.

    Created unstarted. The thread starts at the first commit that leaves :data:`CHECKPOINT_WAL_OCTETS` to copy
    (so a short-lived command never starts it) and ends in :meth:`stop`.

    A checkpoint that fails (``SQLITE_BUSY`` from another process's checkpoint, an I/O error) is
    logged once (``archive.checkpoint.failed``, warning) and tried again after the next commit; its
    recovery is logged too. Storing goes on meanwhile: the writer's bound (:data:`WAL_HARD_OCTETS`)
    is what keeps the WAL finite then.

    Args:
        path: the archive file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._shm_fd: int | None = None
        self._cond = threading.Condition()
        self._wanted = False
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.failure: str | None = None
        """What the last checkpoint failed with, or None when it succeeded (or none ran)."""
        self.attempts = 0
        """Checkpoints this checkpointer tried."""
        self.checkpoints = 0
        """Of those, the ones that ran (copying every frame that no reader still needs)."""
        self._held_since: datetime | None = None
        self._held_problem: str | None = None
        self._forced = False
        """A checkpoint asked for by :meth:`recheck_held`: run even below :data:`CHECKPOINT_WAL_OCTETS`."""

    def note_held(self, now: datetime, problem: str) -> bool:
        """The writer found a reader holding the WAL past :data:`WAL_HARD_OCTETS` at ``now`` (aware,
        UTC); ``problem`` says so in words. Returns True when this begins an episode (the first
        since the last :meth:`note_released`): the caller logs ``archive.wal.held`` then only."""
        if self._held_since is not None:
            return False
        self._held_since, self._held_problem = now, problem
        return True

    def note_released(self) -> bool:
        """The WAL emptied again. Returns True when this ends an episode (``archive.wal.released``)."""
        if self._held_since is None:
            return False
        self._held_since = self._held_problem = None
        return True

    async def recheck_held(self, timeout_s: float = RECHECK_TIMEOUT_S) -> None:
        """While a reader holds the WAL (:meth:`note_held`): end the episode as soon as no reader
        needs the log any more, without waiting for the writer's next transaction (an idle daemon
        showed "held" until then).

        When the wal-index header says every frame is copied into the database file (or the log
        started again), no reader holds it back: :meth:`note_released` and ``archive.wal.released``.
        Otherwise the thread runs a ``PASSIVE`` checkpoint now (this waits off the event loop up to
        ``timeout_s`` seconds for it) and the header is read again: a reader that ended lets it copy
        everything; one still reading keeps the episode. Costs nothing when not held (the usual
        case): called before ``maild status`` answers and by the daemon's housekeeping.
        """
        if self._held_since is None or self._stopping:
            return
        if not self._copied_all():
            with self._cond:
                self._wanted = self._forced = True
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="maild-checkpointer", daemon=True)
                    self._thread.start()
                self._cond.notify()
            await asyncio.to_thread(self.wait_idle, timeout_s)
            if not self._copied_all():
                return
        if self.note_released():
            log.info("archive.wal.released", path=str(self.path))

    def _copied_all(self) -> bool:
        """Whether the wal-index header says every frame of the WAL is in the database file."""
        state = self.wal_state()
        return state is not None and state.backfilled >= state.frames

    def snapshot(self) -> WalSnapshot:
        """The WAL as an administrator sees it now (:class:`WalSnapshot`). One ``pread`` of the
        wal-index header (:meth:`wal_state`): cheap enough for the event loop, as :meth:`committed`."""
        state = self.wal_state()
        return WalSnapshot(state.octets if state is not None else None, self._held_since, self._held_problem)

    def wal_state(self) -> WalState | None:
        """How full the WAL is now, or None when that cannot be read: the ``-shm`` file does not
        exist yet (no transaction since the archive went into WAL mode) or cannot be opened, or see
        :func:`read_wal_state`. The file is opened at the first call that finds it and kept open."""
        if self._shm_fd is None:
            if self._stopping:
                return None
            try:
                self._shm_fd = os.open(f"{self.path}-shm", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        return read_wal_state(self._shm_fd)

    def committed(self) -> None:
        """Called after each ``COMMIT`` of the writer: wake the thread when the WAL holds
        :data:`CHECKPOINT_WAL_OCTETS` not yet copied. Never waits (called on the event loop)."""
        state = self.wal_state()
        if self._shm_fd is None or self._stopping:
            return
        if state is not None and state.pending_octets < CHECKPOINT_WAL_OCTETS:
            return
        with self._cond:
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="maild-checkpointer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no checkpoint is wanted or running (for tests and benchmarks; never on the
        event loop). Returns False if ``timeout_s`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._wanted or self._busy), timeout_s)

    async def stop(self) -> None:
        """End the thread (a checkpoint running finishes first) and close the ``-shm`` file. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        fd, self._shm_fd = self._shm_fd, None
        if fd is not None:
            os.close(fd)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._wanted or self._stopping)
                    if self._stopping:
                        return
                    self._wanted = False
                    forced, self._forced = self._forced, False
                    self._busy = True
                try:
                    state = self.wal_state()
                    if forced or state is None or state.pending_octets >= CHECKPOINT_WAL_OCTETS:
                        conn = self._checkpoint(conn)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {CHECKPOINTER_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")  # the copy is fsync'ed before the log restarts
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _checkpoint(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One ``PASSIVE`` checkpoint (opening the connection first if needed); its failure logged
        once, its recovery logged. Returns the connection to use next time."""
        self.attempts += 1
        shm = self._shm_fd
        cut = wal_problem(Path(f"{self.path}-wal"), shm) if shm is not None else None
        if cut is not None:  # a checkpoint would copy what is no longer there into the archive file
            if self.failure != cut:
                log.error("archive.checkpoint.refused", path=str(self.path), problem=cut)
            self.failure = cut
            return conn
        try:
            if conn is None:
                conn = self._connect()
            busy, wal_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy:  # the checkpoint lock is held (another checkpoint runs)
                raise sqlite3.OperationalError("database is locked (another checkpoint is running)")
        except (sqlite3.Error, OSError) as exc:
            if self.failure is None:
                log.warning("archive.checkpoint.failed", path=str(self.path), error=str(exc))
            self.failure = str(exc)
            return conn
        if self.failure is not None:
            log.info("archive.checkpoint.recovered", path=str(self.path))
            self.failure = None
        self.checkpoints += 1
        log.debug("archive.checkpoint.complete", wal_frames=wal_frames, copied=copied)
        return conn


def wal_held(path: Path, state: WalState, busy_timeout_s: float, problem: str) -> str:
    """The words of the writer's warning when its ``RESTART`` checkpoint could not empty a WAL past
    :data:`WAL_HARD_OCTETS` for the whole busy timeout: a reader held a read transaction open (or
    another process held the checkpoint lock, or the checkpoint failed: ``problem``)."""
    return (
        f"archive {path}: its write-ahead log holds {state.octets / 2**20:.0f} MiB (bound "
        f"{WAL_HARD_OCTETS / 2**20:.0f} MiB) and could not be copied into the archive for "
        f"{busy_timeout_s:g} s ({problem}): a program reading the archive keeps a read transaction "
        "open, or another process is checkpointing it; storing goes on and the log grows until "
        "that ends"
    )
