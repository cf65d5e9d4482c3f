"""The bounded spool against the real Dovecot: large messages arrive into spool files, byte-exact,
are committed from them and leave no file behind (issue 19 item 2; :mod:`maild.spool`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from maild.archive.failures import failure_records
from maild.archive.store import Store
from maild.fetch.cycle import make_maildrop
from maild.fetch.cycle_end import UNKEPT_WARNING
from maild.model import Protocol, RetrievalFailure, RetrievedMessage
from maild.policy import SET_ASIDE_AFTER_FAILURES
from maild.spool import SPOOL_FAILURE_PREFIX, SPOOL_HEAD_OCTETS, Spool, SpooledBody
from maild.spool_view import SPOOL_MARKS_MAX_OCTETS
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import archived, crlf, cycle, prepare, retrieve_everything, with_retention
from tests.support.gated_spool import GATE_TIMEOUT_S, FailingSpool, GatedSpool

pytestmark = pytest.mark.dovecot


def dotted_message(octets: int) -> bytes:
    """A text message of about ``octets`` octets whose body has many lines starting with "." (POP3
    byte-stuffs them, RFC 1939 section 3) and a line that is a lone "." in the middle."""
    head = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Punkte\r\nMessage-ID: <dots@x>\r\n\r\n"
    lines = [head]
    n = 0
    size = len(head)
    while size < octets:
        line = b".%d punkt ..\r\n" % n if n % 3 == 0 else (b".\r\n" if n % 1001 == 0 else b"zeile %d\r\n" % n)
        lines.append(line)
        size += len(line)
        n += 1
    return b"".join(lines)


def messages() -> list[bytes]:
    """Two small messages around three large ones (base64 attachment, dotted text)."""
    return [
        crlf(corpus.make_message(subject="vorher")),
        corpus.large_message(3_000_000, seed=1),
        dotted_message(2_500_000),
        corpus.large_message(1_200_000, seed=2),
        crlf(corpus.make_message(subject="nachher")),
    ]


def spool_files(directory: Path) -> list[str]:
    """Names of spool files in ``directory`` (O_TMPFILE ones have none: then always empty)."""
    return [name for name in os.listdir(directory) if name.startswith(".maild-spool-")]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_large_messages_arrive_spooled_and_byte_exact(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    tmp_path: Path,
    protocol: Protocol,
) -> None:
    """Messages of at least the threshold come as spool files with their SHA-256 and head; the
    others as bytes; every octet is as delivered; closing the bodies leaves no open file."""
    raws = messages()
    dovecot.deliver_many(mail_user.name, raws)
    spool = Spool(tmp_path)
    maildrop = make_maildrop(dovecot_account(dovecot, mail_user, protocol), executor)
    maildrop.spool = spool
    await maildrop.open()
    try:
        got = await retrieve_everything(maildrop)
        await maildrop.close()
    finally:
        await maildrop.abort()
    items = [g for g in got if isinstance(g, RetrievedMessage)]
    assert len(items) == len(raws)
    for item, raw in zip(items, raws, strict=True):
        if len(raw) >= spool.threshold_octets:
            body = item.raw
            assert isinstance(body, SpooledBody)
            assert body.size_octets == item.size_octets == len(raw)
            assert body.sha256 == hashlib.sha256(raw).hexdigest()
            assert body.head == raw[:SPOOL_HEAD_OCTETS]
            assert item.held_octets == body.kept.octets  # the head and the marks past it
            assert SPOOL_HEAD_OCTETS <= body.kept.octets <= SPOOL_HEAD_OCTETS + SPOOL_MARKS_MAX_OCTETS
            assert body.read_all() == raw
        else:
            assert item.raw == raw
    assert spool.open_files == 3
    for item in items:
        item.release()
    assert spool.open_files == 0
    assert spool.held_octets == 0
    assert spool_files(tmp_path) == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_cycle_commits_spooled_messages_then_deletes(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    store: Store,
    protocol: Protocol,
) -> None:
    """A fetch cycle stores the spooled messages byte-exact (the same rows as in memory), deletes
    them on the server only after the commit (POP3 "delete"), and closes every spool file."""
    raws = messages()
    dovecot.deliver_many(mail_user.name, raws)
    account = dovecot_account(dovecot, mail_user, protocol)
    if protocol == "pop3":
        account = with_retention(account, "delete")
    await prepare(store, account)
    result = await cycle(account, store, executor)
    assert result.failures == []
    assert sorted(await archived(store)) == sorted(raws)
    assert store.spool.open_files == 0
    assert store.spool.held_octets == 0
    if protocol == "pop3":
        assert result.deleted == len(raws)
        assert dovecot.maildir_messages(mail_user.name) == []


async def test_full_spool_fails_that_message_only(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    store: Store,
) -> None:
    """A spool that cannot take a large message (its bound reached) fails that message this cycle:
    the others are stored, it stays on the server, unrecorded; with room it arrives.

    Since session 14 the first cycle deletes nothing: it read the large message by RETR and could
    not store it, so its session ends without QUIT (a server deleting downloaded mail would remove
    it at QUIT), and the DELE of the stored one is withheld with a warning; the next cycle deletes
    both. (Before: the stored one was deleted in the first cycle.)"""
    raws = [crlf(corpus.make_message(subject="klein")), corpus.large_message(3_000_000, seed=5)]
    dovecot.deliver_many(mail_user.name, raws)
    account = with_retention(dovecot_account(dovecot, mail_user, "pop3"), "delete")
    await prepare(store, account)
    store.spool = Spool(store.path.parent, max_octets=2**20)
    first = await cycle(account, store, executor)
    assert len(first.failures) == 1
    assert first.failures[0].reason.startswith("local spool: the spool holds")
    assert await archived(store) == [raws[0]]
    assert first.deleted == 0 and UNKEPT_WARNING.format(count=1) in first.warnings
    assert sorted(crlf(m) for m in dovecot.maildir_messages(mail_user.name)) == sorted(raws)
    store.spool = Spool(store.path.parent)
    second = await cycle(account, store, executor)
    assert (second.failures, second.deleted) == ([], 2)
    assert sorted(await archived(store)) == sorted(raws)
    assert dovecot.maildir_messages(mail_user.name) == []


async def test_an_imap_spool_write_error_fails_that_message_and_deletes_nothing_of_it(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    store: Store,
) -> None:
    """A disk error (EIO) writing an IMAP spool file, off the loop after the first part, fails that
    message this cycle (retention "delete"): the messages around it are stored and
    deleted, it stays on the server, unrecorded, no spool file is left; with a working disk the next
    cycle stores it byte-exact and deletes it."""
    raws = [
        crlf(corpus.make_message(subject="davor")),
        corpus.large_message(3_000_000, seed=6),
        crlf(corpus.make_message(subject="danach")),
    ]
    dovecot.deliver_many(mail_user.name, raws)
    account = with_retention(dovecot_account(dovecot, mail_user, "imap"), "delete")
    await prepare(store, account)
    store.spool = FailingSpool(store.path.parent, fail_at=1)
    first = await cycle(account, store, executor)
    assert len(first.failures) == 1
    assert first.failures[0].reason.startswith(SPOOL_FAILURE_PREFIX + "writing a spool file: ")
    assert sorted(await archived(store)) == sorted([raws[0], raws[2]])
    assert [crlf(m) for m in dovecot.maildir_messages(mail_user.name)] == [raws[1]]
    assert store.spool.open_files == 0
    store.spool = Spool(store.path.parent)
    second = await cycle(account, store, executor)
    assert second.failures == []
    assert sorted(await archived(store)) == sorted(raws)
    assert dovecot.maildir_messages(mail_user.name) == []
    assert store.spool.open_files == 0


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_full_spool_never_sets_the_message_aside(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    store: Store,
    protocol: Protocol,
) -> None:
    """A spool that cannot take a large message (here its bound; in QA a disk short of the reserve)
    is this machine's failure, not the message's: however many cycles it lasts, nothing counts
    towards setting the message aside (the record shows the reason in `maild status`), and once
    there is room the next cycle retrieves it (QA: after three cycles on a disk short of the spool's
    reserve, every large message was set aside for a day)."""
    big = corpus.large_message(3_000_000, seed=7)
    dovecot.deliver_many(mail_user.name, [big])
    account = dovecot_account(dovecot, mail_user, protocol)
    await prepare(store, account)
    store.spool = Spool(store.path.parent, max_octets=2**20)
    for _ in range(SET_ASIDE_AFTER_FAILURES + 1):
        result = await cycle(account, store, executor)
        assert [f.kind for f in result.failures] == ["local"]
        assert result.failures[0].reason.startswith(SPOOL_FAILURE_PREFIX)
        assert result.set_aside == []
    records = await failure_records(store, account.name)
    assert [r.failures for r in records.values()] == [SET_ASIDE_AFTER_FAILURES + 1]
    assert [r.kind for r in records.values()] == ["local"]
    store.spool = Spool(store.path.parent)
    result = await cycle(account, store, executor)
    assert result.failures == []
    assert await archived(store) == [big]
    assert await failure_records(store, account.name) == {}


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_cycle_never_holds_a_large_message_whole(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    store: Store,
    protocol: Protocol,
) -> None:
    """A fetch cycle of a 25 MB message allocates (tracemalloc, every thread) less than a quarter of
    it at its peak: the message goes from the socket to the spool file to the blob in parts."""
    big = corpus.large_message(25_000_000, seed=11)
    dovecot.deliver_many(mail_user.name, [big])
    account = dovecot_account(dovecot, mail_user, protocol)
    await prepare(store, account)
    tracemalloc.start()
    try:
        result = await cycle(account, store, executor)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.new_links == 1
    assert await archived(store) == [big]
    assert peak < 0.25 * len(big), f"peak {peak / len(big):.2f} copies of the message"


async def test_imap_loop_serves_other_connections_while_a_spool_write_is_held(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """IMAP spool writes run off the event loop. Steps: a large message's first spool write is held
    (the file write only: a gated spool); while it is held, another connection on the same loop
    takes its inventory; the large message is not handed on before its writes are done; the gate
    opens; every message arrives byte-exact, in order."""
    raws = [corpus.large_message(3_000_000, seed=4), crlf(corpus.make_message(subject="danach"))]
    dovecot.deliver_many(mail_user.name, raws)
    account = dovecot_account(dovecot, mail_user, "imap")
    spool = GatedSpool(tmp_path)
    held = make_maildrop(account, executor)
    held.spool = spool
    other = make_maildrop(account, executor)
    events: list[str] = []
    got: list[RetrievedMessage | RetrievalFailure] = []

    async def retrieve() -> None:
        entries = await held.inventory()
        async for item in held.retrieve([entry.key for entry in entries]):
            events.append(f"message {len(got) + 1}")
            got.append(item)

    await held.open()
    await other.open()
    try:
        task = asyncio.ensure_future(retrieve())
        assert await asyncio.to_thread(spool.blocked.wait, GATE_TIMEOUT_S)
        events.append("spool write held")
        assert len(await other.inventory()) == len(raws)  # a round trip on the same loop
        events.append("other connection answered")
        spool.gate.set()
        events.append("gate opened")
        await task
        await held.close()
        await other.close()
    finally:
        spool.gate.set()
        await held.abort()
        await other.abort()
    assert events == [
        "spool write held",
        "other connection answered",
        "gate opened",
        "message 1",
        "message 2",
    ]
    assert isinstance(got[0], RetrievedMessage)
    assert isinstance(got[0].raw, SpooledBody)
    assert got[0].raw.read_all() == raws[0]
    assert isinstance(got[1], RetrievedMessage)
    assert got[1].raw == raws[1]
    for item in got:
        assert isinstance(item, RetrievedMessage)
        item.release()
    assert spool.open_files == 0
    assert threading.get_ident() not in spool.threads  # written outside the loop's thread
