"""The commits of one fetch cycle: each batch prepared while the previous one's transaction runs.

A fetch cycle (:mod:`maild.fetch.cycle`) hands each full batch to :meth:`CommitChain.start`. The
batch's preparation (SHA-256, header parse, index text: :meth:`Store.prepare_batch
<maild.archive.batches.BatchWriter.prepare_batch>`, a worker thread) starts at once; its
transaction (:meth:`Store.insert_batch <maild.archive.batches.BatchWriter.insert_batch>`) waits until
the previous batch's commit has returned, so transactions run one at a time, in arrival order, and
the two CPU-bound steps of consecutive batches overlap (SQLite releases the GIL; SHA-256 does too).
:meth:`CommitChain.start` then waits for that previous commit, so while the cycle reads on, one
commit is in flight, as before the split: what the cycle holds does not grow.

The guarantee does not change: a batch is stored when its commit has returned, the cycle deletes
nothing before :meth:`CommitChain.settle` has seen every commit return, and a batch behind a commit
that failed or was cancelled is not inserted (nothing of it is stored; it is retrieved again next
cycle).

May import: asyncio, structlog, :mod:`maild.archive.store` (the writer's type), :mod:`maild.model`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from maild.archive.store import Store
from maild.model import RetrievedMessage, StoreOutcome

__all__ = ["CommitChain"]

log = structlog.get_logger("maild.fetch.cycle")

Committed = Callable[[list[RetrievedMessage], StoreOutcome], Awaitable[None]]
"""Called once per batch after its transaction returned, in arrival order, before the next batch's
transaction starts: the batch and what storing it changed."""


class CommitChain:
    """The commits in flight of one cycle, oldest first (at most two: one in its transaction or
    preparing, the next preparing or waiting).

    Args:
        store: the open archive.
        account: the account the batches belong to.
        clock: returns the current aware UTC time (the batch's ``stored_at``).
        committed: see :data:`Committed`.
    """

    def __init__(
        self, store: Store, account: str, clock: Callable[[], datetime], committed: Committed
    ) -> None:
        self._store = store
        self._account = account
        self._clock = clock
        self._committed = committed
        self._in_flight: list[tuple[asyncio.Future[None], int]] = []

    def __bool__(self) -> bool:
        """Whether a commit is in flight."""
        return bool(self._in_flight)

    @property
    def held_octets(self) -> int:
        """Octets the messages of the commits in flight hold in memory (a spooled message: its head)."""
        return sum(octets for _, octets in self._in_flight)

    async def start(self, batch: list[RetrievedMessage]) -> None:
        """Commit ``batch`` in the background: its preparation starts now, its transaction once the
        previous commit has returned; then wait for that previous commit (raising its error).

        Cancelled while waiting: the previous commit is cancelled (its transaction is all or
        nothing), and so ``batch`` is never inserted.
        """
        previous = self._in_flight[-1][0] if self._in_flight else None
        task = asyncio.ensure_future(self._commit(batch, previous))
        self._in_flight.append((task, sum(m.held_octets for m in batch)))
        await self.settle(keep=1)

    async def settle(self, keep: int = 0) -> None:
        """Wait for the oldest commits in flight until ``keep`` remain; raise the first error.

        Cancelled while waiting: the commit waited for is cancelled; those behind it store nothing.
        """
        while len(self._in_flight) > keep:
            task, _ = self._in_flight.pop(0)
            await task

    async def finish(self) -> None:
        """After the cycle failed: let the commits still in flight end (they store what was
        retrieved; one behind a failed commit stores nothing). Their errors are logged, not raised:
        the cycle's own error is what propagates. Cancelled again while waiting: they are cancelled
        too (each transaction is all or nothing).
        """
        tasks = [task for task, _ in self._in_flight]
        self._in_flight = []
        if not tasks:
            return
        try:
            await asyncio.wait(tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.warning("fetch.commit.failed", error=repr(task.exception()))

    async def _commit(self, batch: list[RetrievedMessage], previous: asyncio.Future[None] | None) -> None:
        """Prepare ``batch`` (a worker thread, while ``previous`` may still be in its transaction),
        then insert it once ``previous`` has returned. If ``previous`` failed or was cancelled,
        nothing of ``batch`` is stored. Its spool files are closed in any case (committed, or retried
        next cycle: the server still has the messages)."""
        log.debug("fetch.commit.started", messages=len(batch))
        try:
            prepared = await self._store.prepare_batch(batch, self._clock())
            if previous is not None:
                await asyncio.wait([previous])  # being cancelled here leaves ``previous`` alone
                if previous.cancelled() or previous.exception() is not None:
                    log.debug("fetch.commit.dropped", messages=len(batch))
                    return
            outcome = await self._store.insert_batch(self._account, prepared)
            del prepared
        finally:
            for message in batch:
                message.release()
        log.debug("fetch.commit.complete", messages=len(batch))
        await self._committed(batch, outcome)
