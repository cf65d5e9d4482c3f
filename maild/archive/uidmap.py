"""What the IMAP UID check needs of the archive: sizes by UID, header sections, fixing locations.

:func:`maild.fetch.resync.verify_uid_map` compares the RFC822.SIZE the server reports for every known
UID with what the archive holds there (``locations.server_size`` when recorded, else the message's
size) and, on a mismatch, the header sections; a mailbox whose map cannot be trusted has its
locations under the current UIDVALIDITY removed (:func:`unlink`), so that the normal retrieval
re-identifies every message there by content (SHA-256; nothing is stored twice) and records the
right locations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from maild.model import IMAPKey

if TYPE_CHECKING:
    from maild.archive.store import Store


async def location_sizes(
    store: Store, account: str, mailbox: str, uidvalidity: int
) -> dict[int, tuple[int, int]]:
    """UID to (message row id, the size in octets the server should report) for every location of
    ``account`` in ``mailbox`` under ``uidvalidity`` not deleted by maild.

    Raises:
        StoreError: SQLite failed.
    """
    rows = await store._all(
        "SELECT l.uid, l.message, coalesce(l.server_size, m.size_octets) FROM locations l"
        " JOIN messages m ON m.id = l.message WHERE l.account = ? AND l.mailbox = ?"
        " AND l.uidvalidity = ? AND l.uid IS NOT NULL AND l.deleted_at IS NULL",
        (account, mailbox, uidvalidity),
    )
    return {int(uid): (int(message), int(size)) for uid, message, size in rows}


async def record_server_sizes(store: Store, account: str, sizes: Mapping[IMAPKey, int]) -> None:
    """Record the RFC822.SIZE the server reports for keys whose content was re-verified by header.

    Raises:
        StoreError: SQLite failed; nothing was recorded.
    """
    if not sizes:
        return
    rows = [(size, account, k.mailbox, k.uidvalidity, k.uid) for k, size in sizes.items()]
    await store._write(
        [
            (
                "UPDATE locations SET server_size = ? WHERE account = ? AND mailbox = ?"
                " AND uidvalidity = ? AND uid = ?",
                rows,
                True,
            )
        ]
    )


async def unlink(store: Store, account: str, keys: Sequence[IMAPKey]) -> int:
    """Remove the location rows of ``keys`` (the messages stay archived), in one transaction.

    Returns:
        How many keys were given (each names at most one row).

    Raises:
        StoreError: SQLite failed; nothing was removed.
    """
    if not keys:
        return 0
    await store.unlink(account, keys)  # remembered when it fails, see LocationRecords.unlink
    return len(keys)
