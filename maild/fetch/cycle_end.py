"""The two ends of a fetch cycle (:mod:`maild.fetch.cycle`) after its session: the failure path and
the bookkeeping of a successful cycle.

- :func:`after_failure`: every exception and cancellation of the cycle. The session ends without
  UPDATE (:meth:`~maild.protocols.base.Maildrop.abandon`: POP3 hangs up without QUIT when it served
  a message not stored, session 14), the commits in flight are finished, the messages received
  completely are committed and the message being received counts one failure
  (:func:`maild.policy.in_flight`); a full disk becomes the local failures of
  :mod:`maild.fetch.no_room`.
- :func:`record_outcome`: a cycle that ended its session: failures, the header fields of failed
  messages (:mod:`maild.fetch.failed_headers`), their Subjects, and the deletions done.

Split from :mod:`maild.fetch.cycle` in session 15 with no change of behaviour.

May import: :mod:`maild.policy`, the archive, the protocols' base interface and the fetch cycle's
helper modules (never :mod:`maild.fetch.cycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from maild import policy
from maild.archive import failures as failures_store
from maild.archive.store import ArchiveFull, Store
from maild.config.loader import AccountConfig
from maild.errors import ConnectError, NetworkTimeout, ProtocolError, StoreError
from maild.fetch import failed_headers, no_room
from maild.fetch.batching import BatchRetrieval, release
from maild.fetch.commits import CommitChain
from maild.fetch.result import CycleResult, end_failed, subjects
from maild.model import (
    ARCHIVE_FULL_WARNING,
    FailureRecord,
    HeaderSummary,
    InventoryEntry,
    MessageKey,
    RetrievalFailure,
)
from maild.protocols.base import Maildrop

log = structlog.get_logger("maild.fetch.cycle")  # the cycle's events, under the cycle's logger

UNKEPT_WARNING = (
    "{count} deletions not applied: a message read from the server in this session could not be"
    " stored, so the session ended without QUIT (a server deleting downloaded mail would remove"
    " it at QUIT); they are made by a later cycle"
)
"""The cycle's warning when a POP3 session ended without QUIT for a message read and not stored
(the spool had no room; a message the checks read and did not archive) and its deletions were
therefore not applied (RFC 1939 section 6)."""



async def end_session(
    account: AccountConfig,
    maildrop: Maildrop,
    result: CycleResult,
    deleted: list[MessageKey],
    *,
    usable: bool,
    unkept: bool,
    keep_open: bool,
) -> list[MessageKey]:
    """End a successful cycle's session and say which deletions it applied.

    ``unkept`` (POP3: a message read and not stored, :meth:`Maildrop.served_unkept
    <maild.protocols.base.Maildrop.served_unkept>` or :func:`maild.fetch.pop3_listed.read_unkept`):
    hang up without QUIT, so a server deleting downloaded mail removes nothing (RFC 1939 section
    6), and no DELE applies (:data:`UNKEPT_WARNING`). ``usable`` False (the IMAP header fetch broke
    the session): abort. ``keep_open``: park (IMAP keeps the session). Else QUIT/LOGOUT; one that
    fails after everything was stored ends with a warning (:func:`maild.fetch.result.end_failed`).

    Args:
        account, maildrop, result: the cycle's.
        deleted: the keys marked deleted in the session.
        usable: the session is in step.
        unkept: the session served a message the cycle did not keep.
        keep_open: end with :meth:`Maildrop.park <maild.protocols.base.Maildrop.park>`.

    Returns:
        The deletions applied (POP3: ``+OK`` to QUIT; empty when withheld or in doubt).
    """
    log.debug("fetch.close.started")
    if not usable:
        await maildrop.abort()  # the header fetch broke the session: not kept, nothing else changes
    elif unkept:
        # a message read and not stored (the spool had no room: a local failure; another message
        # under a known UIDL that the listed-size check read and did not archive: its archived
        # location names another message): QUIT would let a server deleting downloaded mail
        # remove it; no QUIT, so no DELE of this session applies
        await maildrop.hang_up()
        if deleted:
            log.warning("fetch.delete.withheld", messages=len(deleted))
            result.warnings.append(UNKEPT_WARNING.format(count=len(deleted)))
            deleted = []
    elif keep_open:
        await maildrop.park()
    else:
        try:
            await maildrop.close()
        except (ConnectError, NetworkTimeout, ProtocolError) as exc:
            # everything is stored: the poll did its job; only the deletions are in doubt
            await maildrop.abort()
            deleted = end_failed(account.protocol, deleted, exc, result)
    log.debug("fetch.close.complete", kept=maildrop.parked)
    return deleted


async def _keep_what_arrived(
    account: str,
    store: Store,
    retrieval: BatchRetrieval,
    result: CycleResult,
    error: Exception,
    now: datetime,
) -> list[MessageKey]:
    """After a failed session: commit the messages received completely, count the failures.

    ``retrieval.batch`` holds the messages received and not yet handed to a commit;
    ``retrieval.order`` is non-empty while a retrieval was running, and then the first key of it that
    did not arrive is the one the failure broke off (:func:`maild.policy.in_flight`). The session's
    error is what the caller raises; an error here is logged.

    Returns:
        The keys counted as failed.
    """
    failed = list(result.failures)
    # only a broken session is laid at the message in flight, not the server's refusal of the session
    # (ThrottledError: LOGIN-DELAY, UNAVAILABLE ...) or a failure of maild's own
    lost = isinstance(error, ConnectError | NetworkTimeout | ProtocolError)
    order, batch = retrieval.order, retrieval.batch
    broken = policy.in_flight(order, retrieval.arrived) if order and lost else None
    if broken is not None:
        failed.append(RetrievalFailure(broken, f"session failed while it was being received: {error}"))
    try:
        if batch:
            log.info("fetch.commit.after_failure", messages=len(batch))
            result.add(await store.store_batch(account, batch, now))
        await failures_store.record_failures(store, account, failed, now)
    except StoreError as exc:
        log.warning("fetch.commit.failed", error=str(exc))
        return []
    finally:
        release(batch)
    return [f.key for f in failed]


async def after_failure(
    exc: BaseException,
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    result: CycleResult,
    *,
    commits: CommitChain | None,
    retrieval: BatchRetrieval,
    stored: set[MessageKey],
    planned: list[MessageKey] | None,
    inventory: list[InventoryEntry] | None,
    records: Mapping[MessageKey, FailureRecord],
    on_server: set[MessageKey],
    reconnect: Callable[[], Maildrop] | None,
    clock: Callable[[], datetime],
) -> CycleResult | None:
    """End a cycle that failed with ``exc`` (any exception or cancellation); the caller re-raises
    ``exc`` when this returns None.

    Args:
        exc: what stopped the cycle.
        account, store, maildrop, result: the cycle's.
        commits: the batches handed to a commit and not yet returned, or None before any.
        retrieval: the cycle's retrieval (its batch: received, not yet handed to a commit).
        stored: the keys whose batch's commit had returned.
        planned: the keys planned for retrieval, or None when no plan was made yet.
        inventory: the session's inventory, or None when not taken.
        records: the account's failure records as read at the cycle's start.
        on_server: the keys the inventory listed.
        reconnect: a fresh adapter for the header fetch of failed messages, or None.
        clock: the current aware UTC time.

    Returns:
        The cycle's result when ``exc`` was the archive's disk full (``ArchiveFull``: the cycle
        ends as "no room", :func:`maild.fetch.no_room.stopped`); None otherwise.

    Cancelled: the session is closed before the cancellation propagates (``abandon``); committed
    batches stay committed.
    """
    # a message served and not stored (a failed commit, the disk full, SIGTERM mid-batch) must not
    # reach a QUIT: a server deleting downloaded mail removes it there; no QUIT, no UPDATE
    await maildrop.abandon(stored)
    if commits is not None:
        await commits.finish()
    if isinstance(exc, ArchiveFull):  # no room for a write, any of the cycle's: local, see no_room
        release(retrieval.batch)
        return await no_room.stopped(
            account,
            store,
            result,
            exc,
            planned=planned,
            arrived=retrieval.retrieved,
            stored=stored,
            inventory=inventory,
            records=records,
            now=clock(),
        )
    if isinstance(exc, Exception) and not isinstance(exc, StoreError):
        failed = await _keep_what_arrived(account.name, store, retrieval, result, exc, clock())
        probe = failed_headers.keys_to_fetch(records, failed, on_server)
        # a new session only after a broken one: never against a refusal to serve (LOGIN-DELAY ...)
        broken = isinstance(exc, ConnectError | NetworkTimeout | ProtocolError)
        if probe and reconnect is not None and broken:
            found = await failed_headers.read_in_new_session(reconnect, account.protocol, probe)
            await failed_headers.record(store, account.name, probe, found)
    release(retrieval.batch)  # cancelled: not committed, tried again next cycle
    return None


async def record_outcome(
    account: AccountConfig,
    store: Store,
    result: CycleResult,
    *,
    records: Mapping[MessageKey, FailureRecord],
    probe: Sequence[MessageKey],
    found: dict[MessageKey, HeaderSummary],
    deleted: Sequence[MessageKey],
    reconnect: Callable[[], Maildrop] | None,
    clock: Callable[[], datetime],
) -> None:
    """The bookkeeping of a cycle whose session ended: record its failures, read and record the
    header fields of failed messages (POP3: in a session of its own, after QUIT applied the
    deletions), set ``result.subjects``, record the deletions done on the server
    (``result.deleted``). A full disk here does not fail the cycle: it is logged, and deletions not
    recorded are named in a warning (the daemon writes them before the account's next cycle).

    Args:
        account, store, result: the cycle's.
        records: the account's failure records as read at the cycle's start.
        probe: keys of failed messages whose header fields are still to be read.
        found: header fields already read (IMAP, in the cycle's session); updated.
        deleted: the keys whose deletion the session applied.
        reconnect: a fresh adapter for the POP3 header fetch, or None (then not read).
        clock: the current aware UTC time.

    Raises:
        StoreError: the archive failed otherwise than by a full disk.
    """
    try:  # bookkeeping: a disk full now (a spool failure is often why) must not fail the cycle
        await failures_store.record_failures(store, account.name, result.failures, clock())
    except ArchiveFull as exc:
        log.info("fetch.failures.not-recorded", error=str(exc))
        probe = []  # their Subjects would not fit either
    if probe and account.protocol == "pop3":  # in a session of its own: QUIT has applied the deletions
        if reconnect is not None:
            found = await failed_headers.read_in_new_session(reconnect, account.protocol, probe)
        else:
            probe = []
    try:
        await failed_headers.record(store, account.name, probe, found)
    except ArchiveFull as exc:
        log.info("fetch.failures.not-recorded", error=str(exc))
    result.subjects = subjects(records, found, [*(f.key for f in result.failures), *result.set_aside])
    if deleted:
        try:
            await store.mark_deleted(account.name, deleted, clock())
            log.debug("fetch.deletions.recorded", messages=len(deleted))
        except ArchiveFull as exc:  # done on the server: the next cycle finds them gone (gone_at)
            log.info("fetch.archive-full", messages=0, error=str(exc))
            result.warnings.append(
                f"{ARCHIVE_FULL_WARNING} ({exc}): {len(deleted)} deletions done on the server"
                " are not recorded yet; the daemon records them before its next cycle of the account"
                " decides anything (a one-shot `maild fetch` cannot: free space before the next run)"
            )
        result.deleted = len(deleted)
