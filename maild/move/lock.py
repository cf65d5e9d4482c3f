"""One move command at a time per archive: an exclusive advisory lock beside the archive file.

``maild migrate A --to B`` compares, plans what B lacks and uploads it; a second one started while
the first uploads plans the same messages (their upload records are not written yet) and uploads
them again: B would hold each twice (QA of session 13). ``migrate --undo``, ``retire`` and
``unretire`` change the same records (``appends``, ``moves``) and take the lock too; ``compare``,
``migrate --dry-run`` and ``migrate --verify`` change nothing and do not. The fetcher's lock
(:mod:`maild.service.archive_lock`) is another file: a move runs beside a daemon.

``flock(2)`` on ``<archive>.move.lock`` (mode 0600), released by the kernel when the process ends
in any way, SIGKILL included, so a crash never leaves a stale lock. The file holds the holder's PID
for the error message. No RFC applies here.

May import: :mod:`maild.errors`, :mod:`maild.fsutil`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from maild.errors import MigrationError
from maild.fsutil import read_holder, write_holder

MOVE_LOCK_SUFFIX = ".move.lock"
"""The lock file is the archive's path with this suffix (``maild.sqlite3.move.lock``)."""
MOVE_LOCK_FILE_MODE = 0o600
"""Mode of a new lock file: only the archive's owner opens it."""


def move_lock_path(database: Path) -> Path:
    """The move lock file of the archive ``database``."""
    return database.with_name(database.name + MOVE_LOCK_SUFFIX)


@contextlib.contextmanager
def move_lock(database: Path, command: str) -> Iterator[None]:
    """Hold the archive's move lock for the ``with`` block, without waiting for it.

    Args:
        database: the archive file.
        command: the command taking it, for the refusal's line (``"maild migrate pop --to imap"``).

    Without the archive's directory nothing is locked (the command then fails opening the archive).

    Raises:
        MigrationError: another process holds the lock (one line naming the lock file, the holder's
            PID and what to do), or the lock file cannot be opened or locked (its path and the
            system's reason).
    """
    path = move_lock_path(database)
    if not path.parent.is_dir():  # no archive yet: the command fails on its own, nothing to guard
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, MOVE_LOCK_FILE_MODE)
    except OSError as exc:
        raise MigrationError(f"{command}: cannot open the move lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MigrationError(
                f"{command}: another move command (`maild migrate`, `migrate --undo`, `retire` or"
                f" `unretire`) is running on {database}: {path} is locked{read_holder(fd)[0]}; wait until it"
                " has finished, then run this again"
            ) from None
        except OSError as exc:
            raise MigrationError(f"{command}: cannot lock {path}: {exc.strerror or exc}") from None
        write_holder(fd)
        yield
    finally:
        os.close(fd)  # releases the flock

