"""An IMAP server trickling a command's response (QA of session 14).

The inactivity limit (``timeout_s``) never fires while octets keep coming. Message transfers had a progress floor
since session 5, and POP3's one-line replies a bound since session 13, but every other IMAP response (LOGIN,
SELECT, UID SEARCH, the listings) had none: a server sending one octet a second held the session, its cycle slot
and its host connection for days, and the account showed "fetching" throughout. Now a response that runs past
COMMAND_WINDOW_TIMEOUTS x ``timeout_s`` must bring COMMAND_MIN_RATE_OCTETS_PER_S per window.

Steps: a scripted server answers one command with ``* OK [ALERT]`` lines sent an octet at a time; the mailbox is
opened, listed and read with a 1 s ``timeout_s``; the error must be a NetworkTimeout saying "server too slow"
(the test's own guard, far longer, only stops a hang).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from maild.errors import NetworkTimeout
from maild.model import InventoryEntry, ServerSettings
from maild.protocols.imap.connection import COMMAND_MIN_RATE_OCTETS_PER_S, COMMAND_WINDOW_TIMEOUTS
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, Session

#: The account's inactivity limit in these tests, in seconds.
TIMEOUT_S = 1.0
#: Seconds between two octets of a trickled line: well inside TIMEOUT_S, far below the floor.
TRICKLE_PAUSE_S = 0.2
#: The tests' guard against a hang, in seconds (before the fix: no end at all).
GUARD_S = 20.0
LINE = b"* OK [ALERT] still working on it\r\n"


def message(n: int) -> bytes:
    """A small message with CRLF line endings."""
    return b"Subject: m%d\r\nMessage-ID: <%d@trickle.test>\r\n\r\nbody\r\n" % (n, n)


async def trickle_forever(session: Session, tag: str, args: str) -> None:
    """Answer with untagged lines, one octet every TRICKLE_PAUSE_S, until the client hangs up."""
    with contextlib.suppress(ConnectionError, OSError):
        while not session.writer.is_closing():
            for octet in LINE:
                await session.send(bytes([octet]))
                await asyncio.sleep(TRICKLE_PAUSE_S)


def mailbox_at(server: ScriptedIMAP) -> IMAPMailbox:
    """The mailbox adapter of account ``acct`` at the scripted ``server``, with TIMEOUT_S."""
    return IMAPMailbox(
        ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), TIMEOUT_S)
    )


async def listed(server: ScriptedIMAP) -> list[InventoryEntry]:
    """Open a mailbox at ``server``, take its inventory within GUARD_S, abort it; the inventory."""
    mailbox = mailbox_at(server)
    try:
        await mailbox.open()
        return await asyncio.wait_for(mailbox.inventory(), GUARD_S)
    finally:
        await mailbox.abort()


async def use(mailbox: IMAPMailbox) -> None:
    """Open, list and read every message."""
    await mailbox.open()
    entries = await mailbox.inventory()
    async for _item in mailbox.retrieve([entry.key for entry in entries]):
        pass


@pytest.mark.parametrize("command", ["LOGIN", "SELECT", "UID SEARCH"])
async def test_a_trickled_response_is_ended_as_too_slow(command: str) -> None:
    """A response trickled at about 5 octets a second is ended with "server too slow", naming the command."""
    async with ScriptedIMAP({"INBOX": [message(1)]}) as server:
        server.script[command] = trickle_forever
        mailbox = mailbox_at(server)
        try:
            with pytest.raises(NetworkTimeout) as caught:
                await asyncio.wait_for(use(mailbox), GUARD_S)
        finally:
            await mailbox.abort()
    text = str(caught.value)
    assert "server too slow" in text
    assert f"the floor is {COMMAND_MIN_RATE_OCTETS_PER_S} B/s" in text


async def test_a_slow_response_that_keeps_flowing_is_read() -> None:
    """A SELECT whose untagged lines flow for longer than the window, above the floor, is read to its end."""
    window_s = COMMAND_WINDOW_TIMEOUTS * TIMEOUT_S
    lines = int(2 * window_s / 0.05)  # one line every 50 ms for two windows: ~680 B/s, ten times the floor

    async def flowing(session: Session, tag: str, args: str) -> None:
        for _ in range(lines):
            await session.send(LINE)
            await asyncio.sleep(0.05)
        await session.default(tag, "SELECT", args)

    async with ScriptedIMAP({"INBOX": [message(1), message(2)]}) as server:
        server.script["SELECT"] = flowing
        entries = await listed(server)
    assert len(entries) == 2


async def test_a_response_after_a_silence_within_the_limit_is_read() -> None:
    """A SELECT answered after a silence of most of timeout_s (a server thinking) is read as before."""

    async def thinking(session: Session, tag: str, args: str) -> None:
        await asyncio.sleep(0.8 * TIMEOUT_S)
        await session.default(tag, "SELECT", args)

    async with ScriptedIMAP({"INBOX": [message(1)]}) as server:
        server.script["SELECT"] = thinking
        entries = await listed(server)
    assert len(entries) == 1
