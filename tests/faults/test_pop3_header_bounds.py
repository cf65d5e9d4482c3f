"""What one window of ``TOP n 0`` replies may hold (session 15's bound review).

The checks before a POP3 deletion (:mod:`maild.fetch.pop3_check`, :mod:`maild.fetch.pop3_listed`)
read header sections with ``TOP n 0``, pipelined in windows. Before, each reply was capped only by
the session's 100 MiB and a window of 200 was held whole: a hostile server could make maild hold
200 x 100 MiB. Now a reply over :data:`~maild.fetch.pop3_check.MAX_HEADER_SECTION_OCTETS` is cut off
while it arrives (the session broken, nothing deleted, no QUIT) and a window holds at most
:data:`~maild.pop3_uidls.HEADER_WINDOW_OCTETS`. Memory is measured with tracemalloc (the scripted
server streams its replies and never holds them); no timings are asserted.
"""

from __future__ import annotations

import concurrent.futures
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild import pop3_uidls
from maild.archive.store import Store
from maild.errors import ProtocolError
from maild.fetch.cycle import make_maildrop
from maild.fetch.pop3_check import MAX_HEADER_SECTION_OCTETS, check_window
from maild.model import RetrievedMessage
from maild.pop3_uidls import HEADER_WINDOW_OCTETS, header_window
from maild.protocols.pop3.maildrop import POP3Maildrop
from maild.protocols.pop3.peek import whole_reply_cap
from maild.protocols.pop3.session import READ_CHUNK_OCTETS
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, huge_top_lines, sample_message

HOSTILE_OCTETS = 300 * 2**20
"""The hostile server's ``TOP n 0`` reply: 300 MiB, generated as it is sent."""
SLACK_OCTETS = 8 * 2**20
"""Allocations of the cycle besides the replies (archive rows, logs, the scripted server's writes;
measured 2.3 MB for the single reply, 2.7 MB beyond the 64 MiB window)."""
FRAME_OCTETS = len(b"+OK\r\n") + len(b"\r\n.\r\n")
"""Octets of a ``"huge:N"`` reply that are not header lines."""


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")


def sessions(commands: list[str]) -> list[list[str]]:
    """The commands of each session, in order (each begins with CAPA, then USER)."""
    starts = [i - 1 for i, command in enumerate(commands) if command.startswith("USER ")]
    return [commands[a:b] for a, b in zip(starts, [*starts[1:], len(commands)], strict=True)]


class PeakMemory:
    """tracemalloc's peak of allocations above what was held when the block began, in octets."""

    def __init__(self) -> None:
        self.growth = 0

    def __enter__(self) -> PeakMemory:
        tracemalloc.start()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = tracemalloc.get_traced_memory()[1] - self._base
        tracemalloc.stop()


# -- the bounds themselves -----------------------------------------------------------------------------


def test_header_window_at_its_thresholds() -> None:
    """Commands per window: the maildrop's window while ``window`` x cap fits the window's octets,
    fewer by one octet past it, never 0; the checks' window is 64 of 1 MiB."""
    at = HEADER_WINDOW_OCTETS // 200
    assert header_window(200, at - 1) == 200
    assert header_window(200, at) == 200
    assert header_window(200, at + 1) == 199
    assert header_window(200, HEADER_WINDOW_OCTETS - 1) == 1
    assert header_window(200, HEADER_WINDOW_OCTETS) == 1
    assert header_window(200, HEADER_WINDOW_OCTETS + 1) == 1
    assert header_window(1, 1) == 1
    assert check_window() == header_window(200, MAX_HEADER_SECTION_OCTETS) == 64


@given(st.integers(1, 10_000), st.integers(1, 2 * HEADER_WINDOW_OCTETS))
def test_header_window_is_the_largest_that_fits(window: int, cap: int) -> None:
    """At least one command, at most ``window``; its replies fit HEADER_WINDOW_OCTETS unless a single
    one is allowed more; one command more would not fit (or the window is whole)."""
    n = header_window(window, cap)
    assert 1 <= n <= window
    assert n == 1 or n * cap <= HEADER_WINDOW_OCTETS
    assert n == window or (n + 1) * cap > HEADER_WINDOW_OCTETS


@given(st.one_of(st.just(0), st.integers(12, 20_000)))
def test_huge_top_lines_add_up_exactly(octets: int) -> None:
    """The scripted server's generated header lines total exactly what was asked (the bound tests
    depend on it), each a CRLF-terminated field of at most 4 KiB."""
    lines = list(huge_top_lines(octets))
    assert sum(map(len, lines)) == octets
    assert all(
        line.startswith(b"X-Filler: ") and line.endswith(b"\r\n") and len(line) <= 4096 for line in lines
    )


# -- one reply at the cap -1 / 0 / +1 ------------------------------------------------------------------

CAP = 8192
"""A small per-reply cap for the threshold tests (``max_octets`` of ``header_fields``)."""


async def open_maildrop(
    server: ScriptedPOP3, executor: concurrent.futures.ThreadPoolExecutor
) -> POP3Maildrop:
    """An open POP3 maildrop on ``server`` with its inventory read."""
    account = pop3_account(server.host, server.port, "alice", "secret")
    maildrop = make_maildrop(account, executor)
    assert isinstance(maildrop, POP3Maildrop)
    await maildrop.open()
    return maildrop


@pytest.mark.parametrize("delta", [-1, 0, 1])
async def test_a_top_reply_at_the_cap_is_read_and_one_octet_more_breaks_the_session(
    executor: concurrent.futures.ThreadPoolExecutor, delta: int
) -> None:
    """A ``TOP n 0`` reply of the cap -1 or the cap octets (status line and terminator included) is
    a header section; one octet more is not: the session is broken with one line naming the
    command and the cap (before: "POP3 reply larger than the cap", naming neither)."""
    message = ScriptedMessage(sample_message(1), top=f"huge:{CAP + delta}")
    with ScriptedPOP3([message]) as server:
        maildrop = await open_maildrop(server, executor)
        try:
            entries = await maildrop.inventory()
            if delta <= 0:
                headers = await maildrop.header_fields([entries[0].key], max_octets=CAP)
                assert len(headers[entries[0].key]) == CAP + delta - len(b"+OK\r\n.\r\n")
            else:
                with pytest.raises(ProtocolError) as raised:
                    await maildrop.header_fields([entries[0].key], max_octets=CAP)
                assert f"server answered TOP 1 0 with more than {CAP} octets" in str(raised.value)
                assert "not a header section" in str(raised.value)
        finally:
            await maildrop.abort()


def record_sends(maildrop: POP3Maildrop, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the command lists the maildrop's session sends, one list per send."""
    sends: list[list[str]] = []
    session = maildrop._session  # the windows are what is under test
    original = session.send_ahead

    def recording(commands: Sequence[str], *, multiline: bool) -> None:
        sends.append(list(commands))
        original(commands, multiline=multiline)

    monkeypatch.setattr(session, "send_ahead", recording)
    return sends


@pytest.mark.parametrize(
    ("cap", "sizes"), [(HEADER_WINDOW_OCTETS // 3, [3, 3, 1]), (HEADER_WINDOW_OCTETS // 3 + 1, [2, 2, 2, 1])]
)
async def test_a_window_sends_no_more_commands_than_its_octets_allow(
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    cap: int,
    sizes: list[int],
) -> None:
    """Seven ``TOP n 0`` with PIPELINING: windows of HEADER_WINDOW_OCTETS // cap commands (3 at the
    third of it, 2 one octet above), whatever the maildrop's window (200); before, one window of 7."""
    with ScriptedPOP3([sample_message(n) for n in range(1, 8)]) as server:
        maildrop = await open_maildrop(server, executor)
        try:
            entries = await maildrop.inventory()
            sends = record_sends(maildrop, monkeypatch)
            headers = await maildrop.header_fields([e.key for e in entries], max_octets=cap)
            assert len(headers) == 7
            assert [len(s) for s in sends] == sizes
        finally:
            await maildrop.abort()


# -- whole cycles against a hostile server -------------------------------------------------------------


async def test_a_300_mib_top_reply_is_cut_off_at_the_header_section_cap(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A known UIDL listed at another size whose ``TOP 1 0`` the server answers with 300 MiB: maild
    stops reading at MAX_HEADER_SECTION_OCTETS (its memory grows by at most that, one read and the
    cycle's own; before: 100 MiB read and held), the cycle fails with one line naming the reply's
    size, nothing is deleted, no QUIT."""
    first, third = sample_message(1), sample_message(3)
    with ScriptedPOP3([first]) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)  # archives "uidl-1", keeps it on the server
        reused = server.maildrop[0]
        reused.raw, reused.top = sample_message(2, [b"another body"] * 3), f"huge:{HOSTILE_OCTETS}"
        server.add(third)
        with PeakMemory() as peak, pytest.raises(ProtocolError) as raised:
            await cycle(with_retention(account, "delete"), store, executor)
        assert peak.growth <= MAX_HEADER_SECTION_OCTETS + READ_CHUNK_OCTETS + SLACK_OCTETS  # main: 214 MB
        said = str(raised.value)
        assert f"server answered TOP 1 0 with more than {MAX_HEADER_SECTION_OCTETS} octets" in said
        failed = sessions(server.commands)[1]
        assert failed[-1] == "TOP 1 0"
        assert "QUIT" not in failed and not any(c.startswith("DELE") for c in failed)
        assert len(server.maildrop) == 2
    assert sorted(await archived(store)) == sorted([first, third])


async def test_a_window_of_largest_header_sections_is_held_within_the_window_bound(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """2 x check_window() + 1 known UIDLs listed at another size, each answered with a header section
    of exactly MAX_HEADER_SECTION_OCTETS (allowed): the check reads one window of check_window()
    (64 MiB, past DELETION_CHECK_OCTETS: the others wait for a later cycle) and maild never holds
    more than HEADER_WINDOW_OCTETS of replies (before: one window of all 129, 129 MiB at once)."""
    count = 2 * check_window() + 1
    with ScriptedPOP3([sample_message(n) for n in range(1, count + 1)]) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)  # archives all, keeps them on the server
        for message in server.maildrop:
            message.list_size = len(message.raw) + 1  # another size: suspects of the listed-size check
            message.top = f"huge:{MAX_HEADER_SECTION_OCTETS}"
        with PeakMemory() as peak:
            await cycle(account, store, executor)
        tops = [c for c in sessions(server.commands)[1] if c.startswith("TOP ")]
        assert peak.growth <= HEADER_WINDOW_OCTETS + READ_CHUNK_OCTETS + SLACK_OCTETS  # main: 138 MB
        assert len(tops) == check_window() < count
    assert count <= pop3_uidls.DELETION_CHECKS_PER_CYCLE


# -- retire's/compare's whole-message reads (TOP n <lines>) ----------------------------------------------


@pytest.mark.parametrize("delta", [-1, 0, 1])
async def test_a_whole_message_top_reply_is_capped_by_its_list_size(
    executor: concurrent.futures.ThreadPoolExecutor, delta: int
) -> None:
    """``peek`` (TOP n <lines>): a reply of whole_reply_cap(LIST size) -1 or +0 octets is read (not
    the message: RETR fallback); one octet more cannot be the whole message and breaks the session
    while it arrives (before: read up to the session's 100 MiB, for each of a window's 200)."""
    raw = sample_message(1)
    message = ScriptedMessage(raw, top=f"huge:{whole_reply_cap(len(raw)) + delta}")
    with ScriptedPOP3([message]) as server:
        maildrop = await open_maildrop(server, executor)
        try:
            entries = await maildrop.inventory()
            if delta <= 0:
                got = [item async for item in maildrop.peek([entries[0].key])]
                assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == [raw]
                assert "RETR 1" in server.commands
            else:
                with pytest.raises(ProtocolError) as raised:
                    _ = [item async for item in maildrop.peek([entries[0].key])]
                said = str(raised.value)
                assert f"server answered TOP 1 {len(raw)} with more than {whole_reply_cap(len(raw))}" in said
                assert "RETR 1" not in server.commands
        finally:
            await maildrop.abort()


async def test_a_300_mib_whole_message_top_reply_is_cut_off(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """A window of ``peek`` whose first TOP the server answers with 300 MiB: maild holds no more than
    the reply's cap (three times the LIST size and a status line) and one read (main: 100 MiB)."""
    raws = [sample_message(n) for n in range(1, 4)]
    messages = [ScriptedMessage(raws[0], top=f"huge:{HOSTILE_OCTETS}"), *map(ScriptedMessage, raws[1:])]
    with ScriptedPOP3(messages) as server:
        maildrop = await open_maildrop(server, executor)
        try:
            entries = await maildrop.inventory()
            with PeakMemory() as peak, pytest.raises(ProtocolError):
                _ = [item async for item in maildrop.peek([e.key for e in entries])]
            assert peak.growth <= READ_CHUNK_OCTETS + SLACK_OCTETS
        finally:
            await maildrop.abort()
