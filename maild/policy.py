"""Pure decisions of maild: what to retrieve, what left the server, what may be deleted now, when it
is due, and whether to compress. How the shared limits of the process are split is
:mod:`maild.limits`; how long to wait before the next cycle or IDLE connection, :mod:`maild.waiting`;
which known POP3 UIDLs need comparing before they are taken for the archived message or deleted,
:mod:`maild.pop3_uidls` (both split from here in the review of session 14).

Nothing here does I/O; the clock is a parameter. :mod:`maild.fetch.cycle`
shows the order in which the fetch decisions are applied, and does the I/O they call for.

**Where a message may be deleted on a server: here.** A fetch cycle deletes a message only when all of
these hold, each decided by a function of this module:

1. the account's ``retention`` is not ``"keep"`` and deleting is not refused for the session
   (:func:`deletion_refusal`: ``"delete-after"`` with content-digest identities) nor suspended
   (:func:`move_suspension`: a POP3 account whose server holds what an unfinished move's target
   holds);
2. the server named it in this very session (it is in the inventory), the archive records it for
   the account, its identity is not one maild already deleted once (:func:`reappeared`), and with
   ``"delete-after"`` it was first archived at least ``retention_days`` days ago
   (:func:`select_deletions`);
3. a query of the archive made after every commit of the cycle returned, right before deleting
   (``Store.archived``), finds it with all its octets (and its Maildir delivery, with
   ``deliver_maildir``), and, for IMAP, its UID was re-verified in this very session (its RFC822.SIZE,
   or its header section, matched the archived message; or it was retrieved in this session; see
   ``maild.fetch.resync.verify_uid_map``): :func:`confirm_deletions` takes both answers.

The adapters obey: POP3 ``DELE`` takes effect only at ``+OK`` to QUIT (RFC 1939 section 6); IMAP
without UIDPLUS may still skip a mailbox in which another client marked messages ``\\Deleted`` (it
learns that only from the server, mid-deletion; see ``IMAPMailbox.delete``).

**Where a failing message is set aside: here.** A message that failed to arrive
:data:`SET_ASIDE_AFTER_FAILURES` times in a row (refused by the server, or the connection broke while
it was being received, :func:`in_flight`) is skipped by later cycles (:func:`set_aside`), except for one
attempt a day (:data:`SET_ASIDE_RETRY_S`) and one on ``maild fetch-now --retry-failed``. It stays on
the server: it is not archived, so rule 2 above never selects it for deletion.

**Where backoff is decided:** :mod:`maild.waiting`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import assert_never

from maild.model import (
    CompressMode,
    FailureRecord,
    InventoryEntry,
    Location,
    MessageKey,
    POP3Key,
    Retention,
)

SET_ASIDE_AFTER_FAILURES = 3
"""Failures in a row after which a message is set aside (skipped by later cycles, left on the server)."""
SET_ASIDE_RETRY_S = 86400.0
"""A set-aside message is tried again once this many seconds (a day) have passed since its last failure."""


@dataclass(frozen=True, slots=True)
class RetrievalPlan:
    """What to retrieve in this cycle.

    Attributes:
        retrieve: keys on the server that the archive lacks for this account, in server order.
        too_large: keys skipped because their size exceeds ``max_message_size``; left on the server.
        set_aside: keys skipped because they failed too often (:func:`set_aside`); left on the server.
    """

    retrieve: list[MessageKey]
    too_large: list[MessageKey]
    set_aside: list[MessageKey] = field(default_factory=list)


def set_aside(records: Mapping[MessageKey, FailureRecord], now: datetime) -> frozenset[MessageKey]:
    """The keys a cycle at ``now`` skips: failed :data:`SET_ASIDE_AFTER_FAILURES` times in a row, the
    last failure less than :data:`SET_ASIDE_RETRY_S` seconds ago, and no retry asked for.

    Only failures of kind ``"message"`` count (``FailureRecord.kind``, :data:`maild.model.FailureKind`).
    A message whose last failure is ``"local"`` (this machine: the spool's disk short of the reserve,
    the spool's bound reached, its directory not writable; :func:`maild.spool.local_failure`) is never
    set aside: that says nothing about the message, and it is retried at every cycle until there is
    room (its record still shows in ``maild status`` with that reason). A local failure also ends a
    run of message failures: the record counts the run of its kind.

    Args:
        records: the account's failure records (``maild.archive.failures.failure_records``).
        now: the current time, aware.
    """
    retry = timedelta(seconds=SET_ASIDE_RETRY_S)
    return frozenset(
        key
        for key, record in records.items()
        if record.failures >= SET_ASIDE_AFTER_FAILURES
        and record.kind == "message"
        and not record.retry_requested
        and now - record.last_failed_at < retry
    )


def in_flight(order: Sequence[MessageKey], arrived: Collection[MessageKey]) -> MessageKey | None:
    """The message that was being received when a retrieval broke off: the first of ``order`` (the
    keys asked for, in the order the adapter yields them, see ``Maildrop.retrieve``) that neither
    arrived nor failed on its own; None when every key came out.

    Args:
        order: the keys passed to ``Maildrop.retrieve``.
        arrived: the keys it yielded (messages and per-message failures).
    """
    for key in order:
        if key not in arrived:
            return key
    return None


def plan_retrieval(
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    max_message_size: int | None,
    skip: Collection[MessageKey] = frozenset(),
) -> RetrievalPlan:
    """Decide which messages to retrieve: every inventory entry not yet linked to the account.

    Args:
        inventory: what the server holds now.
        known: the account's recorded server identities.
        max_message_size: octets; larger messages (by the server's reported size) are skipped.
        skip: keys set aside (:func:`set_aside`); listed in ``set_aside``, not retrieved.

    Returns:
        The plan. A message whose size is unknown is retrieved.
    """
    retrieve: list[MessageKey] = []
    too_large: list[MessageKey] = []
    aside: list[MessageKey] = []
    for entry in inventory:
        if entry.key in known:
            continue
        if entry.key in skip:
            aside.append(entry.key)
        elif (
            max_message_size is not None
            and entry.size_octets is not None
            and entry.size_octets > max_message_size
        ):
            too_large.append(entry.key)
        else:
            retrieve.append(entry.key)
    return RetrievalPlan(retrieve, too_large, aside)


def needs_sizes(inventory: Sequence[InventoryEntry], plan: RetrievalPlan) -> bool:
    """Whether some key ``plan`` retrieves has no size in ``inventory`` (IMAP inventories have none)."""
    wanted = set(plan.retrieve)
    return any(entry.size_octets is None and entry.key in wanted for entry in inventory)


def apply_sizes(plan: RetrievalPlan, sizes: Mapping[MessageKey, int], max_message_size: int) -> RetrievalPlan:
    """Move the keys whose size in ``sizes`` exceeds ``max_message_size`` to ``too_large``.

    Args:
        plan: a plan from :func:`plan_retrieval`.
        sizes: server sizes in octets (IMAP RFC822.SIZE, RFC 9051 section 7.5.2) of some keys.
        max_message_size: octets.

    Returns:
        The new plan; a key without a size stays to be retrieved (the adapter still refuses a
        literal above the limit while reading).
    """
    retrieve: list[MessageKey] = []
    too_large = list(plan.too_large)
    for key in plan.retrieve:
        size = sizes.get(key)
        (too_large if size is not None and size > max_message_size else retrieve).append(key)
    return RetrievalPlan(retrieve, too_large, list(plan.set_aside))


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


# -- deleting on the server ---------------------------------------------------------------------------


def deletion_refusal(retention: Retention, identity: str, *, account: str, host: str) -> str | None:
    """Whether this session may delete nothing at all, and why.

    ``"delete-after"`` relies on one identity naming one message for ``retention_days``; identities
    that are digests of the content (a POP3 server without UIDL) change when a server rewrites a
    message, so the mode is refused for them. ``"delete"`` stays allowed: it deletes only what this
    very session proves archived.

    Args:
        retention: the account's mode.
        identity: how the session identified messages (``Maildrop.identity``): ``"server"``,
            ``"uidl"`` or ``"content-digest"``.
        account: the account name, for the message.
        host: the server host, for the message.

    Returns:
        None when deleting may go ahead; else the text of the configuration error the cycle raises
        at its end (after archiving as usual), naming the dotted key.

    Standard: RFC 1939 section 7 (UIDL is optional).
    """
    if retention == "delete-after" and identity == "content-digest":
        return (
            f'accounts.{account}.retention: "delete-after" refused: {host} offers no '
            "UIDL (RFC 1939 section 7), so messages are identified by digests of their content, "
            "which change if the server rewrites a message, and an identity must stay the same "
            'for retention_days; nothing was deleted. Use retention = "delete" (safe with digest '
            'identities: it deletes only what this session proves archived) or "keep"'
        )
    return None


def move_suspension(account: str, moves: Sequence[tuple[str, str, int]]) -> str | None:
    """Whether an account's deletions are suspended by unfinished moves, and why.

    A move (``maild migrate`` of account A into IMAP account B) uploads into B what exists only in
    maild's archive. When this account's server holds messages that B holds too (same SHA-256), it
    is B's mailbox seen through POP3 (or through IMAP under another name), whatever the host names:
    deleting would undo the move. So
    while such a move is unfinished (``maild retire`` has not finished it), nothing is deleted, and the
    status says why.

    Args:
        account: the account (POP3, or IMAP other than B), for the message.
        moves: the archive's answer (``maild.archive.move_guard.overlapping_moves``), asked after
            every commit of the cycle returned: (source, target, messages in common) per move.

    Returns:
        None when deleting may go ahead; else the reason, naming the command that ends the
        suspension.
    """
    if not moves:
        return None
    source, target, shared = moves[0]
    others = f" (and {len(moves) - 1} more moves)" if len(moves) > 1 else ""
    return (
        f"deletion suspended: {shared} messages on {account}'s server are also in IMAP account {target},"
        f" into which the move from {source} is unfinished{others}, so this is the same mailbox and"
        f" deleting would undo the move; nothing is deleted until `maild retire {source} --into {target}`"
        f" finishes it"
    )


def select_deletions(
    retention: Retention,
    retention_days: int | None,
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    now: datetime,
) -> list[MessageKey]:
    """Decide which messages are candidates for deletion on the server now (rule 2 of the module).

    Only keys in ``known`` qualify, and none whose identity maild already deleted once (see
    :func:`reappeared`); the candidates still need the archive's confirmation made right before
    deleting (:func:`confirm_deletions`).

    Args:
        retention: ``"keep"`` (nothing), ``"delete"`` (everything archived), ``"delete-after"``
            (archived at least ``retention_days`` days ago, counted from first fetch).
        retention_days: days, for ``"delete-after"`` (the configuration guarantees them).
        inventory: what the server holds now.
        known: the account's recorded server identities, with first-fetch times (UTC).
        now: the current time (aware, UTC).

    Returns:
        Keys to delete, in server order.

    Raises:
        ValueError: ``"delete-after"`` without days: a caller bypassed the configuration; deleting
            without a cutoff would delete everything, so nothing is decided.
    """
    cutoff: datetime | None
    if retention == "keep":
        return []
    if retention == "delete":
        cutoff = None
    elif retention == "delete-after":
        if retention_days is None:
            raise ValueError("delete-after needs retention_days")
        cutoff = now - timedelta(days=retention_days)
    else:
        assert_never(retention)
    out = []
    for entry in inventory:
        loc = known.get(entry.key)
        if loc is None or _reappeared(entry.key, loc):
            continue
        if cutoff is None or loc.first_fetched_at <= cutoff:
            out.append(entry.key)
    return out


def confirm_deletions(
    candidates: Sequence[MessageKey],
    archived: Collection[MessageKey],
    verified: Collection[MessageKey] | None = None,
) -> list[MessageKey]:
    """The final decision (rule 3 of the module): the candidates the archive holds at this moment
    and, when ``verified`` is given (IMAP), whose UID was re-verified in this session.

    Args:
        candidates: from :func:`select_deletions`, in server order.
        archived: the answer of ``Store.archived`` for ``candidates``, asked after every commit of the
            cycle returned and right before deleting: the keys linked to the account with all their
            octets (and their Maildir delivery recorded, with ``deliver_maildir``).
        verified: IMAP: the keys whose UID was shown in this session to name the archived message
            (never deleting by a UID not re-verified); None: no such check (POP3 UIDLs).

    Returns:
        The keys that may be deleted now, in server order.
    """
    return [key for key in candidates if key in archived and (verified is None or key in verified)]


def next_deletion_due(
    retention: Retention, retention_days: int | None, oldest_kept_since: datetime | None
) -> datetime | None:
    """When the next message becomes due for deletion (for the status' ``next_deletion_due``).

    Args:
        retention: the account's mode.
        retention_days: days, for ``"delete-after"``.
        oldest_kept_since: the earliest first-fetch time (UTC) of the archived messages still on the
            server, or None when there are none.

    Returns:
        With ``"delete-after"``: that time plus ``retention_days`` days (UTC); the first cycle from
        then on deletes it. None for the other modes, or when nothing archived is on the server.
    """
    if retention != "delete-after" or retention_days is None or oldest_kept_since is None:
        return None
    return oldest_kept_since + timedelta(days=retention_days)


def reappeared(inventory: Sequence[InventoryEntry], known: Mapping[MessageKey, Location]) -> list[MessageKey]:
    """POP3 messages on the server under an identity that maild already deleted there, or that left
    the server and came back and could not be shown to be the archived message (:func:`listed_known`,
    :mod:`maild.fetch.pop3_listed`: still recorded as gone).

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
    # Called for keys in the inventory, with the records after update_presence: a gone_at still set
    # there is an identity that came back but was not accepted as the same message (pop3_listed).
    return (
        isinstance(key, POP3Key)
        and not key.exact_content
        and (loc.deleted_at is not None or loc.gone_at is not None)
    )


# -- compression -----------------------------------------------------------------------------------------

#: Link rate in octets per second (as received from the socket while a message transfer waited for
#: data) below which ``compress = "auto"`` turns on COMPRESS=DEFLATE (RFC 4978): 4 MB/s, 32 Mbit/s.
#: Compression only pays where the link is slower than the server can deflate (Dovecot 2.3 at its
#: default level: about 7 MB/s of mixed mail on the benchmark machine, which shrinks to about 70 %);
#: on a fast link it costs the server's CPU and time. See ``docs/performance.md``.
AUTO_COMPRESS_BELOW_OCTETS_PER_S = 4_000_000


def want_compression(mode: CompressMode, *, offered: bool, link_octets_per_s: float | None) -> bool:
    """Whether to send ``COMPRESS DEFLATE`` on a signed-in IMAP connection.

    Args:
        mode: the account's ``compress``: ``"never"``, ``"always"`` (whenever offered) or ``"auto"``
            (offered, and a transfer from this server was measured slower than
            :data:`AUTO_COMPRESS_BELOW_OCTETS_PER_S`).
        offered: the server announced ``COMPRESS=DEFLATE``.
        link_octets_per_s: the last measured rate of message transfers from this server in octets
            per second, None when none was measured yet (round-trip time says nothing about it).

    Standard: RFC 4978 section 3.
    """
    if not offered or mode == "never":
        return False
    if mode == "always":
        return True
    return link_octets_per_s is not None and link_octets_per_s < AUTO_COMPRESS_BELOW_OCTETS_PER_S
