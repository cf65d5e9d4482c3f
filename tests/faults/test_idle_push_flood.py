"""A server flooding IDLE pushes without new mail gets one cycle per IDLE_PUSH_GAP_S, not one per push.

Found by the QA of session 11: ``* 3 EXISTS`` every 5 ms for 3 s (no new mail) made the scheduler run 242 fetch
cycles, a core's worth of CPU, for as long as the server kept it up. A scripted server: Dovecot pushes only
for real changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random

from maild.archive.store import Store
from maild.service import scheduler as scheduler_module
from maild.service.scheduler import Scheduler
from tests.faults.imap_scripted import ScriptedIMAP
from tests.faults.test_idle_faults import message, scripted_account
from tests.support.fetching import prepare
from tests.support.waiting import eventually

FLOOD_S = 3.0
"""How long the server pushes; with IDLE_PUSH_GAP_S = 2 s at most two push cycles fit (the first may start
at once if the last cycle ended more than the gap before), three with the one a late push may start."""


async def test_a_flood_of_pushes_starts_a_cycle_per_gap_not_per_push(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Steps: an IMAP account polling every 300 s idles on a scripted server; the server pushes `* 3 EXISTS`
    every 5 ms for 3 s; the pushes start cycles (at least one: the poll is minutes away) but at most one
    per IDLE_PUSH_GAP_S, so at most 3 (a slow machine runs fewer, never more)."""
    assert scheduler_module.IDLE_PUSH_GAP_S == 2.0
    async with ScriptedIMAP({"INBOX": [message(n) for n in range(1, 4)]}) as server:
        account = scripted_account(server, poll_interval_s=300.0)
        await prepare(store, account)
        sched = Scheduler([account], store, executor, max_concurrent_fetches=4, rng=random.Random(1))
        stop = asyncio.Event()
        task = asyncio.create_task(sched.run(stop, shutdown_timeout_s=5.0))
        try:
            rt = sched.accounts[account.name]
            await eventually(lambda: rt.last_result is not None, "the first cycle")
            await eventually(lambda: any(s.idling for s in server.sessions), "the watcher in IDLE")
            before = sum(rt.cycles.values())
            loop = asyncio.get_running_loop()
            end = loop.time() + FLOOD_S
            while loop.time() < end:
                await server.push(b"* 3 EXISTS\r\n")
                await asyncio.sleep(0.005)
            cycles = sum(rt.cycles.values()) - before
            assert 1 <= cycles <= 3, cycles
        finally:
            stop.set()
            await task
