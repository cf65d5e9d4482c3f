"""Reading a POP3 message whole with TOP (maild.protocols.pop3.peek): the line count asked and the
check that a reply is the whole message, against the scripted server's TOP (RFC 1939 section 7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.protocols.pop3.peek import (
    MIN_TOP_LINES,
    counts_line_ends_as_one,
    is_whole,
    top_lines,
    top_windows,
)
from tests.support.scripted_pop3 import _top

_line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_messages = st.tuples(st.lists(_line, min_size=1, max_size=5), st.lists(_line, max_size=30)).map(
    lambda parts: b"".join(b"H" + h + b"\r\n" for h in parts[0])
    + b"\r\n"
    + b"".join(line + b"\r\n" for line in parts[1])
)


@given(_messages)
def test_top_with_top_lines_is_the_whole_message(raw: bytes) -> None:
    """TOP with the line count asked for a message of that size returns it whole, and is_whole says so;
    one body line less (a capped TOP) never passes for whole."""
    assert _top(raw, top_lines(len(raw))) == raw
    assert is_whole(raw, len(raw))
    body_lines = raw.partition(b"\r\n\r\n")[2].count(b"\r\n")
    if body_lines:
        short = _top(raw, body_lines - 1)
        assert len(short) < len(raw)
        assert not is_whole(short, len(raw))


@given(_messages)
def test_a_size_counting_line_ends_as_one_octet_is_whole(raw: bytes) -> None:
    """A server storing bare LFs may LIST the size with one octet per line end (RFC 1939 section
    11) while it sends CRLF: that size is accepted too."""
    assert is_whole(raw, len(raw) - raw.count(b"\r\n"))


@given(_messages, st.data())
def test_a_capped_top_is_never_whole_on_a_server_counting_line_ends_as_one(raw: bytes, data: st.DataObject) -> None:
    """Once the session knows the server counts line ends as one octet, no reply cut at a body line
    (a capped TOP, any cap) passes for whole at that size, even one exactly as long as it; the
    whole reply still does, and is the evidence itself."""
    lf_size = len(raw) - raw.count(b"\r\n")
    assert is_whole(raw, lf_size, line_ends_as_one=True)
    assert counts_line_ends_as_one(raw, lf_size)
    body_lines = raw.partition(b"\r\n\r\n")[2].count(b"\r\n")
    if body_lines:
        short = _top(raw, data.draw(st.integers(0, body_lines - 1)))
        assert not is_whole(short, lf_size, line_ends_as_one=True)


def test_a_cut_reply_as_long_as_the_lf_counted_size() -> None:
    """The case the flag is for: a reply cut by exactly the message's line ends (4 CRLF, a last
    line of 4 octets with its CRLF) passes the length rule alone; with the evidence it does not;
    a reply without CRLF at its exact size still does; a reply at the exact size is no evidence."""
    raw = b"S: x\r\n\r\nabcd\r\ncc\r\n"  # 4 CRLF; the last line "cc\r\n" is 4 octets
    cut, lf_size = raw[:-4], len(raw) - 4
    assert len(cut) == lf_size and is_whole(cut, lf_size)
    assert not is_whole(cut, lf_size, line_ends_as_one=True)
    assert is_whole(b"abc", 3, line_ends_as_one=True)
    assert not counts_line_ends_as_one(cut, lf_size)
    assert not counts_line_ends_as_one(raw, lf_size + 1) and not counts_line_ends_as_one(raw, lf_size - 1)


@pytest.mark.parametrize("delta", [-1, 1, 2])
def test_is_whole_at_the_size_plus_minus_one(delta: int) -> None:
    """Only the exact size (or the exact LF-counted size) is whole: one octet either way is not."""
    raw = b"Subject: x\r\n\r\n" + b"a" * 50 + b"\r\n"  # 3 CRLF: the LF-counted size is len - 3
    assert is_whole(raw, len(raw))
    assert is_whole(raw, len(raw) - 3)
    assert not is_whole(raw, len(raw) + delta)
    assert not is_whole(raw, len(raw) - 3 + delta)


@pytest.mark.parametrize(("size", "lines"), [(0, MIN_TOP_LINES), (1, 1), (2, 2), (10_000, 10_000)])
def test_top_lines_is_the_size_and_at_least_one(size: int, lines: int) -> None:
    """The line count asked is the size in octets (a bound on the lines), never 0 (``TOP n 0`` is
    the header only)."""
    assert top_lines(size) == lines


@given(
    sizes=st.lists(st.integers(0, 100), max_size=40),
    max_commands=st.integers(1, 6),
    max_octets=st.integers(1, 200),
)
def test_top_windows_cut_in_order_within_both_bounds_and_greedily(
    sizes: list[int], max_commands: int, max_octets: int
) -> None:
    """Windows keep every key once, in order; each holds at most max_commands keys and, past its
    first key, at most max_octets octets; a window ends only when the next key would break a bound."""
    sized = list(enumerate(sizes))
    windows = top_windows(sized, max_commands, max_octets)
    assert [item for window in windows for item in window] == sized
    for i, window in enumerate(windows):
        assert 1 <= len(window) <= max_commands
        octets = sum(size for _key, size in window)
        assert len(window) == 1 or octets <= max_octets
        if i + 1 < len(windows):
            nxt = windows[i + 1][0][1]
            assert len(window) == max_commands or octets + nxt > max_octets


@pytest.mark.parametrize(("sizes", "expected"), [([5, 5], [[5, 5]]), ([5, 6], [[5], [6]]), ([11], [[11]])])
def test_top_windows_at_the_octet_bound_plus_minus_one(sizes: list[int], expected: list[list[int]]) -> None:
    """At exactly max_octets (10) two keys share a window; one octet more splits them; a key larger
    than the bound still gets a window of its own."""
    windows = top_windows([(i, s) for i, s in enumerate(sizes)], 10, 10)
    assert [[s for _i, s in w] for w in windows] == expected
