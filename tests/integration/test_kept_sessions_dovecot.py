"""IMAP sessions kept between an account's cycles, against a real Dovecot (``maild.service.kept_sessions``).

A kept session must see mail that arrived meanwhile (every cycle selects again), must be replaced
without a failed cycle when the server dropped it, must count against ``max_connections_per_host``,
and POP3 sessions are never kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.service.scheduler import Scheduler
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import pop3_account, prepare
from tests.support.waiting import eventually


def letter(n: int) -> bytes:
    """A small distinct CRLF message."""
    return b"Subject: kept %d\r\nMessage-ID: <kept-%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n)


def logins(dovecot: Dovecot, user: MailUser, protocol: str = "imap") -> int:
    """Successful logins of ``user`` in Dovecot's log."""
    pattern = re.compile(rf"{protocol}-login: Info: Login: user=<{re.escape(user.name)}>")
    return len(pattern.findall(dovecot.log_file.read_text(errors="replace")))


class Running:
    """A scheduler running in the background of a test."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(scheduler.run(self.stop, shutdown_timeout_s=5.0))

    async def first_cycles(self) -> None:
        await eventually(lambda: all(rt.last_result is not None for rt in self.scheduler.accounts.values()))


StartScheduler = Callable[..., Awaitable[Running]]


@pytest.fixture
async def running(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> AsyncIterator[StartScheduler]:
    """``await running(accounts, per_host=8)``: record the accounts, start a scheduler with them and wait
    for every first cycle. Each scheduler is stopped (and its kept sessions closed) after the test."""
    started: list[Running] = []

    async def start(accounts: list[AccountConfig], per_host: int = 8) -> Running:
        for account in accounts:
            await prepare(store, account)
        scheduler = Scheduler(
            accounts,
            store,
            executor,
            max_concurrent_fetches=4,
            max_connections_per_host=per_host,
            rng=random.Random(1),
        )
        started.append(Running(scheduler))
        await started[-1].first_cycles()
        return started[-1]

    yield start
    for item in started:
        item.stop.set()
        await item.task


async def test_next_cycle_reuses_the_kept_session_and_sees_new_mail(
    dovecot: Dovecot,
    mail_user: MailUser,
    running: StartScheduler,
) -> None:
    """Two cycles, one login: the second cycle runs on the session kept from the first and fetches
    the message delivered in between (SELECT again shows it)."""
    dovecot.deliver_many(mail_user.name, [letter(1), letter(2)])
    account = dovecot_account(dovecot, mail_user, "imap", name="kept-imap", idle=False)
    run = await running([account])
    assert run.scheduler.sessions.kept(account.name)
    assert logins(dovecot, mail_user) == 1

    dovecot.deliver(mail_user.name, letter(3))
    result = await run.scheduler.request_fetch(account.name)

    assert result is not None
    assert (result.on_server, result.new_links) == (3, 1)
    assert logins(dovecot, mail_user) == 1
    assert run.scheduler.sessions.kept(account.name)
    assert run.scheduler.sessions.in_use(dovecot.host) == 1


async def _until_disconnected(dovecot: Dovecot, user: MailUser, bound_s: float = 10.0) -> None:
    """Wait until Dovecot lists no connection of ``user`` (``doveadm kick`` only signals the process:
    without this wait the kept session's NOOP probe can still be answered and the server's BYE land
    on the cycle's next command)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while user.name in dovecot.doveadm("who", check=False).stdout:
        assert loop.time() < deadline, f"{user.name} still connected {bound_s} s after doveadm kick"
        await asyncio.sleep(0.05)


async def test_session_dropped_by_the_server_is_replaced_without_a_failed_cycle(
    dovecot: Dovecot,
    mail_user: MailUser,
    running: StartScheduler,
) -> None:
    """``doveadm kick`` ends the kept session; the next cycle notices (connection lost, or NOOP
    unanswered), logs in afresh and succeeds: no failure is recorded."""
    dovecot.deliver(mail_user.name, letter(1))
    account = dovecot_account(dovecot, mail_user, "imap", name="kicked-imap", idle=False)
    run = await running([account])
    dovecot.doveadm("kick", mail_user.name)
    await _until_disconnected(dovecot, mail_user)
    dovecot.deliver(mail_user.name, letter(2))

    result = await run.scheduler.request_fetch(account.name)

    assert result is not None
    assert result.new_links == 1
    rt = run.scheduler.accounts[account.name]
    assert (rt.consecutive_failures, rt.cycles.get("ok")) == (0, 2)
    assert logins(dovecot, mail_user) == 2
    assert run.scheduler.sessions.in_use(dovecot.host) == 1


async def test_kept_sessions_count_against_the_host_limit_and_make_room(
    dovecot: Dovecot,
    mail_user_factory: Callable[..., MailUser],
    running: StartScheduler,
) -> None:
    """With ``max_connections_per_host = 1`` and two accounts on one host, at most one connection is
    ever held: the second account's cycle closes the first one's kept session, and both succeed."""
    users = [mail_user_factory(), mail_user_factory()]
    accounts = [
        dovecot_account(dovecot, user, "imap", name=f"limit-{i}", idle=False) for i, user in enumerate(users)
    ]
    for user in users:
        dovecot.deliver(user.name, letter(hash(user.name) % 1000))
    scheduler = (await running(accounts, per_host=1)).scheduler
    assert scheduler.sessions.in_use(dovecot.host) == 1
    assert [scheduler.sessions.kept(a.name) for a in accounts].count(True) == 1

    for account in accounts * 2:
        result = await scheduler.request_fetch(account.name)
        assert result is not None
        assert scheduler.sessions.in_use(dovecot.host) == 1
        assert scheduler.sessions.kept(account.name)
    assert all(rt.consecutive_failures == 0 for rt in scheduler.accounts.values())


async def test_pop3_sessions_are_never_kept(
    dovecot: Dovecot,
    mail_user: MailUser,
    running: StartScheduler,
) -> None:
    """A POP3 maildrop is locked until QUIT: after its cycle no session and no permit remain."""
    dovecot.deliver(mail_user.name, letter(1))
    account = pop3_account(dovecot.host, dovecot.ports.pop3, mail_user.name, mail_user.password, name="p")
    run = await running([account])
    assert not run.scheduler.sessions.kept(account.name)
    assert run.scheduler.sessions.in_use(dovecot.host) == 0
    assert (await run.scheduler.request_fetch(account.name)) is not None
    assert logins(dovecot, mail_user, "pop3") == 2


async def test_stopping_the_scheduler_logs_the_kept_session_out(
    dovecot: Dovecot,
    mail_user: MailUser,
    running: StartScheduler,
) -> None:
    """At shutdown every kept session is closed with LOGOUT and its permit given back."""
    dovecot.deliver(mail_user.name, letter(1))
    account = dovecot_account(dovecot, mail_user, "imap", name="logout-imap", idle=False)
    run = await running([account])
    scheduler = run.scheduler
    assert scheduler.sessions.kept(account.name)
    run.stop.set()
    await run.task
    assert not scheduler.sessions.kept(account.name)
    assert scheduler.sessions.in_use(dovecot.host) == 0
    logged_out = re.compile(rf"imap\({re.escape(mail_user.name)}\).*Disconnected: Logged out")
    await eventually(lambda: bool(logged_out.search(dovecot.log_file.read_text(errors="replace"))))


async def test_pause_and_reload_log_the_kept_session_out(
    dovecot: Dovecot,
    mail_user: MailUser,
    running: StartScheduler,
) -> None:
    """Pausing an account logs its kept session out (no connection while paused); after resume a
    reload that changes the account ends the old session too, and the new settings log in afresh.
    No permit is left over at any point."""
    dovecot.deliver(mail_user.name, letter(1))
    account = dovecot_account(dovecot, mail_user, "imap", name="paused-imap", idle=False)
    run = await running([account])
    scheduler = run.scheduler
    assert scheduler.sessions.kept(account.name)

    scheduler.pause(account.name)
    await eventually(lambda: not scheduler.sessions.kept(account.name))
    assert scheduler.sessions.in_use(dovecot.host) == 0

    scheduler.resume(account.name)
    await eventually(lambda: scheduler.sessions.kept(account.name))
    assert logins(dovecot, mail_user) == 2

    changed = replace(account, poll_interval_s=1800.0)
    assert scheduler.apply([changed])["changed"] == [account.name]
    await eventually(lambda: scheduler.accounts[account.name].last_result is not None)
    await eventually(lambda: scheduler.sessions.kept(account.name))
    assert logins(dovecot, mail_user) == 3
    assert scheduler.sessions.in_use(dovecot.host) == 1
