"""The figures ``maild status`` reads from the archive: messages per account, what is still on the
servers, totals, and the counters a daemon keeps current (:mod:`maild.archive.counters`).

:class:`ArchiveFigures` is held by :class:`maild.archive.store.Store`; it only reads. No RFC applies here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from maild.archive.counters import ArchiveCounters
from maild.archive.schema import DOCUMENTS_PENDING_SQL, parse_utc

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


class ArchiveFigures:
    """Counts over one archive connection; held by :class:`maild.archive.store.Store`.

    All methods raise :class:`~maild.errors.StoreError` when SQLite fails.
    """

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db

    async def message_counts(self) -> dict[str, int]:
        """Return account name to the number of distinct archived messages linked to it."""
        rows = await self._db._all("SELECT account, count(DISTINCT message) FROM locations GROUP BY account")
        return {r[0]: r[1] for r in rows}

    async def on_server_summary(self) -> dict[str, tuple[int, datetime | None]]:
        """Per account: (archived messages still on its server, earliest first-fetch time among them, UTC).

        "Still on the server" means not recorded as gone or deleted at the last cycle.
        """
        rows = await self._db._all(
            "SELECT account, count(*), min(first_fetched_at) FROM locations"
            " WHERE gone_at IS NULL AND deleted_at IS NULL GROUP BY account"
        )
        return {r[0]: (int(r[1]), parse_utc(r[2]) if r[2] else None) for r in rows}

    async def totals(self) -> tuple[int, int]:
        """Return (distinct messages, total octets) in the archive."""
        rows = await self._db._all("SELECT count(*), coalesce(sum(size_octets), 0) FROM messages")
        return int(rows[0][0]), int(rows[0][1])

    async def keep_counters(self) -> ArchiveCounters:
        """Count the archive once and keep the counts current with every committed batch from now
        on (the connection's ``counters``, which :class:`~maild.archive.batches.BatchWriter` adds to;
        the daemon's status answers from them).

        Raises:
            StoreError: SQLite failed.
        """
        counters = ArchiveCounters()
        messages, octets = await self.totals()
        counters.replace(await self.message_counts(), messages, octets)
        self._db.counters = counters
        return counters

    async def documents_pending(self) -> int:
        """Messages whose PDF/Office attachment text is not indexed yet (``has_documents`` not 0 and no
        ``document_text`` row, schema 13; :mod:`maild.archive.document_index` indexes them).

        Counted here, not in :mod:`maild.archive.document_index`: a one-shot ``maild fetch`` asks after
        every fetch that stored mail, and needs the indexer (its module, the worker's) only when there
        is something to index within its bound (start-up cost, docs/performance.md "Session 12").

        Raises:
            StoreError: SQLite failed.
        """
        rows = await self._db._all(f"SELECT count(*) FROM ({DOCUMENTS_PENDING_SQL})", (0,))  # noqa: S608
        return int(rows[0][0])

    async def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when healthy)."""
        rows = await self._db._all("PRAGMA integrity_check")
        return str(rows[0][0])
