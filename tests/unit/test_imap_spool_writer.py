"""IMAP spool writes run off the event loop (maild.protocols.imap.spooling): the loop only gathers a
large literal's octets into parts, the process's spool writer thread (maild.protocols.imap.spool_writer)
writes them in order and calls the loop back only to resume reading, to report a failure or to
complete the literal; a bounded queue of parts pauses reading; a failing write fails that message
only; part buffers are reused by the next literals. The file write is held by a test double where a
slow disk is needed."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.protocols.imap import spooling
from maild.protocols.imap.spool_writer import SPOOL_WRITER_THREAD_NAME
from maild.protocols.imap.spooling import (
    SPOOL_QUEUE_PART_OCTETS,
    SPOOL_QUEUE_PARTS,
    SPOOL_RESUME_PARTS,
    SPOOL_WRITE_PARTS,
    SpoolingLiteral,
)
from maild.spool import SPOOL_FAILURE_PREFIX, Spool, SpooledBody
from tests.support.gated_spool import GATE_TIMEOUT_S, FailingSpool, GatedSpool


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
    # the writer thread took the first part
    assert SPOOL_QUEUE_PARTS - 1 <= literal.queued_parts <= SPOOL_QUEUE_PARTS
    assert threading.get_ident() not in spool.threads  # never the loop's thread
    assert {t.name for t in threading.enumerate() if t.ident in spool.threads} == {SPOOL_WRITER_THREAD_NAME}
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


class LoopCalls:
    """Wraps a loop's ``call_soon_threadsafe`` (counting the writer's calls back into the loop) and
    makes ``run_in_executor`` fail (the spool writes use no executor job)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monkeypatch: Any) -> None:
        self.calls: list[str] = []
        real = loop.call_soon_threadsafe

        def call_soon_threadsafe(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            self.calls.append(getattr(callback, "__name__", repr(callback)))
            return real(callback, *args, **kwargs)

        def run_in_executor(*args: Any) -> Any:
            raise AssertionError("a spool write went to the executor")

        monkeypatch.setattr(loop, "call_soon_threadsafe", call_soon_threadsafe)
        monkeypatch.setattr(loop, "run_in_executor", run_in_executor)


WRITER_WAIT_STEPS = 20_000
"""Loop turns (of 1 ms at most) a test waits for the writer thread before it fails instead of hanging."""


async def writer_idle(literal: SpoolingLiteral) -> None:
    """Wait until the writer thread has written every part of ``literal`` handed over so far."""
    for _ in range(WRITER_WAIT_STEPS):
        with literal._lock:
            if not literal._scheduled:
                return
        await asyncio.sleep(0.001)
    raise AssertionError("the spool writer never drained the literal")


async def feed_run_by_run(literal: SpoolingLiteral, data: bytes) -> None:
    """Hand ``data`` over in runs of SPOOL_WRITE_PARTS parts (in uneven views, as reads come), letting
    the writer finish each run before the next: the writer keeps up, as with fifty connections on one
    loop."""
    rnd = random.Random(len(data))
    view = memoryview(data)
    start = 0
    run = SPOOL_WRITE_PARTS * SPOOL_QUEUE_PART_OCTETS
    while start < len(data):
        end = min(start + run, len(data))
        while start < end:
            step = min(end - start, rnd.randint(1, 100_000))
            literal.extend(view[start : start + step])
            start += step
        await writer_idle(literal)


def expected_calls(size: int) -> list[str]:
    """The writer's calls into the loop for a literal of ``size`` octets fed by :func:`feed_run_by_run`:
    a resume for every hand-over that paused reading (reading pauses at SPOOL_QUEUE_PARTS waiting),
    then the completion unless nothing was left to write at ``finish``."""
    runs = size // (SPOOL_WRITE_PARTS * SPOOL_QUEUE_PART_OCTETS)
    pausing = SPOOL_WRITE_PARTS >= SPOOL_QUEUE_PARTS
    left = size % (SPOOL_WRITE_PARTS * SPOOL_QUEUE_PART_OCTETS)
    return ["_resume_reading"] * (runs if pausing else 0) + (["_complete"] if left else [])


async def test_a_writer_that_keeps_up_is_handed_runs_of_parts_and_the_buffers_serve_the_next(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Parts arriving slower than they are written go to the writer thread SPOOL_WRITE_PARTS at a
    time and cost the loop no executor job and at most one call back per run (a resume, when the
    run paused reading) plus the completion; every octet is written once and in order (a part
    reordered or dropped changes the file), and the next literal reuses the first one's part
    buffers without their stale octets leaking in."""
    loop = asyncio.get_running_loop()
    calls = LoopCalls(loop, monkeypatch)
    monkeypatch.setattr(spooling._pools, "parts", [])
    spool = Spool(tmp_path)
    first = os.urandom(5 * SPOOL_QUEUE_PART_OCTETS + 777)
    flow = Flow()
    literal = SpoolingLiteral(spool, len(first), loop, flow.pause, flow.resume)
    await feed_run_by_run(literal, first)
    outcome = await literal.finish().outcome
    assert isinstance(outcome, SpooledBody)
    assert outcome.read_all() == first
    outcome.close()
    assert calls.calls == expected_calls(len(first))
    assert flow.events.count("pause") == flow.events.count("resume") == calls.calls.count("_resume_reading")
    pooled = list(spooling._pool())
    assert pooled  # kept for the next literal

    second = os.urandom(SPOOL_QUEUE_PART_OCTETS + 3)  # shorter than what the buffers held before
    literal = SpoolingLiteral(spool, len(second), loop, flow.pause, flow.resume)
    assert any(literal._pending is buffer for buffer in pooled)
    before = len(calls.calls)
    await feed_run_by_run(literal, second)
    outcome = await literal.finish().outcome
    assert isinstance(outcome, SpooledBody)
    assert outcome.read_all() == second
    outcome.close()
    assert calls.calls[before:] == expected_calls(len(second))
    assert len(spooling._pool()) <= spooling.SPOOL_POOL_PARTS
    assert spool.open_files == 0


async def test_a_literal_written_before_finish_completes_there_without_a_call_back(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A literal whose every part was handed over and written before ``finish`` completes inside
    ``finish`` (no call back); one with octets left (a part short by one, one part, a run and one
    octet) is completed by the writer's one call: at each edge +-1 of a part and of a run."""
    loop = asyncio.get_running_loop()
    calls = LoopCalls(loop, monkeypatch)
    spool = Spool(tmp_path)
    run = SPOOL_WRITE_PARTS * SPOOL_QUEUE_PART_OCTETS
    for size in (
        SPOOL_QUEUE_PART_OCTETS - 1,
        SPOOL_QUEUE_PART_OCTETS,
        SPOOL_QUEUE_PART_OCTETS + 1,
        run - 1,
        run,
        run + 1,
    ):
        data = os.urandom(size)
        literal = SpoolingLiteral(spool, size, loop, Flow().pause, Flow().resume)
        before = len(calls.calls)
        await feed_run_by_run(literal, data)
        stand_in = literal.finish()
        assert stand_in.outcome.done() == (size % run == 0)
        outcome = await stand_in.outcome
        assert isinstance(outcome, SpooledBody)
        assert outcome.read_all() == data
        outcome.close()
        assert calls.calls[before:] == expected_calls(size)
    assert spool.open_files == 0


async def test_a_disk_error_fails_that_literal_the_thread_lives_on_and_reading_resumes(
    tmp_path: Path,
) -> None:
    """A write raising OSError in the writer thread fails that literal only ("local spool: writing a
    spool file: ..."), its file gone, the rest read and dropped, reading never left paused; the
    writer thread then spools the next literal byte-exact."""
    loop = asyncio.get_running_loop()
    for fail_at in (0, 1, 3):
        (tmp_path / str(fail_at)).mkdir()
        spool = FailingSpool(tmp_path / str(fail_at), fail_at)
        flow = Flow()
        data = os.urandom(6 * SPOOL_QUEUE_PART_OCTETS + 5)
        literal = SpoolingLiteral(spool, len(data), loop, flow.pause, flow.resume)
        for start in range(0, len(data), 70_000):
            literal.extend(data[start : start + 70_000])
            await asyncio.sleep(0)
        assert len(literal) == len(data)
        outcome = await literal.finish().outcome
        assert isinstance(outcome, str)
        assert outcome.startswith(SPOOL_FAILURE_PREFIX + "writing a spool file: ")
        assert "Input/output error" in outcome
        assert flow.events.count("pause") == flow.events.count("resume")
        assert spool.open_files == 0
        (tmp_path / f"good{fail_at}").mkdir()
        good = Spool(tmp_path / f"good{fail_at}")
        literal = SpoolingLiteral(good, len(data), loop, flow.pause, flow.resume)
        literal.extend(data)
        outcome = await literal.finish().outcome
        assert isinstance(outcome, SpooledBody)
        assert outcome.read_all() == data
        outcome.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(min_value=1, max_value=5 * SPOOL_QUEUE_PART_OCTETS + 2),
    reads=st.lists(st.integers(min_value=1, max_value=SPOOL_QUEUE_PART_OCTETS + 1), min_size=1, max_size=30),
    yields=st.lists(st.booleans(), min_size=1, max_size=30),
    held=st.booleans(),
)
def test_any_reads_and_any_writer_speed_give_the_literal_octet_for_octet(
    tmp_path_factory: Any, size: int, reads: list[int], yields: list[bool], held: bool
) -> None:
    """Whatever the read sizes (across part edges +-1), whether the loop lets the writer run between
    reads, and whether the disk is held until the end: the spooled file is the literal octet for
    octet, reading is resumed as often as paused and never left paused, and no part waits when the
    outcome is set."""
    directory = tmp_path_factory.mktemp("spool")

    async def scenario() -> None:
        spool = GatedSpool(directory) if held else Spool(directory)
        flow = Flow()
        data = os.urandom(size)
        literal = SpoolingLiteral(spool, size, asyncio.get_running_loop(), flow.pause, flow.resume)
        start = i = 0
        while start < size:
            step = reads[i % len(reads)]
            literal.extend(memoryview(data)[start : start + step])
            start += step
            if yields[i % len(yields)]:
                await asyncio.sleep(0)
            i += 1
        stand_in = literal.finish()
        if isinstance(spool, GatedSpool):
            spool.gate.set()
        outcome = await stand_in.outcome
        assert isinstance(outcome, SpooledBody)
        assert outcome.read_all() == data
        outcome.close()
        assert literal.queued_parts == 0
        assert flow.events.count("pause") == flow.events.count("resume")
        assert flow.events[-1:] != ["pause"]
        assert spool.open_files == 0

    asyncio.run(scenario())
