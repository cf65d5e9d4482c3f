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
    results = []
    for switch in (fast_path_off, _fast_path_on):
        with switch():
            results.append((await _exceeded(stream, buffered_octets=len(body) - 10))[0])
    assert results[0] is not None and results[0] == results[1]
