"""IMAP commands a server may rightly work on for long without a word: ``UID EXPUNGE``/``EXPUNGE`` of a
large mailbox and ``UID SEARCH`` of a big one (session 15).

Session 14's floor (64 B/s after COMMAND_WINDOW_TIMEOUTS x ``timeout_s``) and the inactivity limit
(``timeout_s`` of silence) cut such a command and the cycle was retried, for ever: the deletion of a
large mailbox never completed. Now these commands have their own deadline, SLOW_COMMAND_TIMEOUTS x
``timeout_s``, for silence and for the floor's window, so a slow but honest server is waited for and a
server trickling the response is still cut, later.

Steps: a scripted server answers the command after a silence longer than the old limits and shorter
than the new deadline (the deletion or the inventory completes), or trickles an octet at a time, or
never answers (a NetworkTimeout, "server too slow" or "no data", once the deadline has passed); a
command not among them (SELECT) keeps the account's ``timeout_s``. The tests' guard only stops a hang.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from maild.errors import NetworkTimeout
from maild.model import IMAPKey, Secret, ServerSettings
from maild.protocols.imap.connection import COMMAND_WINDOW_TIMEOUTS, SLOW_COMMAND_TIMEOUTS
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import ScriptedIMAP, Session

#: The account's inactivity limit in these tests, in seconds.
TIMEOUT_S = 0.4
#: The slow commands' deadline in these tests, in seconds.
DEADLINE_S = SLOW_COMMAND_TIMEOUTS * TIMEOUT_S
#: A silence past both old limits (timeout_s, and the floor's first window) but within the deadline.
SILENCE_S = 0.75 * DEADLINE_S
#: The tests' guard against a hang, in seconds.
GUARD_S = 30.0
NO_UIDPLUS = "IMAP4rev1 LITERAL+ IDLE MOVE"


def message(n: int) -> bytes:
    """A small message with CRLF line endings."""
    return b"Subject: m%d\r\nMessage-ID: <%d@slow.test>\r\n\r\nbody\r\n" % (n, n)


def settings(server: ScriptedIMAP) -> ServerSettings:
    """The account of these tests, with :data:`TIMEOUT_S`."""
    return ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), TIMEOUT_S)


def thinking(name: str, silence_s: float) -> object:
    """A handler that says nothing for ``silence_s`` seconds, then answers ``name`` correctly."""

    async def handler(session: Session, tag: str, args: str) -> None:
        await asyncio.sleep(silence_s)
        await session.default(tag, name, args)

    return handler


async def trickle_forever(session: Session, tag: str, args: str) -> None:
    """Untagged ``* OK`` lines, one octet every 0.1 s (10 B/s), until the client hangs up."""
    with contextlib.suppress(ConnectionError, OSError):
        while not session.writer.is_closing():
            for octet in b"* OK still expunging\r\n":
                await session.send(bytes([octet]))
                await asyncio.sleep(0.1)


async def silent_forever(session: Session, tag: str, args: str) -> None:
    """Never answer."""
    await session.hang()


async def open_and_list(mailbox: IMAPMailbox) -> None:
    """Open the mailbox and take its inventory."""
    await mailbox.open()
    await mailbox.inventory()


def test_the_deadline_is_longer_than_the_old_limits() -> None:
    """The silence the tests use lies beyond the old limits and within the new deadline."""
    assert max(TIMEOUT_S, COMMAND_WINDOW_TIMEOUTS * TIMEOUT_S) < SILENCE_S < DEADLINE_S


@pytest.mark.parametrize(("uidplus", "command"), [(True, "UID EXPUNGE"), (False, "EXPUNGE")])
async def test_a_slow_but_honest_expunge_completes(uidplus: bool, command: str) -> None:
    """An expunge answered after SILENCE_S of silence deletes the messages; nothing is retried."""
    async with ScriptedIMAP({"INBOX": [message(1), message(2), message(3)]}) as server:
        if not uidplus:
            server.post_login_capabilities = NO_UIDPLUS
        server.script[command] = thinking(command, SILENCE_S)  # type: ignore[assignment]
        mailbox = IMAPMailbox(settings(server))
        try:
            await mailbox.open()
            entries = await mailbox.inventory()
            keys = [e.key for e in entries if isinstance(e.key, IMAPKey) and e.key.uid in (1, 2)]
            done = await asyncio.wait_for(mailbox.delete(keys), GUARD_S)
        finally:
            await mailbox.abort()
    assert sorted(server.expunged) == [1, 2]
    assert len(done) == 2
    assert len(server.commands_named(command)) == 1


async def test_a_slow_but_honest_uid_search_completes() -> None:
    """An inventory whose UID SEARCH is answered after SILENCE_S of silence lists the mailbox."""
    async with ScriptedIMAP({"INBOX": [message(1), message(2)]}) as server:
        server.script["UID SEARCH"] = thinking("UID SEARCH", SILENCE_S)  # type: ignore[assignment]
        mailbox = IMAPMailbox(settings(server))
        try:
            await mailbox.open()
            entries = await asyncio.wait_for(mailbox.inventory(), GUARD_S)
        finally:
            await mailbox.abort()
    assert len(entries) == 2


@pytest.mark.parametrize(
    ("handler", "words"), [(trickle_forever, "server too slow"), (silent_forever, "no data from server")]
)
async def test_a_trickled_or_endless_expunge_is_still_cut_after_the_deadline(
    handler: object, words: str
) -> None:
    """A UID EXPUNGE trickled at 10 B/s, or never answered, ends in a NetworkTimeout (after the
    deadline: the honest server above is waited for that long); nothing is expunged."""
    async with ScriptedIMAP({"INBOX": [message(1)]}) as server:
        server.script["UID EXPUNGE"] = handler  # type: ignore[assignment]
        mailbox = IMAPMailbox(settings(server))
        try:
            await mailbox.open()
            entries = await mailbox.inventory()
            with pytest.raises(NetworkTimeout) as caught:
                await asyncio.wait_for(mailbox.delete([entries[0].key]), GUARD_S)
        finally:
            await mailbox.abort()
    assert words in str(caught.value)
    assert "UID EXPUNGE" in str(caught.value)
    assert server.expunged == []


async def test_another_command_keeps_the_accounts_timeout() -> None:
    """A SELECT silent for SILENCE_S is cut by the account's timeout_s, as before: only the named slow
    commands get the longer deadline."""
    async with ScriptedIMAP({"INBOX": [message(1)]}) as server:
        server.script["SELECT"] = thinking("SELECT", SILENCE_S)  # type: ignore[assignment]
        mailbox = IMAPMailbox(settings(server))
        try:
            with pytest.raises(NetworkTimeout, match=f"SELECT.*no data from server for {TIMEOUT_S:g} s"):
                await asyncio.wait_for(open_and_list(mailbox), GUARD_S)
        finally:
            await mailbox.abort()
