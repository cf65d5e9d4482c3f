"""IMAP spool writes run off the event loop (maild.protocols.imap.spooling): the loop only gathers a
large literal's octets into parts, a worker job writes several at a time; a bounded queue of parts
pauses reading; a failing write fails that message only; part buffers are reused by the next
literals. The file write is held by a test double where a slow disk is needed."""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild.protocols.imap import spooling
from maild.protocols.imap.spooling import (
    SPOOL_JOB_PARTS,
    SPOOL_QUEUE_PART_OCTETS,
    SPOOL_QUEUE_PARTS,
    SPOOL_RESUME_PARTS,
    SpoolingLiteral,
)
from maild.spool import SPOOL_FAILURE_PREFIX, Spool, SpooledBody
from tests.support.gated_spool import GATE_TIMEOUT_S, GatedSpool


class Flow:
    """Records pause and resume calls in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pause(self) -> None:
        """Reading paused."""
        self.events.append("pause")

    def resume(self) -> None:
        """Reading resumed."""
        self.events.append("resume")


async def test_writes_run_in_a_worker_and_a_full_queue_pauses_reading(tmp_path: Path) -> None:
    """While the writer is held, the loop keeps taking octets into at most SPOOL_QUEUE_PARTS waiting
    parts and pauses reading once; released, it writes every part in order, resumes reading, and the
    outcome is the spooled body, byte-exact."""
    spool = GatedSpool(tmp_path)
    flow = Flow()
    data = os.urandom((SPOOL_QUEUE_PARTS + 2) * SPOOL_QUEUE_PART_OCTETS + 12345)
    loop = asyncio.get_running_loop()
    literal = SpoolingLiteral(spool, len(data), loop, flow.pause, flow.resume)
    view = memoryview(data)
    for start in range(0, len(data), 65536):  # as data_received hands it over: views of a buffer
        literal.extend(view[start : start + 65536])
        if flow.events:
            break
    assert flow.events == ["pause"]
    await asyncio.to_thread(spool.blocked.wait, GATE_TIMEOUT_S)
    assert spool.blocked.is_set()
    # and one with the (held) writer: the pause came once SPOOL_QUEUE_PARTS waited, before or after
    # the job took its first part (the job starts at SPOOL_JOB_PARTS)
    assert SPOOL_QUEUE_PARTS - 1 <= literal.queued_parts <= SPOOL_QUEUE_PARTS
    assert threading.get_ident() not in spool.threads  # never the loop's thread
    received = len(literal)
    literal.extend(view[received:])  # what the kernel had buffered still arrives
    stand_in = literal.finish()
    assert stand_in.size_octets == len(data)
    assert not asyncio.ensure_future(stand_in.outcome).done()
    spool.gate.set()
    outcome = await stand_in.outcome
    assert isinstance(outcome, SpooledBody)
    assert flow.events == ["pause", "resume"]
    assert literal.queued_parts == 0
    assert outcome.read_all() == data
    outcome.close()
    assert spool.open_files == 0
    assert SPOOL_RESUME_PARTS < SPOOL_QUEUE_PARTS


async def test_a_failing_write_fails_that_literal_only(tmp_path: Path) -> None:
    """A spool that cannot take the literal (its bound) drops the rest as it arrives; the outcome is
    the reason ("local spool: ..."), and reading is never left paused."""
    spool = Spool(tmp_path, max_octets=SPOOL_QUEUE_PART_OCTETS)
    flow = Flow()
    data = os.urandom(3 * SPOOL_QUEUE_PART_OCTETS)
    literal = SpoolingLiteral(spool, len(data), asyncio.get_running_loop(), flow.pause, flow.resume)
    for start in range(0, len(data), 100_000):
        literal.extend(data[start : start + 100_000])
        await asyncio.sleep(0)  # let the writer jobs report back (order, not time, matters)
    assert len(literal) == len(data)
    outcome = await literal.finish().outcome
    assert isinstance(outcome, str)
    assert outcome.startswith(SPOOL_FAILURE_PREFIX)
    assert "limit" in outcome
    assert flow.events.count("pause") == flow.events.count("resume")
    assert spool.open_files == 0


class CountedJobs:
    """Wraps a loop's ``run_in_executor``: records each writer job's future and the parts it wrote."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: list[asyncio.Future[Any]] = []
        self.parts_per_job: list[int] = []
        self._run = loop.run_in_executor

    def run_in_executor(self, executor: Any, func: Callable[[], Any]) -> asyncio.Future[Any]:
        """As the loop's, counting the parts the job returns (the parts it wrote)."""

        def job() -> Any:
            written = func()
            self.parts_per_job.append(len(written))
            return written

        future = self._run(executor, job)
        self.futures.append(future)
        return future

    async def settle(self) -> None:
        """Wait for every job started so far and for its done-callback on the loop."""
        await asyncio.gather(*self.futures)
        await asyncio.sleep(0)


async def feed_part_by_part(literal: SpoolingLiteral, data: bytes, jobs: CountedJobs) -> None:
    """Hand ``data`` over one part at a time (in uneven views, as reads come), letting every job
    finish before the next part: the writer keeps up, as with fifty connections on one loop."""
    rnd = random.Random(len(data))
    view = memoryview(data)
    start = 0
    while start < len(data):
        end = min(start + SPOOL_QUEUE_PART_OCTETS, len(data))
        while start < end:
            step = min(end - start, rnd.randint(1, 100_000))
            literal.extend(view[start : start + step])
            start += step
        await jobs.settle()


async def test_a_writer_job_writes_several_parts_in_order_and_the_buffers_serve_the_next_literal(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Parts arriving slower than they are written still go SPOOL_JOB_PARTS to a job (not a job per
    part); every octet is written once and in order (a part reordered or dropped changes the file),
    and the next literal reuses the first one's part buffers without their stale octets leaking in."""
    loop = asyncio.get_running_loop()
    jobs = CountedJobs(loop)
    monkeypatch.setattr(loop, "run_in_executor", jobs.run_in_executor)
    monkeypatch.setattr(spooling._pools, "parts", [])
    spool = Spool(tmp_path)
    parts = 5
    first = os.urandom(parts * SPOOL_QUEUE_PART_OCTETS + 777)
    literal = SpoolingLiteral(spool, len(first), loop, Flow().pause, Flow().resume)
    await feed_part_by_part(literal, first, jobs)
    outcome = await literal.finish().outcome
    assert isinstance(outcome, SpooledBody)
    assert outcome.read_all() == first
    outcome.close()
    assert sum(jobs.parts_per_job) == parts + 1
    assert len(jobs.parts_per_job) < parts + 1  # not a job per part
    assert len(jobs.parts_per_job) == math.ceil((parts + 1) / SPOOL_JOB_PARTS)
    assert all(n == SPOOL_JOB_PARTS for n in jobs.parts_per_job)
    pooled = list(spooling._pool())
    assert pooled  # kept for the next literal

    second = os.urandom(SPOOL_QUEUE_PART_OCTETS + 3)  # shorter than what the buffers held before
    literal = SpoolingLiteral(spool, len(second), loop, Flow().pause, Flow().resume)
    assert any(literal._pending is buffer for buffer in pooled)
    await feed_part_by_part(literal, second, jobs)
    outcome = await literal.finish().outcome
    assert isinstance(outcome, SpooledBody)
    assert outcome.read_all() == second
    outcome.close()
    assert len(spooling._pool()) <= spooling.SPOOL_POOL_PARTS
    assert spool.open_files == 0
