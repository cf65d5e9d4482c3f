"""The POP3 adapter's inventory step: what the maildrop holds, and how this session addresses it.

``UIDL`` and ``LIST`` (RFC 1939 sections 5 and 7) give one :class:`~maild.model.InventoryEntry` per
message and, for this session only, each identity's message-number and LIST size. Messages sharing a
UIDL are left out (they cannot be addressed by it). A server without UIDL gets identities computed
from the messages' content (:mod:`maild.protocols.pop3.digest_inventory`, imported only then).
Split from ``maildrop.py`` in session 15 with no change of behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from maild.model import InventoryEntry, POP3Key
from maild.protocols.pop3.session import Listing, POP3Session
from maild.protocols.pop3.top_reads import Run

_log = structlog.stdlib.get_logger("maild.protocols.pop3.maildrop")  # the adapter's events


@dataclass(frozen=True, slots=True)
class Inventory:
    """One inventory of the maildrop.

    Attributes:
        entries: one per addressable message, in message-number order, sizes in octets from LIST.
        msgnum_by_uidl: identity (UIDL, or content digest) to message-number in this session.
        size_by_uidl: identity to LIST size in octets.
        duplicates: UIDLs found on more than one message (left out of ``entries``).
        identity: ``"uidl"``, or ``"content-digest"`` for a server without UIDL.
        warnings: what could not be done as usual, in words for the status.
        served: identities the digest inventory read to name them (``TOP n 0`` or RETR).
        served_unnamed: messages it read and could not name.
    """

    entries: list[InventoryEntry]
    msgnum_by_uidl: dict[str, int]
    size_by_uidl: dict[str, int]
    duplicates: frozenset[str] = frozenset()
    identity: str = "uidl"
    warnings: tuple[str, ...] = ()
    served: frozenset[str] = field(default_factory=frozenset)
    served_unnamed: int = 0


async def take_inventory(
    session: POP3Session,
    run: Run,
    *,
    window: int,
    window_octets: int,
    max_message_size: int | None,
) -> Inventory:
    """UIDL and LIST (or, without UIDL, digests of the content) of the logged-in ``session``.

    Args:
        session: the logged-in session (its steps run through ``run``).
        run: the maildrop's executor step runner.
        window, window_octets, max_message_size: for the digest inventory (see
            :func:`~maild.protocols.pop3.digest_inventory.inventory_without_uidl`).

    Standard: RFC 1939 section 7 (UIDL, TOP), section 5 (LIST).

    Raises:
        ThrottledError: UIDL was refused with ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]``.
        ProtocolError: the server refused LIST, a listing is malformed, or the two listings disagree
            on the message-numbers.
        NetworkTimeout, ConnectError: the session is broken.
    """
    listing = await run(session.listing)
    if listing.uidl is None:
        return await _without_uidl(session, run, listing, window, window_octets, max_message_size)
    uidls = listing.uidl.uidl_by_msgnum
    if set(uidls) != set(listing.sizes):
        raise session.protocol_error(
            "UIDL and LIST name different message-numbers", standard="RFC 1939 section 7"
        )
    dups = listing.uidl.duplicates
    for uidl, msgnums in dups.items():
        _log.warning(
            "pop3.uidl.duplicate", account=session.settings.account, uidl=uidl, message_count=len(msgnums)
        )
    entries: list[InventoryEntry] = []
    msgnum_by_uidl: dict[str, int] = {}
    size_by_uidl: dict[str, int] = {}
    for msgnum in sorted(uidls):
        uidl = uidls[msgnum]
        if uidl not in dups:
            msgnum_by_uidl[uidl] = msgnum
            size_by_uidl[uidl] = listing.sizes[msgnum]
            entries.append(InventoryEntry(POP3Key(uidl), listing.sizes[msgnum]))
    return Inventory(entries, msgnum_by_uidl, size_by_uidl, frozenset(dups))


async def _without_uidl(
    session: POP3Session,
    run: Run,
    listing: Listing,
    window: int,
    window_octets: int,
    max_message_size: int | None,
) -> Inventory:
    """Identities for a server without UIDL (see
    :func:`~maild.protocols.pop3.digest_inventory.inventory_without_uidl`)."""
    # imported here: only a server without UIDL (RFC 1939 section 7) needs it
    from maild.protocols.pop3 import digest_inventory

    found = await digest_inventory.inventory_without_uidl(
        session, listing, run, window=window, window_octets=window_octets, max_message_size=max_message_size
    )
    return Inventory(
        found.entries,
        found.msgnum_by_key,
        found.size_by_key,
        identity="content-digest",
        warnings=found.warnings,
        served=found.served,
        served_unnamed=found.served_unnamed,
    )
