"""Backup and restore of the archive: ``maild backup`` and ``maild restore``.

A backup is taken through SQLite's online backup API from a read-only connection, in one step, so
it is one consistent snapshot (the last commit before it started) while the daemon keeps writing:
in WAL mode the writer is not blocked, and a plain file copy of a live database may be torn. The copy
is switched out of WAL mode (one self-contained file), checked with ``PRAGMA integrity_check``,
optionally gzip-compressed, fsync'ed and renamed into place, so ``DEST`` is either complete or absent.

One backup at a time per destination directory (:func:`destination_lock`: an exclusive ``flock``
of the directory itself, held through the copy and ``--keep``'s pruning): a second ``maild
backup`` into the same directory while one runs (the timer's and one by hand) is refused at once with
one line, :class:`BackupBusy`, and writes nothing. Before session 13 the second one failed on the
first one's ``.NAME.partial`` and then deleted it (and its rollback journal) while the first was
still writing it.

A restore (the daemon stopped) checks the backup the same way, keeps the current archive next to it
as ``maild.sqlite3.before-restore-<time>`` (with its ``-wal``), and renames the restored file into
place; the caller then opens it with :class:`maild.archive.store.Store`, which migrates an older
schema forward.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from maild.archive.opening import newer_schema
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import ARCHIVE_FILE_MODE, SIDE_FILE_SUFFIXES
from maild.archive.wal_guard import unrecovered_log_refusal
from maild.errors import StoreError
from maild.fsutil import fsync_dir

BACKUP_FILE_MODE = 0o600
"""Mode of a backup file: it holds every message, so only its owner may read it."""
COPY_CHUNK_OCTETS = 2**20
"""Octets per read when compressing or decompressing."""
GZIP_LEVEL = 6
"""gzip compression level of ``--compress`` (zlib's default trade-off)."""
BACKUP_PREFIX = "maild-"
_GZIP_MAGIC = b"\x1f\x8b"


class BackupBusy(StoreError):
    """Another ``maild backup`` is writing into the same destination directory: this one wrote nothing."""


@contextlib.contextmanager
def destination_lock(dest: Path) -> Iterator[None]:
    """Hold the destination's backup lock while inside: an exclusive, non-blocking ``flock`` on the
    directory ``dest`` (a directory) or the directory of ``dest`` (a file) itself, so that no lock
    file is left there; released when the block ends or the process dies (a killed backup leaves
    no stale lock).

    Raises:
        BackupBusy: another process holds it (a backup into that directory is running).
        OSError: the directory is missing or cannot be opened.
    """
    directory = dest if dest.is_dir() else dest.parent
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupBusy(
                f"another maild backup is writing into {directory}; nothing written: run this one"
                " again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the flock


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What :func:`check_copy` found in a database file.

    Attributes:
        schema_version: its ``PRAGMA user_version``.
        messages: the number of messages it holds.
        octets: its size on disk, in octets.
        damaged: the SHA-256 (hex, the ``messages.sha256`` recorded at store time) of each message
            whose octets no longer hash to it, in ``id`` order, at most :data:`DAMAGED_LISTED`;
            ``damaged_count`` counts them all.
        damaged_count: how many messages are damaged so.
    """

    schema_version: int
    messages: int
    octets: int
    damaged: tuple[str, ...] = ()
    damaged_count: int = 0


def backup_name(now: datetime, compress: bool) -> str:
    """The file name ``maild backup`` uses inside a directory: ``maild-20261130T020000Z.sqlite3[.gz]``."""
    return f"{BACKUP_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}.sqlite3" + (".gz" if compress else "")


DAMAGED_LISTED = 20
"""Damaged messages named by :class:`ArchiveCheck` and ``maild backup``, at most; the rest are counted."""


def _damaged_messages(db: sqlite3.Connection) -> tuple[tuple[str, ...], int]:
    """The messages of ``db`` whose raw octets no longer hash to their recorded SHA-256, as
    (the first :data:`DAMAGED_LISTED` of their digests, how many), one message in memory at a time.

    ``PRAGMA integrity_check`` checks SQLite's structure, never the content of a blob: a flipped bit
    inside a message's octets passes it. Before (QA of session 14) such a copy was a "checked" backup,
    and ``--keep`` went on pruning the older backups that still held the message as it arrived.
    """
    names: list[str] = []
    total = 0
    for digest, raw in db.execute("SELECT sha256, raw FROM messages ORDER BY id"):
        if hashlib.sha256(raw or b"").hexdigest() != digest:
            total += 1
            if len(names) < DAMAGED_LISTED:
                names.append(str(digest))
    return tuple(names), total


def check_copy(path: Path) -> ArchiveCheck:
    """Check that ``path`` is a sound, self-contained maild archive, and which messages' octets no
    longer match their SHA-256 (:attr:`ArchiveCheck.damaged`: reported, not raised; reading every
    message once: about 1 s per GB).

    Raises:
        StoreError: SQLite reports damage, it is not a maild archive, or its schema is newer than this maild.
    """
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise StoreError(f"{path}: integrity check failed: {result}")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if not 1 <= version <= SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {version}; this maild knows versions 1 to {SCHEMA_VERSION}"
            )
        messages = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        damaged, damaged_count = _damaged_messages(db)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a maild archive: {exc}") from None
    finally:
        db.close()
    return ArchiveCheck(version, messages, path.stat().st_size, damaged, damaged_count)


def _snapshot(source: Path, target: Path) -> None:
    """Copy ``source`` into the new empty file ``target`` as one consistent snapshot, then leave WAL mode."""
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open archive {source} read-only: {exc}") from None
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: one step, one read transaction, one snapshot
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StoreError(f"backing up {source}: {exc}") from None
    finally:
        src.close()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(source: Path, dest: Path, *, compress: bool, now: datetime) -> tuple[Path, ArchiveCheck]:
    """Write a consistent, checked copy of the archive ``source`` to ``dest``.

    Args:
        source: the live archive (the daemon may be writing).
        dest: a file to create, or an existing directory (the file is then named by :func:`backup_name`).
        compress: gzip the copy (also implied by a ``dest`` ending in ``.gz``).
        now: the time for the file name (UTC).

    Returns:
        The file written, and what the check of the uncompressed copy found.

    Call it inside :func:`destination_lock` of ``dest``: the partial files it finds there are then a
    killed backup's, and removed; a file only this call created is ever removed by it.

    Raises:
        StoreError: the archive cannot be read, its schema is newer than this maild or its write-ahead
            log lost commits (refused before any file is made; the line names the archive), or the
            copy fails its integrity check (nothing is left).
        OSError: ``dest`` exists already (a backup is never overwritten), or cannot be written.
    """
    if dest.is_dir():
        _remove_killed_partials(dest)  # named by another time: never this run's own names below
        dest = dest / backup_name(now, compress)
    compress = compress or dest.name.endswith(".gz")
    if dest.exists():
        raise FileExistsError(f"{dest} exists already; a backup never overwrites one")
    partial = dest.with_name(f".{dest.name}.partial")
    packed = dest.with_name(f".{dest.name}.gz-partial")
    journal = dest.with_name(f".{dest.name}.partial-journal")
    for stale in (partial, packed, journal):  # a killed backup's (the lock is held: none runs)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    # before any file is made: the refusal names the archive and the reason only, never a partial
    # file's name, and leaves none (session 15; a newer schema was refused by the copy's check,
    # "/backups/.maild-TIME.sqlite3.partial: schema version 16; ...")
    # the lost log first: a read of the version (a connection) can rebuild the log's index and so
    # forget the commits the check looks for; a lost log: the copy would lack those commits and
    # still pass "integrity ok"
    refusal = unrecovered_log_refusal(source) or newer_schema(source)
    if refusal is not None:
        raise StoreError(refusal)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE))
    except FileExistsError:  # appeared since: another backup without the lock; not ours to remove
        raise FileExistsError(f"{partial} exists: another backup is writing {dest}") from None
    try:
        _snapshot(source, partial)
        check = check_copy(partial)
        if compress:
            fd = os.open(packed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE)
            with (
                os.fdopen(fd, "wb") as raw_out,
                gzip.GzipFile(
                    filename="maild.sqlite3", mode="wb", fileobj=raw_out, compresslevel=GZIP_LEVEL, mtime=0
                ) as out,
                partial.open("rb") as src,
            ):
                shutil.copyfileobj(src, out, COPY_CHUNK_OCTETS)
            partial.unlink()
            partial = packed
        _fsync_file(partial)
        os.link(partial, dest)  # fails if dest appeared meanwhile: never overwrite
        partial.unlink()
        fsync_dir(dest.parent)
    finally:
        # SQLite's rollback journal of the partial copy too: a copy that ran out of room left
        # ``.NAME.partial-journal`` behind (QA of session 11)
        for leftover in (partial, packed, journal):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return dest, check


_PARTIAL_SUFFIXES = (".partial", ".gz-partial", ".partial-journal")
"""What :func:`backup` appends to ``.NAME`` for its copy in the making, the gzip of it, and SQLite's
rollback journal of the copy."""


def _remove_killed_partials(directory: Path) -> None:
    """Remove the partial files a killed backup into ``directory`` left (``.maild-TIME.sqlite3.partial``
    and the like; called under :func:`destination_lock`, so no backup is writing them).

    Into a directory each backup names its file by the time, so the same-name clean-up of
    :func:`backup` never meets a killed one's: before (QA of session 13) its partial copy, as large
    as the archive, stayed for good, unseen by ``--keep``.
    """
    for path in directory.iterdir():
        name = path.name
        if name.startswith("." + BACKUP_PREFIX) and name.endswith(_PARTIAL_SUFFIXES) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``maild-*.sqlite3[.gz]`` backups in ``directory``.

    Returns:
        The files deleted.
    """
    found = sorted(
        p
        for p in directory.iterdir()
        if p.name.startswith(BACKUP_PREFIX) and p.name.endswith((".sqlite3", ".sqlite3.gz"))
    )
    doomed = found[: max(0, len(found) - keep)]
    for path in doomed:
        path.unlink()
    if doomed:
        fsync_dir(directory)
    return doomed


def restore(backup_file: Path, database: Path, *, now: datetime) -> tuple[ArchiveCheck, Path | None]:
    """Put the archive in ``backup_file`` (plain or gzip) in place of ``database``; the daemon is stopped.

    The backup is unpacked next to ``database`` and checked first; only then is the current archive
    (with its ``-wal``, which may hold commits) renamed to ``<name>.before-restore-<time>``, its ``-shm``
    removed (a stale one must not meet the restored file), and the restored file renamed into place
    with the old file's owner, group and :data:`ARCHIVE_FILE_MODE`.

    Returns:
        The check of the restored file, and where the previous archive was kept (None if there was none).

    Raises:
        StoreError: the backup is damaged, not a maild archive, or newer than this maild; nothing changed.
        OSError: a file cannot be read or written.
    """
    partial = database.with_name(f".{database.name}.restore-partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE)
        with os.fdopen(fd, "wb") as out, backup_file.open("rb") as src:
            packed = src.read(2) == _GZIP_MAGIC
            src.seek(0)
            reader = gzip.GzipFile(fileobj=src, mode="rb") if packed else src
            try:
                shutil.copyfileobj(reader, out, COPY_CHUNK_OCTETS)
            except (OSError, EOFError) as exc:
                raise StoreError(f"{backup_file}: cannot unpack: {exc}") from None
            out.flush()
            os.fsync(out.fileno())
        check = check_copy(partial)
        owner = database if database.exists() else database.parent
        info = owner.stat()
        if os.geteuid() == 0:
            os.chown(partial, info.st_uid, info.st_gid)
        os.chmod(partial, ARCHIVE_FILE_MODE)
        kept: Path | None = None
        if database.exists():
            kept = database.with_name(f"{database.name}.before-restore-{now.strftime('%Y%m%dT%H%M%SZ')}")
            os.rename(database, kept)
            wal = database.with_name(database.name + "-wal")
            if wal.exists():
                os.rename(wal, kept.with_name(kept.name + "-wal"))
        for suffix in SIDE_FILE_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + suffix).unlink()
        os.rename(partial, database)
        fsync_dir(database.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return check, kept
