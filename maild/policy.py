"""Pure decisions of a fetch cycle: what to retrieve, what may be deleted now, what left the server.

Nothing here does I/O; the clock is a parameter. ``fetch.py`` shows the order in which these
decisions are applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.model import InventoryEntry, Location, MessageKey, POP3Key


@dataclass(frozen=True, slots=True)
class RetrievalPlan:
    """What to retrieve in this cycle.

    Attributes:
        retrieve: keys on the server that the archive lacks for this account, in server order.
        too_large: keys skipped because their size exceeds ``max_message_size``; left on the server.
    """

    retrieve: list[MessageKey]
    too_large: list[MessageKey]


def plan_retrieval(
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    max_message_size: int | None,
) -> RetrievalPlan:
    """Decide which messages to retrieve: every inventory entry not yet linked to the account.

    Args:
        inventory: what the server holds now.
        known: the account's recorded server identities.
        max_message_size: octets; larger messages (by the server's reported size) are skipped.

    Returns:
        The plan. A message whose size is unknown is retrieved.
    """
    retrieve: list[MessageKey] = []
    too_large: list[MessageKey] = []
    for entry in inventory:
        if entry.key in known:
            continue
        if (
            max_message_size is not None
            and entry.size_octets is not None
            and entry.size_octets > max_message_size
        ):
            too_large.append(entry.key)
        else:
            retrieve.append(entry.key)
    return RetrievalPlan(retrieve, too_large)


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """Archive records whose server presence changed.

    Attributes:
        gone: recorded keys no longer in the inventory, not yet marked gone.
        back: keys marked gone that are in the inventory again.
    """

    gone: list[MessageKey]
    back: list[MessageKey]


def presence_changes(
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
) -> PresenceChange:
    """Compare the archive's records with the server's inventory.

    Args:
        inventory: what the server holds now (the complete inventory of the account).
        known: the account's recorded server identities.

    Returns:
        Which records left the server and which came back.
    """
    present = {e.key for e in inventory}
    gone = [k for k, loc in known.items() if loc.gone_at is None and k not in present]
    back = [
        k for k, loc in known.items() if loc.gone_at is not None and loc.deleted_at is None and k in present
    ]
    return PresenceChange(gone, back)


def select_deletions(
    retention: str,
    retention_days: int | None,
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    now: datetime,
) -> list[MessageKey]:
    """Decide which messages may be deleted on the server now.

    Never selects a message that is not recorded in the archive for this account: only keys in
    ``known`` qualify, and ``fetch.py`` re-checks the archive immediately before deleting. Nor a
    POP3 message whose identity maild already deleted once (see :func:`reappeared`).

    Args:
        retention: ``"keep"`` (nothing), ``"delete"`` (everything archived), ``"delete-after"``
            (archived at least ``retention_days`` days ago, counted from first fetch).
        retention_days: days, for ``"delete-after"``.
        inventory: what the server holds now.
        known: the account's recorded server identities, with first-fetch times (UTC).
        now: the current time (aware).

    Returns:
        Keys to delete, in server order.

    Raises:
        ValueError: unknown retention mode, or ``"delete-after"`` without days.
    """
    if retention == "keep":
        return []
    if retention == "delete":
        cutoff = None
    elif retention == "delete-after":
        if retention_days is None:
            raise ValueError("delete-after needs retention_days")
        cutoff = now - timedelta(days=retention_days)
    else:
        raise ValueError(f"unknown retention mode {retention!r}")
    out = []
    for entry in inventory:
        loc = known.get(entry.key)
        if loc is None or _reappeared(entry.key, loc):
            continue
        if cutoff is None or loc.first_fetched_at <= cutoff:
            out.append(entry.key)
    return out


def reappeared(inventory: Sequence[InventoryEntry], known: Mapping[MessageKey, Location]) -> list[MessageKey]:
    """POP3 messages on the server under an identity that maild already deleted there.

    After ``+OK`` to QUIT the server has removed the message (RFC 1939 section 6), so the same
    identity showing up again means it now names another message: a server re-using UIDLs, or a
    header identity (``"hdr:"``) shared by a new message. Such a message is never deleted (its
    identity says nothing reliable about what the archive holds) and never retrieved (the identity is
    known); it stays on the server and the cycle reports it. Exempt: full-content identities
    (``"sha256:"``), which prove the archive holds exactly these octets.

    Args:
        inventory: what the server holds now.
        known: the account's recorded server identities.

    Returns:
        Their keys, in server order.
    """
    out: list[MessageKey] = []
    for entry in inventory:
        loc = known.get(entry.key)
        if loc is not None and _reappeared(entry.key, loc):
            out.append(entry.key)
    return out


def _reappeared(key: MessageKey, loc: Location) -> bool:
    return isinstance(key, POP3Key) and loc.deleted_at is not None and not key.exact_content
