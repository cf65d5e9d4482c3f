"""A connection kept logged in between fetch cycles (kept sessions), and taking it back.

:class:`KeptSession` is held by :class:`~maild.protocols.imap.connection.IMAPConnection` (as
``connection.kept``): :meth:`KeptSession.park` keeps the authenticated connection at the end of a
cycle, :meth:`KeptSession.resume` takes it back for the next one after a ``NOOP`` probe. Nothing is
pending on the server between cycles (IMAP deletions took effect at EXPUNGE), so a kept session is
just a logged-in connection.

May import: asyncio, :mod:`maild.errors`, :mod:`maild.protocols.imap.signin`,
:mod:`maild.protocols.imap.selection`.

Standard: RFC 9051 section 5.4 (autologout timer), 6.1.2 (NOOP), 6.3.2 (SELECT again each cycle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from maild.errors import MaildError
from maild.protocols.imap import signin
from maild.protocols.imap.selection import MailboxSelection

T = TypeVar("T")


class _Connection(signin.Session, Protocol):
    """What this module needs of :class:`~maild.protocols.imap.connection.IMAPConnection`."""

    selection: MailboxSelection

    @property
    def usable(self) -> bool: ...
    @property
    def capabilities(self) -> frozenset[str]: ...
    def remember_rate(self) -> None: ...
    async def call(
        self,
        what: str,
        start: Callable[[], Awaitable[T]],
        *,
        timeout_s: float | None = None,
        slow: bool = False,
    ) -> T: ...


__all__ = ["KeptSession"]


class KeptSession:
    """Whether a connection is kept for a later cycle, and when it was parked.

    Args:
        connection: the connection kept (it holds this object).
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._parked_at: float | None = None
        """Event loop time in seconds when :meth:`park` kept the connection; None when not kept."""

    @property
    def parked(self) -> bool:
        """Whether :meth:`park` kept the connection for a later cycle (and it was not taken back)."""
        return self._parked_at is not None

    def forget(self) -> None:
        """The connection is not kept (it was discarded)."""
        self._parked_at = None

    def park(self) -> bool:
        """Keep the authenticated connection for the next cycle (see :meth:`resume`).

        Returns True; False (and the connection is discarded) when it is not usable any more.
        The transfer rate measured so far is remembered (see :func:`.signin.link_rate`).
        """
        connection = self._connection
        connection.remember_rate()
        if not connection.usable:
            connection.discard("not kept: not usable")
            return False
        self._parked_at = asyncio.get_running_loop().time()
        return True

    async def resume(self, *, max_age_s: float, probe_timeout_s: float) -> bool:
        """Take a parked connection back: True when it is ready, else it is discarded.

        Ready means: parked less than ``max_age_s`` seconds ago (below the server's inactivity
        timer, at least 30 minutes, RFC 9051 section 5.4), the connection not lost meanwhile, and
        ``NOOP`` answered OK within ``probe_timeout_s`` seconds (RFC 9051 section 6.1.2; it also
        catches a connection that a middlebox dropped silently). Never raises for the server's
        behaviour.
        """
        connection = self._connection
        parked_at, self._parked_at = self._parked_at, None
        if parked_at is None or not connection.usable:
            connection.discard("kept session lost")
            return False
        if asyncio.get_running_loop().time() - parked_at > max_age_s:
            connection.discard("kept session too old")
            return False
        client = connection.client
        try:
            reply = await connection.call("NOOP", lambda: client.simple("NOOP"), timeout_s=probe_timeout_s)
            _lines, status = connection.completion(reply, "NOOP")
        except MaildError:
            return False  # call() discarded the connection
        if not status.ok:
            connection.discard("NOOP refused")
            return False
        connection.selection.forget()  # every cycle selects again (RFC 9051 section 6.3.2)
        try:
            # compress = "auto": the last cycle may have shown a slow link
            await signin.maybe_compress(connection, connection.capabilities)
        except MaildError:
            return False  # call() discarded the connection
        return True
