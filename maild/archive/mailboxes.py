"""IMAP mailboxes in the archive: UIDVALIDITY and UIDNEXT per mailbox, and relinking after a change.

RFC 9051 section 2.3.1.1: a UID names a message only together with the mailbox's UIDVALIDITY. The
``mailboxes`` table (schema version 2) records the last seen values; after a UIDVALIDITY change
:meth:`MailboxRecords.relink` records new UIDs for messages recognised without downloading them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive.schema import parse_utc, utc_text
from maild.model import IMAPKey

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


STATES_SQL = "SELECT mailbox, uidvalidity, uidnext, changed_at FROM mailboxes WHERE account = ?"
"""Every ``mailboxes`` row of one IMAP account (the parameter); :func:`states_from_rows` reads them."""


def states_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, MailboxState]:
    """Rows of :data:`STATES_SQL` as readable mailbox name to its :class:`MailboxState`."""
    return {r[0]: MailboxState(int(r[1]), r[2], parse_utc(r[3])) for r in rows}


class MailboxRecords:
    """IMAP mailbox states and relinking over one archive connection; held by
    :class:`maild.archive.store.Store`."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db

    async def mailbox_states(self, account: str) -> dict[str, MailboxState]:
        """Return readable mailbox name to its recorded UIDVALIDITY state, for IMAP ``account``."""
        return states_from_rows(await self._db._all(STATES_SQL, (account,)))

    async def record_mailbox_states(
        self, account: str, states: Sequence[tuple[str, int, int | None]], now: datetime
    ) -> None:
        """Record (mailbox, UIDVALIDITY, UIDNEXT or None) as last seen, in one durable transaction.

        ``changed_at`` becomes ``now`` when a mailbox is first recorded or its UIDVALIDITY differs
        from the recorded one; when only UIDNEXT moved it keeps its value.
        """
        if not states:
            return
        stamp = utc_text(now)
        await self._db._write(
            [
                (
                    "INSERT INTO mailboxes (account, mailbox, uidvalidity, uidnext, changed_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, mailbox) DO UPDATE SET"
                    " changed_at = CASE WHEN mailboxes.uidvalidity = excluded.uidvalidity"
                    " THEN mailboxes.changed_at ELSE excluded.changed_at END,"
                    " uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext",
                    [(account, mailbox, validity, uidnext, stamp) for mailbox, validity, uidnext in states],
                    True,
                )
            ]
        )

    async def mailbox_identities(self, account: str, mailbox: str) -> list[tuple[int, str | None, int]]:
        """Return (message row id, Message-ID or None, size in octets) of each distinct message that
        IMAP ``account`` holds or held in ``mailbox``, under any UIDVALIDITY."""
        rows = await self._db._all(
            "SELECT DISTINCT m.id, m.message_id, m.size_octets FROM locations l"
            " JOIN messages m ON m.id = l.message"
            " WHERE l.account = ? AND l.mailbox = ? AND l.uid IS NOT NULL",
            (account, mailbox),
        )
        return [(int(r[0]), r[1], int(r[2])) for r in rows]

    async def relink(self, account: str, links: Sequence[tuple[IMAPKey, int]], now: datetime) -> int:
        """Record that each IMAPKey now names an archived message (row id), in one durable transaction.

        Used after a UIDVALIDITY change, for messages recognised without downloading them. Each new
        location row copies first-fetch time, INTERNALDATE and flags from the message's earliest
        location for the account in that mailbox (so ``delete-after`` counts from the first fetch),
        falling back to ``now``. A key already recorded is left as it is.

        Returns:
            The number of location rows added.
        """
        if not links:
            return 0
        stamp = utc_text(now)

        async def work() -> int:
            added = 0
            for key, message in links:
                async with self._db._conn.execute(
                    "SELECT first_fetched_at, internaldate, flags FROM locations"
                    " WHERE account = ? AND message = ? AND mailbox = ? AND uid IS NOT NULL"
                    " ORDER BY first_fetched_at, id LIMIT 1",
                    (account, message, key.mailbox),
                ) as cur:
                    row = await cur.fetchone()
                first, internaldate, flags = row if row is not None else (stamp, None, None)
                cur = await self._db._conn.execute(
                    "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
                    " first_fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, mailbox, uidvalidity, uid) WHERE uid IS NOT NULL DO NOTHING",
                    (account, message, key.mailbox, key.uidvalidity, key.uid, internaldate, flags, first),
                )
                added += cur.rowcount
                await cur.close()
            return added

        return await self._db._atomic(work, f"relinking for account {account}")


@dataclass(frozen=True, slots=True)
class MailboxState:
    """What the archive recorded about one IMAP mailbox of an account.

    Attributes:
        uidvalidity: the UIDVALIDITY last seen (RFC 9051 section 2.3.1.1).
        uidnext: the UIDNEXT last seen, or None when the server did not send it.
        changed_at: when this UIDVALIDITY was first recorded (UTC).
    """

    uidvalidity: int
    uidnext: int | None
    changed_at: datetime
