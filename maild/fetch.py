"""One fetch cycle for one account: inventory, diff, retrieve, durable commit, and only then delete.

The order is the product's guarantee:

1. log in and take the server's inventory;
2. record which archived messages left the server;
3. retrieve what the archive lacks, committing it in batches (each commit fsync'ed);
4. only for messages whose commit has returned, and which the archive still holds at that moment,
   mark them deleted (POP3 DELE);
5. QUIT; only ``+OK`` to QUIT (RFC 1939 section 6, UPDATE state) records the deletions as done.

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

from maild import policy
from maild.config import AccountConfig
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
        seconds: wall-clock duration of the cycle.
    """

    account: str
    on_server: int = 0
    new_messages: int = 0
    new_links: int = 0
    octets: int = 0
    failures: list[RetrievalFailure] = field(default_factory=list)
    too_large: list[MessageKey] = field(default_factory=list)
    deleted: int = 0
    seconds: float = 0.0

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

    return IMAPMailbox(settings, account.mailboxes)


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

    Cancellation: at any await, committed batches stay committed; the session is aborted (POP3
    RSET, QUIT), so no DELE takes effect.
    """
    started = time.monotonic()
    result = CycleResult(account=account.name)
    to_delete: list[MessageKey] = []
    try:
        await maildrop.open()
        inventory = await maildrop.inventory()
        result.on_server = len(inventory)
        known = await store.locations(account.name)
        changes = policy.presence_changes(inventory, known)
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
            if batch:
                result.add(await store.store_batch(account.name, batch, clock()))
        if account.retention != "keep":
            known = await store.locations(account.name)
            candidates = policy.select_deletions(
                account.retention, account.retention_days, inventory, known, clock()
            )
            if candidates:
                confirmed = await store.archived(account.name, candidates)
                to_delete = [k for k in candidates if k in confirmed]
            if to_delete:
                await maildrop.delete(to_delete)
        await maildrop.close()
    except BaseException:
        await maildrop.abort()
        raise
    if to_delete:
        await store.mark_deleted(account.name, to_delete, clock())
        result.deleted = len(to_delete)
    result.seconds = time.monotonic() - started
    return result
