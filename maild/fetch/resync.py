"""IMAP bookkeeping in a fetch cycle: UIDVALIDITY per mailbox, and recovery when it changes.

A UID names a message only together with its mailbox's UIDVALIDITY (RFC 9051 section 2.3.1.1). When
a server changes a mailbox's UIDVALIDITY (a restored backup, a migration, a rebuilt index), every UID
recorded before may now name another message or none. Then maild:

1. notices the change: the UIDVALIDITY that SELECT reports differs from the one recorded in the
   ``mailboxes`` table (or, for an archive without that record, from every UIDVALIDITY under which
   the mailbox's messages were recorded);
2. never uses the old UID map again: the old locations are not in the new inventory, so the cycle
   records them as no longer seen (``gone_at``), and the archive keeps the messages;
3. recognises archived messages under their new UIDs without downloading them: one
   ``UID FETCH (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`` pass over the UIDs the archive
   does not know, matched on Message-ID *and* size against the messages the account held in that
   mailbox. A match must be unambiguous on both sides (one archived message, one new UID); it gets a
   new location row pointing at the existing message (first-fetch time, INTERNALDATE and flags
   copied from its old location);
4. leaves everything else to the normal retrieval, where the SHA-256 dedupe of the store
   guarantees that a message already archived is not stored a second time;
5. logs ``imap.uidvalidity-changed`` (a warning) and reports the change in the cycle's result.

UIDs reassigned under an unchanged UIDVALIDITY (Proton Bridge and other gateways do this after a
resync) would otherwise go unnoticed: a new message at an already-known UID is never fetched, and the
archive records wrong locations. :func:`verify_uid_map` checks every cycle, for every known UID in
the inventory, that the server's RFC822.SIZE equals the size the archive holds there (one
``UID FETCH (RFC822.SIZE)`` per 400 UIDs, all sent in one write with the header fetch of a random
sample of :data:`HEADER_SAMPLE` small archived messages: one round trip); on a mismatch, and for
the sampled UIDs whose sizes match, it compares the header sections (``BODY.PEEK[HEADER]`` against
the archived octets; a mismatch outside the sample costs one more round trip for its header).
Same header: a server whose sizes are off (its size is recorded, ``locations.server_size``).
Different header: that mailbox's map is distrusted: its locations under the current UIDVALIDITY are
removed (the messages stay archived), so that the normal retrieval re-identifies every message there
by content (SHA-256: nothing is stored twice), fetches what is really new and records the right
locations; the event is logged (``imap.uid-map-distrusted``) and shown in the status. Only UIDs
verified this way (or retrieved in this session) may be deleted
(:func:`maild.policy.confirm_deletions`).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from maild.archive import uidmap
from maild.archive.store import MailboxState, Store
from maild.config.loader import AccountConfig
from maild.message import same_header_section, summarise
from maild.model import IMAPKey, InventoryEntry, Location, MessageKey
from maild.protocols.base import Maildrop

if TYPE_CHECKING:
    from maild.archive.cycle_reads import AccountReads
    from maild.protocols.imap.mailbox import IMAPMailbox

log = structlog.get_logger("maild.imap")

HEADER_SAMPLE = 8
"""Known UIDs per mailbox whose header section is compared with the archive although their size
matched (a renumbering that keeps sizes equal), once per login session; drawn at random among the
small ones before their sizes are known (fetched with the size check), used where the size matched."""
HEADER_SAMPLE_MAX_OCTETS = 64 * 2**10
"""Only messages up to this size in octets are sampled (the archived octets are read for the check)."""
_RANDOM = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class UIDValidityChange:
    """One mailbox whose UIDVALIDITY changed, and what the cycle did about it.

    Attributes:
        mailbox: the readable mailbox name.
        old_uidvalidity: the UIDVALIDITY recorded before.
        new_uidvalidity: the UIDVALIDITY the server reports now.
        relinked: archived messages recognised by Message-ID and size under their new UIDs (new
            location rows, nothing downloaded).
        to_retrieve: messages under new UIDs left to the normal retrieval (no Message-ID, no or an
            ambiguous match, not returned by the identity pass); SHA-256 dedupe stores none twice.
        at: when the change was noticed (UTC).
    """

    mailbox: str
    old_uidvalidity: int
    new_uidvalidity: int
    relinked: int
    to_retrieve: int
    at: datetime


@dataclass(slots=True)
class IMAPCycleInfo:
    """What a fetch cycle learned about an IMAP account's mailboxes.

    Attributes:
        mailboxes: the mailboxes the inventory covered, readable names, in inventory order.
        mailbox_failures: mailboxes the server refused to select, with the reason.
        uidvalidity_changes: mailboxes whose UIDVALIDITY changed since the last cycle.
    """

    mailboxes: list[str] = field(default_factory=list)
    mailbox_failures: dict[str, str] = field(default_factory=dict)
    uidvalidity_changes: list[UIDValidityChange] = field(default_factory=list)
    uid_map_distrusted: list[UIDMapDistrust] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UIDMapDistrust:
    """A mailbox whose UIDs were reassigned under an unchanged UIDVALIDITY (see :func:`verify_uid_map`).

    Attributes:
        mailbox: the readable mailbox name.
        uidvalidity: its (unchanged) UIDVALIDITY.
        reassigned: known UIDs whose size and header section no longer match the archive.
        relocated: locations removed so that the retrieval re-identifies them by content.
        at: when it was noticed (UTC).
    """

    mailbox: str
    uidvalidity: int
    reassigned: int
    relocated: int
    at: datetime

    def warning(self) -> str:
        """The sentence the status shows."""
        return (
            f"UIDs of {self.mailbox!r} were reassigned under an unchanged UIDVALIDITY"
            f" ({self.uidvalidity}): {self.reassigned} known UIDs now hold other messages;"
            f" {self.relocated} locations re-identified by content, nothing deleted by them"
        )


def _previous_uidvalidity(
    mailbox: str, uidvalidity: int, recorded: MailboxState | None, known: Mapping[MessageKey, Location]
) -> int | None:
    """The UIDVALIDITY the archive knew ``mailbox`` under, when it differs from ``uidvalidity``."""
    if recorded is not None:
        return recorded.uidvalidity if recorded.uidvalidity != uidvalidity else None
    seen = {k.uidvalidity for k in known if isinstance(k, IMAPKey) and k.mailbox == mailbox}
    if not seen or uidvalidity in seen:
        return None
    return max(seen)


async def reconcile(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    now: datetime,
    *,
    reads: AccountReads | None = None,
) -> IMAPCycleInfo | None:
    """Check each selected mailbox's UIDVALIDITY, recover changed ones, and record the new state.

    Call after :meth:`~maild.protocols.imap.mailbox.IMAPMailbox.inventory` and before reading the account's
    locations for the retrieval plan, so that recognised messages are not retrieved.

    Args:
        account: the account's configuration.
        store: the open archive.
        maildrop: the cycle's session; anything but an IMAP session returns None at once.
        inventory: what :meth:`inventory` returned.
        now: the current time (aware, UTC).
        reads: the cycle's snapshot of the account (:mod:`maild.archive.cycle_reads`), taken
            since its last write: its mailbox states and locations are used; None: read here.

    Returns:
        What was learned, or None for POP3.

    Raises:
        StoreError: the archive failed.
        ProtocolError, NetworkTimeout, ConnectError, ThrottledError, TransientError: from the
            identity pass; relinks committed before stay (each is correct on its own).

    Cancellation: relinks and the mailbox record are each one transaction; a cycle cancelled in
    between notices the change again next time and only relinks what is still unknown.
    """
    if account.protocol != "imap":
        return None
    from maild.protocols.imap.mailbox import IMAPMailbox

    if not isinstance(maildrop, IMAPMailbox):
        return None
    info = IMAPCycleInfo(list(maildrop.mailbox_states), dict(maildrop.mailbox_failures))
    if reads is not None:
        recorded, known = reads.mailbox_states, reads.locations
    else:
        recorded = await store.mailbox_states(account.name)
        known = await store.locations(account.name)
    updates: list[tuple[str, int, int | None]] = []
    for mailbox, state in maildrop.mailbox_states.items():
        before = recorded.get(mailbox)
        old = _previous_uidvalidity(mailbox, state.uidvalidity, before, known)
        if old is not None:
            change = await _recover(
                account, store, maildrop, mailbox, old, state.uidvalidity, inventory, known, now
            )
            info.uidvalidity_changes.append(change)
        if before is None or (before.uidvalidity, before.uidnext) != (state.uidvalidity, state.uidnext):
            updates.append((mailbox, state.uidvalidity, state.uidnext))
    await store.record_mailbox_states(account.name, updates, now)
    return info


async def _recover(
    account: AccountConfig,
    store: Store,
    maildrop: IMAPMailbox,
    mailbox: str,
    old: int,
    new: int,
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    now: datetime,
) -> UIDValidityChange:
    """Relink archived messages of ``mailbox`` under UIDVALIDITY ``new`` by Message-ID and size."""
    unknown = [
        e.key
        for e in inventory
        if isinstance(e.key, IMAPKey) and e.key.mailbox == mailbox and e.key not in known
    ]
    links: list[tuple[IMAPKey, int]] = []
    if unknown:
        # Messages already linked under the new UIDVALIDITY (a cycle interrupted after relinking)
        # are out of the pool, so that no message gets two new UIDs.
        taken = {
            loc.message
            for key, loc in known.items()
            if isinstance(key, IMAPKey) and key.mailbox == mailbox and key.uidvalidity == new
        }
        pool: dict[tuple[str, int], list[int]] = {}
        for message, message_id, size in await store.mailbox_identities(account.name, mailbox):
            if message_id and message not in taken:
                pool.setdefault((message_id, size), []).append(message)
        if pool:
            identities = await maildrop.fetch_identities(mailbox, new, [k.uid for k in unknown])
            found: dict[int, tuple[str, int]] = {}
            for uid, (size, fields) in identities.items():
                message_id = summarise(fields).message_id
                if message_id:
                    found[uid] = (message_id, size)
            per_identity = Counter(found.values())
            for key in unknown:
                identity = found.get(key.uid)
                if identity is None or per_identity[identity] != 1:
                    continue
                candidates = pool.get(identity, [])
                if len(candidates) == 1:
                    links.append((key, candidates[0]))
    relinked = await store.relink(account.name, links, now)
    change = UIDValidityChange(mailbox, old, new, relinked, len(unknown) - len(links), now)
    log.warning(
        "imap.uidvalidity-changed",
        account=account.name,
        mailbox=mailbox,
        old_uidvalidity=old,
        new_uidvalidity=new,
        relinked=change.relinked,
        to_retrieve=change.to_retrieve,
    )
    return change


async def verify_uid_map(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    info: IMAPCycleInfo | None,
    now: datetime,
) -> set[IMAPKey] | None:
    """Check that the known UIDs of each selected mailbox still name the archived messages.

    Call after :func:`reconcile` and before reading the account's locations for the retrieval plan
    (a distrusted mailbox's locations are removed here, so that the plan retrieves them).

    Args:
        account, store, maildrop, inventory, now: as for :func:`reconcile`.
        info: what :func:`reconcile` returned; distrusted mailboxes are added to it.

    Returns:
        The session's set of verified keys (size equal, or header section equal; within one login
        session, kept sessions included, a key is checked once, see ``IMAPMailbox.session_verified``),
        the only IMAP keys that may be deleted by UID (:func:`maild.policy.confirm_deletions`); the
        caller adds the keys it retrieves. None for POP3.

    Raises:
        StoreError: the archive failed.
        ProtocolError, NetworkTimeout, ConnectError, ThrottledError, TransientError: from the scans.
    """
    if account.protocol != "imap" or info is None:
        return None
    from maild.protocols.imap.mailbox import IMAPMailbox

    if not isinstance(maildrop, IMAPMailbox):
        return None
    present: dict[tuple[str, int], set[int]] = {}
    for entry in inventory:  # not in mailboxes left unselected as unchanged (see maild.fetch.folders)
        if isinstance(entry.key, IMAPKey) and entry.key.mailbox not in maildrop.unchanged:
            present.setdefault((entry.key.mailbox, entry.key.uidvalidity), set()).add(entry.key.uid)
    verified = maildrop.session_verified()  # UIDs do not change within a session: checked once
    for (mailbox, uidvalidity), uids in present.items():
        archive = await uidmap.location_sizes(store, account.name, mailbox, uidvalidity)
        known = sorted(uids & archive.keys())
        unchecked = [uid for uid in known if IMAPKey(mailbox, uidvalidity, uid) not in verified]
        if not unchecked:
            continue
        # the header sample goes out with the size check (one round trip): drawn from the UIDs
        # whose archived message is small, it counts only where the server's size matches
        small = sorted(uid for uid in unchecked if archive[uid][1] <= HEADER_SAMPLE_MAX_OCTETS)
        drawn = _RANDOM.sample(small, min(HEADER_SAMPLE, len(small)))
        sizes, headers = await maildrop.check_uids(mailbox, uidvalidity, unchecked, drawn)
        good = {uid for uid in unchecked if sizes.get(uid) == archive[uid][1]}
        odd = [uid for uid in unchecked if uid in sizes and uid not in good]
        sample = [uid for uid in drawn if uid in good]
        if odd or sample:  # sizes differ, or equal sizes spot-checked: compare the header sections
            compare = odd + sample
            missing = [uid for uid in odd if uid not in headers]
            if missing:  # sizes that differ outside the sample: their headers in a second trip
                headers.update(await maildrop.fetch_header_sections(mailbox, uidvalidity, missing))
            raws = await store.raw_messages([archive[uid][0] for uid in compare])
            matching = {
                uid
                for uid in compare
                if uid in headers
                and same_header_section(raws.get(archive[uid][0], b""), headers[uid])
            }
            differing = [uid for uid in odd if uid not in matching]
            differing += [uid for uid in sample if uid in headers and uid not in matching]
            if differing:
                keys = [IMAPKey(mailbox, uidvalidity, uid) for uid in known]
                verified.difference_update(keys)
                await uidmap.unlink(store, account.name, keys)
                event = UIDMapDistrust(mailbox, uidvalidity, len(differing), len(keys), now)
                info.uid_map_distrusted.append(event)
                log.warning(
                    "imap.uid-map-distrusted",
                    account=account.name,
                    mailbox=mailbox,
                    uidvalidity=uidvalidity,
                    reassigned=event.reassigned,
                    relocated=event.relocated,
                )
                continue  # nothing of this mailbox is verified: the retrieval re-identifies it
            await uidmap.record_server_sizes(
                store, account.name, {IMAPKey(mailbox, uidvalidity, uid): sizes[uid] for uid in odd}
            )
            good.update(odd)
        verified.update(IMAPKey(mailbox, uidvalidity, uid) for uid in good)
    return verified
