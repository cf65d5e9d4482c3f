"""A kept IMAP session that a middlebox silently dropped, and one kept too long (``KeptSession.resume``).

Dovecot cannot be made to go silent on request; a fault proxy in front of its IMAP port can.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.fetch.cycle import fetch_cycle
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support.accounts import imap_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import prepare
from tests.support.proxy import FaultProxy

LETTER = b"Subject: kept\r\nMessage-ID: <kept-fault@example.org>\r\n\r\nbody\r\n"


@pytest.fixture
def proxy(dovecot: Dovecot) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session Dovecot's plaintext IMAP port."""
    with FaultProxy(dovecot.host, dovecot.ports.imap) as p:
        yield p


def through_proxy(proxy: FaultProxy, user: MailUser) -> AccountConfig:
    """``user``'s polling IMAP account (INBOX, 10 s timeouts) reaching Dovecot through ``proxy``."""
    return imap_account(
        "kept-fault",
        host=proxy.host,
        port=proxy.port,
        username=user.name,
        password=user.password,
        timeout_s=10.0,
        idle=False,
    )


async def kept_session(proxy: FaultProxy, user: MailUser, store: Store) -> IMAPMailbox:
    """Run one cycle through ``proxy`` that keeps its session; return the parked session."""
    account = await prepare(store, through_proxy(proxy, user))
    session = IMAPMailbox(account.server_settings(), account.mailboxes)
    result = await fetch_cycle(account, store, session, keep_open=True)
    assert result.new_links == 1
    assert session.parked
    return session


async def test_silently_dropped_session_is_given_up_after_the_probe_timeout(
    dovecot: Dovecot,
    mail_user: MailUser,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """The NOOP that checks a kept session gets no answer (the proxy stalls): resume() returns False
    after the probe timeout, not the account's 10 s timeout, and the session is discarded."""
    dovecot.deliver(mail_user.name, LETTER)
    session = await kept_session(proxy, mail_user, store)
    proxy.stall()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await session.resume(max_age_s=600, probe_timeout_s=0.3)
    assert loop.time() - started < 3.0
    assert not session.parked
    proxy.unstall()
    await session.abort()


async def test_session_kept_too_long_is_not_used(
    dovecot: Dovecot, mail_user: MailUser, proxy: FaultProxy, store: Store
) -> None:
    """A session parked longer than max_age_s is discarded without a command (server may have
    logged it out: RFC 9051 section 5.4)."""
    dovecot.deliver(mail_user.name, LETTER)
    session = await kept_session(proxy, mail_user, store)
    await asyncio.sleep(0.05)
    assert not await session.resume(max_age_s=0.01, probe_timeout_s=5)
    assert not session.parked
    await session.abort()


async def test_resumed_session_runs_a_cycle(
    dovecot: Dovecot, mail_user: MailUser, proxy: FaultProxy, store: Store
) -> None:
    """A healthy kept session passes the NOOP and runs the next cycle without a new connection."""
    dovecot.deliver(mail_user.name, LETTER)
    session = await kept_session(proxy, mail_user, store)
    assert await session.resume(max_age_s=600, probe_timeout_s=5)
    account = through_proxy(proxy, mail_user)
    result = await fetch_cycle(account, store, session, opened=True)
    assert (result.on_server, result.new_links) == (1, 0)
    assert proxy.connections == 1  # both cycles on one connection, closed (LOGOUT) after the second
    await asyncio.to_thread(proxy.wait_until, lambda: proxy.active_connections == 0, 5.0)
