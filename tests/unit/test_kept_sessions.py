"""Kept sessions and each cycle's host connection (``maild.service.kept_sessions``), with stand-in sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from maild.model import InventoryEntry, MessageKey, RetrievalFailure, RetrievedMessage
from maild.protocols.base import Maildrop
from maild.service import kept_sessions
from maild.service.budget import Budgets
from maild.service.kept_sessions import KeptSessions


class Session(Maildrop):
    """Only what KeptSessions uses: parked, close, abort (close may hang)."""

    def __init__(self, *, parked: bool = True, hang_on_close: bool = False, answers: bool = True) -> None:
        self._parked = parked
        self.hang_on_close = hang_on_close
        self.answers = answers
        self.closed = self.aborted = self.resumed = False

    @property
    def parked(self) -> bool:
        return self._parked

    async def close(self) -> None:
        if self.hang_on_close:
            await asyncio.Event().wait()
        self.closed = True
        self._parked = False

    async def abort(self) -> None:
        self.aborted = True
        self._parked = False

    async def resume(self, *, max_age_s: float, probe_timeout_s: float) -> bool:
        self.resumed = self.answers
        self._parked = False
        return self.answers

    async def open(self) -> None:
        raise NotImplementedError

    async def inventory(self) -> list[InventoryEntry]:
        raise NotImplementedError

    async def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Any = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        raise NotImplementedError


def kept_sessions_of(per_host: int) -> KeptSessions:
    return KeptSessions(Budgets(max_cycles=8, per_host=per_host))


async def parked_after_cycle(sessions: KeptSessions, name: str, host: str, session: Session) -> None:
    """Run a cycle of ``name`` that ends with ``session`` parked."""
    lease = await sessions.lease(name, host)
    await sessions.connect(lease, lambda: session, probe_timeout_s=1.0)
    sessions.release(lease)


async def test_connections_are_limited_per_host_not_across_hosts() -> None:
    """Two connections per host: a third cycle of the host waits until one is given back; another host does not."""
    sessions = kept_sessions_of(2)
    first = await sessions.lease("a", "h")
    assert first.kept is None
    await sessions.lease("b", "h")
    third = asyncio.create_task(sessions.lease("c", "h"))
    assert (await sessions.lease("x", "other")).kept is None
    await asyncio.sleep(0.01)
    assert not third.done()
    sessions.release(first)
    assert (await asyncio.wait_for(third, 1)).kept is None
    assert sessions.in_use("h") == 2


async def test_a_parked_session_keeps_its_connection_and_comes_back_to_its_account() -> None:
    """release() of a parked session keeps it (and the connection); the account's next lease gets it,
    and connect() resumes it instead of making a fresh one."""
    sessions = kept_sessions_of(1)
    session = Session()
    await parked_after_cycle(sessions, "a", "h", session)
    assert sessions.kept("a")
    assert sessions.in_use("h") == 1
    lease = await sessions.lease("a", "H")
    assert lease.kept is session
    assert sessions.in_use("h") == 1
    assert not sessions.kept("a")
    assert await sessions.connect(lease, Session, probe_timeout_s=1.0) == (session, True)
    assert session.resumed
    sessions.release(lease)
    assert sessions.in_use("h") == 0


async def test_a_kept_session_that_does_not_answer_is_aborted_and_replaced() -> None:
    """connect() aborts a kept session whose NOOP fails and gives the cycle a fresh one."""
    sessions = kept_sessions_of(1)
    stale, fresh = Session(answers=False), Session(parked=False)
    await parked_after_cycle(sessions, "a", "h", stale)
    lease = await sessions.lease("a", "h")
    assert await sessions.connect(lease, lambda: fresh, probe_timeout_s=1.0) == (fresh, False)
    assert stale.aborted
    sessions.release(lease)
    assert sessions.in_use("h") == 0


async def test_a_lease_released_unused_logs_its_kept_session_out() -> None:
    """A cycle that never ran (paused while waiting) logs the kept session out and gives the connection back."""
    sessions = kept_sessions_of(1)
    session = Session()
    await parked_after_cycle(sessions, "a", "h", session)
    sessions.release(await sessions.lease("a", "h"))
    await sessions.drop_all()
    assert session.closed
    assert sessions.in_use("h") == 0


async def test_another_account_closes_the_oldest_kept_session_to_get_a_connection() -> None:
    """With every connection held by kept sessions, a new account's cycle logs the oldest one out."""
    sessions = kept_sessions_of(2)
    first, second = Session(), Session()
    for name, session in (("a", first), ("b", second)):
        await parked_after_cycle(sessions, name, "h", session)
    assert (await asyncio.wait_for(sessions.lease("c", "h"), 1)).kept is None
    assert first.closed and not second.closed
    assert (sessions.kept("a"), sessions.kept("b")) == (False, True)
    assert sessions.in_use("h") == 2


async def test_an_idle_connection_gets_room_from_a_kept_session() -> None:
    """An IDLE connection wanted while kept sessions fill the host's share closes the oldest one."""
    budgets = Budgets(max_cycles=8, per_host=2)
    sessions = KeptSessions(budgets)
    session = Session()
    await parked_after_cycle(sessions, "a", "h", session)
    await asyncio.wait_for(budgets.acquire_connection("h", idle=True), 1)
    assert session.closed
    assert sessions.in_use("h") == 1


async def test_a_session_parked_while_another_cycle_waits_is_not_kept() -> None:
    """A cycle already waiting for the host gets the connection: the parked session is logged out."""
    sessions = kept_sessions_of(1)
    lease = await sessions.lease("a", "h")
    waiting = asyncio.create_task(sessions.lease("b", "h"))
    await asyncio.sleep(0.01)
    session = Session()
    await sessions.connect(lease, lambda: session, probe_timeout_s=1.0)
    sessions.release(lease)
    assert (await asyncio.wait_for(waiting, 1)).kept is None
    assert session.closed
    assert not sessions.kept("a")
    await sessions.drop_all()


async def test_closing_a_kept_session_is_bounded_and_always_gives_the_connection_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LOGOUT that never completes is abandoned after CLOSE_TIMEOUT_S; the session is aborted."""
    monkeypatch.setattr(kept_sessions, "CLOSE_TIMEOUT_S", 0.05)
    sessions = kept_sessions_of(1)
    session = Session(hang_on_close=True)
    await parked_after_cycle(sessions, "a", "h", session)
    await asyncio.wait_for(sessions.drop("a"), 1)
    assert session.aborted
    assert sessions.in_use("h") == 0


async def test_a_kept_session_of_a_changed_host_is_closed() -> None:
    """After a reload moved the account to another host, its kept session is closed, not reused."""
    sessions = kept_sessions_of(1)
    session = Session()
    await parked_after_cycle(sessions, "a", "old", session)
    assert (await sessions.lease("a", "new")).kept is None
    assert session.closed
    assert (sessions.in_use("old"), sessions.in_use("new")) == (0, 1)


async def test_a_parked_session_is_kept_when_closing_it_would_let_no_waiter_in() -> None:
    """An IDLE connection waiting because IDLE already holds its share of the host gains nothing from a
    closed session: the parked session is kept."""
    budgets = Budgets(max_cycles=8, per_host=2)
    sessions = KeptSessions(budgets)
    await budgets.acquire_connection("h", idle=True)  # one account's IDLE connection
    second_idle = asyncio.create_task(budgets.acquire_connection("h", idle=True))
    await asyncio.sleep(0.01)
    session = Session()
    await parked_after_cycle(sessions, "a", "h", session)
    assert sessions.kept("a")
    assert not session.closed
    assert not second_idle.done()
    second_idle.cancel()
    await asyncio.wait([second_idle])
    await sessions.drop_all()
