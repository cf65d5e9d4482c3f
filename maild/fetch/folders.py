"""Cheap polls of IMAP accounts with many mailboxes: leave the unchanged ones alone.

A cycle of an account with 100 mailboxes used to SELECT and ``UID SEARCH`` each of them, two round
trips apiece (about 10 s at 50 ms). Now:

1. before the inventory (:func:`prepare`), each mailbox with a ``mailbox_sync`` record
   (:mod:`maild.archive.sync_state`) gets a :class:`~maild.protocols.imap.mailbox.SyncHint`: its
   status at its last complete listing and the UIDs it held then, read from the archive's locations;
2. the inventory asks the status of all of them at once (LIST-STATUS, RFC 5819, or pipelined
   STATUS) and leaves every mailbox whose status is unchanged
   (:func:`maild.protocols.imap.listing.unchanged`) unselected, its entries being the hint's UIDs;
3. once the cycle's commits have returned (:func:`record`), a mailbox listed in full whose every
   message is now archived gets a record of the status taken *before* its listing (a message
   arriving meanwhile makes the next status differ, never the reverse); every other record of the
   account (not fully archived, not selectable, deleted on the server, no longer configured) is
   removed, so that mailbox is listed in full next time.

What stays as before: UIDVALIDITY changes (the status differs, the mailbox is listed and
:func:`maild.fetch.resync.reconcile` recovers), deleted mailboxes (not listed: not covered or gone as
before, their record removed), servers without LIST-STATUS or CONDSTORE (pipelined STATUS; without
HIGHESTMODSEQ, UIDVALIDITY, UIDNEXT and MESSAGES alone decide).

The UID check of issue 14 (:func:`maild.fetch.resync.verify_uid_map`) runs for every mailbox that is
listed. For an unchanged mailbox it is skipped: nothing in it changed since the check of the cycle
that recorded it, and its keys are not verified in this session, so none of them can be deleted by
UID in this cycle (:func:`maild.policy.confirm_deletions`). Therefore a mailbox holding a message
that retention would delete now gets no hint (:func:`prepare` asks
:func:`maild.policy.select_deletions`): it is listed and checked in full, as before. Every mailbox is
also listed in full at least every :data:`FULL_LISTING_INTERVAL`, a bound on what any server quirk
the status cannot show might hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from maild import policy
from maild.archive import sync_state
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.model import IMAPKey, InventoryEntry
from maild.protocols.base import Maildrop

if TYPE_CHECKING:
    from maild.archive.cycle_reads import AccountReads
    from maild.protocols.imap.mailbox import IMAPMailbox

log = structlog.get_logger("maild.imap")

FULL_LISTING_INTERVAL = timedelta(hours=24)
"""Longest time a mailbox goes without a full listing (SELECT, UID SEARCH, UID check), however
unchanged its status looks."""


def _imap(account: AccountConfig, maildrop: Maildrop) -> IMAPMailbox | None:
    if account.protocol != "imap":  # a POP3 cycle never loads the IMAP adapter (start-up time)
        return None
    from maild.protocols.imap.mailbox import IMAPMailbox

    return maildrop if isinstance(maildrop, IMAPMailbox) else None


async def prepare(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    now: datetime,
    *,
    reads: AccountReads | None = None,
) -> None:
    """Give an IMAP ``maildrop`` its sync hints before its inventory (nothing for POP3).

    A mailbox gets a hint when it has a ``mailbox_sync`` record younger than
    :data:`FULL_LISTING_INTERVAL`, the archive holds exactly as many present locations under its
    UIDVALIDITY as the record's MESSAGES, and retention selects none of them for deletion now.

    Args:
        reads: the cycle's snapshot of the account (:mod:`maild.archive.cycle_reads`), read since
            the account's last write; None: its sync records and locations are read here.

    Raises:
        StoreError: the archive failed.
    """
    imap = _imap(account, maildrop)
    if imap is None:
        return
    from maild.protocols.imap.listing import MailboxStatus
    from maild.protocols.imap.mailbox import SyncHint

    records = reads.sync_records if reads is not None else await sync_state.load(store, account.name)
    if not records:
        imap.sync_hints = {}
        return
    known = reads.locations if reads is not None else await store.locations(account.name)
    present: dict[tuple[str, int], set[int]] = {}
    for key, location in known.items():
        if isinstance(key, IMAPKey) and location.gone_at is None and location.deleted_at is None:
            present.setdefault((key.mailbox, key.uidvalidity), set()).add(key.uid)
    hints: dict[str, SyncHint] = {}
    for mailbox, record in records.items():
        if now - record.synced_at >= FULL_LISTING_INTERVAL:
            continue
        uids = present.get((mailbox, record.uidvalidity), set())
        if len(uids) != record.messages:
            continue
        if account.retention != "keep":
            entries = [InventoryEntry(IMAPKey(mailbox, record.uidvalidity, uid)) for uid in uids]
            if policy.select_deletions(account.retention, account.retention_days, entries, known, now):
                continue
        status = MailboxStatus(
            mailbox, record.messages, record.uidnext, record.uidvalidity, record.highest_modseq
        )
        hints[mailbox] = SyncHint(status, frozenset(uids))
    imap.sync_hints = hints


async def record(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    now: datetime,
    *,
    reads: AccountReads | None = None,
) -> None:
    """Record which mailboxes are fully archived, after every commit of the cycle has returned.

    Call before any deletion (a deletion changes the mailbox's status, so the next poll lists it
    anyway). Unchanged mailboxes keep their record; see the module docstring for the rest.
    ``reads``: the cycle's snapshot (its sync records are the ones before this call: only this
    function writes them, once per cycle); None: read here.

    Raises:
        StoreError: the archive failed; the records stay as they were (a later cycle lists more).
    """
    imap = _imap(account, maildrop)
    if imap is None:
        return
    known = await store.locations(account.name)
    by_mailbox: dict[str, list[IMAPKey]] = {}
    for entry in inventory:
        if isinstance(entry.key, IMAPKey):
            by_mailbox.setdefault(entry.key.mailbox, []).append(entry.key)
    records: dict[str, sync_state.SyncRecord] = {}
    for mailbox, status in imap.statuses.items():
        if mailbox in imap.unchanged:
            continue
        if status.uidvalidity is None or status.uidnext is None or status.messages is None:
            continue
        keys = by_mailbox.get(mailbox, [])
        complete = all(
            (loc := known.get(key)) is not None and loc.gone_at is None and loc.deleted_at is None
            for key in keys
        )
        if complete and len(keys) == status.messages:
            records[mailbox] = sync_state.SyncRecord(
                status.uidvalidity, status.uidnext, status.messages, status.highest_modseq, now
            )
    before = reads.sync_records if reads is not None else await sync_state.load(store, account.name)
    forget = [m for m in before if m not in records and m not in imap.unchanged]
    await sync_state.save(store, account.name, records, forget)  # each listed in full: synced now
    log.debug(
        "imap.mailbox-sync",
        account=account.name,
        unchanged=len(imap.unchanged),
        recorded=len(records),
        forgotten=len(forget),
    )
