"""Crawling servers (issue 15, item 2): a progress floor ends a transfer that trickles, and one
host's transfers never hold every transfer slot. Real Dovecot behind the fault proxy's trickle.

Assertions are on outcomes (which cycle finished, which failed and why, what stayed on the server),
never on durations.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import NetworkTimeout
from maild.fetch.cycle import fetch_cycle
from maild.protocols.base import Maildrop
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.protocols.pop3.maildrop import POP3Maildrop
from maild.service.budget import Budgets
from tests.support import accounts
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import T0, prepare
from tests.support.proxy import FaultProxy


def letter(n: int, octets: int) -> bytes:
    """A CRLF message of about ``octets`` octets."""
    line = b"Zeile von Schreiben %d: %s\r\n" % (n, b"-" * 50)
    return b"Subject: Schreiben %d\r\nMessage-ID: <slow-%d@example>\r\n\r\n" % (n, n) + line * (
        octets // len(line)
    )


def maildrop_for(
    account: AccountConfig, executor: concurrent.futures.ThreadPoolExecutor, **settings: object
) -> Maildrop:
    """The account's adapter with ``settings`` overriding its ServerSettings (a short progress window)."""
    server = dataclasses.replace(account.server_settings(), **settings)  # type: ignore[arg-type]
    if account.protocol == "pop3":
        return POP3Maildrop(server, executor)
    return IMAPMailbox(server)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_trickling_transfer_is_ended_as_too_slow(
    dovecot: Dovecot,
    mail_user: MailUser,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    protocol: str,
) -> None:
    """A 300 kB message sent at 2,000 octets/s while the floor is 20,000 octets/s over 1 s windows:
    the cycle fails with "server too slow: ... B/s" (a NetworkTimeout, retried later), although
    the server never falls silent; the message stays on the server, nothing is archived."""
    raw = letter(1, 300_000)
    dovecot.deliver(mail_user.name, raw)
    port = dovecot.ports.pop3 if protocol == "pop3" else dovecot.ports.imap
    with FaultProxy(dovecot.host, port) as proxy:
        account = await prepare(store, _plain(protocol, proxy, mail_user))
        proxy.trickle(2_000)
        maildrop = maildrop_for(account, executor, progress_window_s=1.0, min_rate_octets_per_s=20_000)
        with pytest.raises(
            NetworkTimeout, match=r"server too slow: \d+ B/s over \d+ s, the floor is 20000 B/s"
        ):
            await fetch_cycle(account, store, maildrop, clock=lambda: T0)
    assert dovecot.maildir_messages(mail_user.name) == [raw]
    assert (await store.totals())[0] == 0


def _plain(protocol: str, proxy: FaultProxy, user: MailUser, **overrides: object) -> AccountConfig:
    """A plaintext account reaching Dovecot through ``proxy`` (POP3 retention "delete")."""
    values: dict[str, object] = {"timeout_s": 10.0, **overrides}
    if protocol == "pop3":
        values.setdefault("retention", "delete")
        return accounts.pop3_account(
            str(values.pop("name", "slow-pop")),
            host=proxy.host,
            port=proxy.port,
            username=user.name,
            password=user.password,
            **values,
        )
    return accounts.imap_account(
        str(values.pop("name", "slow-imap")),
        host=proxy.host,
        port=proxy.port,
        username=user.name,
        password=user.password,
        **values,
    )


async def test_crawling_host_never_holds_every_transfer_slot(
    dovecot: Dovecot,
    mail_user_factory: Callable[..., MailUser],
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """Steps: four POP3 accounts reach Dovecot as host "localhost" through a proxy sending 50
    octets/s, each with a 200 kB message; they take the transfer slots they may (three of four) and
    crawl. A healthy account on host 127.0.0.1 then runs a whole cycle and archives its messages
    while all four crawling cycles are still running. The crawling ones are cancelled at the end:
    nothing of theirs was archived or deleted."""
    budgets = Budgets(max_cycles=8, per_host=8, max_transfers=4)
    slow_users = [mail_user_factory() for _ in range(4)]
    healthy_user = mail_user_factory()
    for n, user in enumerate(slow_users):
        dovecot.deliver(user.name, letter(n, 200_000))
    healthy_raws = [letter(10, 5_000), letter(11, 5_000)]
    dovecot.deliver_many(healthy_user.name, healthy_raws)
    with FaultProxy(dovecot.host, dovecot.ports.pop3) as proxy:
        proxy.trickle(50)
        slow_accounts = [
            await prepare(store, _plain("pop3", proxy, user, name=f"slow-{n}"))
            for n, user in enumerate(slow_users)
        ]
        slow_accounts = [dataclasses.replace(a, host="localhost") for a in slow_accounts]
        crawling = [
            asyncio.create_task(
                fetch_cycle(a, store, maildrop_for(a, executor), budgets=budgets, clock=lambda: T0)
            )
            for a in slow_accounts
        ]
        try:
            await asyncio.to_thread(proxy.wait_until, lambda: proxy.active_connections == 4, 20.0)
            for _ in range(200):  # until the three slots of host "localhost" are taken
                if budgets.transferring == 3:
                    break
                await asyncio.sleep(0.05)
            assert budgets.transferring == 3
            healthy = await prepare(
                store,
                accounts.pop3_account(
                    "healthy",
                    host=dovecot.host,
                    port=dovecot.ports.pop3,
                    username=healthy_user.name,
                    password=healthy_user.password,
                    retention="delete",
                    timeout_s=10.0,
                ),
            )
            result = await fetch_cycle(
                healthy, store, maildrop_for(healthy, executor), budgets=budgets, clock=lambda: T0
            )
            assert (result.new_messages, result.deleted) == (2, 2)
            assert not any(task.done() for task in crawling)
        finally:
            for task in crawling:
                task.cancel()
            await asyncio.gather(*crawling, return_exceptions=True)
    for user in slow_users:
        assert len(dovecot.maildir_messages(user.name)) == 1
    assert (await store.totals())[0] == 2
