"""One message that breaks the connection every time: what arrived is kept, the message is set aside.

Servers and middleboxes that choke on one particular message exist (fdm #41, MailKit #82). Dovecot
will not do it on request; the fault proxy in front of it cuts every connection when a marker inside
the third of five messages passes. Each test runs real fetch cycles (POP3 and IMAP adapters, SQLite
archive) and checks: every message received completely before the cut is committed in that very
cycle; after :data:`~maild.policy.SET_ASIDE_AFTER_FAILURES` failures in a row the message is set
aside (left on the server, never deleted) and the others flow; a day later it is tried again.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest

from maild.archive.failures import failure_records, request_retry
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import ConnectError, NetworkTimeout, ProtocolError
from maild.model import Protocol
from maild.policy import SET_ASIDE_AFTER_FAILURES
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import MARKER, Clock, archived, crlf, cycle, letter, prepare
from tests.support.proxy import FaultProxy

BROKEN = (ConnectError, NetworkTimeout, ProtocolError)


@pytest.fixture(params=["pop3", "imap"])
def protocol(request: pytest.FixtureRequest) -> Protocol:
    """Each test runs over POP3 and over IMAP."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def proxy(dovecot: Dovecot, protocol: Protocol) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session Dovecot's plaintext port of ``protocol``."""
    port = dovecot.ports.pop3 if protocol == "pop3" else dovecot.ports.imap
    with FaultProxy(dovecot.host, port) as p:
        yield p


async def account_through(
    proxy: FaultProxy, dovecot: Dovecot, user: MailUser, protocol: Protocol, store: Store
) -> AccountConfig:
    """A "delete" account of ``user`` that reaches Dovecot through ``proxy``, recorded in the archive."""
    account = dovecot_account(
        dovecot, user, protocol, host=proxy.host, port=proxy.port, retention="delete", idle=False
    )
    return await prepare(store, account)


async def test_a_message_that_breaks_the_connection_every_time_is_set_aside_and_the_rest_flow(
    dovecot: Dovecot,
    mail_user: MailUser,
    protocol: Protocol,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """Messages 1-2 are committed in the cycle whose connection breaks on message 3; after three such
    cycles message 3 is set aside, the next cycle archives and deletes 4-5 and leaves 3 on the server.

    Steps: five messages, the third with a marker; the proxy cuts every connection when the marker
    passes; cycle 1 fails with 1-2 archived and a failure counted for 3; cycles 2 and 3 fail the
    same way (no new messages); cycle 4 succeeds without touching 3: 4-5 archived, 1, 2, 4, 5
    deleted on the server, 3 still there and listed as set aside.
    """
    raws = [letter(1), letter(2), letter(3, MARKER), letter(4), letter(5)]
    dovecot.deliver_many(mail_user.name, raws)
    account = await account_through(proxy, dovecot, mail_user, protocol, store)
    proxy.cut_when(MARKER, "down")
    clock = Clock()

    with pytest.raises(BROKEN):
        await cycle(account, store, executor, clock=clock)
    assert await archived(store) == [crlf(r) for r in raws[:2]]
    records = await failure_records(store, account.name)
    assert [r.failures for r in records.values()] == [1]
    (choking,) = records
    assert "while it was being received" in records[choking].reason
    # its header, read in a new session (POP3 TOP, IMAP BODY.PEEK[HEADER.FIELDS]), names it
    assert (records[choking].subject, records[choking].from_) == (
        "Schreiben 3",
        "Kanzlei Berger <post@kanzlei-berger.example>",
    )

    for _ in range(SET_ASIDE_AFTER_FAILURES - 1):
        clock.advance(minutes=5)
        with pytest.raises(BROKEN):
            await cycle(account, store, executor, clock=clock)
    assert (await failure_records(store, account.name))[choking].failures == SET_ASIDE_AFTER_FAILURES

    clock.advance(minutes=5)
    fourth = await cycle(account, store, executor, clock=clock)

    assert fourth.set_aside == [choking]
    assert (fourth.new_links, fourth.deleted) == (2, 4)
    assert await archived(store) == [crlf(r) for r in (raws[0], raws[1], raws[3], raws[4])]
    assert dovecot.maildir_messages(mail_user.name) == [crlf(raws[2])]
    if protocol == "imap":  # BODY.PEEK everywhere: the set-aside message is still unread
        (left,) = dovecot.maildir_files(mail_user.name)
        assert "S" not in left.name.partition(":2,")[2], left.name  # maildir info flags: no \\Seen


async def test_a_set_aside_message_is_tried_again_a_day_later_and_on_request(
    dovecot: Dovecot,
    mail_user: MailUser,
    protocol: Protocol,
    proxy: FaultProxy,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """A set-aside message is skipped within a day, tried (and counted) once a day has passed, tried
    at once after ``request_retry``, and archived (its record gone) once the link lets it through.

    Steps: one message with the marker; three failing cycles set it aside; a cycle an hour later
    does not ask for it; a cycle a day later does (fails: 4 in a row); a retry request makes the
    next cycle ask again at once; with the proxy reset, that cycle archives it and deletes it.
    """
    dovecot.deliver_many(mail_user.name, [letter(7, MARKER)])
    account = await account_through(proxy, dovecot, mail_user, protocol, store)
    proxy.cut_when(MARKER, "down")
    clock = Clock()
    for _ in range(SET_ASIDE_AFTER_FAILURES):
        with pytest.raises(BROKEN):
            await cycle(account, store, executor, clock=clock)

    clock.advance(hours=1)
    skipped = await cycle(account, store, executor, clock=clock)
    assert len(skipped.set_aside) == 1
    assert proxy.cuts == SET_ASIDE_AFTER_FAILURES

    clock.advance(days=1)
    with pytest.raises(BROKEN):
        await cycle(account, store, executor, clock=clock)
    assert proxy.cuts == SET_ASIDE_AFTER_FAILURES + 1
    assert [r.failures for r in (await failure_records(store, account.name)).values()] == [
        SET_ASIDE_AFTER_FAILURES + 1
    ]

    assert await request_retry(store, account.name) == 1
    proxy.reset()
    clock.advance(minutes=1)
    retried = await cycle(account, store, executor, clock=clock)

    assert (retried.set_aside, retried.new_links, retried.deleted) == ([], 1, 1)
    assert await failure_records(store, account.name) == {}
    assert dovecot.maildir_messages(mail_user.name) == []
