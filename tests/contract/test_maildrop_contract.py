"""The Maildrop contract: one suite, run against both adapters on a real Dovecot.

Each test takes the ``adapter`` fixture, parametrised over POP3 (:class:`POP3Maildrop`) and IMAP
(:class:`IMAPMailbox`) as uvicorn's ``http_protocol_cls`` is over its HTTP implementations; maildrops are
built by :func:`maild.fetch.cycle.make_maildrop` from an account configuration, as the scheduler builds
them. What differs between the protocols (how to see that TLS is on, the RFC response code of a refused
login) is a field of :class:`Adapter`; protocol-only behaviour stays in
``tests/integration/test_pop3_dovecot.py`` and ``test_imap_dovecot.py``.

Dovecot serves Maildir files with every bare LF as CRLF, so bytes are compared with ``crlf(file)``.
"""

from __future__ import annotations

import concurrent.futures
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from maild.errors import AuthError, ConnectError
from maild.fetch.cycle import make_maildrop
from maild.model import Protocol, RetrievedMessage, TLSMode
from maild.protocols.base import Maildrop
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import crlf, retrieve_everything

pytestmark = pytest.mark.dovecot

TLS_MODES: tuple[TLSMode, ...] = ("none", "starttls", "implicit")

OddMessages = [
    b"Subject: bare LF\n\nline one\n.\nline two\n",
    b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n\r\n.\r\nend\r\n",
    b"Subject: long line\r\n\r\n<p>" + b"x" * 10_000 + b"</p>\r\n.tail\r\n",
]
"""Messages that trip parsers: bare LFs, dot-stuffing (RFC 1939 section 3), a 10,000-octet line."""


def _pop3_uses_tls(maildrop: Any) -> bool:
    return isinstance(maildrop._session.pop.sock, ssl.SSLSocket)


def _imap_uses_tls(maildrop: Any) -> bool:
    return maildrop.tls_version is not None


@dataclass(frozen=True)
class Adapter:
    """What the contract needs to know about one adapter (white-box probes are confined here)."""

    protocol: Protocol
    uses_tls: Callable[[Maildrop], bool]
    auth_code: str
    """The response code of a refused login: ``[AUTH]`` (RFC 3206) or ``AUTHENTICATIONFAILED`` (RFC 5530)."""
    account: str
    """The account name :func:`dovecot_account` gives."""


ADAPTERS = {
    "pop3": Adapter("pop3", _pop3_uses_tls, "[AUTH]", "anna-pop"),
    "imap": Adapter("imap", _imap_uses_tls, "AUTHENTICATIONFAILED", "anna-imap"),
}

Connect = Callable[..., AbstractAsyncContextManager[Maildrop]]


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Each contract test runs once per adapter."""
    return ADAPTERS[request.param]


@pytest.fixture
def build(
    dovecot: Dovecot, mail_user: MailUser, adapter: Adapter, executor: concurrent.futures.ThreadPoolExecutor
) -> Callable[..., Maildrop]:
    """``build(tls="none", **account_overrides)``: a maildrop for ``mail_user``, not yet opened."""

    def make(tls: TLSMode = "none", **overrides: Any) -> Maildrop:
        return make_maildrop(
            dovecot_account(dovecot, mail_user, adapter.protocol, tls, **overrides), executor
        )

    return make


@pytest.fixture
def connect(build: Callable[..., Maildrop]) -> Connect:
    """``async with connect(tls) as maildrop``: opened; closed on success, aborted on an exception."""

    @asynccontextmanager
    async def session(tls: TLSMode = "none", **overrides: Any) -> AsyncIterator[Maildrop]:
        maildrop = build(tls, **overrides)
        await maildrop.open()
        try:
            yield maildrop
        except BaseException:
            await maildrop.abort()
            raise
        await maildrop.close()

    return session


def stored(dovecot: Dovecot, user: MailUser) -> list[bytes]:
    """The INBOX's messages as Dovecot serves them (CRLF), in delivery order."""
    return [crlf(raw) for raw in dovecot.maildir_messages(user.name)]


async def test_inventory_lists_every_message_with_its_size_and_stable_keys(
    dovecot: Dovecot, mail_user: MailUser, connect: Connect
) -> None:
    """The inventory has one entry per message; a second session sees the same keys; every size is known and as served.

    Steps: deliver 5 messages; take the inventory in two sessions, and sizes() in the second; compare
    the two inventories, check that no key repeats (RFC 1939 section 7; RFC 9051 section 2.3.1.1), and
    that each size (from the inventory where the protocol lists one, POP3 LIST; else from sizes(),
    IMAP RFC822.SIZE) matches the CRLF file.
    """
    dovecot.deliver_many(mail_user.name, corpus.generate(5, seed=9, size_mix=corpus.SMALL_MIX))
    seen = []
    for _session in range(2):
        async with connect() as maildrop:
            seen.append(await maildrop.inventory())
            sizes = await maildrop.sizes([e.key for e in seen[-1]])
    assert seen[0] == seen[1]
    assert len({e.key for e in seen[0]}) == 5
    known = [sizes.get(e.key) if e.size_octets is None else e.size_octets for e in seen[1]]
    assert known == [len(raw) for raw in stored(dovecot, mail_user)]


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_retrieve_is_byte_exact_in_every_tls_mode(
    dovecot: Dovecot, mail_user: MailUser, adapter: Adapter, connect: Connect, tls: TLSMode
) -> None:
    """Plaintext, STARTTLS/STLS and implicit TLS: every message comes back as the server stores it, in inventory order.

    Steps: deliver 20 corpus messages and the odd ones; open with ``tls``; check TLS is on unless
    "none"; inventory; retrieve all; compare with the stored files.
    """
    dovecot.deliver_many(
        mail_user.name, [*corpus.generate(20, seed=7, size_mix=corpus.SMALL_MIX), *OddMessages]
    )
    async with connect(tls) as maildrop:
        assert adapter.uses_tls(maildrop) == (tls != "none")
        entries = await maildrop.inventory()
        items = [item async for item in maildrop.retrieve([e.key for e in entries])]
    assert all(isinstance(item, RetrievedMessage) for item in items)
    assert [item.key for item in items] == [e.key for e in entries]
    assert [item.raw for item in items] == stored(dovecot, mail_user)  # type: ignore[union-attr]


@pytest.mark.parametrize("budget_octets", [1, 2**16, 2**40], ids=["1-octet", "64KiB", "unbounded"])
async def test_retrieve_within_a_window_budget(
    dovecot: Dovecot, mail_user: MailUser, connect: Connect, budget_octets: int
) -> None:
    """Whatever the window budget (smaller than any message, a few messages, unbounded), every message arrives intact and in order."""
    raws = [*corpus.generate(8, seed=3), *OddMessages, corpus.large_message(200_000, seed=4)]
    dovecot.deliver_many(mail_user.name, raws)
    async with connect() as maildrop:
        entries = await maildrop.inventory()
        items = [
            item
            async for item in maildrop.retrieve([e.key for e in entries], window_octets=lambda: budget_octets)
        ]
    assert [item.raw for item in items] == [crlf(raw) for raw in raws]  # type: ignore[union-attr]


async def test_delete_after_commit_removes_exactly_those_messages(
    dovecot: Dovecot, mail_user: MailUser, connect: Connect
) -> None:
    """Deleting two of four messages and closing removes exactly those two; a new session lists the other two.

    Steps: deliver 4; inventory; delete the 1st and 3rd; close; 2 files remain; a new session's
    inventory has the remaining keys.
    """
    raws = list(corpus.generate(4, seed=13, size_mix=corpus.SMALL_MIX))
    dovecot.deliver_many(mail_user.name, raws)
    async with connect() as maildrop:
        entries = await maildrop.inventory()
        await maildrop.delete([entries[0].key, entries[2].key])
    assert stored(dovecot, mail_user) == [raws[1], raws[3]]
    async with connect() as again:
        assert [e.key for e in await again.inventory()] == [entries[1].key, entries[3].key]


async def test_empty_maildrop(connect: Connect) -> None:
    """An empty maildrop has an empty inventory, and retrieving nothing yields nothing."""
    async with connect("starttls") as maildrop:
        assert await retrieve_everything(maildrop) == []


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_wrong_password_is_auth_error(
    mail_user: MailUser, adapter: Adapter, build: Callable[..., Maildrop], tls: TLSMode
) -> None:
    """A refused login is an AuthError naming the account and the RFC response code, showing neither password."""
    wrong = 'not the password \\ "'
    maildrop = build(tls, password=wrong)
    with pytest.raises(AuthError) as caught:
        await maildrop.open()
    await maildrop.abort()
    message = str(caught.value)
    assert adapter.account in message
    assert adapter.auth_code in message
    assert wrong not in message
    assert mail_user.password not in message


async def test_closed_port_is_connect_error(
    adapter: Adapter, build: Callable[..., Maildrop], free_port: int
) -> None:
    """Connecting to a port nobody listens on is a ConnectError naming the account."""
    maildrop = build("none", port=free_port)
    with pytest.raises(ConnectError, match=adapter.account):
        await maildrop.open()
    await maildrop.abort()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_untrusted_certificate_is_connect_error(build: Callable[..., Maildrop], tls: TLSMode) -> None:
    """Without the test CA (system store only) the certificate fails verification: ConnectError, no login."""
    maildrop = build(tls, ca_file=None)
    with pytest.raises(ConnectError, match="certificate"):
        await maildrop.open()
    await maildrop.abort()
