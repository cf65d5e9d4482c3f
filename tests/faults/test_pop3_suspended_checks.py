"""POP3 deletion checks while an unfinished move suspends the account's deletions (session 15).

An account whose server holds what ``maild migrate`` uploaded into an unfinished move's target
deletes nothing (:func:`maild.policy.move_suspension`). Before session 15 the cycle still compared
every deletion candidate's header section (``TOP n 0``, up to 200 per poll) and only then asked
whether deleting was suspended: those reads were for nothing, every poll. Now the suspension is
asked before the checks (the candidates are not read) and asked again right before deleting, so a
move that starts while the cycle runs still stops its deletions.

Real fetch cycles (POP3 adapter, SQLite archive with the move records) against :class:`ScriptedPOP3`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from maild.archive.move_queries import MigrationStore
from maild.archive.store import Store
from maild.fetch import pop3_listed
from tests.support.fetching import cycle, pop3_account, prepare, with_retention
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedPOP3, sample_message

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")


@pytest.fixture
def store_class() -> type[Store]:
    """An archive that records moves (``start_move``, ``record_append``, ``retire``)."""
    return MigrationStore


async def upload_into_a_move(store: Store, raw: bytes) -> None:
    """Record an unfinished move from ``pop`` into ``imap`` that uploaded the archived ``raw``."""
    assert isinstance(store, MigrationStore)
    for name, protocol in (("pop", "pop3"), ("imap", "imap")):
        await store.ensure_account(name, "O", "E", protocol, NOW)  # type: ignore[arg-type]
    ids = [m for m, octets in (await store.message_octets(list(range(1, 50)))).items() if octets == raw]
    await store.start_move("pop", "imap", NOW)
    await store.record_append(ids[0], "imap", "INBOX", 7, 9, NOW)


def tops(server: ScriptedPOP3, mark: int) -> list[str]:
    """The TOP commands sent after the first ``mark`` commands."""
    return [c for c in server.commands[mark:] if c.startswith("TOP")]


async def test_a_suspended_account_sends_no_top_for_its_deletion_candidates(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Five archived messages due for deletion while a move suspends the account's deletions: the
    cycle reads none of their header sections (before: TOP 1 0 ... TOP 5 0 every poll) and deletes
    nothing; once the move is retired the next cycle checks them (TOP) and deletes them."""
    sent = [sample_message(n) for n in range(1, 6)]
    with ScriptedPOP3(sent) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)  # "keep": archived, left on the server
        await upload_into_a_move(store, sent[0])
        deleting = with_retention(account, "delete")
        mark = len(server.commands)
        result = await cycle(deleting, store, executor)
        assert tops(server, mark) == []  # before: ["TOP 1 0", ..., "TOP 5 0"]
        assert result.deleted == 0 and len(server.maildrop) == 5
        assert result.deletion_suspended is not None
        assert result.warnings.count(result.deletion_suspended) == 1
        assert isinstance(store, MigrationStore)
        await store.retire("pop", "imap", NOW)
        mark = len(server.commands)
        again = await cycle(deleting, store, executor)
        assert tops(server, mark) == [f"TOP {n} 0" for n in range(1, 6)]
    assert (again.deleted, again.deletion_suspended) == (5, None)
    assert server.maildrop == []


async def test_a_move_started_during_the_checks_still_stops_the_deletions(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suspension is asked before the checks and again right before deleting: a move that
    starts (and uploads a message this server holds) while the candidates are being checked stops
    the cycle's deletions; the early "not suspended" is never acted on. (Holds before session 15
    too; fails when the ask right before deleting is dropped.)"""
    sent = [sample_message(n) for n in range(1, 4)]
    real = pop3_listed.check_headers

    async def move_meanwhile(*args: Any, **kwargs: Any) -> pop3_listed.ListedCheck:
        await upload_into_a_move(store, sent[1])
        return await real(*args, **kwargs)

    with ScriptedPOP3(sent) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)
        monkeypatch.setattr(pop3_listed, "check_headers", move_meanwhile)
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert len(tops(server, mark)) == 3  # checked: not suspended when the cycle asked first
        assert "DELE 1" not in server.commands
    assert result.deleted == 0 and result.deletion_suspended is not None
    assert len(server.maildrop) == 3
