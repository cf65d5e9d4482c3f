"""Build small archives for query and export tests through the real Store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from maild.archive.store import Store
from maild.model import IMAPKey, MessageKey, POP3Key, Protocol, RetrievedMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def letter(n: int, *, subject: str = "", sender: str = "", date: str = "", body: bytes = b"") -> bytes:
    """A small CRLF message numbered ``n``; every field has a default."""
    return (
        f"From: {sender or f'sender{n}@example.org'}\r\n"
        f"To: anna@example.com\r\n"
        f"Subject: {subject or f'Nachricht {n}'}\r\n"
        f"Date: {date or f'Mon, {n % 28 + 1:02d} Feb 2026 10:00:00 +0000'}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\n"
    ).encode() + (body or b"Hallo %d\r\n" % n)


async def build_archive(
    path: Path,
    items: Sequence[tuple[str, MessageKey, bytes]],
    *,
    organisations: dict[str, str] | None = None,
    now: datetime = T0,
) -> None:
    """Create an archive at ``path`` holding ``items`` as (account, server key, raw).

    Accounts are created on the fly; the protocol follows the key type; ``organisations`` maps an
    account name to its organisation (default "Kanzlei Berger").
    """
    store = await Store.open(path)
    try:
        seen: set[str] = set()
        for account, key, raw in items:
            if account not in seen:
                seen.add(account)
                protocol: Protocol = "pop3" if isinstance(key, POP3Key) else "imap"
                org = (organisations or {}).get(account, "Kanzlei Berger")
                await store.ensure_account(account, org, "Anna Berger", protocol, now)
            await store.store_batch(account, [RetrievedMessage(key, raw)], now)
    finally:
        await store.close()


def pop(n: int) -> POP3Key:
    """POP3 key ``uidl-<n>``."""
    return POP3Key(f"uidl-{n}")


def imap(mailbox: str, uid: int) -> IMAPKey:
    """IMAP key in ``mailbox`` with UIDVALIDITY 1."""
    return IMAPKey(mailbox, 1, uid)
