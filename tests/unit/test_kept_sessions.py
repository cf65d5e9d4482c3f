"""Host connection permits and kept sessions (``maild.service.kept_sessions``), with stand-in sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from maild.model import InventoryEntry, MessageKey, RetrievalFailure, RetrievedMessage
from maild.protocols.base import Maildrop
from maild.service import kept_sessions
from maild.service.kept_sessions import KeptSessions


class Session(Maildrop):
    """Only what KeptSessions uses: parked, close, abort (close may hang)."""

    def __init__(self, *, parked: bool = True, hang_on_close: bool = False) -> None:
        self._parked = parked
        self.hang_on_close = hang_on_close
        self.closed = self.aborted = False

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


async def test_permits_limit_connections_per_host_not_across_hosts() -> None:
    """Two permits per host: a third cycle of the host waits until one is given back; another host does not."""
    sessions = KeptSessions(2)
    assert await sessions.acquire("a", "h") is None
    assert await sessions.acquire("b", "h") is None
    third = asyncio.create_task(sessions.acquire("c", "h"))
    assert await sessions.acquire("x", "other") is None
    await asyncio.sleep(0.01)
    assert not third.done()
    sessions.release("a", "h", None)
    assert await asyncio.wait_for(third, 1) is None
    assert sessions.in_use("h") == 2


async def test_a_parked_session_keeps_its_permit_and_comes_back_to_its_account() -> None:
    """release() of a parked session keeps it (and the permit); the account's next acquire gets it."""
    sessions = KeptSessions(1)
    await sessions.acquire("a", "h")
    session = Session()
    sessions.release("a", "h", session)
    assert sessions.kept("a")
    assert sessions.in_use("h") == 1
    assert await sessions.acquire("a", "h") is session
    assert sessions.in_use("h") == 1
    assert not sessions.kept("a")
    sessions.release("a", "h", Session(parked=False))
    assert sessions.in_use("h") == 0


async def test_another_account_closes_the_oldest_kept_session_to_get_a_permit() -> None:
    """With every permit held by kept sessions, a new account's cycle logs the oldest one out."""
    sessions = KeptSessions(2)
    first, second = Session(), Session()
    for name, session in (("a", first), ("b", second)):
        await sessions.acquire(name, "h")
        sessions.release(name, "h", session)
    assert await asyncio.wait_for(sessions.acquire("c", "h"), 1) is None
    assert first.closed and not second.closed
    assert (sessions.kept("a"), sessions.kept("b")) == (False, True)
    assert sessions.in_use("h") == 2


async def test_a_session_parked_while_another_cycle_waits_is_not_kept() -> None:
    """A cycle already waiting for the host gets the permit: the parked session is logged out."""
    sessions = KeptSessions(1)
    await sessions.acquire("a", "h")
    waiting = asyncio.create_task(sessions.acquire("b", "h"))
    await asyncio.sleep(0.01)
    session = Session()
    sessions.release("a", "h", session)
    assert await asyncio.wait_for(waiting, 1) is None
    assert session.closed
    assert not sessions.kept("a")
    await sessions.drop_all()


async def test_closing_a_kept_session_is_bounded_and_always_gives_the_permit_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LOGOUT that never completes is abandoned after CLOSE_TIMEOUT_S; the session is aborted."""
    monkeypatch.setattr(kept_sessions, "CLOSE_TIMEOUT_S", 0.05)
    sessions = KeptSessions(1)
    await sessions.acquire("a", "h")
    session = Session(hang_on_close=True)
    sessions.release("a", "h", session)
    await asyncio.wait_for(sessions.drop("a"), 1)
    assert session.aborted
    assert sessions.in_use("h") == 0


async def test_a_kept_session_of_a_changed_host_is_closed() -> None:
    """After a reload moved the account to another host, its kept session is closed, not reused."""
    sessions = KeptSessions(1)
    await sessions.acquire("a", "old")
    session = Session()
    sessions.release("a", "old", session)
    assert await sessions.acquire("a", "new") is None
    assert session.closed
    assert (sessions.in_use("old"), sessions.in_use("new")) == (0, 1)


def test_at_least_one_permit() -> None:
    """A host limit below 1 is a programming error."""
    with pytest.raises(ValueError, match="at least 1"):
        KeptSessions(0)
