"""The archive's disk full anywhere in a fetch cycle: one outcome, whichever write ran into it.

Every write of a cycle goes through one ``BEGIN IMMEDIATE`` transaction of the archive
(:meth:`maild.archive.connection.ArchiveConnection._atomic`), which raises
:class:`~maild.archive.store.ArchiveFull` when SQLite answers ``SQLITE_FULL`` or a write of its own
fails with ``ENOSPC``/``EDQUOT`` (the write-ahead log could not grow): a batch's commit, and the
bookkeeping around the batches (before them: the Maildir catch-up, IMAP's UIDVALIDITY records and
relinks, the UID check's distrust and sizes, the presence of archived messages; between and after
them: the Maildir deliveries, IMAP's mailbox-sync records). Before session 13 only a batch's commit
read as "no room": any other write failed the cycle as ``StoreError "archive ...: writing: database or
disk is full"`` (account ``error``, ``maild check`` CRITICAL, the ``fetch.failed`` event at error).

Now a full disk at any of these writes:

- stops the cycle where it is, so nothing is deleted on the server (the deletions come after every
  one of these writes, and a write whose loss could make a later cycle delete or re-fetch wrongly,
  a UIDVALIDITY record, a relink, a distrusted UID map, is never skipped: the cycle ends at it); the
  session ends without applying anything (POP3: hung up without ``QUIT`` when a message it served
  is not stored, else ``RSET``, ``QUIT``; either way no ``DELE`` takes effect, and a server deleting
  downloaded mail at ``QUIT`` removes nothing: :meth:`~maild.protocols.base.Maildrop.abandon`);
- ends the cycle without an error: the messages it could not store are ``local`` failures with the
  reason :data:`~maild.model.ARCHIVE_FULL_PREFIX` (:func:`stopped` says which), so the account's
  status, ``maild check``, the ``local_failure`` alert, the one-shot's exit code 1 and the log event
  ``fetch.local-failure`` say "no room on this machine", as for a batch's commit;
- when no message was blocked (nothing new on the server, or everything already stored), the cycle
  ends with a warning naming the full disk (status) and the log event ``fetch.archive-full``.

Nothing is lost either way: every write is one transaction, rolled back whole, and the next cycle
repeats it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import structlog

from maild import policy
from maild.archive import failures as failures_store
from maild.archive.store import ArchiveFull, Store
from maild.config.loader import AccountConfig
from maild.errors import StoreError
from maild.fetch.result import CycleResult
from maild.model import (
    ARCHIVE_FULL_PREFIX,
    ARCHIVE_FULL_WARNING,
    FailureRecord,
    InventoryEntry,
    MessageKey,
    RetrievalFailure,
)

log = structlog.get_logger("maild.fetch.cycle")


async def archive_full(
    account: str,
    store: Store,
    result: CycleResult,
    error: ArchiveFull,
    unstored: Sequence[MessageKey],
    now: datetime,
) -> CycleResult:
    """The messages ``unstored`` fail on this machine's side (kind ``"local"``, reason
    :data:`~maild.model.ARCHIVE_FULL_PREFIX` and the error), as a spool that has no room fails a large
    message, and the cycle ends without deleting anything (the session was abandoned: POP3 hung up
    without QUIT, as a message was served and not stored, so no DELE takes effect). They stay on the
    server and are retried at every cycle until there is room. They get no failure records (a full disk
    says nothing about a message, and hundreds of them would bury the status): the cycle's result
    carries them to the status, the check and the ``local_failure`` alert, which count them and name the
    directory to free space in; the server's refusals of this cycle, if any, are recorded as after any
    cycle (if the disk still takes the few rows).

    Returns:
        ``result`` with the local failures added.
    """
    # info: the episode is fetch.local-failure's warning (the scheduler), not one warning per cycle
    log.info("fetch.archive-full", messages=len(unstored), error=str(error))
    try:  # the server's refusals of this cycle, as after any cycle
        await failures_store.record_failures(store, account, result.failures, now)
    except StoreError as exc:
        log.info("fetch.failures.not-recorded", error=str(exc))
    reason = f"{ARCHIVE_FULL_PREFIX}{error}"
    result.failures.extend(RetrievalFailure(key, reason, kind="local") for key in unstored)
    return result


async def stopped(
    account: AccountConfig,
    store: Store,
    result: CycleResult,
    error: ArchiveFull,
    *,
    planned: Sequence[MessageKey] | None,
    arrived: Collection[MessageKey],
    stored: Collection[MessageKey],
    inventory: Sequence[InventoryEntry] | None,
    records: Mapping[MessageKey, FailureRecord],
    now: datetime,
) -> CycleResult:
    """End a cycle that ran into the archive's full disk at any write (see the module docstring).

    Which messages become ``local`` failures (:func:`archive_full`):

    - messages that arrived and were not stored (a batch's commit found no room): those, and the
      rest of the plan, not asked for, is counted in one warning;
    - nothing arrived unstored but the plan was made (a write between batches or after them): the
      planned messages not stored (none when every batch had been committed);
    - no plan yet (a write before it: presence, UIDVALIDITY, the UID check, the Maildir catch-up):
      the messages the server holds that the archive lacks, as the plan would have them (the
      archive's locations are read: a read needs no room), none before the inventory.

    Args:
        account: the account's configuration.
        store: the open archive.
        result: the cycle's result so far (``failures``: the server's refusals, unspooled messages).
        error: what the write raised.
        planned: the keys the cycle planned to retrieve, in order; None: no plan was made.
        arrived: the keys received completely in this cycle.
        stored: the keys whose batch's commit returned.
        inventory: the server's inventory of this session; None: not taken.
        records: the account's failure records as read by the cycle (for the set-aside skip).
        now: the current time (aware, UTC).

    Returns:
        ``result`` with the local failures and warnings added; the cycle returns it (no error).
    """
    failed = {f.key for f in result.failures}
    unstored = [k for k in planned or () if k in arrived and k not in stored]
    if unstored:
        not_asked = sum(1 for k in planned or () if k not in arrived and k not in stored and k not in failed)
        if not_asked:
            result.warnings.append(
                f"{ARCHIVE_FULL_WARNING}: the cycle stopped; {not_asked} more new"
                f" message{'s' if not_asked > 1 else ''} on the server not asked for (retried at"
                " every cycle)"
            )
        return await archive_full(account.name, store, result, error, unstored, now)
    if planned is not None:
        blocked = [k for k in planned if k not in stored and k not in failed]
    elif inventory is not None:
        blocked = await _lacking(account, store, inventory, records, now)
    else:
        blocked = []
    if not blocked:
        result.warnings.append(
            f"{ARCHIVE_FULL_WARNING} ({error}): the cycle stopped before deleting anything;"
            " nothing was lost, the step is repeated at every cycle until there is room"
        )
    return await archive_full(account.name, store, result, error, blocked, now)


async def _lacking(
    account: AccountConfig,
    store: Store,
    inventory: Sequence[InventoryEntry],
    records: Mapping[MessageKey, FailureRecord],
    now: datetime,
) -> list[MessageKey]:
    """The keys of ``inventory`` the cycle would have retrieved (:func:`maild.policy.plan_retrieval`),
    or none when the archive cannot even be read."""
    try:
        known = await store.locations(account.name)
    except StoreError as exc:
        log.info("fetch.archive-full.unread", error=str(exc))
        return []
    skip = policy.set_aside(records, now)
    return list(policy.plan_retrieval(inventory, known, account.max_message_size, skip).retrieve)
