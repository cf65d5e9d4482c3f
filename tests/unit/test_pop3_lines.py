"""maild.protocols.pop3.lines.bounded_getline against poplib's own ``_getline`` (QA of session 13).

The replacement must give the same lines, lengths and errors as poplib for any octets cut into any
reads, and end a line that is still incomplete after LINE_REPLY_TIMEOUTS x the socket's timeout.
"""

from __future__ import annotations

import io
import itertools
import poplib
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.protocols.pop3 import lines
from maild.protocols.pop3.lines import POPLIB_MAX_LINE_OCTETS, LineTooSlow, bounded_getline


class ChunkedRaw(io.RawIOBase):
    """A raw stream handing out ``chunks`` one read each (a socket's reads), then EOF."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = [c for c in chunks if c]
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        if not self._chunks:
            return 0
        chunk = self._chunks[0]
        n = min(len(buffer), len(chunk))
        buffer[:n] = chunk[:n]
        self._chunks[0] = chunk[n:]
        if not self._chunks[0]:
            self._chunks.pop(0)
        return n


class FakeSock:
    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout


class FakePOP3:
    """What both ``_getline`` implementations use of a poplib session: ``sock`` and ``file``."""

    def __init__(self, chunks: Sequence[bytes], timeout: float | None = 10.0) -> None:
        self.sock = FakeSock(timeout)
        self.file = io.BufferedReader(ChunkedRaw(chunks))
        self._debugging = 0


def lines_of(getline: Callable[[FakePOP3], tuple[bytes, int]], pop: FakePOP3) -> Iterator[object]:
    """Every result of ``getline`` until it raises; the error last, as (type, text)."""
    for _ in range(1000):
        try:
            yield getline(pop)
        except poplib.error_proto as exc:
            yield (type(exc), str(exc))
            return
    pytest.fail("no end")


def cuts(data: bytes, positions: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in positions} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


LINE_OCTETS = st.sampled_from([b"\r\n", b"\n", b"\r", b"a", b"+OK x", b".", b"\x00", b"\xff"])


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(LINE_OCTETS, max_size=40),
    long_line=st.sampled_from(
        [
            0,
            POPLIB_MAX_LINE_OCTETS - 2,
            POPLIB_MAX_LINE_OCTETS - 1,
            POPLIB_MAX_LINE_OCTETS,
            POPLIB_MAX_LINE_OCTETS + 1,
            POPLIB_MAX_LINE_OCTETS + 5000,
        ]
    ),
    positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_the_same_lines_lengths_and_errors_as_poplib_for_any_reads(
    parts: list[bytes], long_line: int, positions: list[int]
) -> None:
    """For any octets (CR/LF mixes, a line at the 2,048-octet limit +-1, EOF mid-line) cut into any reads,
    bounded_getline returns what poplib's _getline returns, error for error."""
    data = b"".join(parts) + b"y" * long_line + b"\r\n+OK end\r\n"
    chunks = cuts(data, positions)

    ours = list(lines_of(bounded_getline, FakePOP3(chunks)))
    stdlib = list(lines_of(poplib.POP3._getline, FakePOP3(chunks)))  # type: ignore[arg-type]

    assert ours == stdlib


def test_a_line_still_incomplete_after_twice_the_timeout_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Octets of one line still coming after LINE_REPLY_TIMEOUTS x timeout end it with LineTooSlow."""
    now = [100.0]

    def clock() -> float:
        now[0] += 0.6  # every look at the clock is 0.6 s later: 1 s timeout, 2 s deadline
        return now[0]

    monkeypatch.setattr(lines.time, "monotonic", clock)
    pop = FakePOP3([b"+", b"O", b"K", b" ", b"h", b"i", b"\r\n"], timeout=1.0)

    with pytest.raises(LineTooSlow, match=r"still incomplete after 2 s \(2 x timeout\)"):
        bounded_getline(pop)


def test_a_line_within_the_deadline_and_no_timeout_at_all_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line ending before the deadline is read; a socket without a timeout has no deadline."""
    now = [100.0]

    def clock() -> float:
        now[0] += 0.6
        return now[0]

    monkeypatch.setattr(lines.time, "monotonic", clock)

    assert bounded_getline(FakePOP3([b"+OK", b" hi\r\n"], timeout=1.0)) == (b"+OK hi", 8)
    assert bounded_getline(FakePOP3([bytes([c]) for c in b"+OK slow\r\n"], timeout=None)) == (b"+OK slow", 10)
