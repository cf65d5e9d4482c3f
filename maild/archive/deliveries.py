"""Delivery rows: which archived messages are in an account's Maildir (see :mod:`maild.archive.maildir`).

A row is the "delivered" marker: a message with one is never delivered again. No RFC applies here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from maild.archive.in_list import padded_in
from maild.archive.schema import QUERY_CHUNK, utc_text

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


class DeliveryRecords:
    """Maildir delivery rows over one archive connection; held by :class:`maild.archive.store.Store`."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db

    async def undelivered(self, account: str) -> list[PendingDelivery]:
        """Messages linked to ``account`` without a delivery row for it, in the order they were linked.

        The mailbox is that of the message's first location for the account (None for POP3); a message
        in several mailboxes of one account is delivered once.
        """
        rows = await self._db._all(
            "SELECT l.message, m.sha256, m.size_octets, l.mailbox FROM locations l"
            " JOIN messages m ON m.id = l.message WHERE l.account = ? AND NOT EXISTS"
            " (SELECT 1 FROM deliveries d WHERE d.account = l.account AND d.message = l.message)"
            " ORDER BY l.first_fetched_at, l.id",
            (account,),
        )
        out: dict[int, PendingDelivery] = {}
        for message, digest, size, mailbox in rows:
            out.setdefault(message, PendingDelivery(message, digest, size, mailbox))
        return list(out.values())

    async def raw_messages(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Return message row id -> raw octets for each of ``ids`` in the archive."""
        return {message: bytes(raw) for message, raw in (await self.message_column("raw", ids)).items()}

    async def message_column(
        self, column: Literal["raw", "size_octets", "sha256"], ids: Sequence[int]
    ) -> dict[int, Any]:
        """Return message row id -> ``column`` of ``messages`` for each of ``ids``, in chunked queries."""
        out: dict[int, Any] = {}
        for i in range(0, len(ids), QUERY_CHUNK):
            marks, params = padded_in(ids[i : i + QUERY_CHUNK])
            rows = await self._db._all(f"SELECT id, {column} FROM messages WHERE id IN ({marks})", params)  # noqa: S608
            out.update({int(r[0]): r[1] for r in rows})
        return out

    async def record_deliveries(
        self, account: str, deliveries: Sequence[tuple[int, str]], now: datetime
    ) -> None:
        """Record in one durable transaction that each (message row id, file path) is in the Maildir.

        A row already there is kept (the first path wins). The row is the "delivered" marker: a message
        with a row is never delivered again, even if the office deleted or moved its file.
        """
        if not deliveries:
            return
        stamp = utc_text(now)
        await self._db._write(
            [
                (
                    "INSERT INTO deliveries (account, message, path, delivered_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (account, message) DO NOTHING",
                    [(account, message, path, stamp) for message, path in deliveries],
                    True,
                )
            ]
        )


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """An archived message not yet delivered to an account's Maildir.

    Attributes:
        message: the ``messages.id`` row id.
        sha256: its SHA-256, hex.
        size_octets: its size in octets.
        mailbox: the IMAP mailbox it was fetched from (readable name), or None for POP3.
    """

    message: int
    sha256: str
    size_octets: int
    mailbox: str | None
