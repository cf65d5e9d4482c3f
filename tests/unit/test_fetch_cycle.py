"""One fetch cycle against an in-memory maildrop and a real SQLite archive.

The fake (``tests/unit/fakes.py``) applies deletions only when close() succeeds, like POP3's UPDATE
state, so these tests can check the product's order: commit, then DELE, then QUIT, then record.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from maild.archive.batches import PreparedBatch
from maild.archive.failures import failure_records
from maild.archive.store import Store
from maild.errors import ConnectError, NetworkTimeout, ProtocolError, StoreError
from maild.fetch import batching
from maild.fetch.cycle import fetch_cycle
from maild.model import MessageKey, POP3Key
from maild.service.budget import Budgets
from tests.support.accounts import pop3_account
from tests.support.fetching import T0, Clock, archived, prepare
from tests.unit.fakes import FakeServer, make_message


def keys(*numbers: int) -> list[POP3Key]:
    return [POP3Key(f"uidl-{n}") for n in numbers]


async def test_first_cycle_stores_everything_and_second_stores_nothing(store: Store) -> None:
    """The first cycle archives every message on the server; the next cycle finds nothing new."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(3)

    first = await fetch_cycle(account, store, server.session(), clock=Clock())
    second = await fetch_cycle(account, store, server.session(), clock=Clock())

    assert (first.on_server, first.new_messages, first.new_links) == (3, 3, 3)
    assert first.octets == sum(len(make_message(n)) for n in (1, 2, 3))
    assert (second.on_server, second.new_messages, second.new_links, second.octets) == (3, 0, 0, 0)
    assert server.sessions[1].retrieved == []
    assert set(await store.locations(account.name)) == set(keys(1, 2, 3))
    assert await store.totals() == (3, first.octets)


async def test_successful_cycle_closes_and_never_aborts(store: Store) -> None:
    """A cycle without errors ends its session with close() and does not call abort()."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(2)
    drop = server.session()

    await fetch_cycle(account, store, drop, clock=Clock())

    assert drop.calls == ["open", "inventory", "retrieve", "close"]
    assert drop.closed
    assert not drop.aborted


async def test_raw_bytes_reach_the_archive_unchanged(store: Store) -> None:
    """The archive holds exactly the octets the maildrop yielded, including NUL and 8-bit bytes."""
    account = await prepare(store, pop3_account())
    raw = b"Subject: Gr\xfc\xdfe\r\n\r\n\x00\xff\r\n.\r\nend\n"
    server = FakeServer([(POP3Key("odd"), raw)])

    await fetch_cycle(account, store, server.session(), clock=Clock())

    async with store._conn.execute("SELECT raw FROM messages") as cur:
        rows = await cur.fetchall()
    assert [bytes(r[0]) for r in rows] == [raw]


async def test_refused_message_is_counted_and_the_rest_stored(store: Store) -> None:
    """A message the server refuses is reported as a failure, the others are archived, and the next cycle retries it."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(3)
    server.plan(refuse={POP3Key("uidl-2"): "-ERR [SYS/TEMP] try later"})

    first = await fetch_cycle(account, store, server.session(), clock=Clock())
    second = await fetch_cycle(account, store, server.session(), clock=Clock())

    assert [f.key for f in first.failures] == keys(2)
    assert first.failures[0].reason == "-ERR [SYS/TEMP] try later"
    assert first.new_links == 2
    assert server.sessions[1].retrieved == keys(2)
    assert second.new_links == 1
    assert second.failures == []
    assert set(await store.locations(account.name)) == set(keys(1, 2, 3))


async def test_error_mid_retrieve_commits_everything_received_and_aborts(store: Store) -> None:
    """A connection failure after three of five messages commits all three (the committed batch of two and the third, received completely), counts a failure for the fourth, aborts the session and never closes it."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(5)
    server.plan(
        faults={"retrieve": ConnectError("connection reset", account=account.name)}, retrieve_point_after=3
    )
    drop = server.session()

    with pytest.raises(ConnectError):
        await fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2)

    assert drop.retrieved == keys(1, 2, 3)
    assert set(await store.locations(account.name)) == set(keys(1, 2, 3))
    records = await failure_records(store, account.name)
    assert list(records) == keys(4)
    assert records[keys(4)[0]].failures == 1
    assert "connection reset" in records[keys(4)[0]].reason
    assert drop.aborted
    assert not drop.closed
    assert "close" not in drop.calls


async def test_cycle_after_mid_retrieve_error_fetches_only_the_rest(store: Store) -> None:
    """After an interrupted cycle (which committed the three messages received), the next one retrieves only the rest."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(5)
    server.plan(
        faults={"retrieve": NetworkTimeout("timed out", account=account.name)}, retrieve_point_after=3
    )

    with pytest.raises(NetworkTimeout):
        await fetch_cycle(account, store, server.session(), clock=Clock(), batch_messages=2)
    result = await fetch_cycle(account, store, server.session(), clock=Clock(), batch_messages=2)

    assert server.sessions[1].retrieved == keys(4, 5)
    assert result.new_links == 2
    assert await store.totals() == (5, sum(len(make_message(n)) for n in range(1, 6)))


class SlowCommits:
    """Wraps ``store.insert_batch`` (a commit's transaction): each waits for ``release`` and records
    what it saw."""

    def __init__(self, store: Store, drop: object) -> None:
        self.store = store
        self.drop = drop
        self.inner = store.insert_batch
        self.release = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = asyncio.Event()
        self.committed: list[list[MessageKey]] = []
        self.retrieved_while_first_waits = 0
        self.fail_first: Exception | None = None

    async def __call__(self, account: str, prepared: PreparedBatch) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started.set()
        try:
            await self.release.wait()
            if not self.committed:
                self.retrieved_while_first_waits = len(self.drop.retrieved)  # type: ignore[attr-defined]
                if self.fail_first is not None:
                    raise self.fail_first
            outcome = await self.inner(account, prepared)
            self.committed.append([p.key for p in prepared.items])
            return outcome
        finally:
            self.in_flight -= 1


async def test_retrieval_continues_while_a_batch_commits_and_memory_stays_at_two_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While batch 1 commits, the next batch is retrieved; no third batch is read before that commit
    returns (at most one commit in flight, so at most two batches held)."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(7)
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)

    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2))
    await slow.started.wait()
    for _ in range(50):  # let retrieval run as far as it can while commit 1 waits
        await asyncio.sleep(0)
    retrieved_meanwhile = list(drop.retrieved)
    slow.release.set()
    result = await task

    assert retrieved_meanwhile == keys(1, 2, 3, 4)  # the next batch, and not the one after it
    assert slow.max_in_flight == 1
    assert slow.committed == [keys(1, 2), keys(3, 4), keys(5, 6), keys(7)]
    assert result.new_links == 7


def record_prepared(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[list[MessageKey]]:
    """The keys of each batch the cycle prepares, in order (the store's own preparation runs)."""
    prepared: list[list[MessageKey]] = []
    real_prepare = store.prepare_batch

    async def recording_prepare(batch: Any, now: datetime) -> PreparedBatch:
        out = await real_prepare(batch, now)
        prepared.append([m.key for m in batch])
        return out

    monkeypatch.setattr(store, "prepare_batch", recording_prepare)
    return prepared


async def until_prepared(prepared: list[list[MessageKey]], count: int) -> None:
    """Wait (at most 2 s) until ``count`` batches are prepared: preparing runs in a worker thread."""
    for _ in range(200):
        if len(prepared) >= count:
            return
        await asyncio.sleep(0.01)


async def test_the_next_batch_is_prepared_while_the_previous_one_is_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While batch 1's transaction is held, batch 2 is prepared (hashed, parsed) but not inserted;
    the transactions run one at a time, in arrival order (issue 19 item 6)."""
    account = await prepare(store, pop3_account())
    drop = FakeServer.with_pop3(5).session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)
    prepared = record_prepared(store, monkeypatch)
    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2))
    await slow.started.wait()
    await until_prepared(prepared, 2)
    prepared_meanwhile = list(prepared)
    in_flight = slow.in_flight
    slow.release.set()
    result = await task

    assert prepared_meanwhile == [keys(1, 2), keys(3, 4)]  # batch 2 ready, batch 3 not yet read
    assert in_flight == 1
    assert slow.max_in_flight == 1
    assert slow.committed == [keys(1, 2), keys(3, 4), keys(5)]
    assert result.new_links == 5


async def test_a_failed_commit_stores_nothing_of_the_batch_prepared_behind_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch 1's transaction fails while batch 2 is prepared behind it: batch 2 is not inserted, the
    cycle fails with batch 1's error and deletes nothing; next cycle, everything is fetched again."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(4)
    drop = server.session()
    slow = SlowCommits(store, drop)
    slow.fail_first = StoreError("disk full")
    monkeypatch.setattr(store, "insert_batch", slow)
    prepared = record_prepared(store, monkeypatch)
    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2))
    await slow.started.wait()
    await until_prepared(prepared, 2)
    assert prepared == [keys(1, 2), keys(3, 4)]
    slow.release.set()
    with pytest.raises(StoreError, match="disk full"):
        await task

    assert slow.committed == []
    assert await store.locations(account.name) == {}
    assert server.deleted == []
    monkeypatch.undo()  # the disk has room again
    again = await fetch_cycle(account, store, server.session(), clock=Clock())
    assert (again.new_links, again.deleted) == (4, 4)


async def test_a_large_commit_in_flight_stops_retrieval_after_one_more_message(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch holding a message of several batch limits is committed before more than one further
    message is taken (HELD_BATCHES): a second large message is not held while the first is written."""
    account = await prepare(store, pop3_account())
    limit = 64 * 1024
    sizes = {1: 1000, 2: 5 * limit, 3: 1000, 4: 1000, 5: 1000}
    server = FakeServer((POP3Key(f"uidl-{n}"), make_message(n, size=size)) for n, size in sizes.items())
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)

    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_octets=limit))
    await slow.started.wait()
    for _ in range(50):  # let retrieval run as far as it may while the large commit waits
        await asyncio.sleep(0)
    retrieved_meanwhile = list(drop.retrieved)
    slow.release.set()
    result = await task

    assert retrieved_meanwhile == keys(1, 2, 3)  # batch [1, 2] commits; 3 taken, then the cycle waits
    assert slow.committed == [keys(1, 2), keys(3, 4, 5)]
    assert result.new_links == 5


async def test_spooled_messages_count_against_the_spool_not_the_memory_budget(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages spooled to files count their head against the batch limit and HELD_BATCHES, their
    size against SPOOLED_BATCH_OCTETS, which closes the batch; every spool file is closed after its
    commit and the archive holds every octet."""
    account = await prepare(store, pop3_account())
    monkeypatch.setattr(batching, "SPOOLED_BATCH_OCTETS", 5 * 2**20)
    raws = {n: make_message(n, size=2 * 2**20 + n) for n in range(1, 6)}
    server = FakeServer((POP3Key(f"uidl-{n}"), raw) for n, raw in raws.items())
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)
    slow.release.set()

    result = await fetch_cycle(account, store, drop, clock=Clock(), batch_octets=16 * 2**20)

    assert slow.committed == [keys(1, 2, 3), keys(4, 5)]  # 3 x 2 MiB spooled pass 5 MiB
    assert result.new_links == 5
    assert store.spool.open_files == 0
    assert sorted(await archived(store)) == sorted(raws.values())


async def test_small_messages_never_wait_for_the_commit_in_flight(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of messages below the limit fill while the previous one commits (HELD_BATCHES never
    holds them up): the whole next batch is retrieved meanwhile."""
    account = await prepare(store, pop3_account())
    limit = 64 * 1024
    server = FakeServer((POP3Key(f"uidl-{n}"), make_message(n, size=limit // 3 + 100)) for n in range(1, 9))
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)

    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_octets=limit))
    await slow.started.wait()
    for _ in range(50):
        await asyncio.sleep(0)
    retrieved_meanwhile = list(drop.retrieved)
    slow.release.set()
    await task

    assert slow.committed[0] == keys(1, 2, 3)
    assert retrieved_meanwhile == keys(1, 2, 3, 4, 5, 6)


async def test_deletion_waits_for_every_commit_when_retrieval_overlaps_commits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With commits overlapping retrieval, DELE is sent only after the last commit has returned, and
    only for messages the archive holds at that moment."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(5)
    seen: list[tuple[int, set[MessageKey]]] = []

    async def at_dele(dele_keys: list[MessageKey]) -> None:
        seen.append((slow.in_flight, await store.archived(account.name, dele_keys)))

    server.plan(on_delete=at_dele)
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)
    slow.release.set()

    result = await fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2)

    assert seen == [(0, set(keys(1, 2, 3, 4, 5)))]
    assert drop.calls.index("delete") > len(drop.calls) - 3
    assert len(slow.committed) == 3
    assert result.deleted == 5
    assert server.deleted == keys(1, 2, 3, 4, 5)


async def test_failed_background_commit_fails_the_cycle_and_deletes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails while the next batch is being retrieved fails the cycle: abort, no DELE."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(5)
    drop = server.session()
    slow = SlowCommits(store, drop)
    slow.fail_first = StoreError("disk full")
    slow.release.set()
    monkeypatch.setattr(store, "insert_batch", slow)

    with pytest.raises(StoreError):
        await fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2)

    assert drop.aborted
    assert "delete" not in drop.calls
    assert server.deleted == []
    assert set(server.messages) == set(keys(1, 2, 3, 4, 5))


async def test_error_while_a_commit_is_in_flight_lets_that_commit_finish(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection failure while batch 1 is still committing: the cycle fails only after that commit
    has returned (its messages stay archived), then commits the message received since, and the
    session is aborted without DELE."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(5)
    server.plan(
        faults={"retrieve": ConnectError("connection reset", account=account.name)}, retrieve_point_after=3
    )
    drop = server.session()
    slow = SlowCommits(store, drop)
    monkeypatch.setattr(store, "insert_batch", slow)

    task = asyncio.create_task(fetch_cycle(account, store, drop, clock=Clock(), batch_messages=2))
    await slow.started.wait()
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()  # the retrieval failed, but the commit in flight has not returned
    slow.release.set()
    with pytest.raises(ConnectError):
        await task

    assert slow.committed == [keys(1, 2), keys(3)]
    assert set(await store.locations(account.name)) == set(keys(1, 2, 3))
    assert drop.aborted
    assert "delete" not in drop.calls
    assert server.deleted == []


async def test_cancelled_cycle_keeps_committed_batches_and_aborts(store: Store) -> None:
    """Cancelling a cycle while the server hangs mid-retrieve keeps committed batches and aborts the session."""
    server = FakeServer.with_pop3(4)
    server.sizes[POP3Key("uidl-4")] = 10_000_000
    account = await prepare(store, pop3_account(retention="delete", max_message_size=1_000_000))
    seen: list[tuple[list[MessageKey], set[MessageKey], list[datetime | None]]] = []

    async def at_dele(dele_keys: list[MessageKey]) -> None:
        locs = await store.locations(account.name)
        archived = await store.archived(account.name, dele_keys)
        seen.append((dele_keys, archived, [locs[k].deleted_at for k in dele_keys]))

    server.plan(refuse={POP3Key("uidl-2"): "-ERR busy"}, on_delete=at_dele)
    drop = server.session()

    result = await fetch_cycle(account, store, drop, clock=Clock(), batch_messages=1)

    assert len(seen) == 1
    dele_keys, archived_then, deleted_at_then = seen[0]
    assert dele_keys == keys(1, 3)
    assert archived_then == set(keys(1, 3))
    assert deleted_at_then == [None, None]
    # one retrieve() stream for the whole cycle, cut into batches by fetch_cycle (uidl-4 is too large)
    assert drop.calls == ["open", "inventory", "retrieve", "delete", "close"]
    assert result.deleted == 2
    assert server.deleted == keys(1, 3)
    assert set(server.messages) == set(keys(2, 4))
    locs = await store.locations(account.name)
    assert locs[POP3Key("uidl-1")].deleted_at == T0
    assert locs[POP3Key("uidl-3")].deleted_at == T0


async def test_delete_also_removes_messages_archived_in_earlier_cycles(store: Store) -> None:
    """Switching to retention "delete" deletes messages that an earlier "keep" cycle archived."""
    server = FakeServer.with_pop3(2)
    await fetch_cycle(await prepare(store, pop3_account()), store, server.session(), clock=Clock())

    account = pop3_account(retention="delete")
    result = await fetch_cycle(account, store, server.session(), clock=Clock())

    assert result.new_links == 0
    assert result.deleted == 2
    assert server.messages == {}


async def test_failure_at_quit_records_no_deletion_and_is_not_a_failed_poll(store: Store) -> None:
    """When QUIT fails after everything was stored, the cycle succeeds with a warning, aborts, and records nothing as deleted; the server keeps the messages."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(2)
    server.plan(faults={"close": ProtocolError("QUIT refused", account=account.name, line="-ERR")})
    drop = server.session()

    result = await fetch_cycle(account, store, drop, clock=Clock())

    assert (result.new_links, result.deleted) == (2, 0)
    assert len(result.warnings) == 1
    assert "2 deletions not confirmed" in result.warnings[0]
    assert drop.marked == []
    assert drop.aborted
    assert len(server.messages) == 2
    locs = await store.locations(account.name)
    assert set(locs) == set(keys(1, 2))
    assert all(loc.deleted_at is None and loc.gone_at is None for loc in locs.values())


async def test_after_failed_quit_next_cycle_deletes(store: Store) -> None:
    """Messages left on the server by a failed QUIT are deleted by the next successful cycle."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(2)
    server.plan(faults={"close": NetworkTimeout("no reply to QUIT", account=account.name)})

    first = await fetch_cycle(account, store, server.session(), clock=Clock())
    result = await fetch_cycle(account, store, server.session(), clock=Clock())

    assert first.deleted == 0
    assert result.deleted == 2
    assert result.new_links == 0
    assert server.messages == {}


async def test_failure_at_dele_aborts_and_keeps_everything(store: Store) -> None:
    """A refused DELE aborts the session: the messages stay archived, on the server, and unmarked."""
    account = await prepare(store, pop3_account(retention="delete"))
    server = FakeServer.with_pop3(2)
    server.plan(faults={"delete": ProtocolError("DELE refused", account=account.name)})
    drop = server.session()

    with pytest.raises(ProtocolError):
        await fetch_cycle(account, store, drop, clock=Clock())

    assert drop.aborted
    assert not drop.closed
    assert len(server.messages) == 2
    locs = await store.locations(account.name)
    assert set(locs) == set(keys(1, 2))
    assert all(loc.deleted_at is None for loc in locs.values())


async def test_delete_after_waits_for_retention_days(store: Store) -> None:
    """Retention "delete-after" deletes a message only once it was first fetched at least N days ago."""
    account = await prepare(store, pop3_account(retention="delete-after", retention_days=3))
    server = FakeServer.with_pop3(1)
    clock = Clock()

    first = await fetch_cycle(account, store, server.session(), clock=clock)
    clock.advance(days=2, hours=23)
    server.add(POP3Key("uidl-2"), make_message(2))
    early = await fetch_cycle(account, store, server.session(), clock=clock)
    clock.advance(hours=1)
    due = await fetch_cycle(account, store, server.session(), clock=clock)

    assert first.deleted == 0
    assert early.deleted == 0
    assert "delete" not in server.sessions[1].calls
    assert due.deleted == 1
    assert server.deleted == keys(1)
    assert set(server.messages) == set(keys(2))
    locs = await store.locations(account.name)
    assert locs[POP3Key("uidl-1")].deleted_at == T0 + timedelta(days=3)
    assert locs[POP3Key("uidl-2")].deleted_at is None


async def test_too_large_message_is_skipped_and_left_on_server(store: Store) -> None:
    """A message above max_message_size is reported as too large, not retrieved, and never deleted."""
    account = await prepare(store, pop3_account(retention="delete", max_message_size=300))
    server = FakeServer([(POP3Key("small"), make_message(1)), (POP3Key("big"), make_message(2, size=500))])

    result = await fetch_cycle(account, store, server.session(), clock=Clock())

    assert result.too_large == [POP3Key("big")]
    assert server.sessions[0].retrieved == [POP3Key("small")]
    assert server.deleted == [POP3Key("small")]
    assert set(server.messages) == {POP3Key("big")}


async def test_presence_is_recorded_when_messages_leave_and_return(store: Store) -> None:
    """A message removed on the server by someone else is marked gone, and unmarked when it reappears."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(2)
    clock = Clock()
    await fetch_cycle(account, store, server.session(), clock=clock)

    raw = server.messages.pop(POP3Key("uidl-1"))
    clock.advance(hours=1)
    await fetch_cycle(account, store, server.session(), clock=clock)
    gone = (await store.locations(account.name))[POP3Key("uidl-1")]
    server.add(POP3Key("uidl-1"), raw)
    back_result = await fetch_cycle(account, store, server.session(), clock=clock)
    back = (await store.locations(account.name))[POP3Key("uidl-1")]

    assert gone.gone_at == T0 + timedelta(hours=1)
    assert gone.deleted_at is None
    assert back.gone_at is None
    assert back_result.new_links == 0


async def test_transfers_are_limited_but_cycles_with_nothing_to_retrieve_never_wait(store: Store) -> None:
    """With one transfer slot in the shared budgets, a second cycle with mail waits (logged in,
    inventory taken) until the first one's retrieval ends; a cycle with nothing to retrieve completes
    meanwhile."""
    budgets = Budgets(max_cycles=8, per_host=8, max_transfers=1)
    gate = asyncio.Event()
    first, second, idle = FakeServer.with_pop3(2), FakeServer.with_pop3(2, start=10), FakeServer()
    first.plan(gates={"retrieve": gate}, retrieve_point_after=1)
    accounts = [await prepare(store, pop3_account(name)) for name in ("first", "second", "nothing")]
    one = asyncio.create_task(
        fetch_cycle(accounts[0], store, first.session(), budgets=budgets, clock=Clock())
    )
    await asyncio.sleep(0.05)
    assert first.sessions[0].has_reached("retrieve")
    two = asyncio.create_task(
        fetch_cycle(accounts[1], store, second.session(), budgets=budgets, clock=Clock())
    )
    quiet = await asyncio.wait_for(
        fetch_cycle(accounts[2], store, idle.session(), budgets=budgets, clock=Clock()), 1
    )
    assert quiet.on_server == 0
    assert second.sessions[0].calls == ["open", "inventory"]  # waiting for the transfer slot
    assert not two.done()
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(one, two), 5)
    assert [r.new_links for r in results] == [2, 2]
