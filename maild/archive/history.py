"""Each account's remembered history (schema version 6, table ``account_history``).

Last success, last error, failure streak, cycle and fetch counts, read by ``maild status`` after a
restart. The fetched counts are added by each batch's own transaction (:data:`_COUNT_FETCHED`, used
by :mod:`maild.archive.batches`). No RFC applies here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive.schema import parse_utc, utc_text
from maild.errors import StoreError
from maild.model import AccountHistory

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


class HistoryRecords:
    """Account history rows over one archive connection; held by :class:`maild.archive.store.Store`."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db
        self._waiting: dict[str, AccountHistory] = {}
        """Rows handed to :meth:`record_history` and not yet in a commit, by account."""
        self._round: asyncio.Future[None] | None = None
        """The commit the waiting rows will go into; it ends with their outcome."""
        self._committing = asyncio.Lock()

    async def account_histories(self) -> dict[str, AccountHistory]:
        """Every account's remembered history, by account name (accounts without cycles are absent)."""
        rows = await self._db._all(_SELECT_HISTORY)

        def moment(text: str | None) -> datetime | None:
            return parse_utc(text) if text else None

        return {
            r[0]: AccountHistory(
                r[0], moment(r[1]), moment(r[2]), r[3], moment(r[4]), moment(r[5]), *map(int, r[6:])
            )
            for r in rows
        }

    async def record_history(self, history: AccountHistory, *, defer: bool = False) -> None:
        """Replace an account's history row in a durable transaction; returns when it is committed.

        Group commit: rows handed in while another history commit runs wait for it and then go
        into one transaction together (fifty accounts ending their cycles at once made fifty
        commits, each with its fsync and three round trips to SQLite's thread; docs/performance.md,
        "Session 10: fixed costs"). Nothing is delayed when no commit runs, and each caller still
        returns only after the commit that holds its row.

        ``defer``: the row only waits, for the next commit of a row that is not deferred or for
        :meth:`flush_history` (the daemon's housekeeping every few seconds, and its stop); for a quiet
        cycle, whose row differs from the last only in its time and count of successes. A crash
        before that loses those two of the waiting rows, never a message (the fetched counts are
        each batch's own, in its transaction).

        ``fetched_messages`` and ``fetched_octets`` are written only when the row is new: each
        committed batch adds to them in its own transaction
        (:meth:`~maild.archive.batches.BatchWriter.insert_batch`).

        Raises:
            StoreError: SQLite failed (for example the disk is full); the old rows stay. Also when
                the task that ran the shared commit was cancelled (the daemon stopping): whether it
                committed is then not known.
        """
        self._waiting[history.account] = history
        if not defer:
            await self._commit_waiting()

    async def flush_history(self) -> bool:
        """Commit the rows waiting from :meth:`record_history` with ``defer`` now (nothing to do
        when none waits); True when a commit holding them succeeded, False when none waited.

        Raises:
            StoreError: SQLite failed; those rows are not recorded (they stay in the old rows).
        """
        if not self._waiting:
            return False
        await self._commit_waiting()
        return True

    async def _commit_waiting(self) -> None:
        """One commit holding every waiting row (or wait for the one under way to take them)."""
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
        mine = self._round
        async with self._committing:
            if not mine.done():  # no earlier commit took this row: this task commits the round
                rows = [_row(h) for h in self._waiting.values()]
                self._waiting, self._round = {}, None
                try:
                    await self._db._write([(_REPLACE_HISTORY, rows, True)], keeps_locations=True)
                except Exception as exc:
                    mine.set_exception(exc)
                    mine.exception()  # retrieved (a waiter cancelled meanwhile); awaiting still raises it
                except BaseException:
                    mine.set_exception(StoreError("account histories: the commit was cancelled"))
                    mine.exception()  # retrieved: the other callers of the round still get it
                    raise
                else:
                    mine.set_result(None)
        await mine


def _row(h: AccountHistory) -> tuple[Any, ...]:
    """The parameters of :data:`_REPLACE_HISTORY` for ``h``: its row (:data:`_HISTORY_COLUMNS`, times
    as UTC text), then the account's name again for the check that the account still exists."""

    def text(moment: datetime | None) -> str | None:
        return utc_text(moment) if moment is not None else None

    return (
        h.account, text(h.last_success), text(h.last_push), h.last_error, text(h.last_error_at),
        text(h.failing_since), h.consecutive_failures, h.cycles_ok, h.cycles_failed,
        h.fetched_messages, h.fetched_octets, h.auth_failures, h.account,
    )  # fmt: skip


_HISTORY_COLUMNS = (
    "account", "last_success", "last_push", "last_error", "last_error_at", "failing_since",
    "consecutive_failures", "cycles_ok", "cycles_failed", "fetched_messages", "fetched_octets",
    "auth_failures",
)  # fmt: skip
_SELECT_HISTORY = f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM account_history"  # noqa: S608 - constants
_BATCH_COUNTED = ("fetched_messages", "fetched_octets")
"""Columns :meth:`~maild.archive.batches.BatchWriter.insert_batch` counts in each batch's transaction;
:meth:`HistoryRecords.record_history`
writes them only into a new row."""
_REPLACE_HISTORY = (
    f"INSERT INTO account_history ({', '.join(_HISTORY_COLUMNS)})"  # noqa: S608 - constants
    f" SELECT {', '.join('?' * len(_HISTORY_COLUMNS))} WHERE EXISTS (SELECT 1 FROM accounts WHERE name = ?)"
    " ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _HISTORY_COLUMNS[1:] if c not in _BATCH_COUNTED)
)
"""Replace an account's row; a row of an account no longer in the archive (removed with ``--purge``
while its deferred row waited) is skipped, not a foreign-key error for the whole round. Parameters:
:func:`_row`."""
_COUNT_FETCHED = (
    "INSERT INTO account_history (account, fetched_messages, fetched_octets) VALUES (?, ?, ?)"
    " ON CONFLICT (account) DO UPDATE SET fetched_messages = fetched_messages + excluded.fetched_messages,"
    " fetched_octets = fetched_octets + excluded.fetched_octets"
)
