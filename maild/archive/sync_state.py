"""What the cheap poll of many IMAP mailboxes needs of the archive: the ``mailbox_sync`` table (v7).

One row per IMAP account and mailbox: the mailbox's status (UIDVALIDITY, UIDNEXT, MESSAGES and,
with CONDSTORE, HIGHESTMODSEQ) taken before the last cycle that listed it in full *and* left every
message it held archived. While the server reports the same status, the mailbox holds exactly those
messages, and :mod:`maild.fetch.folders` lets the cycle leave it unselected. A row is removed when
the mailbox could not be brought fully into the archive, disappeared, or was not covered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive.schema import parse_utc, utc_text

if TYPE_CHECKING:
    from maild.archive.store import Store


@dataclass(frozen=True, slots=True)
class SyncRecord:
    """One mailbox's status at its last complete listing.

    Attributes:
        uidvalidity, uidnext, messages: as STATUS reported them (RFC 9051 section 7.3.2).
        highest_modseq: HIGHESTMODSEQ (RFC 7162 section 3.1.6), or None without CONDSTORE.
        synced_at: when that cycle ran (UTC).
    """

    uidvalidity: int
    uidnext: int
    messages: int
    highest_modseq: int | None
    synced_at: datetime


async def load(store: Store, account: str) -> dict[str, SyncRecord]:
    """Readable mailbox name to its :class:`SyncRecord`, for IMAP ``account``.

    Raises:
        StoreError: SQLite failed.
    """
    return records_from_rows(await store._all(LOAD_SQL, (account,)))


LOAD_SQL = (
    "SELECT mailbox, uidvalidity, uidnext, messages, highestmodseq, synced_at FROM mailbox_sync"
    " WHERE account = ?"
)
"""Every ``mailbox_sync`` row of one account (the parameter); :func:`records_from_rows` reads them."""


def records_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, SyncRecord]:
    """Rows of :data:`LOAD_SQL` as readable mailbox name to its :class:`SyncRecord`."""
    return {
        str(mailbox): SyncRecord(
            int(validity), int(uidnext), int(messages), None if modseq is None else int(modseq), parse_utc(at)
        )
        for mailbox, validity, uidnext, messages, modseq, at in rows
    }


async def save(store: Store, account: str, records: Mapping[str, SyncRecord], forget: Iterable[str]) -> None:
    """Write ``records`` (replacing earlier rows) and remove the rows of ``forget``, in one transaction.

    Raises:
        StoreError: SQLite failed; nothing was changed.
    """
    gone = [(account, mailbox) for mailbox in forget]
    rows = [
        (account, mailbox, r.uidvalidity, r.uidnext, r.messages, r.highest_modseq, utc_text(r.synced_at))
        for mailbox, r in records.items()
    ]
    if not (gone or rows):
        return
    await store._write(
        [
            ("DELETE FROM mailbox_sync WHERE account = ? AND mailbox = ?", gone, True),
            (
                "INSERT OR REPLACE INTO mailbox_sync"
                " (account, mailbox, uidvalidity, uidnext, messages, highestmodseq, synced_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
                True,
            ),
        ]
    )
