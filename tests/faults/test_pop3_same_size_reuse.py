"""Review of session 14: a POP3 UIDL re-used at the very size of the archived message, with deletions.

Real fetch cycles (POP3 adapter, SQLite archive) against :class:`ScriptedPOP3`. On ``main`` after
session 14 a deletion candidate listed at its archived size was deleted without any check: a UIDL
re-used for a new message of the same size (another client deleted the archived one between two
polls) had that new message deleted unarchived. Now every deletion candidate not retrieved in the
session has its header section compared (``TOP n 0``; without TOP, one ``RETR`` compared by SHA-256)
before ``DELE``, within the per-cycle bounds (maild/fetch/pop3_listed.py, maild/fetch/pop3_check.py).
"""

from __future__ import annotations

import concurrent.futures

import pytest

from maild import pop3_uidls
from maild.archive.store import Store
from maild.model import POP3Key
from tests.support.fetching import (
    T0,
    WITHOUT_TOP,
    Clock,
    archived,
    cycle,
    keeping,
    since,
    with_retention,
)
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message


@pytest.mark.parametrize("capa", [None, WITHOUT_TOP], ids=["top", "without-top"])
async def test_delete_a_uidl_reused_at_the_same_size_archives_the_new_message_before_deleting_it(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, capa: tuple[str, ...] | None
) -> None:
    """retention "delete": the new message under a re-used UIDL, same size, is archived, then deleted.

    Steps (main: the "delete" cycle deleted the new message unarchived): a "keep" cycle archives
    "uidl-1"; another client deletes it and the server gives "uidl-1" to a new message of the same
    size; a "delete" cycle compares its header section (TOP, or RETR without TOP), frees the UIDL,
    archives the new message and only then deletes it.
    """
    first, second = sample_message(1), sample_message(2)
    assert len(first) == len(second)
    with ScriptedPOP3([first], capa=capa) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        server.maildrop[0].raw = second
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete"), store, executor)
        checks = since(server, mark, "TOP" if capa is None else "RETR")
        assert server.maildrop == []

    assert checks[0] in ("TOP 1 0", "RETR 1")
    assert (result.new_messages, result.deleted, result.warnings) == (1, 1, [])
    assert await archived(store) == [first, second]


async def test_delete_after_a_uidl_reused_at_the_same_size_keeps_the_new_message_until_it_is_due(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """retention "delete-after" 3 days: on the day the archived message is due, the new one under its
    UIDL is archived and left on the server (first fetched now: due in 3 days).

    Steps (main: deleted unarchived on the day the first became due).
    """
    first, second = sample_message(1), sample_message(2)
    clock = Clock(T0)
    with ScriptedPOP3([first]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor, clock=clock)
        server.maildrop[0].raw = second
        clock.advance(days=3)
        result = await cycle(with_retention(account, "delete-after", 3), store, executor, clock=clock)
        assert [m.raw for m in server.maildrop] == [second]

    assert (result.new_messages, result.deleted) == (1, 0)
    assert await archived(store) == [first, second]
    known = await store.locations(account.name)
    assert known[POP3Key("uidl-1")].first_fetched_at == T0.replace(day=T0.day + 3)


async def test_a_candidate_at_its_archived_size_and_the_archived_message_is_deleted_after_one_top(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The usual delete-after day: the due message is the archived one; one TOP n 0, then DELE."""
    raws = [sample_message(1), sample_message(2)]
    clock = Clock(T0)
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor, clock=clock)
        clock.advance(days=3)
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete-after", 3), store, executor, clock=clock)
        tops, retrs = since(server, mark, "TOP"), since(server, mark, "RETR")
        assert server.maildrop == []

    assert (tops, retrs) == (["TOP 1 0", "TOP 2 0"], [])
    assert (result.new_messages, result.deleted, result.warnings) == (0, 2, [])


async def test_keep_sends_no_top_for_same_size_messages(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """retention "keep" deletes nothing, so nothing is checked: a poll costs no round trip more."""
    with ScriptedPOP3([sample_message(1)]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        mark = len(server.commands)
        await cycle(account, store, executor)
        assert since(server, mark, "TOP") == since(server, mark, "RETR") == []


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_header_checks_of_candidates_stop_at_their_limit_and_the_rest_are_not_deleted(
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
) -> None:
    """At most MAX_POP3_HEADER_CHECKS TOP per cycle without PIPELINING (2 candidates, the limit at
    2 - 1, 2, 2 + 1): the others are not deleted unchecked; the next cycle checks and deletes them."""
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_HEADER_CHECKS", limit)
    raws = [sample_message(1), sample_message(2)]
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws], pipelining=False) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        mark = len(server.commands)
        first = await cycle(with_retention(account, "delete"), store, executor)
        tops = since(server, mark, "TOP")
        mark = len(server.commands)
        second = await cycle(with_retention(account, "delete"), store, executor)
        assert server.maildrop == []

    done = min(limit, 2)
    assert (len(tops), first.deleted, second.deleted) == (done, done, 2 - done)
    assert any("later cycle" in w for w in first.warnings) == (done == 1)
    assert second.warnings == []
    assert await archived(store) == raws


async def test_a_candidate_whose_top_is_refused_is_compared_by_retr(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """TOP answered -ERR for a same-size candidate: one RETR compares it; the archived one is deleted."""
    raw = sample_message(1)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        message.top = "-ERR no TOP today"
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert since(server, mark, "RETR") == ["RETR 1"]
        assert server.maildrop == []

    assert (result.new_messages, result.deleted, result.warnings) == (0, 1, [])
    assert await archived(store) == [raw]


async def test_the_same_uidl_re_used_twice_is_freed_twice_and_every_message_archived(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Review of session 14: two renames of the same UIDL ("uidl-1 re-used <row id>", the row id
    unique) break no unique constraint; the three messages are archived, two rows recorded gone."""
    raws = [sample_message(1), sample_message(2), sample_message(3)]
    with ScriptedPOP3([raws[0]]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        for raw in raws[1:]:
            server.maildrop[0].raw = raw
            result = await cycle(with_retention(account, "delete"), store, executor)
            assert (result.new_messages, result.warnings) == (1, [])
            server.add(ScriptedMessage(raws[0], uidl="uidl-1"))  # the UIDL listed again, another time
            server.maildrop[:] = server.maildrop[-1:]
        assert await archived(store) == raws

    known = await store.locations(account.name)
    renamed = sorted(key.uidl for key in known if isinstance(key, POP3Key) and " re-used " in key.uidl)
    assert len(renamed) == 2 and len(set(renamed)) == 2
    assert all(known[POP3Key(u)].gone_at is not None for u in renamed)


async def test_a_cycle_broken_after_the_uidl_was_freed_archives_the_new_message_next_time(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of session 14: the session breaks between freeing the UIDL and retrieving the new message
    (as a SIGKILL there would leave it): nothing is deleted; the next "delete" cycle finds the UIDL
    unknown, retrieves and archives the new message, and only then deletes it."""
    from maild.errors import ConnectError
    from maild.fetch import batching

    first, second = sample_message(1), sample_message(2)
    with ScriptedPOP3([first]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        server.maildrop[0].raw = second
        real = batching.BatchRetrieval.run

        async def broken(self: batching.BatchRetrieval, *args: object, **kwargs: object) -> None:
            raise ConnectError("connection reset (test)")

        monkeypatch.setattr(batching.BatchRetrieval, "run", broken)
        with pytest.raises(ConnectError):
            await cycle(with_retention(account, "delete"), store, executor)
        assert [m.raw for m in server.maildrop] == [second]
        assert POP3Key("uidl-1") not in await store.locations(account.name)  # freed, committed
        monkeypatch.setattr(batching.BatchRetrieval, "run", real)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert server.maildrop == []

    assert (result.new_messages, result.deleted) == (1, 1)
    assert await archived(store) == [first, second]


@pytest.mark.parametrize("limit", [3, 4, 5])
async def test_with_pipelining_a_cycle_checks_past_the_window_up_to_its_bound(
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
) -> None:
    """With PIPELINING one cycle checks up to DELETION_CHECKS_PER_CYCLE candidates in windows of
    MAX_POP3_HEADER_CHECKS (here windows of 2; 4 candidates, the bound at 4 - 1, 4, 4 + 1): more than
    one window per cycle (before session 15: one window, 2), never more than the bound, the rest
    deleted by the next cycle after their own check."""
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_HEADER_CHECKS", 2)
    monkeypatch.setattr(pop3_uidls, "DELETION_CHECKS_PER_CYCLE", limit)
    raws = [sample_message(n) for n in range(1, 5)]
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        mark = len(server.commands)
        first = await cycle(with_retention(account, "delete"), store, executor)
        tops = since(server, mark, "TOP")
        mark = len(server.commands)
        second = await cycle(with_retention(account, "delete"), store, executor)
        assert since(server, mark, "TOP") == [f"TOP {n} 0" for n in range(1, 4 - min(limit, 4) + 1)]
        assert server.maildrop == []

    done = min(limit, 4)
    assert tops == [f"TOP {n} 0" for n in range(1, done + 1)]
    assert (first.deleted, second.deleted) == (done, 4 - done)
    assert any("later cycle" in w for w in first.warnings) == (done < 4)
    assert await archived(store) == raws


@pytest.mark.parametrize("window_octets", ["under", "at", "over"])
async def test_with_pipelining_the_checks_stop_after_the_window_that_reaches_the_octet_bound(
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    window_octets: str,
) -> None:
    """DELETION_CHECK_OCTETS bounds what one cycle's TOP replies add up to, checked after each window
    (windows of 2, 4 candidates): the bound one octet above the first window's replies lets the second
    window go; at or below them the cycle stops after the first window (the first is always read)."""
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_HEADER_CHECKS", 2)
    raws = [sample_message(n) for n in range(1, 5)]
    first_window = sum(len(raw.split(b"\r\n\r\n", 1)[0]) + 4 for raw in raws[:2])
    bound = {"under": first_window + 1, "at": first_window, "over": first_window - 1}[window_octets]
    monkeypatch.setattr(pop3_uidls, "DELETION_CHECK_OCTETS", bound)
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        mark = len(server.commands)
        first = await cycle(with_retention(account, "delete"), store, executor)
        tops = since(server, mark, "TOP")
    done = 4 if window_octets == "under" else 2
    assert tops == [f"TOP {n} 0" for n in range(1, done + 1)]
    assert first.deleted == done
