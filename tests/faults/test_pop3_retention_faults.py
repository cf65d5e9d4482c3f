"""Retention ``"delete"`` against real Dovecot through the fault-injecting proxy.

Each test runs real fetch cycles (POP3 adapter, SQLite archive) through :class:`FaultProxy` to the
session Dovecot (plaintext POP3 on loopback, so the proxy can watch for commands) and breaks the
connection at a chosen point: mid-RETR, after DELE, before QUIT, after QUIT, or not at all but
stalled or slowed. After each, it checks the guarantee: nothing partial archived, nothing deleted on
the server that is not archived, nothing archived twice, and the next cycle finishes the job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import Callable, Iterator

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import ConnectError
from maild.fetch.cycle import fetch_cycle
from maild.protocols.pop3.maildrop import POP3Maildrop
from maild.service.scheduler import Scheduler
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import archived, cycle, pop3_account, prepare
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually


def letter(n: int, *, octets: int = 2_000, marker: bytes = b"") -> bytes:
    """A CRLF message of about ``octets`` octets with a unique Message-ID; ``marker`` sits in its middle."""
    head = (
        b"From: Kanzlei Berger <post@kanzlei-berger.example>\r\nTo: Anna <anna@example.com>\r\n"
        b"Subject: Schreiben %d\r\nMessage-ID: <fault-%d@kanzlei-berger.example>\r\n\r\n" % (n, n)
    )
    lines = [b"Zeile %06d von Schreiben %d: %s\r\n" % (i, n, b"-" * 40) for i in range(octets // 70 + 1)]
    middle = len(lines) // 2
    return head + b"".join(lines[:middle]) + marker + b"".join(lines[middle:])


@pytest.fixture
def proxy(dovecot: Dovecot) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session Dovecot's plaintext POP3 port."""
    with FaultProxy(dovecot.host, dovecot.ports.pop3) as p:
        yield p


async def deleting(host: str, port: int, user: MailUser, store: Store, **overrides: object) -> AccountConfig:
    """A "delete" account on ``host:port`` (plaintext), recorded in the archive."""
    account = pop3_account(host, port, user.name, user.password, retention="delete", **overrides)
    await prepare(store, account)
    return account


async def through(proxy: FaultProxy, user: MailUser, store: Store, **overrides: object) -> AccountConfig:
    """A "delete" account that reaches Dovecot through ``proxy``, recorded in the archive."""
    return await deleting(proxy.host, proxy.port, user, store, **overrides)


async def test_cut_mid_retr_stores_nothing_partial_and_the_next_cycle_finishes(
    dovecot: Dovecot,
    mail_user: MailUser,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """A connection cut in the middle of a message keeps earlier commits, archives nothing partial, deletes nothing.

    Steps: three messages, the second of 300 kB; one RETR per window, one commit per message; the
    proxy cuts the connection when the middle of message 2 passes; the cycle fails with ConnectError
    holding only message 1 and the server still holds all three; the next cycle archives 2 and 3 and
    deletes all three.
    """
    raws = [letter(1), letter(2, octets=300_000, marker=b"CUT-HERE"), letter(3)]
    dovecot.deliver_many(mail_user.name, raws)
    account = await through(proxy, mail_user, store)
    proxy.cut_when(b"CUT-HERE", "down", once=True)

    maildrop = POP3Maildrop(account.server_settings(), executor, window=1)
    with pytest.raises(ConnectError, match=r"closed the connection|connection lost while retrieving"):
        await fetch_cycle(account, store, maildrop, batch_messages=1)

    assert proxy.cuts == 1
    assert await archived(store) == [raws[0]]
    assert dovecot.maildir_messages(mail_user.name) == raws
    second = await cycle(account, store, executor)
    assert (second.new_links, second.deleted) == (2, 3)
    assert await archived(store) == raws
    assert dovecot.maildir_messages(mail_user.name) == []


@pytest.mark.parametrize(
    ("pattern", "after", "server_deletes"),
    [
        pytest.param(b"DELE 1\r\n", True, False, id="after-DELE-reached-the-server"),
        pytest.param(b"QUIT\r\n", False, False, id="before-QUIT-is-sent"),
        pytest.param(b"QUIT\r\n", True, True, id="QUIT-sent-reply-lost"),
    ],
)
async def test_cut_between_dele_and_quit_reply(
    dovecot: Dovecot,
    mail_user: MailUser,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    pattern: bytes,
    after: bool,
    server_deletes: bool,
) -> None:
    """A session cut after DELE and before +OK to QUIT records no deletion; the next cycle finishes without duplicates.

    Steps: three messages; the cycle archives them, sends DELE and is cut (after the server got DELE 1,
    before QUIT leaves maild, or after the server got QUIT but before its +OK comes back); the cycle
    records nothing as deleted: cut at DELE it fails, cut at QUIT (everything stored) it ends with a
    warning that the deletions were not confirmed. Without QUIT the server deleted nothing (RFC 1939 section 6)
    and the next cycle stores nothing, sends DELE again and records the deletions; after QUIT the
    server deleted them, and the next cycle records them as gone.
    """
    raws = [letter(n) for n in (1, 2, 3)]
    dovecot.deliver_many(mail_user.name, raws)
    account = await through(proxy, mail_user, store)
    proxy.cut_when(pattern, "up", after=after, once=True)

    if pattern.startswith(b"QUIT"):
        first = await cycle(account, store, executor)
        assert first.deleted == 0
        assert "3 deletions not confirmed" in first.warnings[0]
    else:
        with pytest.raises(ConnectError):
            await cycle(account, store, executor)

    assert proxy.cuts == 1
    assert await archived(store) == raws
    assert all(loc.deleted_at is None for loc in (await store.locations(account.name)).values())
    if server_deletes:  # Dovecot expunges on QUIT whether or not its reply gets through
        await eventually(lambda: dovecot.maildir_messages(mail_user.name) == [])
    else:
        assert dovecot.maildir_messages(mail_user.name) == raws

    second = await cycle(account, store, executor)

    assert second.new_links == 0
    assert await archived(store) == raws
    assert dovecot.maildir_messages(mail_user.name) == []
    locations = (await store.locations(account.name)).values()
    if server_deletes:
        assert (second.on_server, second.deleted) == (0, 0)
        assert all(loc.gone_at is not None and loc.deleted_at is None for loc in locations)
    else:
        assert (second.on_server, second.deleted) == (3, 3)
        assert all(loc.deleted_at is not None for loc in locations)


async def test_stall_times_out_one_account_while_another_keeps_going(
    dovecot: Dovecot,
    mail_user_factory: Callable[..., MailUser],
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """A stalled connection fails its account with a timeout; another account of the same scheduler run keeps fetching.

    Steps: account A reaches Dovecot through the proxy (timeout 2 s), B directly; the scheduler starts
    both; the proxy slows A's 600 kB message and stalls once 50 kB have passed, mid-RETR; while A waits,
    new mail for B is fetched and deleted by a fetch-now; then A's cycle fails with "no progress",
    having archived and deleted nothing; with the stall lifted, A's next cycle finishes.
    """
    user_a, user_b = mail_user_factory(), mail_user_factory()
    raws_a = [letter(1, octets=600_000), letter(2)]
    raws_b = [letter(11), letter(12)]
    dovecot.deliver_many(user_a.name, raws_a)
    dovecot.deliver_many(user_b.name, raws_b[:1])
    a = await through(proxy, user_a, store, name="a-stalled", timeout_s=2.0)
    b = await deleting(dovecot.host, dovecot.ports.pop3, user_b, store, name="b-direct")
    proxy.trickle(1_000_000)
    scheduler = Scheduler([a, b], store, executor, max_concurrent_fetches=4, rng=random.Random(1))
    rt_a, rt_b = scheduler.accounts[a.name], scheduler.accounts[b.name]
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop, shutdown_timeout_s=5.0))  # a cycle each at start
    try:
        await asyncio.to_thread(proxy.wait_until, lambda: proxy.octets_down > 50_000, 10.0)
        proxy.stall()
        await eventually(lambda: rt_b.last_result is not None)
        dovecot.deliver(user_b.name, raws_b[1])
        again_b = await scheduler.request_fetch(b.name)
        assert (rt_a.state, rt_a.consecutive_failures) == ("fetching", 0), "A failed before B's second cycle"
        assert again_b is not None
        assert (again_b.new_links, again_b.deleted) == (1, 1)
        await eventually(lambda: rt_a.consecutive_failures == 1)
    finally:
        stop.set()
        await runner

    rt_a = scheduler.accounts[a.name]
    assert rt_a.last_error is not None
    assert "no progress for 2.0 s" in rt_a.last_error
    assert dovecot.maildir_messages(user_a.name) == raws_a
    assert dovecot.maildir_messages(user_b.name) == []
    assert sorted(await archived(store)) == sorted(raws_b)
    proxy.reset()
    proxy.close_all()
    result = await cycle(a, store, executor)
    assert (result.new_links, result.deleted) == (2, 2)
    assert sorted(await archived(store)) == sorted(raws_a + raws_b)


async def test_slow_trickle_still_completes(
    dovecot: Dovecot,
    mail_user: MailUser,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """A connection trickling 100 kB/s with 30 ms latency is slow but never silent: the cycle completes within its timeouts.

    Steps: two 60 kB messages; the proxy limits each direction to 100,000 octets/s and adds latency;
    the account's timeout is 1 s, less than the whole transfer (about 1.3 s); the cycle archives both
    byte-exact and deletes them.
    """
    raws = [letter(1, octets=60_000), letter(2, octets=60_000)]
    dovecot.deliver_many(mail_user.name, raws)
    account = await through(proxy, mail_user, store, timeout_s=1.0)
    proxy.trickle(100_000)
    proxy.latency(0.03)

    result = await cycle(account, store, executor)

    assert (result.new_links, result.deleted, result.failures) == (2, 2, [])
    assert result.seconds > 1.0  # it really was slow
    assert await archived(store) == raws
    assert dovecot.maildir_messages(mail_user.name) == []
