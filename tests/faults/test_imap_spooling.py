"""The IMAP literal hook of the spool (maild.protocols.imap.spooling): a BODY[] literal of at least
the threshold goes to a spool file as it arrives, at every split of the stream, and assembles into
the same message; header literals are never taken for spooled bodies."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maild.protocols.imap import client as imap_module
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import reading as imap_reading
from maild.protocols.imap.lex import SpooledLiteral
from maild.protocols.imap.reading import DIRECT_LITERAL_OCTETS
from maild.protocols.imap.spooling import SPOOL_QUEUE_PART_OCTETS
from maild.spool import Spool, SpooledBody
from tests.faults.test_imap_library import EXPECTED_BODIES, FETCH_STREAM, FakeTransport, run_command


@dataclass(frozen=True)
class Refused:
    """A spooled literal's failed outcome (the spool's words): this machine's side, which the stream
    turns into a local failure (maild.spool.local_failure)."""

    reason: str


async def spooled_run(spool: Spool, cuts: list[int]) -> dict[int, imap_fetch.Outcome | SpooledBody | Refused]:
    """Run the streaming FETCH of the library tests with ``spool``, fed cut at ``cuts``; assemble."""
    assembler = imap_fetch.FetchAssembler([11, 12, 13], ("BODY[]", "FLAGS"))

    def start(protocol: Any) -> Coroutine[Any, Any, Any]:
        fetch_ = imap_module.StreamingFetch(
            protocol, "11:13", "(UID FLAGS INTERNALDATE BODY.PEEK[])", assembler.feed, spool=spool
        )
        coroutine: Coroutine[Any, Any, Any] = fetch_.run()
        return coroutine

    await run_command(imap_module._FastProtocol, start, FETCH_STREAM, cuts)
    assembler.finish()
    outcomes: dict[int, imap_fetch.Outcome | SpooledBody] = {}
    while (outcome := assembler.next_outcome()) is not None:
        uid, found = outcome
        if isinstance(found, imap_fetch.FetchedMessage) and isinstance(found.body, SpooledLiteral):
            spooled = await found.body.outcome  # written by the executor's jobs
            outcomes[uid] = Refused(spooled) if isinstance(spooled, str) else spooled
            continue
        outcomes[uid] = found
    return outcomes


def bodies(outcomes: dict[int, imap_fetch.Outcome | SpooledBody]) -> dict[int, tuple[str, bytes]]:
    """(how, octets) of each UID's body: ``spooled`` or ``memory``."""
    out: dict[int, tuple[str, bytes]] = {}
    for uid, outcome in outcomes.items():
        if isinstance(outcome, SpooledBody):
            out[uid] = ("spooled", outcome.read_all())
            outcome.close()
            continue
        assert isinstance(outcome, imap_fetch.FetchedMessage), outcome
        body = outcome.body
        if isinstance(body, SpooledBody):
            out[uid] = ("spooled", body.read_all())
            body.close()
        else:
            assert body is not None
            out[uid] = ("memory", bytes(body))
    return out


async def test_literals_over_the_threshold_are_spooled_at_every_split(tmp_path: Path) -> None:
    """A literal of at least the threshold arrives spooled and byte-exact at every cut, the shorter
    ones in memory; no spool file stays open."""
    spool = Spool(tmp_path, threshold_octets=10)
    expected = {
        uid: ("spooled" if len(body) >= 10 else "memory", body) for uid, body in EXPECTED_BODIES.items()
    }
    assert sorted(how for how, _ in expected.values()) == ["memory", "memory", "spooled"]
    assert bodies(await spooled_run(spool, [])) == expected
    for cut in range(1, len(FETCH_STREAM)):
        assert bodies(await spooled_run(spool, [cut])) == expected, f"cut at {cut}"
    rnd = random.Random(7)
    for _ in range(30):
        cuts = sorted(rnd.sample(range(1, len(FETCH_STREAM)), rnd.randint(2, 30)))
        assert bodies(await spooled_run(spool, cuts)) == expected, f"cuts {cuts}"
    assert spool.open_files == 0


async def test_a_full_spool_fails_that_message_only(tmp_path: Path) -> None:
    """A spool that refuses a literal reads it off the connection and fails that message with the
    reason; the other messages arrive."""
    spool = Spool(tmp_path, threshold_octets=5, max_octets=8)  # takes "Short" (7), not the other
    outcomes = await spooled_run(spool, [])
    failed = {uid: o for uid, o in outcomes.items() if isinstance(o, Refused)}  # this machine's side
    assert list(failed) == [11]
    assert failed[11].reason.startswith("local spool: the spool holds")
    assert not any(isinstance(o, str) for o in outcomes.values())
    assert bodies({uid: o for uid, o in outcomes.items() if uid != 11}) == {
        12: ("spooled", EXPECTED_BODIES[12]),
        13: ("memory", b""),
    }
    assert spool.open_files == 0


LONG = random.Random(11).randbytes(3 * SPOOL_QUEUE_PART_OCTETS + 4321)
LONG_STREAM = (
    b"* 1 FETCH (UID 11 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(LONG)
    + LONG
    + b")\r\n* 2 FETCH (UID 12 FLAGS () BODY[] {%d}\r\n" % len(LONG[: DIRECT_LITERAL_OCTETS + 7])
    + LONG[: DIRECT_LITERAL_OCTETS + 7]
    + b")\r\n* 3 FETCH (UID 13 FLAGS () BODY[] {5}\r\nshort)\r\n"
    + b"TAG OK Fetch completed.\r\n"
)


class FlowTransport(FakeTransport):
    """A fake transport that honours pause_reading/resume_reading as a socket's would: the test feeds
    nothing while reading is paused (the spool's queue is full) and waits for the resume."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.reading.set()

    def pause_reading(self) -> None:
        """Reading stops until resumed."""
        self.reading.clear()

    def resume_reading(self) -> None:
        """Reading goes on."""
        self.reading.set()


async def long_run(spool: Spool, cuts: list[int]) -> tuple[dict[int, Any], list[int]]:
    """The streaming FETCH of LONG_STREAM with ``spool``, fed through ``get_buffer``/``buffer_updated``
    cut at ``cuts`` (each piece as many reads as the protocol's buffers take); return each UID's
    body (octets, or the refusal's words) and the sizes of the reads that went into a spool part."""
    assembler = imap_fetch.FetchAssembler([11, 12, 13], ("BODY[]",))
    direct_reads: list[int] = []
    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None)
    transport = FlowTransport()
    protocol.connection_made(transport)
    protocol.state = "SELECTED"
    fetch_ = imap_module.StreamingFetch(
        protocol, "11:13", "(UID FLAGS BODY.PEEK[])", assembler.feed, spool=spool
    )
    task = asyncio.ensure_future(fetch_.run())
    for _ in range(3):
        await asyncio.sleep(0)
    data = LONG_STREAM.replace(b"TAG", bytes(transport.written.split(b" ", 1)[0]))
    shared = imap_reading.read_buffer().obj
    for low, high in itertools.pairwise([0, *cuts, len(data)]):
        rest = memoryview(data)[low:high]
        while rest:
            await asyncio.wait_for(transport.reading.wait(), 5)  # the writer jobs drain the queue
            buffer = protocol.get_buffer(-1)
            octets = min(len(buffer), len(rest))
            buffer[:octets] = rest[:octets]
            if buffer.obj is not shared:
                direct_reads.append(octets)
            del buffer
            protocol.buffer_updated(octets)
            rest = rest[octets:]
    await asyncio.wait_for(task, 5)
    assembler.finish()
    out: dict[int, Any] = {}
    while (outcome := assembler.next_outcome()) is not None:
        uid, found = outcome
        assert isinstance(found, imap_fetch.FetchedMessage), found
        body = found.body
        if isinstance(body, SpooledLiteral):
            spooled = await body.outcome
            if isinstance(spooled, str):
                out[uid] = spooled
                continue
            out[uid] = spooled.read_all()
            spooled.close()
        else:
            assert body is not None
            out[uid] = bytes(body)
    return out, direct_reads


async def test_a_long_spooled_literal_is_read_into_the_spool_parts_at_random_cuts(tmp_path: Path) -> None:
    """A spooled literal still owing DIRECT_LITERAL_OCTETS or more is read from the socket straight into
    the spool's part buffers (never through the shared read buffer), and arrives byte-exact however the
    reads are cut: at random, at the literal's edges, at the parts' edges."""
    spool = Spool(tmp_path, threshold_octets=DIRECT_LITERAL_OCTETS)
    expected = {11: LONG, 12: LONG[: DIRECT_LITERAL_OCTETS + 7], 13: b"short"}
    start = LONG_STREAM.index(LONG)
    edges = [start + d for d in (0, 1, 2, DIRECT_LITERAL_OCTETS, SPOOL_QUEUE_PART_OCTETS - 1)]
    edges += [start + SPOOL_QUEUE_PART_OCTETS + d for d in (-1, 0, 1)] + [
        start + len(LONG) + d for d in (-1, 0, 1, 3)
    ]
    rnd = random.Random(20261207)
    for trial in range(40):
        cuts = sorted(
            {rnd.randrange(1, len(LONG_STREAM)) for _ in range(rnd.randint(0, 20))}
            | set(rnd.sample(edges, 3))
        )
        bodies_, direct = await long_run(spool, cuts)
        assert bodies_ == expected, f"cuts {cuts}"
        assert sum(direct) >= len(LONG) - imap_reading.READ_BUFFER_OCTETS, (  # all but the first read
            f"trial {trial}: {sum(direct)} octets read directly"
        )
        assert max(direct) <= SPOOL_QUEUE_PART_OCTETS
    assert spool.open_files == 0


async def test_a_long_literal_the_spool_refuses_is_read_and_dropped_directly(tmp_path: Path) -> None:
    """When the spool refuses a long literal, the rest of it is still read off the connection (into a
    scratch buffer, dropped) and only that message fails; the next responses are read as before."""
    spool = Spool(tmp_path, threshold_octets=DIRECT_LITERAL_OCTETS, max_octets=SPOOL_QUEUE_PART_OCTETS)
    bodies_, direct = await long_run(spool, [])
    assert isinstance(bodies_[11], str)
    assert bodies_[11].startswith("local spool:")
    assert bodies_[12] == LONG[: DIRECT_LITERAL_OCTETS + 7]
    assert bodies_[13] == b"short"
    assert direct
    assert spool.open_files == 0
