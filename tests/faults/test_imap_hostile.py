"""Hostile IMAP servers: endless literals, endless untagged lines, endless lines, oversized messages.

Each server would make a reader without caps grow its memory without bound while bytes keep coming
(so the inactivity timeout never fires). The test process's peak resident set (``VmHWM`` after
resetting it through ``/proc/self/clear_refs``) must stay under :data:`RSS_GROWTH_BOUND` while the
server offers :data:`HOSTILE_OCTETS`: a reader that kept what it was sent would exceed it several
times over. The bound is generous; no test measures time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.errors import ProtocolError
from maild.fetch.cycle import fetch_cycle, make_maildrop
from maild.model import IMAPKey, RetrievalFailure, RetrievedMessage, ServerSettings
from maild.protocols.imap.client import MAX_LINE_OCTETS, MAX_LITERAL_OCTETS
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, Session
from tests.support.accounts import imap_account
from tests.support.fetching import T0, prepare

#: What each hostile server offers before giving up, in octets (the client should stop far earlier).
HOSTILE_OCTETS = 600 * 2**20
#: Largest growth of the test process's peak resident set allowed while one hostile server runs.
RSS_GROWTH_BOUND = 200 * 2**20
CHUNK = b"x" * 2**20


def message(n: int, size: int = 0) -> bytes:
    """A small message with CRLF line endings, at least ``size`` octets."""
    return b"Subject: m%d\r\nMessage-ID: <%d@hostile.test>\r\n\r\n" % (n, n) + b"y" * size + b"\r\n"


def settings(server: ScriptedIMAP) -> ServerSettings:
    """Plaintext settings for ``server`` with a 5 s inactivity limit."""
    return ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), 5.0)


def peak_rss_octets() -> int:
    """The process's peak resident set since the last :func:`reset_peak_rss`, in octets (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the peak resident set to the current one (``clear_refs`` 5); return it in octets."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_rss_octets()


async def flood(session: Session, head: bytes, filler: bytes = CHUNK) -> None:
    """Send ``head``, then ``filler`` repeatedly until :data:`HOSTILE_OCTETS` or the client hangs up."""
    sent = 0
    with contextlib.suppress(ConnectionError, OSError):
        await session.send(head)
        while filler and sent < HOSTILE_OCTETS and not session.writer.is_closing():
            await session.send(filler)
            sent += len(filler)
    session.drop()


async def run_against(
    command: str,
    handler: Callable[[Session, str, str], Awaitable[None]],
    *,
    max_message_size: int | None = None,
) -> tuple[BaseException, int]:
    """Open a mailbox on a server scripted with ``handler`` for ``command``, run inventory and retrieval.

    Returns:
        The error raised and the growth of the peak resident set in octets meanwhile.
    """
    async with ScriptedIMAP({"INBOX": [message(1), message(2)]}) as server:
        server.script[command] = handler
        mailbox = IMAPMailbox(settings(server), max_message_size=max_message_size)
        before = reset_peak_rss()

        async def use() -> None:
            await mailbox.open()
            entries = await mailbox.inventory()
            async for _item in mailbox.retrieve([entry.key for entry in entries]):
                pass

        with pytest.raises(ProtocolError) as caught:
            await use()
        growth = peak_rss_octets() - before
        await mailbox.abort()
    return caught.value, growth


async def test_endless_literal_is_refused_before_it_is_read() -> None:
    """A FETCH announcing a 900 MB literal and streaming bytes: the connection is dropped at the
    announcement, the error names the literal, and memory does not grow with what was sent."""

    async def endless_literal(session: Session, tag: str, args: str) -> None:
        await flood(session, b"* 1 FETCH (UID 1 FLAGS () BODY[] {900000000}\r\n")

    error, growth = await run_against("UID FETCH", endless_literal)
    assert "literal of 900000000 octets" in str(error)
    assert f"limit is {MAX_LITERAL_OCTETS}" in str(error)
    assert growth < RSS_GROWTH_BOUND


async def test_literal_above_max_message_size_is_refused() -> None:
    """With ``max_message_size`` 100,000, a 2 MB literal is refused at its announcement."""

    async def big_literal(session: Session, tag: str, args: str) -> None:
        await flood(session, b"* 1 FETCH (UID 1 FLAGS () BODY[] {2000000}\r\n", b"z" * 65536)

    error, growth = await run_against("UID FETCH", big_literal, max_message_size=100_000)
    assert "literal of 2000000 octets (the limit is 100000)" in str(error)
    assert growth < RSS_GROWTH_BOUND


async def test_endless_untagged_lines_are_cut_off() -> None:
    """SELECT answered by ``* OK [ALERT]`` lines without end: the connection is dropped at the cap
    on untagged lines per command, memory bounded."""

    async def endless_untagged(session: Session, tag: str, args: str) -> None:
        await flood(session, b"", b"* OK [ALERT] the server has something to say\r\n" * 20000)

    error, growth = await run_against("SELECT", endless_untagged)
    assert "untagged lines for one command" in str(error)
    assert growth < RSS_GROWTH_BOUND


async def test_endless_line_is_cut_off() -> None:
    """A response line that never ends: dropped once it passes the line cap, memory bounded."""

    async def endless_line(session: Session, tag: str, args: str) -> None:
        await flood(session, b"* SEARCH 1 2 ")

    error, growth = await run_against("UID SEARCH", endless_line)
    assert f"line longer than {MAX_LINE_OCTETS} octets" in str(error)
    assert growth < RSS_GROWTH_BOUND


async def test_huge_literal_size_number_is_refused() -> None:
    """A literal size of 5,000 digits is refused as over the cap (not a ValueError from ``int()``)."""

    async def digits(session: Session, tag: str, args: str) -> None:
        await flood(session, b"* 1 FETCH (UID 1 BODY[] {" + b"9" * 5000 + b"}\r\n", b"")
        await session.hang()

    error, _growth = await run_against("UID FETCH", digits)
    assert "server announced a literal of 99999999999999999999" in str(error)


async def test_healthy_session_on_same_loop_is_unaffected_by_a_flood() -> None:
    """While one server floods one connection with an endless line, another account on the same
    event loop retrieves all its messages."""

    async def endless_line(session: Session, tag: str, args: str) -> None:
        await flood(session, b"* SEARCH ", b"1 " * 2**19)

    async with (
        ScriptedIMAP({"INBOX": [message(1)]}) as hostile,
        ScriptedIMAP({"INBOX": [message(n) for n in range(1, 21)]}) as healthy,
    ):
        hostile.script["UID SEARCH"] = endless_line

        async def attack() -> None:
            bad = IMAPMailbox(settings(hostile))
            try:
                await bad.open()
                with pytest.raises(ProtocolError, match="line longer than"):
                    await bad.inventory()
            finally:
                await bad.abort()

        async def fetch_healthy() -> list[bytes]:
            good = IMAPMailbox(settings(healthy))
            await good.open()
            entries = await good.inventory()
            raws = [
                i.raw
                async for i in good.retrieve([e.key for e in entries])
                if isinstance(i, RetrievedMessage)
            ]
            await good.close()
            return raws

        _, raws = await asyncio.gather(attack(), fetch_healthy())
    assert len(raws) == 20


async def test_max_message_size_is_honoured_from_rfc822_size(tmp_path: Path) -> None:
    """An IMAP account with ``max_message_size`` 100,000: the 2 MB message is skipped by its
    RFC822.SIZE before any body is fetched and reported as too large; the small ones are archived."""
    raws = [message(1), message(2, 2_000_000), message(3)]
    async with (
        await Store.open(tmp_path / "archive.sqlite3") as store,
        ScriptedIMAP({"INBOX": raws}) as server,
    ):
        account = await prepare(
            store,
            imap_account(
                "acct",
                host=server.host,
                port=server.port,
                username="anna",
                max_message_size=100_000,
                timeout_s=5.0,
            ),
        )
        with concurrent_pool() as executor:
            result = await fetch_cycle(account, store, make_maildrop(account, executor), clock=lambda: T0)
        body_fetches = [c for c in server.commands_named("UID FETCH") if "BODY" in c.upper()]
    assert result.new_messages == 2
    assert [key for key in result.too_large if isinstance(key, IMAPKey)] == [IMAPKey("INBOX", 1234, 2)]
    assert all(" 2 " not in f" {f.split(' ')[0].replace(',', ' ')} " for f in body_fetches)
    assert not any(isinstance(f, RetrievalFailure) for f in result.failures)


@contextlib.contextmanager
def concurrent_pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A one-thread executor for :func:`make_maildrop` (IMAP does not use it)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        yield pool
    finally:
        pool.shutdown()


async def test_garbage_after_login_is_named_at_once() -> None:
    """A server answering SELECT with lines that are no IMAP responses fails the command with one
    line quoting them (not a timeout after ``timeout_s`` of waiting)."""

    async def garbage(session: Session, tag: str, args: str) -> None:
        await session.send(b"HTTP/1.1 400 Bad Request\r\n")
        await session.hang()

    error, _growth = await run_against("SELECT", garbage)
    assert "not an IMAP response: 'HTTP/1.1 400 Bad Request'" in str(error)
