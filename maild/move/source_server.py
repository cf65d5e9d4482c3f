"""Reading A's server for retire's check (:mod:`maild.move.source_check`) and its second listing
(:mod:`maild.move.source_recheck`): the listing both take (:func:`list_source`), header sections and
octets of listed messages, through the fetch's own adapter, read only.

IMAP ``BODY.PEEK[HEADER]`` scans and ``BODY.PEEK[]`` (flags untouched); a POP3 A is read by
:mod:`maild.move.source_pop3`. Never DELE, STORE or EXPUNGE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from maild.errors import MaildError
from maild.model import IMAPKey, InventoryEntry, MessageKey, POP3Key, RetrievalFailure
from maild.move.compare import BodyDigest, body_digest
from maild.protocols.base import Maildrop


def is_imap(maildrop: Maildrop) -> bool:
    """Whether ``maildrop`` is an IMAP session (else POP3: see :mod:`maild.move.source_pop3`)."""
    from maild.protocols.imap.mailbox import IMAPMailbox

    return isinstance(maildrop, IMAPMailbox)


async def read_headers(
    maildrop: Maildrop, entries: Sequence[InventoryEntry]
) -> tuple[dict[MessageKey, bytes], dict[MessageKey, int]]:
    """Header sections and sizes of ``entries`` of an IMAP A: a header scan (``BODY.PEEK[HEADER]``,
    flags untouched) of each mailbox holding one of them. A POP3 A's are read whole instead, never
    by ``TOP n 0`` (:mod:`maild.move.source_pop3`): ``{}`` for one."""
    from maild.protocols.imap.mailbox import IMAPMailbox

    keys = [e.key for e in entries]
    if not keys or not isinstance(maildrop, IMAPMailbox):
        return {}, {}
    headers: dict[MessageKey, bytes] = {}
    sizes: dict[MessageKey, int] = {}
    for mailbox in dict.fromkeys(k.mailbox for k in keys if isinstance(k, IMAPKey)):
        scan = await maildrop.headers(mailbox)
        for uid, item in scan.messages.items():
            key = IMAPKey(mailbox, scan.uidvalidity, uid)
            if item.header is not None:
                headers[key] = item.header
            if item.size_octets is not None:
                sizes[key] = item.size_octets
    return headers, sizes


async def read_bodies(maildrop: Maildrop, keys: Sequence[MessageKey]) -> dict[MessageKey, BodyDigest]:
    """Download ``keys`` (see :func:`body_wanted`) and digest them; a message that fails is left out
    (and so counts as not archived)."""
    out: dict[MessageKey, BodyDigest] = {}
    if keys:
        async for item in maildrop.retrieve(keys):
            if not isinstance(item, RetrievalFailure):
                out[item.key] = body_digest(item.whole())
    return out


def require_every_mailbox(refused: Mapping[str, str]) -> None:
    """Raise when A's IMAP server refused to SELECT a configured mailbox (``refused``: mailbox to
    reason; the inventory leaves such a mailbox out, so what it holds is unknown).

    Raises:
        MaildError: ``refused`` is not empty.
    """
    if refused:
        mailbox, why = next(iter(refused.items()))
        raise MaildError(
            f"{len(refused)} of its mailboxes could not be selected, so what they hold is unknown"
            f" (first: {mailbox!r}: {why})"
        )


@dataclass(frozen=True, slots=True)
class SourceListing:
    """What A's server lists, as the retire check and its second listing count it.

    Attributes:
        inventory: the adapter's inventory (POP3: messages with a UIDL of their own; IMAP: the
            messages of every configured mailbox).
        duplicate_uidls: POP3 UIDLs shared by several messages, left out of ``inventory`` and never
            taken by the fetch (:attr:`Maildrop.duplicate_uidls`); empty for IMAP.
    """

    inventory: list[InventoryEntry]
    duplicate_uidls: frozenset[str]

    def sizes(self) -> dict[MessageKey, int | None]:
        """Every listed identity (a shared UIDL as its ``POP3Key``) to the size in octets it is listed
        with; None for a shared UIDL and an entry listed without a size."""
        sizes: dict[MessageKey, int | None] = {POP3Key(u): None for u in self.duplicate_uidls}
        sizes.update((e.key, e.size_octets) for e in self.inventory)
        return sizes


async def list_source(maildrop: Maildrop) -> SourceListing:
    """Open A's session and list A's server, read only: the inventory, the UIDLs it shares, and
    every configured IMAP mailbox selected.

    The session stays open for the caller, who ends it (also when this raises: it may have opened).

    Raises:
        MaildError: the server could not be reached, signed in to or listed (the errors of
            :meth:`Maildrop.open` and :meth:`Maildrop.inventory`), or an IMAP server refused to
            select a configured mailbox (:func:`require_every_mailbox`).

    Standard: RFC 1939 sections 5 and 7 (LIST, UIDL); RFC 9051 sections 6.3.2 and 6.4.4 (SELECT,
    UID SEARCH).
    """
    await maildrop.open()
    inventory = await maildrop.inventory()
    listing = SourceListing(inventory, maildrop.duplicate_uidls)
    require_every_mailbox(maildrop.mailbox_failures)
    return listing
