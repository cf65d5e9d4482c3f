"""IMAP sessions kept open between an account's cycles, and the host connection each cycle holds.

Every connection a fetch cycle makes holds one of its host's ``max_connections_per_host`` connections
in the process's :class:`~maild.service.budget.Budgets` (which counts them, together with the IDLE
connections). An IMAP session that ended its cycle well may stay logged in for the account's next
cycle (see :meth:`KeptSession.park <maild.protocols.imap.kept.KeptSession.park>`): the next cycle
then costs a ``NOOP`` instead of a TCP and TLS handshake, a greeting and a login, which on loopback is
most of a no-op cycle and over the internet several round trips. A kept session keeps its connection,
so the limit counts it; when anything else waits for a connection of the same host (another account's
cycle, an IDLE connection), the oldest kept session is closed to make room. POP3 sessions are never
kept (a maildrop is a snapshot locked until QUIT, RFC 1939 section 8).

The scheduler never handles a session itself: :meth:`KeptSessions.lease` holds the connection,
:meth:`KeptSessions.connect` gives the cycle its session (the kept one after a ``NOOP``, else a
fresh adapter), :meth:`KeptSessions.release` keeps or closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from maild.protocols.base import Maildrop
from maild.service.budget import Budgets

__all__ = ["CLOSE_TIMEOUT_S", "MAX_AGE_S", "PROBE_TIMEOUT_S", "KeptSessions", "Lease"]

log = structlog.get_logger("maild.service.kept_sessions")

MAX_AGE_S = 20 * 60.0
"""A session kept longer than this, in seconds, is not used again: servers log out idle sessions after
at least 30 minutes (RFC 9051 section 5.4)."""
PROBE_TIMEOUT_S = 5.0
"""Longest wait, in seconds, for the ``NOOP`` that checks a kept session before a cycle uses it."""
CLOSE_TIMEOUT_S = 5.0
"""Longest wait, in seconds, for ``LOGOUT`` when a kept session is closed; then it is dropped."""


@dataclass(slots=True)
class _Kept:
    maildrop: Maildrop
    host: str
    since: float


@dataclass(slots=True)
class Lease:
    """One cycle's connection of a host, from :meth:`KeptSessions.lease` to :meth:`KeptSessions.release`.

    Attributes:
        name: the account.
        host: the server host, lower case.
        kept: the session kept from the account's last cycle, until :meth:`KeptSessions.connect`
            takes it (or the lease is released unused: then it is logged out).
        maildrop: the session the cycle uses, once :meth:`KeptSessions.connect` gave it one.
    """

    name: str
    host: str
    kept: Maildrop | None = None
    maildrop: Maildrop | None = None


class KeptSessions:
    """The sessions kept between cycles, per account name, and each cycle's host connection.

    Not thread-safe; use from the scheduler's event loop.

    Args:
        budgets: the process's budgets; its connections per host are what a cycle holds, and it
            asks this object to close a kept session when a connection of a full host is wanted.
    """

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets
        self._kept: dict[str, _Kept] = {}
        self._closing: set[asyncio.Task[None]] = set()
        budgets.reclaim_with(self)

    def kept(self, name: str) -> bool:
        """Whether account ``name`` has a session kept from its last cycle."""
        return name in self._kept

    def in_use(self, host: str) -> int:
        """Connections of ``host`` held now (active cycles, kept sessions, IDLE connections)."""
        return self._budgets.connections(host)

    async def lease(self, name: str, host: str) -> Lease:
        """Hold one connection of ``host`` for a cycle of account ``name``.

        The lease carries the session kept from the account's last cycle (its connection passes to
        this cycle), or none when a fresh session is needed. Waits while every connection of the
        host is taken, after closing the oldest session kept by another account of the host to make
        room. Every lease must be given to :meth:`release`; cancelled while waiting: no connection is
        held, nothing to release.
        """
        host = host.lower()
        kept = self._kept.pop(name, None)
        if kept is not None:
            if kept.host == host:
                return Lease(name, host, kept=kept.maildrop)
            await self._close(kept, "host changed")  # gives its connection back
        await self._budgets.acquire_connection(host)
        return Lease(name, host)

    async def connect(
        self, lease: Lease, make: Callable[[], Maildrop], *, probe_timeout_s: float
    ) -> tuple[Maildrop, bool]:
        """The session for the lease's cycle: the kept one if it still answers, else ``make()``.

        The kept session is taken back with :meth:`Maildrop.resume
        <maild.protocols.base.Maildrop.resume>` (a ``NOOP`` within ``probe_timeout_s`` seconds, or
        :data:`PROBE_TIMEOUT_S` if shorter; kept at most :data:`MAX_AGE_S` seconds); one that does
        not answer is aborted.

        Returns:
            The session, and whether it is already open (resumed) rather than fresh.

        Raises:
            ConfigError: from ``make``: the password cannot be obtained.
        """
        kept, lease.kept = lease.kept, None
        if kept is not None:
            probe_s = min(PROBE_TIMEOUT_S, probe_timeout_s)
            if await kept.resume(max_age_s=MAX_AGE_S, probe_timeout_s=probe_s):
                lease.maildrop = kept
                return kept, True
            await kept.abort()
        lease.maildrop = make()
        return lease.maildrop, False

    def release(self, lease: Lease) -> None:
        """End the lease's cycle: keep its session with the connection when it is
        :attr:`~maild.protocols.base.Maildrop.parked` and nothing else waits for a connection of the
        host who would get in if the kept sessions were closed; else give the connection back (a
        parked or never used kept session is then logged out in the background, and its connection
        given back when that is done). Never waits."""
        host = lease.host
        unused, lease.kept = lease.kept, None
        now = asyncio.get_running_loop().time()
        if unused is not None:  # the cycle never took it (paused or stopped while waiting)
            self._close_later(_Kept(unused, host, now), "not used")
            return
        maildrop = lease.maildrop
        if maildrop is None or not maildrop.parked:
            self._budgets.release_connection(host)
            return
        kept = _Kept(maildrop, host, now)
        if self._budgets.contended(host, self.reclaimable(host) + 1):
            self._close_later(kept, "room for another account")
        else:
            self._kept[lease.name] = kept

    def _close_later(self, kept: _Kept, reason: str) -> None:
        task = asyncio.create_task(self._close(kept, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drop(self, name: str) -> None:
        """Close the session kept for account ``name``, if any (LOGOUT, at most
        :data:`CLOSE_TIMEOUT_S` seconds), and give its connection back. Never raises but
        CancelledError (the connection is given back also then)."""
        kept = self._kept.pop(name, None)
        if kept is not None:
            await self._close(kept, "dropped")

    async def drop_all(self) -> None:
        """Close every kept session, and wait for those being closed in the background."""
        for name in list(self._kept):
            await self.drop(name)
        if self._closing:
            await asyncio.wait(list(self._closing))

    def reclaimable(self, host: str) -> int:
        """Sessions kept for ``host`` (lower case): connections :meth:`reclaim` can give back."""
        return sum(1 for k in self._kept.values() if k.host == host)

    async def reclaim(self, host: str) -> bool:
        """Close the oldest session kept for ``host`` (lower case), giving its connection back;
        False when none is kept there. Asked by the budgets when a connection of the host is wanted."""
        others = [(k.since, n) for n, k in self._kept.items() if k.host == host]
        if not others:
            return False
        victim = self._kept.pop(min(others)[1])
        await self._close(victim, "room for another account")
        return True

    async def _close(self, kept: _Kept, reason: str) -> None:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(kept.maildrop.close(), CLOSE_TIMEOUT_S)
        finally:
            await kept.maildrop.abort()
            self._budgets.release_connection(kept.host)
            log.debug("session.closed", reason=reason)
