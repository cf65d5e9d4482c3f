"""IMAP spool writes run off the event loop (maild.protocols.imap.spooling): the loop only gathers a
large literal's octets into parts, a worker job writes each; a bounded queue of parts pauses
reading; a failing write fails that message only. The file write is held by a test double."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from maild.protocols.imap.spooling import (
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
    assert literal.queued_parts == SPOOL_QUEUE_PARTS  # and one more with the (held) writer
    await asyncio.to_thread(spool.blocked.wait, GATE_TIMEOUT_S)
    assert spool.blocked.is_set()
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
