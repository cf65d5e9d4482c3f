"""A fetch cycle's retrieval into commit batches, within the process's shared budgets.

:class:`BatchRetrieval` reads the adapter's one stream of messages (``Maildrop.retrieve``), fills
batches and hands each full one to the cycle's :class:`~maild.fetch.commits.CommitChain`: a batch
closes at :data:`BATCH_MESSAGES` messages, at the cycle's batch limit in octets held in memory (its
share of the memory budget, :class:`TransferBudget`), or at :data:`SPOOLED_BATCH_OCTETS` octets in
spool files; when the commit in flight and the batch being filled hold :data:`HELD_BATCHES` batch
limits, it waits for that commit before taking the next message. It keeps what the cycle's failure
path needs: the batch not yet handed to a commit, the keys asked for and those that arrived
(:func:`maild.policy.in_flight`). The order of the guarantee (commit before delete) stays
:mod:`maild.fetch.cycle`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

import structlog

from maild import limits
from maild.model import MessageKey, RetrievalFailure, RetrievedMessage

if TYPE_CHECKING:
    from maild.fetch.commits import CommitChain
    from maild.protocols.base import Maildrop

log = structlog.get_logger("maild.fetch.cycle")

BATCH_MESSAGES = 200
BATCH_OCTETS = 32 * 2**20
WINDOW_SHARE = 1
"""The adapter's retrieval window is the batch limit divided by this. The adapters keep the next window
in flight while the consumer works (see ``Maildrop.retrieve``); while a commit holds the consumer
up, that window is all the link has to carry, so it must not be small. Measured at 50 ms RTT, one
POP3 account, 2,000 messages (docs/performance.md): windows of a whole batch (16 MiB) 1.95-2.0 s
and 120 MB peak; 8 MiB windows and batches 2.06-2.30 s and 85 MB; 4 MiB windows of 16 MiB batches
2.8 s. (Those POP3 figures held whole windows in memory; since issue 19 a POP3 window is read in
parts of about 1 MiB, so only IMAP holds up to a window before reading pauses.)"""

HELD_BATCHES = 3
"""Octets of messages a cycle may hold, in batch limits: the commit in flight and the batch being
filled together (a full batch handed to a commit is prepared while the previous commit's transaction
runs, and the cycle waits for that previous commit before it reads on: so while it reads, one commit
is in flight, as before). A batch closes at about its limit, so this is reached only when a commit in flight
holds a message of several MB (counted at what it holds in memory: a message spooled to a file,
``maild.spool``, counts its head only, and its file counts against ``maild.spool.SPOOL_MAX_OCTETS``
instead); the cycle then waits for that commit before it
takes the next message, so a second large message is not received (and held) while the first is
still being written. 2 waited for 25 of the 48 commits of the 2,000-message fetch (2-3 s of waiting
on a loaded machine, overlap of network and commit lost); 3 waits for about 5 (0.25-0.4 s)
(docs/performance.md, "Session 6: memory of one account")."""


def release(batch: list[RetrievedMessage]) -> None:
    """Close the spool files of ``batch`` once it is committed or given up (nothing for messages
    in memory); a message given up is retried at the next cycle, the server still has it."""
    for message in batch:
        message.release()


SPOOLED_BATCH_OCTETS = 32 * 2**20
"""A batch also closes once its spooled messages (``maild.spool``: those of at least 1 MiB, held in
files, not in memory) reach this many octets (32 MiB): the batch limit counts memory only, and the
commit copies a batch's spooled messages into the archive in one transaction (its WAL grows by about
as much), while every cycle of the process shares the spool's own bound
(``maild.spool.SPOOL_MAX_OCTETS``)."""


class TransferBudget(Protocol):
    """What a fetch cycle needs of the process's shared budgets (:class:`maild.service.budget.Budgets`
    has it): a transfer slot while it retrieves, and its share of the memory budget."""

    def transfer(self, host: str = "") -> AbstractAsyncContextManager[None]:
        """Hold a transfer slot for the block (see :data:`maild.limits.MAX_TRANSFERS`); cycles of
        one ``host`` hold at most :func:`maild.limits.transfer_share` of them."""
        ...

    def batch_octets(self, limit: int) -> int:
        """The cycle's batch limit now, in octets, at most ``limit``."""
        ...


class AloneBudget:
    """The budget of a cycle that shares nothing: no other cycle waits for it or divides its memory."""

    def transfer(self, host: str = "") -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def batch_octets(self, limit: int) -> int:
        return limits.batch_octets_share(limit, 1, limits.MEMORY_BUDGET_OCTETS, limits.MIN_BATCH_OCTETS)


class BatchRetrieval:
    """One cycle's retrieval: the stream of messages cut into commit batches (see the module docstring).

    Args:
        failures: the cycle's list of messages the server refused; each one is appended to it.
        budget: the process's shared budgets (transfer slots, the memory share).
        batch_messages, batch_octets: a batch closes at this many messages, or at the cycle's share of
            ``batch_octets`` octets held in memory, whichever first.
    """

    def __init__(
        self,
        failures: list[RetrievalFailure],
        budget: TransferBudget,
        *,
        batch_messages: int,
        batch_octets: int,
    ) -> None:
        self._failures = failures
        self._budget = budget
        self._batch_messages = batch_messages
        self._batch_octets = batch_octets
        self.batch: list[RetrievedMessage] = []
        """Received, not yet handed to a commit."""
        self.order: list[MessageKey] = []
        """The keys asked for, while retrieving; empty once the retrieval is over."""
        self.arrived: set[MessageKey] = set()
        """Keys the adapter answered for (a message or a failure)."""
        self.retrieved: set[MessageKey] = set()
        """Keys fetched in this session (verified: the server handed out their message)."""

    def window_octets(self) -> int:
        """The adapter's retrieval window now, in octets: the batch limit over :data:`WINDOW_SHARE`."""
        return max(1, self._budget.batch_octets(self._batch_octets) // WINDOW_SHARE)

    async def run(
        self, maildrop: Maildrop, keys: Sequence[MessageKey], commits: CommitChain, host: str
    ) -> None:
        """Retrieve ``keys`` through ``maildrop`` holding a transfer slot for ``host``, handing each
        full batch to ``commits``; returns once every batch has been handed over and has committed.

        Raises:
            The adapter's errors (the session failed; :attr:`batch` holds what arrived and was not
            yet handed over) and the commits' StoreError.

        Cancelled: batches already handed to ``commits`` are its own (see
        :meth:`CommitChain.finish <maild.fetch.commits.CommitChain.finish>`); :attr:`batch` is not
        committed.
        """
        async with self._budget.transfer(host):  # bounds the memory all cycles hold in messages
            # one stream for everything: the adapter keeps its next window in flight while the
            # consumer commits, so the link never waits for a commit (see Maildrop.retrieve)
            log.debug("fetch.retrieve.started", messages=len(keys))
            pending_held = 0  # the batch's octets held in memory (the batch limit, HELD_BATCHES)
            pending_spooled = 0  # its octets in spool files (SPOOLED_BATCH_OCTETS)
            octets_limit = self.window_octets()
            self.order = list(keys)
            async for item in maildrop.retrieve(keys, window_octets=self.window_octets):
                self.arrived.add(item.key)
                if isinstance(item, RetrievalFailure):
                    self._failures.append(item)
                else:
                    self.retrieved.add(item.key)
                    self.batch.append(item)
                    pending_held += item.held_octets
                    pending_spooled += item.size_octets - item.held_octets
                del item  # no message outlives its batch
                if (
                    len(self.batch) >= self._batch_messages
                    or pending_held >= octets_limit
                    or pending_spooled >= SPOOLED_BATCH_OCTETS
                ):
                    await commits.start(self.batch)
                    self.batch, pending_held, pending_spooled = [], 0, 0
                    octets_limit = self.window_octets()
                elif commits and commits.held_octets + pending_held >= HELD_BATCHES * octets_limit:
                    # large messages: the commit's memory first (HELD_BATCHES)
                    log.debug("fetch.held.wait", octets=commits.held_octets + pending_held)
                    await commits.settle()
            if self.batch:
                await commits.start(self.batch)
                self.batch = []
            await commits.settle()  # the batches hold memory until committed
            self.order = []  # the retrieval is over: nothing was in flight
