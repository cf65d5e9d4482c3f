"""Durable file operations shared by the modules that write files: atomic replace and directory fsync;
and the holder's note of the advisory lock files (the fetcher's, :mod:`maild.service.archive_lock`;
the move's, :mod:`maild.move.lock`).

A file is durable only when its data is fsync'ed *and* the directory entry that names it is fsync'ed
(rename(2) and unlink(2) change the directory, not the file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync the directory ``directory`` so that entries created, renamed or removed in it are durable.

    Raises:
        OSError: the directory cannot be opened.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, gid: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Writes a temporary file in the same directory, sets its group (``gid``, when given) and ``mode``,
    fsyncs it, renames it over ``path`` and fsyncs the directory. Readers see the old or the new
    content, never a mixture; after a crash, one of the two.

    Raises:
        OSError: the directory is missing or not writable, or the disk is full; ``path`` is unchanged.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            if gid is not None and gid != os.fstat(file.fileno()).st_gid:
                os.fchown(file.fileno(), -1, gid)
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


HOLDER_READ_OCTETS = 32
"""At most this much of a lock file is read for its holder's note (a decimal PID, a role, a newline)."""


def write_holder(fd: int, role: str = "") -> None:
    """Write this process's PID, and ``role`` after it, into the lock file open as ``fd`` (after its
    ``flock`` is taken), for the refusal another process shows. Best effort: the note is for the
    message only, and a read-only lock file keeps none."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}{' ' + role if role else ''}\n".encode("ascii"), 0)


def read_holder(fd: int) -> tuple[str, str]:
    """The note :func:`write_holder` left in the lock file open as ``fd``: `` (held by PID n)`` and the
    holder's role; empty strings when it says nothing readable (at most :data:`HOLDER_READ_OCTETS`
    octets are read)."""
    with contextlib.suppress(OSError, ValueError):
        pid, _, role = os.pread(fd, HOLDER_READ_OCTETS, 0).decode("ascii").strip().partition(" ")
        if pid.isdigit():
            return f" (held by PID {int(pid)})", role
    return "", ""
