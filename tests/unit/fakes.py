"""In-memory fakes for fetch-cycle and scheduler unit tests.

:class:`FakeServer` is what a provider holds between sessions; :class:`FakeMaildrop` is one session with
it and implements :class:`maild.protocols.base.Maildrop`. Like POP3 (RFC 1939 section 6), deletions
marked in a session take effect only when :meth:`FakeMaildrop.close` succeeds; :meth:`FakeMaildrop.abort`
discards them.

Faults are injected at named points: ``"open"``, ``"inventory"``, ``"retrieve"``, ``"delete"`` and
``"close"``. At each point the session first records that it got there (:meth:`FakeMaildrop.reached`),
then waits on the point's gate if one is given (a gate never set is a hung server), then raises the
point's exception if one is given. The ``"retrieve"`` point lies after ``retrieve_point_after``
messages have been yielded in the session (counted across retrieve() calls).

The fake also enforces the Maildrop contract: calls before :meth:`open`, after the session ended, or
with keys that are not in this session's inventory fail with :class:`AssertionError`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from maild.config.loader import AccountConfig
from maild.model import InventoryEntry, MessageKey, POP3Key, RetrievalFailure, RetrievedMessage
from maild.protocols.base import Maildrop

POINTS = ("open", "inventory", "retrieve", "delete", "close")

DeleteHook = Callable[[list[MessageKey]], Awaitable[None]]


def make_message(n: int, *, size: int = 0) -> bytes:
    """Return a small distinct CRLF message numbered ``n``, padded to at least ``size`` octets."""
    raw = (
        b"From: sender%d@example.org\r\nTo: anna@example.org\r\nSubject: message %d\r\n"
        b"Message-ID: <%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n, n)
    )
    return raw + b"x" * max(0, size - len(raw))


class Concurrency:
    """Counts sessions that are open at the same time (from open() until close() or abort())."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    def enter(self) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        self.current -= 1


@dataclass
class SessionPlan:
    """Faults for one session; see the module docstring for the meaning of points."""

    faults: Mapping[str, BaseException] = field(default_factory=dict)
    gates: Mapping[str, asyncio.Event] = field(default_factory=dict)
    refuse: Mapping[MessageKey, str] = field(default_factory=dict)
    retrieve_point_after: int = 0
    on_delete: DeleteHook | None = None


class FakeServer:
    """A provider's maildrop that persists across sessions.

    Attributes:
        messages: key to raw message bytes, in server order.
        sizes: key to the size in octets the server reports, when it differs from ``len(raw)``
            (None means the server does not say).
        deleted: keys removed by successful sessions, in order of removal.
        sessions: every session made, oldest first.
        default_plan: faults for sessions made when no planned session is queued.
    """

    def __init__(
        self,
        messages: Iterable[tuple[MessageKey, bytes]] = (),
        *,
        concurrency: Concurrency | None = None,
    ) -> None:
        self.messages: dict[MessageKey, bytes] = dict(messages)
        self.sizes: dict[MessageKey, int | None] = {}
        self.deleted: list[MessageKey] = []
        self.sessions: list[FakeMaildrop] = []
        self.default_plan = SessionPlan()
        self.concurrency = concurrency
        self._planned: list[SessionPlan] = []
        self._ended = asyncio.Event()
        self.ended_sessions = 0

    @classmethod
    def with_pop3(cls, count: int, *, start: int = 1, **kwargs: Any) -> FakeServer:
        """Return a server holding ``count`` POP3 messages with UIDLs ``uidl-<n>``."""
        return cls(((POP3Key(f"uidl-{n}"), make_message(n)) for n in range(start, start + count)), **kwargs)

    def add(self, key: MessageKey, raw: bytes) -> None:
        """Deliver a message (it goes to the end of the server order)."""
        self.messages[key] = raw

    def plan(self, **kwargs: Any) -> None:
        """Queue faults for the next session made (later calls queue later sessions)."""
        self._planned.append(SessionPlan(**kwargs))

    def session(self) -> FakeMaildrop:
        """Make a new session using the next queued plan, else :attr:`default_plan`."""
        plan = self._planned.pop(0) if self._planned else self.default_plan
        drop = FakeMaildrop(self, plan)
        self.sessions.append(drop)
        return drop

    def factory(self, _account: AccountConfig, _executor: object) -> FakeMaildrop:
        """Stand-in for :func:`maild.fetch.cycle.make_maildrop`."""
        return self.session()

    def _session_ended(self) -> None:
        self.ended_sessions += 1
        self._ended.set()

    async def wait_sessions_ended(self, count: int) -> None:
        """Wait until ``count`` sessions have ended (closed or aborted)."""
        while self.ended_sessions < count:
            self._ended.clear()
            await self._ended.wait()


def maildrops_of(servers: Mapping[str, FakeServer]) -> Callable[[AccountConfig, object], FakeMaildrop]:
    """A maildrop factory for the scheduler (``Scheduler(maildrop_factory=...)``): each account gets
    a session of its own server in ``servers`` (looked up when the cycle starts)."""

    def make(account: AccountConfig, _executor: object) -> FakeMaildrop:
        return servers[account.name].session()

    return make


class FakeMaildrop(Maildrop):
    """One session with a :class:`FakeServer`.

    Attributes:
        calls: method names in call order (``open``, ``inventory``, ``retrieve``, ``delete``,
            ``close``, ``abort``).
        retrieved: keys handed out as messages, in order.
        marked: keys marked for deletion in this session.
        closed: close() succeeded (deletions applied).
        aborted: abort() was called.
    """

    def __init__(self, server: FakeServer, plan: SessionPlan) -> None:
        self.server = server
        self.plan = plan
        self.calls: list[str] = []
        self.retrieved: list[MessageKey] = []
        self.marked: list[MessageKey] = []
        self.opened = False
        self.closed = False
        self.aborted = False
        self._inventory: set[MessageKey] = set()
        self._reached: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._counted = False
        self._handed_out = 0

    async def reached(self, point: str) -> None:
        """Wait until the session has got to ``point``."""
        await self._reached[point].wait()

    def has_reached(self, point: str) -> bool:
        """Whether the session has got to ``point``."""
        return self._reached[point].is_set()

    async def _point(self, point: str) -> None:
        assert point in POINTS, point
        self._reached[point].set()
        gate = self.plan.gates.get(point)
        if gate is not None:
            await gate.wait()
        exc = self.plan.faults.get(point)
        if exc is not None:
            raise exc

    def _check_live(self, what: str) -> None:
        assert self.opened, f"{what} before open()"
        assert not self.closed, f"{what} after close()"
        assert not self.aborted, f"{what} after abort()"

    async def open(self) -> None:
        self.calls.append("open")
        assert not self.opened, "open() called twice"
        if self.server.concurrency is not None:
            self.server.concurrency.enter()
            self._counted = True
        await self._point("open")
        self.opened = True

    async def inventory(self) -> list[InventoryEntry]:
        self.calls.append("inventory")
        self._check_live("inventory()")
        await self._point("inventory")
        self._inventory = set(self.server.messages)
        return [
            InventoryEntry(key, self.server.sizes.get(key, len(raw)))
            for key, raw in self.server.messages.items()
        ]

    async def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        self.calls.append("retrieve")
        self._check_live("retrieve()")
        unknown = [k for k in keys if k not in self._inventory]
        assert not unknown, f"retrieve() of keys not in this session's inventory: {unknown}"
        for key in keys:
            await self._maybe_retrieve_point()
            self._handed_out += 1
            if key in self.plan.refuse:
                yield RetrievalFailure(key, self.plan.refuse[key])
                continue
            self.retrieved.append(key)
            raw = self.server.messages[key]
            if self.spool is not None and len(raw) >= self.spool.threshold_octets:  # as the adapters do
                writer = self.spool.writer()
                writer.write(raw)
                yield RetrievedMessage(key, writer.finish())
                continue
            yield RetrievedMessage(key, raw)
        await self._maybe_retrieve_point()

    async def _maybe_retrieve_point(self) -> None:
        if self._handed_out == self.plan.retrieve_point_after and not self.has_reached("retrieve"):
            await self._point("retrieve")

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        self.calls.append("delete")
        self._check_live("delete()")
        unknown = [k for k in keys if k not in self._inventory]
        assert not unknown, f"delete() of keys not in this session's inventory: {unknown}"
        if self.plan.on_delete is not None:
            await self.plan.on_delete(list(keys))
        await self._point("delete")
        self.marked.extend(keys)

    async def close(self) -> None:
        self.calls.append("close")
        self._check_live("close()")
        await self._point("close")
        for key in self.marked:
            if key in self.server.messages:
                del self.server.messages[key]
                self.server.deleted.append(key)
        self.closed = True
        self._end()

    async def abort(self) -> None:
        self.calls.append("abort")
        if not self.closed and not self.aborted:
            self.marked.clear()
            self._end()
        self.aborted = True

    def _end(self) -> None:
        if self._counted and self.server.concurrency is not None:
            self.server.concurrency.leave()
            self._counted = False
        self.server._session_ended()
