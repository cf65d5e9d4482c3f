"""Each account's remembered history (schema version 6, table ``account_history``).

Last success, last error, failure streak, cycle and fetch counts, read by ``maild status`` after a
restart. The fetched counts are added by each batch's own transaction (:data:`_COUNT_FETCHED`, used
by :mod:`maild.archive.batches`). No RFC applies here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from maild.archive.schema import parse_utc, utc_text
from maild.model import AccountHistory

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


class HistoryRecords:
    """Account history rows over one archive connection; held by :class:`maild.archive.store.Store`."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db

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

    async def record_history(self, history: AccountHistory) -> None:
        """Replace an account's history row in one durable transaction.

        ``fetched_messages`` and ``fetched_octets`` are written only when the row is new: each
        committed batch adds to them in its own transaction
        (:meth:`~maild.archive.batches.BatchWriter.insert_batch`).

        Raises:
            StoreError: SQLite failed (for example the disk is full); the old row stays.
        """

        def text(moment: datetime | None) -> str | None:
            return utc_text(moment) if moment is not None else None

        h = history
        row = (
            h.account, text(h.last_success), text(h.last_push), h.last_error, text(h.last_error_at),
            text(h.failing_since), h.consecutive_failures, h.cycles_ok, h.cycles_failed,
            h.fetched_messages, h.fetched_octets, h.auth_failures,
        )  # fmt: skip
        await self._db._write([(_REPLACE_HISTORY, row, False)], keeps_locations=True)


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
    f" VALUES ({', '.join('?' * len(_HISTORY_COLUMNS))}) ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _HISTORY_COLUMNS[1:] if c not in _BATCH_COUNTED)
)
_COUNT_FETCHED = (
    "INSERT INTO account_history (account, fetched_messages, fetched_octets) VALUES (?, ?, ?)"
    " ON CONFLICT (account) DO UPDATE SET fetched_messages = fetched_messages + excluded.fetched_messages,"
    " fetched_octets = fetched_octets + excluded.fetched_octets"
)
