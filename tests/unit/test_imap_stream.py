"""The sans-I/O parts of retrieval: the FETCH assembler, the ordered window, command segments."""

from __future__ import annotations

import asyncio

import pytest

from maild.model import IMAPKey
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap.fetch import FetchAssembler
from maild.protocols.imap.stream import (
    MAX_UID_SET_OCTETS,
    MAX_UIDS_PER_STREAM,
    RetrievalStream,
    stream_segments,
)
from maild.protocols.imap.wire import sequence_set

DATE = b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
REQUIRE: tuple[imap_fetch.FetchItem, ...] = ("BODY[]", "FLAGS", "INTERNALDATE")


def response(seq: int, uid: int, body: bytes, flags: bytes = b"") -> list[bytes | bytearray]:
    """One complete FETCH response as aioimaplib frames it."""
    head = b"%d FETCH (UID %d FLAGS (%s) %s BODY[] {%d}" % (seq, uid, flags, DATE, len(body))
    return [head, bytearray(body), b")"]


def settled(assembler: FetchAssembler) -> list[tuple[int, imap_fetch.Outcome]]:
    """Every outcome the assembler has ready, in settling order."""
    found = []
    while (outcome := assembler.next_outcome()) is not None:
        found.append(outcome)
    return found


def test_assembler_settles_a_message_once_all_items_are_in() -> None:
    """Items split over two responses settle at the second; later flag pushes change nothing."""
    assembler = FetchAssembler([5], REQUIRE)
    assembler.feed([b"1 FETCH (UID 5 FLAGS (\\Seen))"])
    assert settled(assembler) == []
    assembler.feed([b"1 FETCH (%s BODY[] {2}" % DATE, bytearray(b"hi"), b" UID 5)"])
    [(uid, outcome)] = settled(assembler)
    assert uid == 5
    assert isinstance(outcome, imap_fetch.FetchedMessage)
    assert (outcome.body, outcome.flags) == (b"hi", frozenset({"\\Seen"}))
    assembler.feed([b"1 FETCH (UID 5 FLAGS (\\Deleted))"])
    assert settled(assembler) == []
    assembler.finish()
    assert settled(assembler) == []
    assert assembler.ignored == 1


def test_assembler_failures_match_parse_fetch() -> None:
    """NIL body, a broken response naming its UID, and a missing item at the end fail their UIDs with
    the reasons parse_fetch gives; foreign UIDs and lines without UID are ignored."""
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 1 FLAGS () %s BODY[] NIL)" % DATE,
        b'2 FETCH (UID 2 FLAGS ("unterminated)',
        b"3 FETCH (UID 3 FLAGS ())",
        b"4 FETCH (UID 99 FLAGS ())",
        b"5 FETCH (FLAGS (\\Seen))",
    ]
    assembler = FetchAssembler([1, 2, 3], REQUIRE)
    assembler.feed(lines)
    outcomes = dict(settled(assembler))
    assembler.finish()
    outcomes.update(settled(assembler))
    expected = imap_fetch.parse_fetch(lines, requested=[1, 2, 3], require=REQUIRE)
    assert outcomes == expected.failures
    assert set(outcomes) == {1, 2, 3}


def test_stream_yields_in_order_and_fails_what_never_came() -> None:
    """Outcomes are taken in the given order, whatever order they arrive in; finish() fails the rest."""
    stream = RetrievalStream([3, 1, 2], REQUIRE, lambda: 10**9)
    stream.feed(response(1, 1, b"one"))
    assert not stream.ready()
    stream.feed(response(3, 3, b"three"))
    assert stream.take()[0] == 3
    assert stream.take()[0] == 1
    assert not stream.ready()
    stream.finish("OK done")
    uid, outcome = stream.take()
    assert (uid, outcome) == (2, "not returned (OK done)")
    assert stream.exhausted


def test_stream_pauses_above_the_window_and_resumes_when_drained() -> None:
    """Reading pauses once held octets exceed the window while something can be taken, and resumes
    after take() brings them back to the window; held octets are counted exactly."""
    calls: list[str] = []
    stream = RetrievalStream([1, 2, 3], REQUIRE, lambda: 10)
    stream.attach(lambda: calls.append("pause"), lambda: calls.append("resume"))
    stream.feed(response(1, 1, b"x" * 8))
    assert calls == []
    stream.feed(response(2, 2, b"y" * 8))
    assert calls == ["pause"]
    assert stream.held_octets == 16
    stream.feed(response(3, 3, b"z" * 8))
    assert calls == ["pause"]
    stream.take()
    assert calls == ["pause"]  # 16 octets still held
    stream.take()
    assert calls == ["pause", "resume"]
    assert stream.held_octets == 8
    assert stream.peak_held_octets == 24


def test_stream_never_pauses_while_the_next_uid_is_missing() -> None:
    """Over the window but nothing to take (out-of-order server): reading goes on, no deadlock."""
    calls: list[str] = []
    stream = RetrievalStream([1, 2], REQUIRE, lambda: 1)
    stream.attach(lambda: calls.append("pause"), lambda: calls.append("resume"))
    stream.feed(response(2, 2, b"late"))
    assert calls == []
    stream.feed(response(1, 1, b"first"))
    assert calls == ["pause"]


async def test_waiter_returns_the_command_when_done_and_wakes_on_ready() -> None:
    """waiter() is the command itself once it ended; otherwise a future that feed() resolves."""
    loop = asyncio.get_running_loop()
    command: asyncio.Future[None] = loop.create_future()
    stream = RetrievalStream([1], REQUIRE, lambda: 100)
    waiter = stream.waiter(command)
    assert waiter is not command
    assert not waiter.done()
    stream.feed(response(1, 1, b"m"))
    assert waiter.done()
    command.set_result(None)
    assert stream.waiter(command) is command


def keys(uids: list[int], uidvalidity: int = 7) -> list[IMAPKey]:
    """INBOX keys."""
    return [IMAPKey("INBOX", uidvalidity, uid) for uid in uids]


def test_segments_follow_ascending_runs_and_keep_stale_keys_in_place() -> None:
    """A descending step starts a new segment; keys of another UIDVALIDITY stay where they were."""
    stale = IMAPKey("INBOX", 1, 2)
    wanted = [*keys([1, 5]), stale, *keys([3, 4, 9])]
    assert stream_segments(wanted, 7) == [[*keys([1, 5]), stale], keys([3, 4, 9])]
    assert stream_segments(keys(list(range(1, 6001))), 7) == [
        keys(list(range(1, 2501))),
        keys(list(range(2501, 5001))),
        keys(list(range(5001, 6001))),
    ]
    assert MAX_UIDS_PER_STREAM == 2500


def test_segments_keep_the_sequence_set_short() -> None:
    """Sparse UIDs (every other one) are cut so that no sequence set exceeds MAX_UID_SET_OCTETS."""
    sparse = keys(list(range(100_001, 110_001, 2)))
    segments = stream_segments(sparse, 7)
    assert sum(len(s) for s in segments) == len(sparse)
    assert len(segments) > 1
    for segment in segments:
        assert len(sequence_set(k.uid for k in segment)) <= MAX_UID_SET_OCTETS
    assert len(sequence_set(k.uid for k in [*segments[0], segments[1][0]])) > MAX_UID_SET_OCTETS - 7


def test_assembler_split_anywhere_between_responses_gives_the_same_outcomes() -> None:
    """Fed whole responses one at a time or all at once, the assembler settles the same messages."""
    lines = [part for seq in (1, 2, 3) for part in response(seq, seq + 10, b"body %d" % seq, b"\\Seen")]
    together = imap_fetch.parse_fetch(lines, requested=[11, 12, 13], require=REQUIRE)
    assembler = FetchAssembler([11, 12, 13], REQUIRE)
    outcomes: dict[int, imap_fetch.Outcome] = {}
    for start in range(0, len(lines), 3):
        assembler.feed(lines[start : start + 3])
        outcomes.update(settled(assembler))
    assert len(outcomes) == 3  # each settled as its response arrived, before finish()
    assert outcomes == together.messages


def test_assembler_caps_fail_the_message_not_the_command() -> None:
    """A literal or a response text beyond the caps fails its UID (or is listed in malformed)."""
    assembler = FetchAssembler([1, 2, 3], ("BODY[]",), max_text_octets=200, max_literal_octets=10)
    assembler.feed([b"1 FETCH (UID 1 BODY[] {11}", bytearray(b"x" * 11), b")"])
    assembler.feed([b"2 FETCH (UID 2 X-LONG " + b"y" * 300 + b" BODY[] {1}", bytearray(b"z"), b")"])
    assembler.feed([b"3 FETCH (X " + b"y" * 300 + b")"])
    outcomes = dict(settled(assembler))
    assert "over the cap" in str(outcomes[1])
    assert "over the cap" in str(outcomes[2])
    assert len(assembler.malformed) == 1
    with pytest.raises(ValueError, match="positive"):
        FetchAssembler(max_text_octets=0)


@pytest.mark.parametrize(
    ("line", "depth"),
    [
        (b"1 FETCH (UID 1 BODY[HEADER.FIELDS (A B)] {5}", 1),
        (b'1 FETCH (ENVELOPE ("Re: :)" NIL))', 0),
        (b'1 FETCH (X "a\\"(" Y (Z)', 1),
        (b"1 FETCH (BODY[] {3}", 1),
        (b")", -1),
        (b'(X "a\\"(" "b(" Y (Z)', 1),
        (b'1 FETCH (BODY[HEADER.FIELDS ("A(")] {3}', 1),
        (b'1 FETCH (X "unterminated (', 1),
    ],
)
def test_paren_depth_follows_the_lexer(line: bytes, depth: int) -> None:
    """Parentheses in quoted strings, section specs and literal markers do not count toward the depth."""
    assert imap_lex.paren_depth(line) == depth
