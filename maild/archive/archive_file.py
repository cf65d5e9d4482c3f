"""The archive file on disk: its modes, its creation, SQLite's words about it, the WAL side-file guard.

Readers in the archive's group: the database file is made :data:`ARCHIVE_FILE_MODE` (``0640``) and
SQLite gives its ``-wal`` and ``-shm`` side files the same mode. A read-only reader (``mode=ro``)
needs both side files to exist, and one without write access to the directory cannot create them;
SQLite deletes them when its last writing connection closes.
:meth:`maild.archive.connection.ArchiveConnection.close` therefore checkpoints the WAL to empty and
closes while a read-only guard connection (:func:`_open_guard`) still reads, so SQLite keeps both
files (see docs/archive.md, "Reading while the daemon is stopped"). No RFC applies here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

ARCHIVE_FILE_MODE = 0o640
"""Mode of the archive file; SQLite gives its ``-wal`` and ``-shm`` files the same mode when it creates
them. Group-readable, so members of the archive's group (the daemon's group; the state directory is
``0750``) may read it, never write it."""
SIDE_FILE_SUFFIXES = ("-wal", "-shm")


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
    process can take the exclusive lock that deleting the WAL side files needs (see
    :meth:`~maild.archive.connection.ArchiveConnection.close`).

    Kept also when its read fails: SQLite takes the archive file's shared lock before it reads the log,
    and in WAL mode keeps it until the connection closes. A read fails when the log was cut or
    overwritten under the daemon (its pages read as zeros or past its end); without the guard, the
    writer's close was the last connection's, and SQLite's own checkpoint at close copied those zeros
    over the archive file's pages ("file is not a database": QA of session 12).

    Raises:
        sqlite3.Error: the archive cannot be opened at all.
    """
    guard = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    with contextlib.suppress(sqlite3.Error):
        guard.execute("BEGIN")
        guard.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    return guard


def _close_guard(guard: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        guard.execute("COMMIT")
    guard.close()


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
