"""Session 11's review of the IMAP FETCH fast path (``tests/faults/test_imap_fast_fetch.py`` is its
author's own suite): hostile server streams where the fast path and the generic path could part ways.

Each test compares the fast path with the generic path (the same protocol with the fast path switched
off) on the same bytes, and checks that the fast path really ran, so that it cannot pass by not running.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from maild.protocols.imap import client as imap_module
from tests.faults.test_imap_fast_fetch import (
    DATE,
    ITEMS,
    MIXED,
    _fast_path_on,
    _Transport,
    assert_same,
    fast_path_off,
    generic_run,
    plain,
    run_stream,
    stream_length,
)
from tests.faults.test_imap_library import feed

#: A FETCH response of one line (no literal) of 151 octets, then a body response: what one response
#: holds is counted afresh for each response (the generic path resets the count when a response
#: begins, then counts its first line and its literal).
_LONG_ONE_LINE = b"* 9 FETCH (UID 9 FLAGS (" + b" ".join([b"$k%03d" % n for n in range(20)]) + b"))\r\n"


async def _exceeded(stream: bytes, **limits: int) -> tuple[str | None, list[Any]]:
    """Feed ``stream`` to a streaming FETCH on a fresh protocol with ``limits``: the cap broken (or
    None) and what was handed over (parts lists, or the fast path's argument tuples)."""
    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None, imap_module.ReadLimits(**limits))
    protocol.connection_made(_Transport())
    protocol.state = "SELECTED"
    taken: list[Any] = []
    streaming = imap_module.StreamingFetch(
        protocol, "1:9", ITEMS, taken.append, plain_sink=lambda *args: taken.append(args)
    )
    task = asyncio.ensure_future(streaming.run())
    for _ in range(3):
        await asyncio.sleep(0)
    feed(protocol, stream)
    task.cancel()
    return protocol.exceeded, taken


async def test_the_octets_held_for_one_response_are_counted_from_its_first_line() -> None:
    """Finding 1: a response of one long line, then a body response that alone fits the
    ``buffered_octets`` cap: the generic path keeps the connection (it counts each response from its
    first line on), and so must the fast path, which counted the previous response's line too and
    dropped the connection (imaploop 348f5bf)."""
    body = plain(1, 1, b"x" * 100)
    assert len(_LONG_ONE_LINE) + len(body) > 300 > len(body)
    stream = _LONG_ONE_LINE + body
    results = []
    for switch in (fast_path_off, _fast_path_on):
        with switch():
            results.append(await _exceeded(stream, buffered_octets=300))
    (generic_cap, generic_taken), (fast_cap, fast_taken) = results
    assert generic_cap is None
    assert fast_cap is None
    assert len(fast_taken) == len(generic_taken) == 2
    assert isinstance(fast_taken[1], tuple)  # the body response was the fast path's
    # and over the cap, the same words either way
    caps: list[str | None] = []
    for switch in (fast_path_off, _fast_path_on):
        with switch():
            caps.append((await _exceeded(stream, buffered_octets=len(body) - 10))[0])
    assert caps[0] is not None and caps[0] == caps[1]


_HEAD = b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE " + DATE + b" BODY[] "

#: Hostile streams (RFC 9051 sections 4.3, 7.1, 7.5.2; RFC 7888 literals), each with how many of its
#: responses the fast path takes: it must read each exactly as the generic path does, cut anywhere.
HOSTILE: dict[str, tuple[bytes, int]] = {
    "leading zeros in seq, UID and size": (
        b"* 01 FETCH (UID 0005 FLAGS () INTERNALDATE " + DATE + b" BODY[] {003}\r\nabc)\r\n",
        1,
    ),
    "a UID of 10 digits above 32 bits": (plain(1, 9_999_999_999, b"x"), 1),
    "UID 0": (plain(1, 0, b"x"), 1),
    "a non-synchronising literal (RFC 7888) from the server": (_HEAD + b"{3+}\r\nabc)\r\n", 0),
    "literal8": (_HEAD[:-1] + b" ~{3}\r\nabc)\r\n", 0),
    "an origin octet": (_HEAD.replace(b"BODY[] ", b"BODY[]<0> ") + b"{3}\r\nabc)\r\n", 0),
    "the \\* flag": (plain(1, 1, b"x", flags=b"\\Seen \\*"), 0),
    "odd keyword atoms": (plain(1, 1, b"x", flags=b"$Label1 a.b c+d -x _y 123 \\seen"), 1),
    "a lone $ and backslash": (plain(1, 1, b"x", flags=b"$ \\"), 0),
    "a keyword containing NIL": (plain(1, 1, b"x", flags=b"$nilly"), 1),
    "a single-digit day": (plain(1, 1, b"x", date=b'" 7-Dec-2026 10:00:00 +0200"'), 1),
    "a day without its blank": (plain(1, 1, b"x", date=b'"7-Dec-2026 10:00:00 +0200"'), 1),
    "a tab before the day": (plain(1, 1, b"x", date=b'"\t7-Dec-2026 10:00:00 +0200"'), 0),
    "parentheses and brackets in the date": (plain(1, 1, b"x", date=b'"([7-Dec-2026 10:00:00 +0200"'), 1),
    "an empty date": (plain(1, 1, b"x", date=b'""'), 1),
    "a zone of 24 hours": (plain(1, 1, b"x", date=b'"07-Dec-2026 10:00:00 +2400"'), 1),
    "lower-case names": (plain(1, 1, b"x").replace(b"FETCH (UID", b"fetch (uid"), 0),
    "two blanks": (plain(1, 1, b"x").replace(b"UID 1 ", b"UID 1  "), 0),
    "a UID asked twice": (plain(1, 1, b"a") + plain(2, 1, b"b"), 2),
    "a sequence number reused": (plain(1, 1, b"a") + plain(1, 2, b"b"), 2),
    "a flag update between": (
        plain(1, 1, b"a") + b"* 1 FETCH (FLAGS (\\Deleted))\r\n" + plain(2, 2, b"b"),
        2,
    ),
    "a flag update before": (b"* 1 FETCH (FLAGS (\\Deleted))\r\n" + plain(1, 1, b"a"), 1),
    "the UID under another sequence number before": (
        b"* 3 FETCH (UID 1 FLAGS (\\Deleted))\r\n" + plain(1, 1, b"a"),
        1,
    ),
    "EXPUNGE, EXISTS, VANISHED, RECENT between": (
        plain(1, 1, b"a")
        + b"* 1 EXPUNGE\r\n* 5 EXISTS\r\n* VANISHED 3\r\n* 4 RECENT\r\n"
        + plain(1, 2, b"b"),
        2,
    ),
    "BYE between": (plain(1, 1, b"a") + b"* BYE going\r\n" + plain(2, 2, b"b"), 2),
    "a continuation, a lone star, blank lines between": (
        plain(1, 1, b"a") + b"+ go on\r\n*\r\n\r\n\r\n" + plain(2, 2, b"b"),
        2,
    ),
    "an announced size too long": (_HEAD + b"{10}\r\nabc)\r\n" + plain(2, 2, b"b") + plain(3, 3, b"c"), 0),
    "an announced size too short": (_HEAD + b"{1}\r\nabc)\r\n" + plain(2, 2, b"b"), 1),
    "')' missing, CRLF kept": (plain(1, 1, b"a")[:-3] + b"\r\n" + plain(2, 2, b"b") + plain(3, 3, b"c"), 0),
    "')' missing": (plain(1, 1, b"a")[:-3] + plain(2, 2, b"b") + plain(3, 3, b"c"), 0),
    "')' twice": (plain(1, 1, b"a")[:-2] + b")\r\n" + plain(2, 2, b"b"), 1),
    "') ' then CRLF": (plain(1, 1, b"a")[:-2] + b" \r\n" + plain(2, 2, b"b"), 1),
    "CR without LF after the size": (_HEAD + b"{3}\rabc)\r\n" + plain(2, 2, b"b"), 1),
    "LF before CRLF after the size": (_HEAD + b"{3}\n\r\nabc)\r\n" + plain(2, 2, b"b"), 1),
    "CR without LF after ')'": (plain(1, 1, b"a")[:-2] + b"\r" + plain(2, 2, b"b"), 0),
    "sequence number 0": (plain(0, 1, b"a"), 1),
    "responses inside a literal": (
        plain(1, 1, b"\r\n* 3 FETCH (UID 3 FLAGS () INTERNALDATE " + DATE + b" BODY[] {1}\r\nz)\r\n")
        + plain(2, 2, b"b"),
        2,
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_streams_read_as_the_generic_path_reads_them_cut_anywhere(name: str) -> None:
    """Each hostile stream, whole and cut once at every octet: the fast path hands over the same
    responses (order, octets) with the same outcomes as the generic path, and took as many as expected
    (so that the comparison is not between two generic runs)."""
    stream, taken = HOSTILE[name]
    generic = await generic_run(stream)
    whole = await run_stream(stream, [])
    assert whole.plain == taken
    assert_same(whole, generic, "whole")
    for cut in range(1, stream_length(stream)):
        assert_same(await run_stream(stream, [cut]), generic, f"cut at {cut}")


async def test_one_octet_per_read_reads_as_the_generic_path() -> None:
    """A server trickling every response one octet per read (each first line, literal and ``)``
    assembled from single octets): the generic path's responses and outcomes, the fast path taking
    the same responses as from one read."""
    stream = b"".join(stream for stream, _ in HOSTILE.values()) + MIXED
    generic = await generic_run(stream)
    whole = await run_stream(stream, [])
    trickled = await run_stream(stream, list(range(1, stream_length(stream))))
    assert whole.plain > 20
    assert trickled.plain == whole.plain
    assert_same(trickled, generic, "one octet per read")


@pytest.mark.parametrize(
    ("limits", "stream", "reason"),
    [
        ({"line_octets": 60}, plain(1, 1, b"x"), "a line longer than 60 octets"),
        ({}, _HEAD + b"{9999999999999}\r\nx)\r\n", "a literal of 9999999999999 octets"),
        ({}, _HEAD + b"{999999999999}\r\nx)\r\n", "a literal of 999999999999 octets"),
        ({"literal_octets": 4}, plain(1, 1, b"x") + plain(2, 2, b"12345"), "a literal of 5 octets"),
        ({"untagged_per_command": 4}, plain(1, 1, b"x") + b"* 3 EXISTS\r\n" + plain(2, 2, b"y"), "untagged"),
    ],
)
async def test_every_cap_is_broken_at_the_same_octet_with_the_same_words(
    limits: dict[str, int], stream: bytes, reason: str
) -> None:
    """Item 2 of the review: the line cap before the pattern, a literal size of 12 and 13 digits,
    the literal cap on a second response, the untagged-line count: the same ``exceeded`` and the same
    responses handed over before it, fast path on or off."""
    results = []
    for switch in (fast_path_off, _fast_path_on):
        with switch():
            cap, taken = await _exceeded(stream, **limits)
            results.append((cap, [_octets(t) for t in taken]))
    assert results[0][0] is not None and reason in results[0][0]
    assert results[0] == results[1]


def _octets(handed: Any) -> list[bytes]:
    """What a sink was handed, as the parts' octets (the fast path's tuple as its three parts)."""
    if isinstance(handed, tuple):
        _fields, head, literal = handed
        return [head, bytes(literal), b")"]
    return [bytes(part) for part in handed]


async def test_a_non_synchronising_literal_from_the_server_is_read_as_a_literal() -> None:
    """Finding 2: a server announcing a body as ``{n+}`` (RFC 7888's non-synchronising literal, for
    clients only; the lexer reads it as a literal) had its body's octets read as response lines by
    both paths: a body carrying ``)`` and a FETCH response in the body shape made that text UID 7's
    archived message, and the real UID 7 was ignored as settled already (imaploop 348f5bf). Now the
    framing reads the literal by count: UID 1 is its body, octet for octet, and UID 7 is UID 7."""
    body = (
        b"Subject: x\r\n\r\nhello\r\n)\r\n* 7 FETCH (UID 7 FLAGS () INTERNALDATE "
        + DATE
        + b" BODY[] {4}\r\nFAKE"
    )
    stream = _HEAD + b"{%d+}\r\n" % len(body) + body + b")\r\n" + plain(7, 7, b"REAL")
    generic = await generic_run(stream)
    for cuts in ([], [len(_HEAD) + 3], list(range(1, stream_length(stream)))):
        run = await run_stream(stream, cuts)
        assert run.plain == 1  # the real UID 7, by the fast path
        assert_same(run, generic, f"cuts {cuts[:3]}")
    bodies = {uid: outcome[4] for uid, outcome in generic.outcomes if isinstance(outcome, tuple)}
    assert bodies == {1: body, 7: b"REAL"}
    assert generic.ignored == 0
