"""Streaming UID FETCH against the scripted server: early yields, backpressure, timeouts, cancellation.

Each test scripts the server's answer to the body FETCH (``UID FETCH ... BODY.PEEK[]``) to show one
property of :meth:`IMAPMailbox.retrieve` on the streaming path: messages come out before the tagged
completion; reading pauses while the consumer is away and the inactivity limit does not count that
time; a server going silent mid-literal still times out; cancelling or closing the generator early
discards the session without stray tasks; errors after some messages keep those messages.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from maild.errors import NetworkTimeout, ThrottledError, TransientError
from maild.model import IMAPKey, RetrievalFailure, RetrievedMessage
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import ScriptedIMAP, Session, default_fetch_writer
from tests.faults.test_imap_faults import keys, message, opened, settings


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Contexts passed to the loop's exception handler ("Task exception was never retrieved" ...)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


def body_responses(server: ScriptedIMAP, args: str, uids: range | list[int] | None = None) -> list[bytes]:
    """The default FETCH response of each message (optionally only ``uids``), in UID order."""
    messages = server.mailboxes["INBOX"].messages
    return [
        default_fetch_writer(seq, m, args)
        for seq, m in enumerate(messages, 1)
        if uids is None or m.uid in uids
    ]


@pytest.fixture
async def inbox() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with five small messages in INBOX."""
    async with ScriptedIMAP({"INBOX": [message(i) for i in range(1, 6)]}) as server:
        yield server


@pytest.fixture
async def big_inbox() -> AsyncIterator[ScriptedIMAP]:
    """30 messages of about 200,000 octets each (6 MB in all)."""
    async with ScriptedIMAP({"INBOX": [message(i, size=200_000) for i in range(1, 31)]}) as server:
        yield server


async def test_first_message_is_yielded_before_the_server_sends_the_rest(inbox: ScriptedIMAP) -> None:
    """The first message comes out while the server holds back the other responses and the completion.

    Steps: the server sends message 1's response, then waits for a signal; the consumer must get
    message 1 before the signal; after it, the rest and the completion arrive and all five are yielded.
    """
    release = asyncio.Event()

    async def first_then_wait(session: Session, tag: str, args: str) -> None:
        responses = body_responses(inbox, args)
        await session.send(responses[0])
        await release.wait()
        await session.send(b"".join(responses[1:]) + f"{tag} OK done\r\n".encode())

    inbox.script["UID FETCH"] = first_then_wait
    mailbox = await opened(inbox, timeout_s=5)
    stream = mailbox.retrieve(keys(range(1, 6)))
    first = await asyncio.wait_for(anext(stream), 3)
    assert isinstance(first, RetrievedMessage)
    assert first.raw == message(1)
    assert not release.is_set()
    release.set()
    rest = [item async for item in stream]
    assert [item.raw for item in rest] == [message(i) for i in range(2, 6)]  # type: ignore[union-attr]
    assert await mailbox.inventory()  # the session is in sync
    await mailbox.close()


async def test_messages_come_before_a_held_back_completion(inbox: ScriptedIMAP) -> None:
    """Every message is yielded while the tagged completion is still held back by the server."""
    release = asyncio.Event()

    async def hold_completion(session: Session, tag: str, args: str) -> None:
        await session.send(b"".join(body_responses(inbox, args)))
        await release.wait()
        await session.send(f"{tag} OK done\r\n".encode())

    inbox.script["UID FETCH"] = hold_completion
    mailbox = await opened(inbox)
    stream = mailbox.retrieve(keys(range(1, 6)))
    early = [await asyncio.wait_for(anext(stream), 3) for _ in range(5)]
    assert all(isinstance(item, RetrievedMessage) for item in early)
    assert not release.is_set()
    release.set()
    assert [item async for item in stream] == []
    await mailbox.close()


async def test_reading_pauses_while_the_consumer_is_away_and_no_timeout_fires(
    big_inbox: ScriptedIMAP,
) -> None:
    """A consumer away for three times timeout_s: reading is paused meanwhile (at most about the window
    held), no NetworkTimeout fires, and afterwards every message arrives byte-exact.

    Steps: window 256 KiB, timeout_s 0.5 s; take one message; sleep 1.5 s while the server has
    more to send; the transport is not reading; then take the rest.
    """
    window = 256 * 1024
    mailbox = await opened(big_inbox, timeout_s=0.5)
    with capture_logs() as logs:
        stream = mailbox.retrieve(keys(range(1, 31)), window_octets=lambda: window)
        first = await anext(stream)
        await asyncio.sleep(1.5)
        assert not mailbox.connection.client.reading
        rest = [item async for item in stream]
    assert [item.raw for item in [first, *rest]] == [message(i, size=200_000) for i in range(1, 31)]  # type: ignore[union-attr]
    [done] = [e for e in logs if e["event"] == "imap.fetch-stream.complete"]
    assert done["pauses"] >= 1
    assert done["peak_held_octets"] <= window + 2 * 210_000 + 256 * 1024  # window, a message, one read
    assert mailbox.connection.client.reading
    await mailbox.close()


async def test_server_stalling_mid_literal_still_times_out(inbox: ScriptedIMAP) -> None:
    """The server stops in the middle of a literal: NetworkTimeout about timeout_s after the consumer
    starts waiting, even when the consumer had been away longer than timeout_s before.

    Steps: the server sends message 1 and half of message 2's literal, then stays silent; take
    message 1; stay away 1 s (timeout_s 0.5 s); ask for the next: NetworkTimeout after about 0.5 s;
    the session is discarded.
    """

    async def stall(session: Session, tag: str, args: str) -> None:
        first, second = body_responses(inbox, args, [1, 2])
        await session.send(first + second[: len(second) - 20])
        await session.hang()

    inbox.script["UID FETCH"] = stall
    mailbox = await opened(inbox, timeout_s=0.5)
    stream = mailbox.retrieve(keys(range(1, 6)))
    assert isinstance(await anext(stream), RetrievedMessage)
    await asyncio.sleep(1.0)
    started = time.monotonic()
    with pytest.raises(NetworkTimeout):
        await anext(stream)
    assert 0.4 < time.monotonic() - started < 3
    with pytest.raises(TransientError, match="discarded"):
        await mailbox.inventory()
    await mailbox.abort()


async def test_cancel_mid_stream_discards_the_session(
    inbox: ScriptedIMAP, loop_errors: list[dict[str, Any]]
) -> None:
    """Cancelling while waiting for the second message raises CancelledError, discards the session, and
    leaves no task with an unretrieved exception behind."""

    async def one_then_hang(session: Session, tag: str, args: str) -> None:
        await session.send(body_responses(inbox, args)[0])
        await session.hang()

    inbox.script["UID FETCH"] = one_then_hang
    mailbox = await opened(inbox, timeout_s=30)
    got: list[object] = []

    async def consume() -> None:
        async for item in mailbox.retrieve(keys(range(1, 6))):
            got.append(item)

    task = asyncio.ensure_future(consume())
    while not got:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TransientError, match="cancelled"):
        await mailbox.inventory()
    await mailbox.abort()
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_closing_the_generator_mid_fetch_discards_the_session(
    inbox: ScriptedIMAP, loop_errors: list[dict[str, Any]]
) -> None:
    """aclose() after one message, with the FETCH still running: the session is discarded at once."""

    async def one_then_hang(session: Session, tag: str, args: str) -> None:
        await session.send(body_responses(inbox, args)[0])
        await session.hang()

    inbox.script["UID FETCH"] = one_then_hang
    mailbox = await opened(inbox, timeout_s=30)
    stream = mailbox.retrieve(keys(range(1, 6)))
    assert isinstance(await anext(stream), RetrievedMessage)
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < 1
    with pytest.raises(TransientError, match="abandoned"):
        await mailbox.inventory()
    await mailbox.abort()
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_closing_the_generator_after_the_completion_keeps_the_session(inbox: ScriptedIMAP) -> None:
    """aclose() after the tagged completion arrived (messages still held): the session stays usable."""
    mailbox = await opened(inbox)
    stream = mailbox.retrieve(keys(range(1, 6)), window_octets=lambda: 1)
    assert isinstance(await anext(stream), RetrievedMessage)
    await asyncio.sleep(0.2)  # the rest and the completion arrive; the tiny window paused reading
    await stream.aclose()
    assert [e.key.uid for e in await mailbox.inventory()] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    await mailbox.close()


async def test_throttling_completion_after_some_messages_raises_after_yielding_them(
    inbox: ScriptedIMAP,
) -> None:
    """NO [UNAVAILABLE] after two responses: both messages are yielded, then ThrottledError."""

    async def two_then_no(session: Session, tag: str, args: str) -> None:
        first, second = body_responses(inbox, args, [1, 2])
        await session.send(first + second + f"{tag} NO [UNAVAILABLE] slow down\r\n".encode())

    inbox.script["UID FETCH"] = two_then_no
    mailbox = await opened(inbox)
    got: list[object] = []

    async def consume() -> None:
        async for item in mailbox.retrieve(keys(range(1, 6))):
            got.append(item)

    with pytest.raises(ThrottledError):
        await consume()
    assert [item.raw for item in got] == [message(1), message(2)]  # type: ignore[attr-defined]
    await mailbox.abort()


async def test_hangup_right_after_the_completion_is_not_an_error(inbox: ScriptedIMAP) -> None:
    """A server that closes the connection right after the completion: every message still comes out."""

    async def send_and_drop(session: Session, tag: str, args: str) -> None:
        await session.send(b"".join(body_responses(inbox, args)) + f"{tag} OK done\r\n".encode())
        session.drop()

    inbox.script["UID FETCH"] = send_and_drop
    mailbox = await opened(inbox)
    stream = mailbox.retrieve(keys(range(1, 6)))
    first = await anext(stream)
    await asyncio.sleep(0.2)  # the hang-up is seen before the rest is taken
    rest = [item async for item in stream]
    assert [item.raw for item in [first, *rest]] == [message(i) for i in range(1, 6)]  # type: ignore[union-attr]
    await mailbox.abort()


async def test_out_of_order_responses_are_yielded_in_key_order(inbox: ScriptedIMAP) -> None:
    """A server answering in descending UID order, with a window smaller than one message: still key
    order, every message once (reading is not paused while the next key has not arrived)."""

    async def reversed_order(session: Session, tag: str, args: str) -> None:
        responses = body_responses(inbox, args)
        await session.send(b"".join(reversed(responses)) + f"{tag} OK done\r\n".encode())

    inbox.script["UID FETCH"] = reversed_order
    mailbox = await opened(inbox, timeout_s=2)
    items = [item async for item in mailbox.retrieve(keys(range(1, 6)), window_octets=lambda: 1)]
    assert [item.raw for item in items] == [message(i) for i in range(1, 6)]  # type: ignore[union-attr]
    await mailbox.close()


async def test_unsolicited_and_foreign_fetch_responses_do_not_disturb(inbox: ScriptedIMAP) -> None:
    """Flag pushes without UID, a response for a UID not asked for, EXISTS and EXPUNGE between the
    responses, and a flag change after a message was yielded: each requested message once, intact;
    a UID the server skipped fails with the completion text."""

    async def noisy(session: Session, tag: str, args: str) -> None:
        first, second, third = body_responses(inbox, args, [1, 2, 3])
        await session.send(
            b"* 2 FETCH (FLAGS (\\Seen))\r\n"
            + first
            + b"* 9 EXISTS\r\n* 4 FETCH (UID 4 FLAGS ())\r\n"
            + second
            + b"* 1 FETCH (FLAGS (\\Deleted))\r\n* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"
            + third
            + f"{tag} OK done\r\n".encode()
        )

    inbox.script["UID FETCH"] = noisy
    mailbox = await opened(inbox)
    items = [item async for item in mailbox.retrieve(keys([1, 2, 3, 5]))]
    assert [item.key.uid for item in items] == [1, 2, 3, 5]
    assert [item.raw for item in items[:3]] == [message(1), message(2), message(3)]  # type: ignore[union-attr]
    assert items[0].flags == frozenset()  # type: ignore[union-attr]
    assert items[1].flags == frozenset()  # type: ignore[union-attr]
    assert isinstance(items[3], RetrievalFailure)
    assert items[3].reason == "not returned (OK done)"
    assert await mailbox.inventory()
    await mailbox.close()


async def test_two_mailboxes_and_a_stale_key_in_one_retrieve() -> None:
    """Runs of two mailboxes each get their own streaming FETCH; a key of an old UIDVALIDITY fails in
    place without being asked for."""
    async with ScriptedIMAP({"INBOX": [message(1), message(2)], "Archiv": [message(3)]}) as server:
        mailbox = IMAPMailbox(settings(server), ["INBOX", "Archiv"])
        await mailbox.open()
        wanted = [*keys([1]), IMAPKey("INBOX", 1, 2), *keys([2]), *keys([1], mailbox="Archiv")]
        items = [item async for item in mailbox.retrieve(wanted)]
        await mailbox.close()
    assert [type(item).__name__ for item in items] == [
        "RetrievedMessage",
        "RetrievalFailure",
        "RetrievedMessage",
        "RetrievedMessage",
    ]
    assert items[3].raw == message(3)  # type: ignore[union-attr]
    assert server.commands_named("UID FETCH") == [
        "UID FETCH 1:2 (UID FLAGS INTERNALDATE BODY.PEEK[])",
        "UID FETCH 1 (UID FLAGS INTERNALDATE BODY.PEEK[])",
    ]
