"""The archive guard's look at the files: is the open archive still the file at its path, with its log?

:meth:`maild.archive.connection.ArchiveConnection.verify_identity` runs :func:`file_problem` at the
start of every fetch cycle and immediately before every deletion on a server (then checks the schema
marker): a message committed into a file that was deleted or replaced meanwhile is not durable at
all. The contents of the log are compared with its index by :mod:`maild.archive.wal_guard`. No RFC
applies here.

May import: the standard library and :mod:`maild.archive.wal_guard`. No SQL.
"""

from __future__ import annotations

import os
from pathlib import Path

from maild.archive.wal_guard import index_replaced, wal_problem


def wal_path(path: Path) -> Path:
    """The write-ahead log of the archive at ``path`` (SQLite's name: the path plus ``-wal``)."""
    return path.with_name(path.name + "-wal")


def shm_path(path: Path) -> Path:
    """The write-ahead log's index of the archive at ``path`` (SQLite's name: the path plus ``-shm``)."""
    return path.with_name(path.name + "-shm")


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or None when it does not exist.

    Raises:
        OSError: it cannot be looked at (permissions, I/O).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def file_problem(
    path: Path, guard_fd: int, wal_identity: tuple[int, int] | None, shm_fd: int | None
) -> str | None:
    """What is wrong with the archive's files, in words to follow its path, or None.

    Args:
        path: the archive's path.
        guard_fd: a descriptor of the file opened as the archive.
        wal_identity: device and inode of its ``-wal`` when it was opened, or None (not checked).
        shm_fd: a descriptor of its ``-shm`` as opened with it, or None (the log's contents and
            its index go unchecked).

    Checked: the device and inode at ``path`` equal those of the file opened, its link count is
    above zero, its write-ahead log (``-wal``) and the log's index (``-shm``) are still the ones there
    at the open (not deleted, not replaced), and the log is not cut or overwritten in place
    (:func:`~maild.archive.wal_guard.wal_problem`).
    """
    try:
        opened = os.fstat(guard_fd)
    except OSError as exc:
        return f"cannot be checked: {exc.strerror}"
    if opened.st_nlink < 1:
        return "was deleted under the running daemon"
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return "was renamed or deleted under the running daemon"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror}"
    if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
        return "was replaced by another file under the running daemon"
    if wal_identity is None:
        return None
    # Commits go to the write-ahead log first: once it is deleted, they go to a file with no
    # name, and a crash before the next checkpoint loses them (and the messages deleted on the
    # servers after them). Found by the QA of session 11 (`rm maild.sqlite3-wal`).
    wal = wal_path(path)
    try:
        now = file_identity(wal)
    except OSError as exc:
        return f"cannot be checked: {wal.name}: {exc.strerror}"
    if now is None:
        return f"lost its write-ahead log {wal.name} under the running daemon (deleted)"
    if now != wal_identity:
        return f"had its write-ahead log {wal.name} replaced under the running daemon"
    if shm_fd is None:
        return None
    replaced = index_replaced(shm_path(path), shm_fd)  # the -shm holds every process's locks (QA 12)
    if replaced is not None:
        return replaced
    # cut or overwritten in place: the same file, without the commits SQLite lists in it
    # (QA of session 12); seen twice before it counts, as the stop lasts until a restart
    if wal_problem(wal, shm_fd) is not None:
        return wal_problem(wal, shm_fd)
    return None
