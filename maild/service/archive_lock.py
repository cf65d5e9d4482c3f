"""One fetcher per archive: an exclusive advisory lock beside the archive file.

The daemon (``maild run``) and the one-shot ``maild fetch`` store messages in the archive and may
delete them on servers. Two of them on one archive (two configurations naming the same state
directory, or a one-shot ``maild fetch`` beside a running daemon) would fetch every message twice
over the wire and race each other's deletion decisions. The control socket keeps out a second daemon
of the same configuration only; this lock keeps out any second fetcher of the same archive file.

``flock(2)`` on ``<archive>.lock`` (mode 0600): held for as long as the fetcher runs and released by
the kernel when its process ends in any way, SIGKILL included, so a crash never leaves a stale lock.
The file holds the holder's PID for the error message; readers of the archive (``maild messages``,
the CRM) never take it. No RFC applies here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import structlog

from maild.archive.archive_file import ARCHIVE_DIR_MODE
from maild.errors import StoreError
from maild.fsutil import read_holder, write_holder

log = structlog.get_logger("maild.service.archive_lock")

LOCK_SUFFIX = ".lock"
"""The lock file is the archive's path with this suffix (``maild.sqlite3.lock``)."""
LOCK_FILE_MODE = 0o600
"""Mode of a new lock file: only the daemon's user opens it."""


class ArchiveLock:
    """The held lock; :meth:`release` (or the process's end) lets the next fetcher in."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        """False when the lock could not be taken because the file cannot exist (a read-only file
        system without a lock file: then no fetcher can write the archive either)."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (closing the file releases the ``flock``); idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_path(database: Path) -> Path:
    """The lock file of the archive ``database``."""
    return database.with_name(database.name + LOCK_SUFFIX)


COMPACT_ROLE = "compact"
"""The role ``maild compact`` writes after its PID in the lock file: a fetcher refused by it is told
to wait for the rewrite rather than to stop a daemon or ask it (there is none)."""


FETCH_ADVICE = "stop it, or ask the running daemon with `maild fetch-now`"
"""The end of the refusal's line for a fetcher (the daemon, ``maild fetch``)."""


def acquire_archive_lock(database: Path, advice: str = FETCH_ADVICE, role: str = "") -> ArchiveLock:
    """Take the exclusive fetcher lock of the archive ``database`` without waiting.

    ``advice`` ends the refusal's line (what the admin can do); ``role`` is written after the PID
    (:data:`COMPACT_ROLE` for ``maild compact``, empty for a fetcher).

    Creates the lock file (and, on a first start, the archive's directory, mode 0750) if missing.
    On a read-only file system where the lock file does not exist the lock is not taken (logged at
    warning; the returned lock is not :attr:`~ArchiveLock.held`): nothing can write that archive.

    Raises:
        StoreError: another process holds the lock (one line naming the archive, the lock file and
            the holder's PID), or the lock file cannot be opened for another reason.
    """
    path = lock_path(database)
    try:
        if not path.parent.exists():  # a first start: made as the archive's own creation would
            for directory in reversed([p for p in (path.parent, *path.parent.parents) if not p.exists()]):
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=ARCHIVE_DIR_MODE)
                    os.chmod(directory, ARCHIVE_DIR_MODE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as exc:
        try:  # a read-only file system or directory: an existing lock file still locks
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return _without_lock(path, exc.strerror or str(exc))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder, holder_role = read_holder(fd)
        os.close(fd)
        if holder_role == COMPACT_ROLE:
            raise StoreError(
                f"`maild compact` is rewriting {database}: {path} is locked{holder}; wait until it"
                " finishes (it prints its progress), then run this again"
            ) from None
        raise StoreError(
            f"another maild (a daemon or `maild fetch`) is fetching into {database}: {path} is locked"
            f"{holder}; {advice}"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock {path}: {exc.strerror or exc}") from None
    write_holder(fd, role)
    return ArchiveLock(path, fd)


def _without_lock(path: Path, reason: str) -> ArchiveLock:
    log.warning("archive.lock-skipped", lock=str(path), reason=reason)
    return ArchiveLock(path, None)
