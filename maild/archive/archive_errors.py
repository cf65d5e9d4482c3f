"""The archive's own errors: a full disk, a replaced file, a transaction that could not be ended.

Raised by :class:`maild.archive.connection.ArchiveConnection` (its transactions and its archive guard)
and by the one-call reads of :mod:`maild.archive.cycle_reads`; callers outside the archive take
:class:`ArchiveFull` and :class:`ArchiveReplaced` from :mod:`maild.archive.store`, which owns the
connection. No RFC applies here.

May import: the standard library and :mod:`maild.errors`.
"""

from __future__ import annotations

import errno
import sqlite3

from maild.errors import StoreError

TRANSACTION_LEFT_OPEN = "a transaction could not be rolled back and stays open"
"""The words of :attr:`ArchiveConnection.replaced <maild.archive.connection.ArchiveConnection.replaced>`
when the guard failed because a transaction was left open
(:meth:`~maild.archive.connection.ArchiveConnection._left_open`), not because the file was replaced:
the ``archive_replaced`` alert then advises a restart only (the file on disk is sound), never putting
another file back."""


class ArchiveFull(StoreError):
    """A write transaction failed because the archive's file system is full: SQLite's ``SQLITE_FULL``
    ("database or disk is full"), or ``ENOSPC``/``EDQUOT`` from a write of the archive's own. The
    transaction was rolled back: nothing of it is stored. A fetch cycle takes it as a failure on
    this machine's side (kind ``"local"``, :data:`maild.model.ARCHIVE_FULL_PREFIX`): the messages
    stay on the server and are retried at every cycle (:mod:`maild.fetch.cycle`)."""


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the archive's file system is full: SQLite's primary result code
    ``SQLITE_FULL`` (https://www.sqlite.org/rescode.html#full), or an OSError ``ENOSPC``/``EDQUOT``."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


class ArchiveReplaced(StoreError):
    """The open archive is no longer the file at its path (deleted, renamed, replaced), or its
    schema marker changed: nothing may be deleted on any server until maild is restarted."""


class TransactionLeftOpen(sqlite3.OperationalError):
    """A read transaction begun in aiosqlite's thread could not be ended: its ``ROLLBACK`` failed
    (:func:`maild.archive.cycle_reads.read_account` then calls
    :meth:`~maild.archive.connection.ArchiveConnection._left_open`)."""
