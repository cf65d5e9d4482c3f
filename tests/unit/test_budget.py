"""The process's concurrency budgets (``maild.service.budget.Budgets``): cycles, connections per host,
transfers, memory."""

from __future__ import annotations

import asyncio

import pytest

from maild.config.loader import DaemonConfig
from maild.limits import MAX_TRANSFERS, MEMORY_BUDGET_OCTETS
from maild.service.budget import Budgets


def test_limits_below_one_are_refused() -> None:
    """A limit below 1 is a programming error (the configuration never produces one)."""
    for kwargs in ({"max_cycles": 0, "per_host": 1}, {"max_cycles": 1, "per_host": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            Budgets(**kwargs)


def test_budgets_from_the_daemon_table() -> None:
    """max_concurrent_fetches and max_connections_per_host come from [daemon]; transfers and memory are maild's."""
    budgets = Budgets.from_config(DaemonConfig(max_concurrent_fetches=3, max_connections_per_host=2))
    assert (budgets.max_cycles, budgets.per_host) == (3, 2)
    assert (budgets.max_transfers, budgets.memory_octets) == (MAX_TRANSFERS, MEMORY_BUDGET_OCTETS)


async def test_connections_count_per_host_in_any_case() -> None:
    """``MAIL.example.org`` and ``mail.example.org`` share one count; a full host makes the next wait."""
    budgets = Budgets(max_cycles=8, per_host=1)
    await budgets.acquire_connection("MAIL.example.org")
    waiting = asyncio.create_task(budgets.acquire_connection("mail.example.org"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert budgets.waiting("mail.EXAMPLE.org") == 1
    budgets.release_connection("mail.example.org")
    await asyncio.wait_for(waiting, 1)
    assert budgets.connections("mail.example.org") == 1


async def test_an_idle_connection_waits_while_only_one_connection_is_left() -> None:
    """IDLE may hold all but one connection of a host; a cycle still gets the last one."""
    budgets = Budgets(max_cycles=8, per_host=2)
    await budgets.acquire_connection("h", idle=True)
    second_idle = asyncio.create_task(budgets.acquire_connection("h", idle=True))
    await asyncio.sleep(0.01)
    assert not second_idle.done()
    await asyncio.wait_for(budgets.acquire_connection("h"), 1)  # a cycle
    assert budgets.connections("h") == 2
    second_idle.cancel()
    await asyncio.wait([second_idle])
    assert budgets.waiting("h") == 0
    assert budgets.connections("h") == 2  # cancelled while waiting: nothing held


def test_one_connection_per_host_leaves_none_for_idle() -> None:
    """With max_connections_per_host = 1 IDLE is not used at all."""
    assert not Budgets(max_cycles=1, per_host=1).idle_allowed()
    assert Budgets(max_cycles=1, per_host=2).idle_allowed()


async def test_transfers_split_the_memory_budget() -> None:
    """Inside transfer(), each cycle's batch limit is its share among the cycles transferring now."""
    budgets = Budgets(max_cycles=8, per_host=8, max_transfers=2, memory_octets=8 * 2**20, min_batch_octets=1)
    async with budgets.transfer():
        assert budgets.batch_octets(2**30) == 4 * 2**20
        async with budgets.transfer():
            assert budgets.transferring == 2
            assert budgets.batch_octets(2**30) == 2 * 2**20
            third = asyncio.create_task(budgets.transfer().__aenter__())
            await asyncio.sleep(0.01)
            assert not third.done()  # two slots
            third.cancel()
            await asyncio.wait([third])
    assert budgets.transferring == 0


async def test_one_host_never_holds_every_transfer_slot() -> None:
    """Four cycles of a crawling host ask for the four slots: three get them, one waits; a cycle of
    another host still gets a slot at once."""
    budgets = Budgets(max_cycles=8, per_host=8, max_transfers=4)
    entered: list[str] = []
    release = asyncio.Event()

    async def transfer(host: str, name: str) -> None:
        async with budgets.transfer(host):
            entered.append(name)
            await release.wait()

    slow = [asyncio.create_task(transfer("Slow.example", f"slow{n}")) for n in range(4)]
    await asyncio.sleep(0.01)
    assert sorted(entered) == ["slow0", "slow1", "slow2"]
    healthy = asyncio.create_task(transfer("mail.example", "healthy"))
    await asyncio.sleep(0.01)
    assert "healthy" in entered
    assert budgets.transferring == 4
    release.set()
    await asyncio.gather(*slow, healthy)
    assert len(entered) == 5 and budgets.transferring == 0
