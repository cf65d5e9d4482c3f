"""The concurrency budgets of one maild process, in one object: :class:`Budgets`.

Every limit on what runs at once is held here, and nowhere else:

* **cycles**: fetch cycles running at once, all accounts together (``max_concurrent_fetches``);
* **connections per host**: sessions open at once to one server host, all accounts together
  (``max_connections_per_host``): fetch cycles, IMAP sessions kept between cycles, and IDLE
  connections (these may use all but one, see :func:`maild.limits.connection_limit`);
* **transfers**: cycles retrieving messages at once (:data:`maild.limits.MAX_TRANSFERS`), those of
  one host at most :func:`maild.limits.transfer_share` of them;
* **memory**: the message octets all transferring cycles hold in batches
  (:data:`maild.limits.MEMORY_BUDGET_OCTETS`), split among them
  (:func:`maild.limits.batch_octets_share`).

The daemon's scheduler and the one-shot ``maild fetch`` (:mod:`maild.service.oneshot`) each build one
``Budgets`` and hand it to everything that connects or holds messages: the scheduler, the kept
sessions, the IDLE watchers and every fetch cycle. The numbers are decided in :mod:`maild.limits`;
this module only counts. Not thread-safe: use from the process's one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from maild import limits
from maild.config.loader import DaemonConfig

__all__ = ["Budgets"]


class Reclaimer(Protocol):
    """What holds connections it can give up on demand (the kept sessions)."""

    def reclaimable(self, host: str) -> int:
        """Connections of ``host`` (lower case) that :meth:`reclaim` could free, one per call."""
        ...

    async def reclaim(self, host: str) -> bool:
        """Free one connection of ``host`` (lower case); False when there was none to free."""
        ...


@dataclass(slots=True)
class _Host:
    """The connections of one host: held now, the limits of those waiting, their wake-up futures."""

    in_use: int = 0
    waiting: Counter[int] = field(default_factory=Counter)
    wakeups: list[asyncio.Future[None]] = field(default_factory=list)


class Budgets:
    """The shared limits of one process: cycles, connections per host, transfers, memory.

    Args:
        max_cycles: fetch cycles at once (``max_concurrent_fetches``); at least 1.
        per_host: connections at once to one host (``max_connections_per_host``), cycles, kept
            sessions and IDLE connections together; at least 1.
        max_transfers: cycles retrieving messages at once; at least 1.
        memory_octets: message octets all transferring cycles hold together, in octets.
        min_batch_octets: the smallest batch limit a cycle gets, in octets.

    Raises:
        ValueError: a limit below 1 (the configuration never produces one).
    """

    def __init__(
        self,
        *,
        max_cycles: int,
        per_host: int,
        max_transfers: int = limits.MAX_TRANSFERS,
        memory_octets: int = limits.MEMORY_BUDGET_OCTETS,
        min_batch_octets: int = limits.MIN_BATCH_OCTETS,
    ) -> None:
        if min(max_cycles, per_host, max_transfers) < 1:
            raise ValueError("max_cycles, per_host and max_transfers must be at least 1")
        self.max_cycles = max_cycles
        self.per_host = per_host
        self.max_transfers = max_transfers
        self.memory_octets = memory_octets
        self.min_batch_octets = min_batch_octets
        self._cycles = asyncio.Semaphore(max_cycles)
        self._transfers = asyncio.Semaphore(max_transfers)
        self._transferring = 0
        self._host_transfers: dict[str, asyncio.Semaphore] = {}
        self._hosts: dict[str, _Host] = {}
        self._reclaimer: Reclaimer | None = None

    @classmethod
    def from_config(cls, daemon: DaemonConfig) -> Budgets:
        """The budgets the ``[daemon]`` table sets (the rest are maild's own constants)."""
        return cls(max_cycles=daemon.max_concurrent_fetches, per_host=daemon.max_connections_per_host)

    # -- cycles --------------------------------------------------------------------------------------

    def cycle(self) -> asyncio.Semaphore:
        """The cycle slots: ``async with budgets.cycle():`` around one fetch cycle."""
        return self._cycles

    # -- connections per host ------------------------------------------------------------------------

    def reclaim_with(self, reclaimer: Reclaimer) -> None:
        """Let ``reclaimer`` free connections held by something idle (the kept sessions) while a
        connection of a host is wanted and none is free. One reclaimer per process.

        Raises:
            ValueError: another reclaimer was set already.
        """
        if self._reclaimer is not None and self._reclaimer is not reclaimer:
            raise ValueError("one reclaimer per Budgets")
        self._reclaimer = reclaimer

    def _host(self, host: str) -> _Host:
        key = host.lower()
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = _Host()
        return entry

    def connections(self, host: str) -> int:
        """Connections of ``host`` (any case) held now: cycles, kept sessions, IDLE connections."""
        return self._host(host).in_use

    def waiting(self, host: str) -> int:
        """How many want a connection of ``host`` and wait for one."""
        return self._host(host).waiting.total()

    def contended(self, host: str, freeable: int) -> bool:
        """Whether freeing ``freeable`` connections of ``host`` would let one of its waiters in.

        An IDLE connection waiting because the host has ``per_host - 1`` connections that are all
        busy gains nothing from a kept session being closed, so a kept session is closed for it only
        when that is enough.
        """
        entry = self._host(host)
        return any(entry.in_use - freeable < limit for limit in entry.waiting)

    def idle_allowed(self) -> bool:
        """Whether IDLE connections may be made at all (``per_host`` leaves them room)."""
        return limits.connection_limit(self.per_host, idle=True) >= 1

    async def acquire_connection(self, host: str, *, idle: bool = False) -> None:
        """Hold one connection of ``host`` (any case); pair with :meth:`release_connection`.

        While none is free, the reclaimer (see :meth:`reclaim_with`) is asked to close kept
        sessions of the host, when closing them makes room; else this waits for a release.

        Args:
            host: the server host.
            idle: for an IDLE connection: waits while the host holds ``per_host - 1`` connections
                (:func:`maild.limits.connection_limit`); check :meth:`idle_allowed` first, else this
                waits for good.

        Cancellation: at any await, no connection is held.
        """
        entry = self._host(host)
        key = host.lower()
        limit = limits.connection_limit(self.per_host, idle=idle)
        entry.waiting[limit] += 1
        try:
            while entry.in_use >= limit:
                reclaimer = self._reclaimer
                if (
                    reclaimer is not None
                    and entry.in_use - reclaimer.reclaimable(key) < limit
                    and await reclaimer.reclaim(key)
                ):
                    continue
                wakeup = asyncio.get_running_loop().create_future()
                entry.wakeups.append(wakeup)
                try:
                    await wakeup
                finally:
                    if wakeup in entry.wakeups:
                        entry.wakeups.remove(wakeup)
        finally:
            entry.waiting[limit] -= 1
            if not entry.waiting[limit]:
                del entry.waiting[limit]
        entry.in_use += 1

    def release_connection(self, host: str) -> None:
        """Give back one connection of ``host`` taken with :meth:`acquire_connection`."""
        entry = self._host(host)
        if entry.in_use < 1:
            raise RuntimeError(f"no connection of {host} is held")
        entry.in_use -= 1
        wakeups, entry.wakeups = entry.wakeups, []
        for wakeup in wakeups:
            if not wakeup.done():
                wakeup.set_result(None)

    @contextlib.asynccontextmanager
    async def connection(self, host: str, *, idle: bool = False) -> AsyncIterator[None]:
        """Hold a connection of ``host`` for the block (see :meth:`acquire_connection`)."""
        await self.acquire_connection(host, idle=idle)
        try:
            yield
        finally:
            self.release_connection(host)

    # -- transfers and memory ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transfer(self, host: str = "") -> AsyncIterator[None]:
        """Hold a transfer slot for the block: the cycle retrieves messages and holds octets.

        Waits while :attr:`max_transfers` cycles transfer, or while cycles of the same ``host`` (any
        case) hold :func:`maild.limits.transfer_share` of them already, so that crawling transfers
        of one server never hold every slot. A cycle with nothing to retrieve never asks.
        ``host`` empty: no per-host share (a cycle alone). Cancellation: while waiting, nothing is
        held; inside the block, the slot is given back.
        """
        if host:
            key = host.lower()
            share = self._host_transfers.get(key)
            if share is None:
                share = self._host_transfers[key] = asyncio.Semaphore(
                    limits.transfer_share(self.max_transfers)
                )
            per_host: contextlib.AbstractAsyncContextManager[Any] = share
        else:
            per_host = contextlib.nullcontext()
        async with per_host, self._transfers:
            self._transferring += 1
            try:
                yield
            finally:
                self._transferring -= 1

    @property
    def transferring(self) -> int:
        """Cycles inside :meth:`transfer` now."""
        return self._transferring

    def batch_octets(self, limit: int) -> int:
        """One cycle's batch limit now, in octets: its share of the memory budget among the cycles
        transferring at this moment (:func:`maild.limits.batch_octets_share`), at most ``limit``."""
        return limits.batch_octets_share(limit, self._transferring, self.memory_octets, self.min_batch_octets)
