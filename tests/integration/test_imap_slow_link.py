"""IMAP on slow links against a real Dovecot: fewer round trips to open a session, COMPRESS=DEFLATE.

Round trips are counted by :class:`tests.support.proxy.FaultProxy` (``client_turns``: each time the
client sends after having received something), not timed. Compression uses a Dovecot of this module
with the ``imap_zlib`` plugin (``COMPRESS=DEFLATE`` after login, RFC 4978); the octets the proxy
carries show that the wire really was compressed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from maild.archive.store import Store
from maild.fetch.cycle import fetch_cycle, make_maildrop
from maild.model import IMAPKey, RetrievedMessage, ServerSettings
from maild.policy import AUTO_COMPRESS_BELOW_OCTETS_PER_S
from maild.protocols.imap.connection import link_rate
from maild.protocols.imap.idle import IMAPIdleSession
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser, own_dovecot
from tests.support.fetching import crlf, retrieve_everything
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot


@pytest.fixture(scope="module")
def compress_dovecot(dovecot: Dovecot) -> Iterator[Dovecot]:
    """A Dovecot offering COMPRESS=DEFLATE (``imap_zlib``); ``dovecot`` first, for its skip rules."""
    with own_dovecot("maild-zlib-", imap_compress=True) as server:
        yield server


@pytest.fixture
def proxied() -> Iterator[list[FaultProxy]]:
    """Proxies started by a test, stopped after it."""
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def through_proxy(
    server: Dovecot, user: MailUser, proxies: list[FaultProxy], **overrides: Any
) -> tuple[ServerSettings, FaultProxy]:
    """Plaintext IMAP settings for ``user`` through a new proxy in front of ``server``."""
    proxy = FaultProxy(server.host, server.ports.imap)
    proxy.start()
    proxies.append(proxy)
    account = dovecot_account(server, user, "imap", "none", port=proxy.port, **overrides)
    return account.server_settings(), proxy


def _user(server: Dovecot, name: str) -> MailUser:
    return server.add_user(f"{name}-{next(_numbers)}", 'pw "q" 1')


_numbers = iter(range(1, 10_000))


async def test_fresh_session_is_selected_after_one_round_trip(
    dovecot: Dovecot, mail_user: MailUser, proxied: list[FaultProxy]
) -> None:
    """Opening a session and selecting INBOX costs one round trip after the greeting: the
    capabilities come from the greeting and the sign-in's completion (no CAPABILITY command), and
    SELECT travels right behind AUTHENTICATE PLAIN (it took four before: two CAPABILITY, sign-in,
    SELECT)."""
    dovecot.deliver_many(mail_user.name, corpus.generate(3, seed=5, size_mix=corpus.SMALL_MIX))
    settings, proxy = through_proxy(dovecot, mail_user, proxied, compress="never")
    mailbox = IMAPMailbox(settings)
    try:
        await mailbox.open()
        info = await mailbox.connection.selection.select("INBOX")
        assert proxy.client_turns == 1
        assert info.exists == 3
        assert {"IMAP4REV1", "UIDPLUS", "IDLE"} <= mailbox.capabilities  # the post-login list
        entries = await mailbox.inventory()  # SELECT again (not pipelined now) and UID SEARCH
        assert [e.key.uid for e in entries] == [1, 2, 3]  # type: ignore[union-attr]
    finally:
        await mailbox.close()


async def test_fresh_fetch_cycles_wait_for_few_round_trips(
    dovecot: Dovecot, mail_user: MailUser, proxied: list[FaultProxy], store: Store
) -> None:
    """Fresh sessions (as ``maild fetch`` opens them), 900 messages, round trips counted:

    1. the initial cycle: sign-in with SELECT and UID SEARCH ALL, the body FETCH, LOGOUT: 3 (4
       before the search rode along with the sign-in);
    2. the first no-op cycle (the mailbox's status recorded by the initial cycle lacks
       HIGHESTMODSEQ, so it is listed in full): sign-in with SELECT and UID SEARCH, LIST-STATUS, the
       UID check (three size commands and the header sample in one write), LOGOUT: 4 (10 before);
    3. the next no-op cycle (status unchanged): sign-in, LIST-STATUS, LOGOUT: 3.
    """
    count = 2 * 400 + 100
    dovecot.deliver_many(mail_user.name, corpus.generate(count, seed=11, size_mix=corpus.SMALL_MIX))
    proxy = FaultProxy(dovecot.host, dovecot.ports.imap)
    proxy.start()
    proxied.append(proxy)
    account = await dovecot_account(dovecot, mail_user, "imap", "none", port=proxy.port).resolved()
    await store.ensure_account(
        account.name, account.organisation, account.employee, "imap", datetime.now(UTC)
    )
    executor = ThreadPoolExecutor(max_workers=1)
    turns: list[int] = []
    news: list[int] = []
    try:
        for _cycle in range(3):
            before = proxy.client_turns
            result = await fetch_cycle(account, store, make_maildrop(account, executor))
            turns.append(proxy.client_turns - before)
            news.append(result.new_messages)
    finally:
        executor.shutdown()
    assert news == [count, 0, 0]
    assert turns == [3, 4, 3]


async def test_pipelined_select_of_another_mailbox_is_passed_over(
    dovecot: Dovecot, mail_user: MailUser, proxied: list[FaultProxy]
) -> None:
    """When the first SELECT asks for another mailbox than the one pipelined, the pipelined answer
    is read and dropped and the asked one is selected: the session ends where it was asked to."""
    dovecot.create_mailbox(mail_user.name, "Other")
    dovecot.deliver(mail_user.name, corpus.make_message(subject="in inbox"))
    settings, _proxy = through_proxy(dovecot, mail_user, proxied, compress="never")
    mailbox = IMAPMailbox(settings)
    try:
        await mailbox.open()
        info = await mailbox.connection.selection.select("Other")
        assert info.exists == 0
        assert mailbox.connection.selected == "Other"
    finally:
        await mailbox.close()


async def test_compressed_session_fetches_idles_and_deletes(
    compress_dovecot: Dovecot, proxied: list[FaultProxy]
) -> None:
    """With ``compress = "always"`` the session runs COMPRESS DEFLATE after sign-in; then:

    1. every message comes back byte for byte (streaming FETCH), while the proxy carries fewer
       octets from the server than the messages hold;
    2. IDLE on a second compressed connection reports a message delivered meanwhile;
    3. deletion (UID STORE, UID EXPUNGE) removes exactly the message asked for.
    """
    user = _user(compress_dovecot, "zlib")
    messages = list(corpus.generate(12, seed=7, size_mix=corpus.SMALL_MIX))
    compress_dovecot.deliver_many(user.name, messages)
    settings, proxy = through_proxy(compress_dovecot, user, proxied, compress="always")
    mailbox = IMAPMailbox(settings)
    try:
        await mailbox.open()
        assert mailbox.connection.compressed
        items = await retrieve_everything(mailbox)
        raws = [item.raw for item in items if isinstance(item, RetrievedMessage)]
        assert raws == [crlf(m) for m in messages]
        assert proxy.octets_down < sum(len(r) for r in raws)

        idle = IMAPIdleSession(settings)
        try:
            await idle.open()
            assert idle.connection.compressed
            await idle.select_mailbox()
            await idle.idle_start()
            compress_dovecot.deliver(user.name, corpus.make_message(subject="pushed"))
            events = await idle.idle_wait(10.0)
            while events.exists is None:
                events = await idle.idle_wait(10.0)
            assert events.exists == 13
            await idle.idle_done()
        finally:
            await idle.close()

        first = items[0]
        assert isinstance(first, RetrievedMessage) and isinstance(first.key, IMAPKey)
        deleted = await mailbox.delete([first.key])
        assert deleted == [first.key]
    finally:
        await mailbox.close()
    assert len(compress_dovecot.maildir_files(user.name)) == 12


async def test_compress_never_stays_uncompressed(compress_dovecot: Dovecot) -> None:
    """``compress = "never"`` does not compress although the server offers COMPRESS=DEFLATE."""
    user = _user(compress_dovecot, "zlib-off")
    settings = dovecot_account(compress_dovecot, user, "imap", "none", compress="never").server_settings()
    mailbox = IMAPMailbox(settings)
    try:
        await mailbox.open()
        assert "COMPRESS=DEFLATE" in mailbox.capabilities
        assert not mailbox.connection.compressed
    finally:
        await mailbox.close()


async def test_compress_auto_compresses_once_a_slow_transfer_was_measured(
    compress_dovecot: Dovecot, proxied: list[FaultProxy]
) -> None:
    """``compress = "auto"`` on a link capped at 2 MB/s:

    1. the first session compresses nothing (no rate measured from this server yet);
    2. its transfer (several MB) is measured below ``policy.AUTO_COMPRESS_BELOW_OCTETS_PER_S``;
    3. the kept session, taken back for the next cycle, turns COMPRESS on and fetches correctly;
    4. a fresh session to the same server compresses from the start.
    """
    user = _user(compress_dovecot, "zlib-auto")
    messages: list[bytes] = []
    for message in corpus.generate(400, seed=9):  # about 4 MB: long enough to measure the rate
        messages.append(message)
        if sum(len(m) for m in messages) > 4_000_000:
            break
    compress_dovecot.deliver_many(user.name, messages)
    settings, proxy = through_proxy(compress_dovecot, user, proxied, compress="auto")
    proxy.trickle(2_000_000)
    mailbox = IMAPMailbox(settings)
    try:
        await mailbox.open()
        assert not mailbox.connection.compressed
        assert len(await retrieve_everything(mailbox)) == len(messages)
        assert await mailbox.park()
        rate = link_rate(settings.host, settings.port)
        assert rate is not None
        assert rate < AUTO_COMPRESS_BELOW_OCTETS_PER_S
        assert await mailbox.resume(max_age_s=60, probe_timeout_s=5)
        assert mailbox.connection.compressed
        first = await retrieve_everything(mailbox)
        assert [item.raw for item in first[:2]] == [crlf(m) for m in messages[:2]]  # type: ignore[union-attr]
    finally:
        await mailbox.close()
    fresh = IMAPMailbox(settings)
    try:
        await fresh.open()
        assert fresh.connection.compressed
    finally:
        await fresh.close()
