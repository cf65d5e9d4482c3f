"""One fetch cycle of one account within the process's budgets: the piece the daemon's scheduler and
the one-shot ``maild fetch`` (:mod:`maild.service.oneshot`) share.

A cycle first takes a cycle slot, then a connection of its host (with the session kept from the
account's last cycle, if any; see :mod:`maild.service.kept_sessions`), and runs
:func:`~maild.fetch.cycle.fetch_cycle` with the shared transfer slots and memory budget (see
:class:`~maild.service.budget.Budgets`). So ``max_concurrent_fetches``, ``max_connections_per_host``
and the memory budget hold the same way for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.fetch.cycle import CycleResult, MaildropFactory, fetch_cycle
from maild.fetch.progress import CycleProgress
from maild.service.budget import Budgets
from maild.service.kept_sessions import KeptSessions
from maild.service.memory import release_free_heap

__all__ = ["CycleRunner"]


class CycleRunner:
    """Runs fetch cycles within one set of budgets.

    Args:
        store: the open archive.
        executor: the POP3 thread pool, handed to ``maildrop_factory``.
        budgets: the process's budgets.
        sessions: the kept sessions (and host connections) of the same budgets.
        maildrop_factory: makes the unopened adapter of an account.
        clock: returns the current aware UTC time.
    """

    def __init__(
        self,
        store: Store,
        executor: ThreadPoolExecutor,
        budgets: Budgets,
        sessions: KeptSessions,
        maildrop_factory: MaildropFactory,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.executor = executor
        self.budgets = budgets
        self.sessions = sessions
        self.maildrop_factory = maildrop_factory
        self.clock = clock
        self._running = 0  # cycles inside run() now
        self._fetched = False  # a cycle since the process was last idle retrieved mail

    async def run(
        self,
        account: AccountConfig,
        *,
        keep_open: bool,
        proceed: Callable[[], bool] | None = None,
        progress: CycleProgress | None = None,
    ) -> CycleResult | None:
        """Run one cycle of ``account``: wait for a cycle slot and a host connection, then fetch.

        Args:
            account: the account.
            keep_open: end a successful IMAP cycle by keeping its session for the account's next
                cycle (the daemon) instead of LOGOUT (one-shot fetch).
            proceed: asked once the slot and the connection are held; False: the cycle does not
                run (the account was paused or the process stops meanwhile) and None is returned.
            progress: handed to :func:`~maild.fetch.cycle.fetch_cycle` (status and metrics).

        Returns:
            The cycle's result, or None when ``proceed`` said no.

        Raises:
            The errors of :func:`~maild.fetch.cycle.fetch_cycle`, and ConfigError when the password
            cannot be obtained; the slot and the connection are given back (see its guarantees:
            committed batches stay committed, nothing uncommitted is deleted on the server).

        Cancellation: while waiting, nothing is held; during the cycle, as ``fetch_cycle`` says (the
        session is aborted), and the connection is given back.
        """
        self._running += 1
        try:
            result = await self._run(account, keep_open=keep_open, proceed=proceed, progress=progress)
        finally:
            self._running -= 1
        if self._running == 0 and self._fetched:
            # the last cycle ended after mail passed through: give the freed heap back
            # (maild.service.memory.release_free_heap), not after every no-op poll
            self._fetched = False
            await asyncio.to_thread(release_free_heap)
        return result

    async def _run(
        self,
        account: AccountConfig,
        *,
        keep_open: bool,
        proceed: Callable[[], bool] | None,
        progress: CycleProgress | None,
    ) -> CycleResult | None:
        async with self.budgets.cycle():
            lease = await self.sessions.lease(account.name, account.host)
            try:
                if proceed is not None and not proceed():
                    return None  # release() logs a kept session out
                ready = await account.resolved()  # a password_command must not block the loop
                maildrop, resumed = await self.sessions.connect(
                    lease,
                    lambda: self.maildrop_factory(ready, self.executor),
                    probe_timeout_s=account.timeout_s,
                )
                result = await fetch_cycle(
                    account,
                    self.store,
                    maildrop,
                    budgets=self.budgets,
                    clock=self.clock,
                    opened=resumed,
                    keep_open=keep_open,
                    progress=progress,
                    reconnect=lambda: self.maildrop_factory(ready, self.executor),
                )
                self._fetched = self._fetched or result.octets > 0
                return result
            finally:
                self.sessions.release(lease)
