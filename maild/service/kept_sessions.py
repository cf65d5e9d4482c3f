"""Connections per host, and IMAP sessions kept open between an account's cycles.

Every connection a fetch cycle makes holds one of its host's ``max_connections_per_host`` permits.
An IMAP session that ended its cycle well may stay logged in for the account's next cycle (see
:meth:`IMAPConnection.park <maild.protocols.imap.connection.IMAPConnection.park>`): the next cycle then
costs a ``NOOP`` instead of a TCP and TLS handshake, a greeting and a login, which on loopback is
most of a no-op cycle and over the internet several round trips. A kept session keeps its permit,
so the limit counts it; when another account of the same host waits for a permit, the oldest kept
session of another account is closed to make room. POP3 sessions are never kept (a maildrop is a
snapshot locked until QUIT, RFC 1939 section 8).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from maild.protocols.base import Maildrop

__all__ = ["CLOSE_TIMEOUT_S", "MAX_AGE_S", "PROBE_TIMEOUT_S", "KeptSessions"]

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


class KeptSessions:
    """Host connection permits and the sessions kept between cycles, per account name.

    Not thread-safe; use from the scheduler's event loop.

    Args:
        per_host: connections allowed at once per host (``max_connections_per_host``), active
            cycles and kept sessions together; at least 1.
    """

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self._per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._kept: dict[str, _Kept] = {}
        self._held: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _slot(self, host: str) -> asyncio.Semaphore:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = asyncio.Semaphore(self._per_host)
        return slot

    def _give_back(self, host: str) -> None:
        self._held[host] -= 1
        self._slot(host).release()

    def kept(self, name: str) -> bool:
        """Whether account ``name`` has a session kept from its last cycle."""
        return name in self._kept

    def in_use(self, host: str) -> int:
        """Permits of ``host`` held now (active cycles and kept sessions)."""
        return self._held.get(host, 0)

    async def acquire(self, name: str, host: str) -> Maildrop | None:
        """Hold one of ``host``'s permits for a cycle of account ``name``.

        Returns the session kept from the account's last cycle (its permit passes to this cycle; the
        caller must :meth:`~maild.protocols.base.Maildrop.resume` or abort it), or None when a fresh
        session is needed. Waits while all permits are taken, after closing the oldest session kept
        by another account of ``host`` to make room. Every call must be paired with :meth:`release`
        unless it raised (cancelled while waiting: no permit is held).
        """
        kept = self._kept.pop(name, None)
        if kept is not None:
            if kept.host == host:
                return kept.maildrop
            await self._close(kept, "host changed")  # releases its permit
        slot = self._slot(host)
        while slot.locked():
            others = [(k.since, n) for n, k in self._kept.items() if k.host == host]
            if not others:
                break
            victim = self._kept.pop(min(others)[1])
            await self._close(victim, "room for another account")
        self._waiting[host] = self._waiting.get(host, 0) + 1
        try:
            await slot.acquire()
        finally:
            self._waiting[host] -= 1
        self._held[host] = self._held.get(host, 0) + 1
        return None

    def release(self, name: str, host: str, maildrop: Maildrop | None) -> None:
        """End a cycle of account ``name``: keep ``maildrop`` with the permit when it is
        :attr:`~maild.protocols.base.Maildrop.parked` and no other cycle waits for a permit of
        ``host``; else give the permit back (a parked session is then logged out in the
        background, and its permit given back when that is done)."""
        if maildrop is None or not maildrop.parked:
            self._give_back(host)
            return
        kept = _Kept(maildrop, host, asyncio.get_running_loop().time())
        if self._waiting.get(host, 0):
            task = asyncio.create_task(self._close(kept, "room for another account"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            self._kept[name] = kept

    async def drop(self, name: str) -> None:
        """Close the session kept for account ``name``, if any (LOGOUT, at most
        :data:`CLOSE_TIMEOUT_S` seconds), and give its permit back. Never raises but CancelledError
        (the permit is given back also then)."""
        kept = self._kept.pop(name, None)
        if kept is not None:
            await self._close(kept, "dropped")

    async def drop_all(self) -> None:
        """Close every kept session, and wait for those being closed in the background."""
        for name in list(self._kept):
            await self.drop(name)
        if self._closing:
            await asyncio.wait(list(self._closing))

    async def _close(self, kept: _Kept, reason: str) -> None:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(kept.maildrop.close(), CLOSE_TIMEOUT_S)
        finally:
            await kept.maildrop.abort()
            self._give_back(kept.host)
            log.debug("session.closed", reason=reason)
