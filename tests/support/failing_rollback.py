"""``maild`` with the first message batch's ``COMMIT`` and every ``ROLLBACK`` after it failing (an I/O
error), for tests that need a real daemon process left with an open transaction on its archive.

Run as ``python -m tests.support.failing_rollback -c CFG run`` (see :func:`failing_rollback_command`):
the archive's ``sqlite3`` connection is wrapped as ``tests/unit/test_rollback_failed.py`` wraps it in
process, so SQLite really stays inside the batch's transaction (its rows applied, not committed), as
when neither statement could run on a failing disk. Everything before the first batch (start-up
writes, account records) commits normally.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from maild.archive.connection import ArchiveConnection
from maild.cli.main import main


def io_error() -> sqlite3.OperationalError:
    """What SQLite raises when a write or sync of the archive fails (SQLITE_IOERR)."""
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
    return exc


class FailingEnd:
    """A ``sqlite3`` connection whose first ``COMMIT`` after an ``INSERT ... INTO messages`` fails, and
    every ``ROLLBACK`` from then on; everything else goes to the real connection."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw
        self._batch = False
        self._failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _note(self, sql: str) -> str:
        word = sql.strip().upper()
        if word.startswith("INSERT") and " INTO MESSAGES" in word:
            self._batch = True
        if (word == "COMMIT" and self._batch and not self._failed) or (word == "ROLLBACK" and self._failed):
            self._failed = True
            raise io_error()
        return sql

    def execute(self, sql: str, *args: Any) -> Any:
        """``execute`` of the real connection, or the injected I/O error."""
        return self._raw.execute(self._note(sql), *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        """``executemany`` of the real connection, or the injected I/O error."""
        return self._raw.executemany(self._note(sql), *args)


def install() -> None:
    """Wrap the connection of every archive this process opens from now on."""
    real_open = ArchiveConnection.open.__func__  # type: ignore[attr-defined]

    async def open_failing(cls: type[ArchiveConnection], path: Path) -> ArchiveConnection:
        opened: ArchiveConnection = await real_open(cls, path)
        conn: Any = opened._conn
        conn._connection = FailingEnd(conn._connection)
        return opened

    ArchiveConnection.open = classmethod(open_failing)  # type: ignore[method-assign,assignment]


def failing_rollback_command(cfg: Path) -> list[str]:
    """The argv of ``maild -c CFG run`` with the failing ``COMMIT``/``ROLLBACK`` installed."""
    return [sys.executable, "-m", "tests.support.failing_rollback", "-c", str(cfg), "run"]


if __name__ == "__main__":
    install()
    sys.exit(main(sys.argv[1:]))
