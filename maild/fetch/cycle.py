"""One fetch cycle for one account: inventory, diff, retrieve, durable commit, and only then delete.

The order is the product's guarantee:

1. log in and take the server's inventory;
2. record which archived messages left the server;
3. retrieve what the archive lacks, committing it in batches (each commit fsync'ed; one batch commits
   while the next is retrieved, at most one transaction in flight, the next batch prepared meanwhile:
   :mod:`maild.fetch.commits`; every commit has returned before step 4);
   (with ``deliver_maildir``: before logging in and after each commit, write what the account's
   Maildir lacks there, then record each delivery, see ``maildir.py``);
4. unless a move into an IMAP account holding what this account's server holds is unfinished
   (:func:`maild.policy.move_suspension`, asked of the archive after every commit returned),
   only for messages whose commit has returned, and which the archive still holds at that moment
   (with ``deliver_maildir``: and whose delivery is recorded), mark them deleted (POP3 DELE; IMAP
   ``\\Deleted`` and expunge, see ``IMAPMailbox.delete``). Which messages those are is decided in
   :mod:`maild.policy` (the module docstring lists the whole rule); :mod:`maild.fetch.deleting`
   asks it, queries the archive for the re-check, and does the I/O;
5. QUIT; only ``+OK`` to QUIT (RFC 1939 section 6, UPDATE state) records the deletions as done
   (IMAP: LOGOUT; the deletions happened at EXPUNGE). A QUIT (or LOGOUT) that fails after everything
   was stored does not fail the cycle: it ends with a warning, and POP3 deletions are not recorded
   (:mod:`maild.fetch.cycle_end`: the session's end, the failure path, the bookkeeping).

A crash or cancellation anywhere leaves the archive consistent: uncommitted batches are simply
retrieved again next cycle (deduplicated by identity and by SHA-256), and a session that ends
without ``+OK`` to QUIT deletes nothing on the server (RFC 1939 section 6).

A session that fails (connection lost, timeout, a reply breaking the grammar) first commits every
message received completely before the failure, so each cycle makes progress even when one message
breaks the connection every time. The message being received at that moment
(:func:`maild.policy.in_flight`) and every message the server refused count one failure in a row in
the archive (:mod:`maild.archive.failures`); after :data:`maild.policy.SET_ASIDE_AFTER_FAILURES` in a
row it is set aside (:func:`maild.policy.set_aside`): skipped, left on the server, listed in the
status, tried again once a day and on ``maild fetch-now --retry-failed``. Such messages are shown by
their Subject too: a bounded, best-effort header fetch reads it (:mod:`maild.fetch.failed_headers`);
when it fails, nothing else changes.

POP3 servers without UIDL: identities are digests of the content (see
:mod:`maild.protocols.pop3.identity`). ``"delete"`` stays safe with them: a message is deleted only when
its digest, computed in this very session from what the server holds, names a message the archive
holds (header section and size, or the full octets). ``"delete-after"`` is refused: it needs one
identity to last for days, which a digest does not guarantee (a server rewriting a message gives it a
new one), so the cycle archives as usual, deletes nothing and raises :class:`ConfigError`
(:func:`maild.policy.deletion_refusal`).

Shared limits (transfer slots, the memory budget for messages held) come from the ``budgets``
argument, the process's :class:`maild.service.budget.Budgets`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from maild import policy, pop3_uidls
from maild.archive.cycle_reads import read_account
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.config.maildrop import make_maildrop
from maild.errors import ConfigError
from maild.fetch import cycle_end, deleting, failed_headers
from maild.fetch.batching import (
    BATCH_MESSAGES,
    BATCH_OCTETS,
    AloneBudget,
    BatchRetrieval,
    TransferBudget,
)
from maild.fetch.commits import CommitChain
from maild.fetch.progress import CycleProgress
from maild.fetch.result import CycleResult
from maild.model import (
    FailureRecord,
    HeaderSummary,
    IMAPKey,
    InventoryEntry,
    MessageKey,
    RetrievedMessage,
    StoreOutcome,
)
from maild.protocols.base import Maildrop

__all__ = [
    "BATCH_MESSAGES",
    "BATCH_OCTETS",
    "CycleResult",
    "MaildropFactory",
    "TransferBudget",
    "fetch_cycle",
    "make_maildrop",
    "utc_now",
]

if TYPE_CHECKING:
    from maild.archive.maildir import CycleDelivery
    from maild.fetch import pop3_listed

# Start-up time (docs/performance.md, "Session 8: start-up"): the IMAP steps of a cycle (UIDVALIDITY
# resync and the UID check in maild.fetch.resync, unselected mailboxes in maild.fetch.folders) and
# the Maildir writer are imported by the cycles that run them, so a one-shot `maild fetch` of POP3
# accounts without `deliver_maildir` loads none of them (tests/integration/test_cli_startup.py);
# likewise the POP3 checks (maild.fetch.pop3_listed, pop3_check) for IMAP (session 15).

log = structlog.get_logger("maild.fetch.cycle")

MaildropFactory = Callable[[AccountConfig, ThreadPoolExecutor], Maildrop]
"""Makes the (unopened) adapter of an account, given the POP3 thread pool: :func:`make_maildrop`, or
a stand-in in tests."""


def utc_now() -> datetime:
    """The default clock: the current time, aware, in UTC."""
    return datetime.now(UTC)


async def fetch_cycle(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    *,
    budgets: TransferBudget | None = None,
    clock: Callable[[], datetime] = utc_now,
    batch_messages: int = BATCH_MESSAGES,
    batch_octets: int = BATCH_OCTETS,
    opened: bool = False,
    keep_open: bool = False,
    progress: CycleProgress | None = None,
    reconnect: Callable[[], Maildrop] | None = None,
) -> CycleResult:
    """Run one fetch cycle of ``account`` through ``maildrop`` (not yet opened) into ``store``.

    Args:
        account: the account's configuration.
        store: the open archive.
        maildrop: a fresh adapter; this function opens and closes (or aborts) it.
        budgets: the process's shared budgets (transfer slots, memory), from the scheduler or the
            one-shot fetch; None: a budget of the cycle's own (a cycle running alone, as in tests).
        clock: returns the current aware UTC time; injected by tests of time-dependent retention.
        batch_messages, batch_octets: commit after this many messages or octets, whichever first.
        opened: ``maildrop`` is a session kept from an earlier cycle and already taken back with
            :meth:`Maildrop.resume <maild.protocols.base.Maildrop.resume>`: no :meth:`open`.
        keep_open: end a successful cycle with :meth:`Maildrop.park
            <maild.protocols.base.Maildrop.park>` instead of ``close`` (IMAP keeps the session;
            POP3 closes as usual); :attr:`Maildrop.parked` tells which happened.
        progress: told the plan after the inventory and each batch once committed (the daemon's
            status and metrics read it while the cycle runs); None: nobody watches.
        reconnect: makes a fresh, unopened adapter of the account, for the header fetch of failed
            messages in a session of its own (:mod:`maild.fetch.failed_headers`: POP3 always, IMAP
            after a broken session); None: only IMAP reads them, in its own session.

    Returns:
        What the cycle did.

    Raises:
        AuthError, ConnectError, NetworkTimeout, ThrottledError, ProtocolError: from the adapter
            (except when only the session's end, POP3 QUIT or IMAP LOGOUT, fails after everything
            was stored: then the cycle succeeds with a warning, POP3 deletions not recorded);
            everything committed before the error stays committed, every message received
            completely before it is committed, the message being received counts one failure
            (see the module docstring), nothing is deleted on the server.
        StoreError: the archive failed; nothing is deleted on the server. (The archive's disk full
            at any write of the cycle, ``ArchiveFull``, is not raised: the cycle stops there,
            deletes nothing, and the messages it could not store become local failures, see
            :mod:`maild.fetch.no_room`.)
            ``ArchiveReplaced``
            (a StoreError): the archive file was deleted or replaced under the running daemon
            (checked at the start and before deleting; see :meth:`Store.verify_identity`).
        DeliveryError: the account's Maildir could not be written; raised at the end of an otherwise
            complete cycle (archiving went on); undelivered messages were not deleted on the server.
        ConfigError: ``retention = "delete-after"`` with a POP3 server without UIDL (identities are
            content digests); raised at the end of an otherwise complete cycle that deleted nothing.

    Cancellation (and any failure): at any await, committed batches stay committed; the session
    ends without UPDATE (:meth:`~maild.protocols.base.Maildrop.abandon`: POP3 hangs up without QUIT
    when it served a message not stored, else RSET, QUIT), so no DELE takes effect and a server
    deleting downloaded mail at QUIT removes nothing maild does not hold (session 14).
    """
    shared: TransferBudget = budgets if budgets is not None else AloneBudget()
    started = time.monotonic()
    result = CycleResult(account=account.name)
    refusal: str | None = None
    to_delete: list[MessageKey] = []
    maildir = account.deliver_maildir
    delivery: CycleDelivery | None = None
    if maildir is not None:
        from maild.archive.maildir import CycleDelivery

        delivery = CycleDelivery(store, account.name, maildir, clock)
    imap = account.protocol == "imap"
    commits: CommitChain | None = None  # the batches handed to a commit and not yet returned
    retrieval = BatchRetrieval(
        result.failures, shared, batch_messages=batch_messages, batch_octets=batch_octets
    )  # its batch: received, not yet handed to a commit
    records: dict[MessageKey, FailureRecord] = {}
    on_server: set[MessageKey] = set()
    planned: list[MessageKey] = []  # the keys to retrieve, in order
    plan_made = False  # planned is the plan (a full disk before it blocks what the archive lacks)
    taken: list[InventoryEntry] | None = None  # the inventory, once taken
    stored: set[MessageKey] = set()  # of those, the ones whose batch's commit has returned
    odd: pop3_uidls.ListedKnown | None = None  # POP3: known UIDLs that may name another message now
    suspects: list[MessageKey] = []  # POP3: known UIDLs whose header section this session compares
    listed: pop3_listed.ListedCheck | None = None  # POP3: what those comparisons found
    try:
        await store.verify_identity()  # a replaced or deleted archive stops every cycle
        # what an earlier cycle found and could not write (the disk full): deletions done on the server,
        # a UID map found wrong; written before anything is decided, else a message never archived could
        # be deleted (a POP3 UIDL re-used for it; a reassigned UID the next header sample misses)
        await store.write_pending(account.name)
        if delivery is not None:  # catch up after a crash between a commit and its delivery
            await delivery.catch_up()
        # the account's locations, failure records and (IMAP) mailbox records in one snapshot, one
        # call of SQLite's thread (maild.archive.cycle_reads); nothing below writes them before
        # their use, except the IMAP checks' relinks and unlinks (then the locations are read again)
        reads = await read_account(store, account.name, imap=imap)
        if not opened:
            await maildrop.open()
        if imap:
            from maild.fetch import folders

            # unchanged mailboxes stay unselected
            await folders.prepare(account, store, maildrop, clock(), reads=reads)
        inventory = taken = await maildrop.inventory()
        result.on_server = len(inventory)
        on_server = {entry.key for entry in inventory}
        result.identity = maildrop.identity
        result.warnings = list(maildrop.identity_warnings)
        refusal = policy.deletion_refusal(
            account.retention, result.identity, account=account.name, host=account.host
        )
        verified: set[IMAPKey] | None = None  # POP3: nothing is deleted by UID
        if imap:
            from maild.fetch import resync as imap_resync

            result.imap = await imap_resync.reconcile(
                account, store, maildrop, inventory, clock(), reads=reads
            )
            verified = await imap_resync.verify_uid_map(
                account, store, maildrop, inventory, result.imap, clock()
            )
        if result.imap is not None:
            result.warnings += [event.warning() for event in result.imap.uid_map_distrusted]
        relocated = result.imap is not None and bool(
            result.imap.uidvalidity_changes or result.imap.uid_map_distrusted
        )  # relinked or unlinked locations of this account since the snapshot
        known = await store.locations(account.name) if relocated else reads.locations
        # only where the inventory looked: a mailbox that could not be selected lost nothing
        covered = {key: loc for key, loc in known.items() if maildrop.covers(key)}
        changes = policy.presence_changes(inventory, covered)
        back = changes.back
        if not imap:  # a known UIDL listed at another size (back, or never seen gone) may name another one
            deletes = account.retention != "keep" and refusal is None
            odd, suspects = await deleting.pop3_suspects(
                account, store, inventory, known, back, result, clock(), deletes=deletes
            )
            if suspects:  # checked after the retrieval; taken back only if shown to be the same
                held = set(suspects)
                back = [key for key in back if key not in held]
        await store.update_presence(account.name, changes.gone, back, clock())
        records = reads.failures  # written by this cycle only at its end
        skip = policy.set_aside(records, clock())
        plan = policy.plan_retrieval(inventory, known, account.max_message_size, skip)
        sizes = {e.key: e.size_octets for e in inventory if e.size_octets is not None}
        if account.max_message_size is not None and policy.needs_sizes(inventory, plan):
            # IMAP inventories carry no sizes: ask for RFC822.SIZE before fetching anything
            asked = await maildrop.sizes(plan.retrieve)
            sizes.update(asked)
            plan = policy.apply_sizes(plan, asked, account.max_message_size)
        result.too_large = plan.too_large
        result.set_aside = plan.set_aside
        if progress is not None:
            # the octets to fetch are known when every planned message has a size: POP3's LIST, IMAP's
            # RFC822.SIZE where max_message_size asked for them; else None (an IMAP inventory is UIDs
            # only, and a listing of sizes just for the status would cost round trips every cycle)
            planned_sizes = [sizes.get(k) for k in plan.retrieve]
            sized = [size for size in planned_sizes if size is not None]
            progress.planned(len(plan.retrieve), sum(sized) if len(sized) == len(planned_sizes) else None)

        planned, plan_made = list(plan.retrieve), True

        # POP3 messages retrieved now whose LIST size is not their octets' (an LF-stored maildrop counts
        # one octet less per line): their server size, recorded after the commits so that later cycles
        # compare LIST with it and need neither TOP nor RETR for them (maild.fetch.pop3_listed)
        off_sizes: dict[MessageKey, int] = {}

        async def committed(batch: list[RetrievedMessage], outcome: StoreOutcome) -> None:
            result.add(outcome)
            stored.update(m.key for m in batch)
            if not imap:
                off_sizes.update(
                    (m.key, size)
                    for m in batch
                    if (size := sizes.get(m.key)) is not None and size != m.size_octets
                )
            if progress is not None:
                progress.committed(len(batch), sum(m.size_octets for m in batch), outcome)
            if delivery is not None:
                await delivery.catch_up()

        commits = CommitChain(store, account.name, clock, committed)

        if plan.retrieve:
            maildrop.spool = store.spool  # large messages go to files beside the archive
            await retrieval.run(maildrop, plan.retrieve, commits, account.host)
        await commits.settle()  # every commit has returned before anything below may delete
        await store.record_pop3_server_sizes(account.name, off_sizes)
        off_sizes.clear()
        if odd is not None and (suspects or odd.relisted):  # after the new mail is in
            from maild.fetch import pop3_listed  # POP3 only: an IMAP cycle loads neither of them

            listed = await pop3_listed.check_headers(
                account.name, store, maildrop, inventory, suspects, known, clock(), odd.relisted
            )
            listed = await pop3_listed.check_contents(
                account.name, store, maildrop, inventory, listed, known, skip, clock()
            )
            if listed.stored is not None:
                result.add(listed.stored)
            freed = set(listed.to_retrieve)  # UIDLs freed for the other messages listed under them
            renewed = policy.plan_retrieval(
                [e for e in inventory if e.key in freed], {}, account.max_message_size, skip
            )
            result.too_large += renewed.too_large
            result.set_aside += renewed.set_aside
            if renewed.retrieve:
                planned += renewed.retrieve
                maildrop.spool = store.spool
                await retrieval.run(maildrop, renewed.retrieve, commits, account.host)
                await commits.settle()
                await store.record_pop3_server_sizes(account.name, off_sizes)
            if returned := [key for key in listed.same if key in changes.back]:
                await store.update_presence(account.name, [], returned, clock())
            if delivery is not None and listed.archived:
                await delivery.catch_up()
            result.warnings.extend(listed.warnings())
        if imap:
            from maild.fetch import folders

            await folders.record(account, store, maildrop, inventory, clock(), reads=reads)
        if verified is not None:  # fetched by UID in this session: verified
            verified |= {key for key in retrieval.retrieved if isinstance(key, IMAPKey)}
        if account.retention != "keep" and refusal is None:
            to_delete = await deleting.delete_now(
                account,
                store,
                maildrop,
                inventory,
                result,
                clock=clock,
                require_delivery=delivery is not None,
                verified=verified,
                listed=listed,
                retrieved=retrieval.retrieved,
            )
        probe = failed_headers.keys_to_fetch(records, [f.key for f in result.failures], on_server)
        found: dict[MessageKey, HeaderSummary] = {}
        usable = True
        if probe and account.protocol == "imap":  # deletions happened at EXPUNGE: nothing to lose
            found, usable = await failed_headers.read_in_session(maildrop, probe)
        # POP3: a message read and not stored (the spool had no room; another message the checks
        # read under a known UIDL, or retrieved under a UIDL they freed, and did not archive): no
        # QUIT (cycle_end.end_session). The checks' module is loaded only when they ran (listed).
        if imap:
            unkept = False
        elif listed is None:
            unkept = maildrop.served_unkept(stored, known)
        else:
            from maild.fetch import pop3_listed

            unkept = maildrop.served_unkept(stored, pop3_listed.still_known(listed, known)) or bool(
                pop3_listed.read_unkept(listed, stored)
            )
        to_delete = await cycle_end.end_session(
            account, maildrop, result, to_delete, usable=usable, unkept=unkept, keep_open=keep_open
        )
    except BaseException as exc:
        stopped = await cycle_end.after_failure(
            exc,
            account,
            store,
            maildrop,
            result,
            commits=commits,
            retrieval=retrieval,
            stored=stored,
            planned=planned if plan_made else None,
            inventory=taken,
            records=records,
            on_server=on_server,
            reconnect=reconnect,
            clock=clock,
        )
        if stopped is None:
            raise
        stopped.seconds = time.monotonic() - started
        return stopped
    await cycle_end.record_outcome(
        account,
        store,
        result,
        records=records,
        probe=probe,
        found=found,
        deleted=to_delete,
        reconnect=reconnect,
        clock=clock,
    )
    result.seconds = time.monotonic() - started
    if delivery is not None:
        result.delivered = delivery.delivered
        if delivery.error is not None:
            raise delivery.error
    if refusal is not None:
        raise ConfigError(refusal)
    return result
