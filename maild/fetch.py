"""One fetch cycle for one account: inventory, diff, retrieve, durable commit, and only then delete.

The order is the product's guarantee:

1. log in and take the server's inventory;
2. record which archived messages left the server;
3. retrieve what the archive lacks, committing it in batches (each commit fsync'ed);
   (with ``deliver_maildir``: before logging in and after each commit, write what the account's
   Maildir lacks there, then record each delivery, see ``maildir.py``);
4. only for messages whose commit has returned, and which the archive still holds at that moment
   (with ``deliver_maildir``: and whose delivery is recorded), mark them deleted (POP3 DELE; IMAP
   ``\\Deleted`` and expunge, see ``IMAPMailbox.delete``);
5. QUIT; only ``+OK`` to QUIT (RFC 1939 section 6, UPDATE state) records the deletions as done
   (IMAP: LOGOUT; the deletions happened at EXPUNGE).

A crash or cancellation anywhere leaves the archive consistent: uncommitted batches are simply
retrieved again next cycle (deduplicated by identity and by SHA-256), and a session that ends
without ``+OK`` to QUIT deletes nothing on the server (RFC 1939 section 6).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maild import imap_resync, policy
from maild.config import AccountConfig
from maild.imap_resync import IMAPCycleInfo
from maild.maildir import CycleDelivery
from maild.model import MessageKey, RetrievalFailure, RetrievedMessage, StoreOutcome
from maild.protocols.base import Maildrop
from maild.store import Store

BATCH_MESSAGES = 200
BATCH_OCTETS = 32 * 2**20


def utc_now() -> datetime:
    """The default clock: the current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class CycleResult:
    """What one fetch cycle did.

    Attributes:
        account: the account name.
        on_server: messages in the server's inventory.
        new_messages: messages new to the archive (distinct content).
        new_links: messages newly linked to this account (includes ``new_messages``).
        octets: size in octets of the messages newly linked.
        failures: messages the server refused to hand out this cycle (retried next cycle).
        too_large: messages skipped for exceeding ``max_message_size`` (left on the server).
        deleted: messages deleted on the server (confirmed by ``+OK`` to QUIT).
        delivered: messages delivered to the account's Maildir (``deliver_maildir``) in this cycle.
        seconds: wall-clock duration of the cycle.
        imap: IMAP only: mailboxes covered, mailboxes that could not be selected, UIDVALIDITY
            changes (see :mod:`maild.imap_resync`); None for POP3.
    """

    account: str
    on_server: int = 0
    new_messages: int = 0
    new_links: int = 0
    octets: int = 0
    failures: list[RetrievalFailure] = field(default_factory=list)
    too_large: list[MessageKey] = field(default_factory=list)
    deleted: int = 0
    delivered: int = 0
    seconds: float = 0.0
    imap: IMAPCycleInfo | None = None

    def add(self, outcome: StoreOutcome) -> None:
        """Accumulate one committed batch."""
        self.new_messages += outcome.new_messages
        self.new_links += outcome.new_links
        self.octets += outcome.octets


def make_maildrop(account: AccountConfig, executor: ThreadPoolExecutor) -> Maildrop:
    """Create the adapter for ``account``'s protocol (not yet connected).

    Raises:
        ConfigError: the password cannot be obtained.
    """
    settings = account.server_settings()
    if account.protocol == "pop3":
        from maild.protocols.pop3 import POP3Maildrop

        return POP3Maildrop(settings, executor)
    from maild.protocols.imap import IMAPMailbox

    return IMAPMailbox(settings, account.mailboxes, list_all=account.all_mailboxes, exclude=account.exclude)


async def fetch_cycle(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    *,
    clock: Callable[[], datetime] = utc_now,
    batch_messages: int = BATCH_MESSAGES,
    batch_octets: int = BATCH_OCTETS,
) -> CycleResult:
    """Run one fetch cycle of ``account`` through ``maildrop`` (not yet opened) into ``store``.

    Args:
        account: the account's configuration.
        store: the open archive.
        maildrop: a fresh adapter; this function opens and closes (or aborts) it.
        clock: returns the current aware UTC time; injected by tests of time-dependent retention.
        batch_messages, batch_octets: commit after this many messages or octets, whichever first.

    Returns:
        What the cycle did.

    Raises:
        AuthError, ConnectError, NetworkTimeout, ThrottledError, ProtocolError: from the adapter;
            everything committed before the error stays committed, nothing is deleted on the server.
        StoreError: the archive failed; nothing is deleted on the server.
        DeliveryError: the account's Maildir could not be written; raised at the end of an otherwise
            complete cycle (archiving went on); undelivered messages were not deleted on the server.

    Cancellation: at any await, committed batches stay committed; the session is aborted (POP3
    RSET, QUIT), so no DELE takes effect.
    """
    started = time.monotonic()
    result = CycleResult(account=account.name)
    to_delete: list[MessageKey] = []
    maildir = account.deliver_maildir
    delivery = CycleDelivery(store, account.name, maildir, clock) if maildir is not None else None
    try:
        if delivery is not None:  # catch up after a crash between a commit and its delivery
            await delivery.catch_up()
        await maildrop.open()
        inventory = await maildrop.inventory()
        result.on_server = len(inventory)
        result.imap = await imap_resync.reconcile(account, store, maildrop, inventory, clock())
        known = await store.locations(account.name)
        # only where the inventory looked: a mailbox that could not be selected lost nothing
        covered = {key: loc for key, loc in known.items() if maildrop.covers(key)}
        changes = policy.presence_changes(inventory, covered)
        await store.update_presence(account.name, changes.gone, changes.back, clock())
        plan = policy.plan_retrieval(inventory, known, account.max_message_size)
        result.too_large = plan.too_large
        if plan.retrieve:
            batch: list[RetrievedMessage] = []
            pending_octets = 0
            async for item in maildrop.retrieve(plan.retrieve):
                if isinstance(item, RetrievalFailure):
                    result.failures.append(item)
                    continue
                batch.append(item)
                pending_octets += len(item.raw)
                if len(batch) >= batch_messages or pending_octets >= batch_octets:
                    result.add(await store.store_batch(account.name, batch, clock()))
                    batch, pending_octets = [], 0
                    if delivery is not None:
                        await delivery.catch_up()
            if batch:
                result.add(await store.store_batch(account.name, batch, clock()))
                if delivery is not None:
                    await delivery.catch_up()
        if account.retention != "keep":
            known = await store.locations(account.name)
            candidates = policy.select_deletions(
                account.retention, account.retention_days, inventory, known, clock()
            )
            if candidates:
                confirmed = await store.archived(
                    account.name, candidates, require_delivery=delivery is not None
                )
                to_delete = [k for k in candidates if k in confirmed]
            if to_delete:
                sent = await maildrop.delete(to_delete)
                if sent is not None:  # IMAP may skip a mailbox (see IMAPMailbox.delete)
                    to_delete = list(sent)
        await maildrop.close()
    except BaseException:
        await maildrop.abort()
        raise
    if to_delete:
        await store.mark_deleted(account.name, to_delete, clock())
        result.deleted = len(to_delete)
    result.seconds = time.monotonic() - started
    if delivery is not None:
        result.delivered = delivery.delivered
        if delivery.error is not None:
            raise delivery.error
    return result
