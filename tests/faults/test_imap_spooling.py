"""The IMAP literal hook of the spool (maild.protocols.imap.spooling): a BODY[] literal of at least
the threshold goes to a spool file as it arrives, at every split of the stream, and assembles into
the same message; header literals are never taken for spooled bodies."""

from __future__ import annotations

import random
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maild.protocols.imap import client as imap_module
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap.lex import SpooledLiteral
from maild.spool import Spool, SpooledBody
from tests.faults.test_imap_library import EXPECTED_BODIES, FETCH_STREAM, run_command


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
