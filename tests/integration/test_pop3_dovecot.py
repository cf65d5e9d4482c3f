"""POP3Maildrop against a real Dovecot 2.3: TLS modes, byte-exact bodies, pipelining, deletion, errors.

The session ``dovecot`` fixture serves POP3 with STLS and POP3S; ``mail_user`` logs in with a password
containing a space, a double quote and a backslash. Dovecot serves Maildir files with bare LF turned
into CRLF, so bytes are compared with the CRLF-normalised files.
"""

from __future__ import annotations

import concurrent.futures
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from maild.errors import AuthError, ConnectError
from maild.model import POP3Key, RetrievedMessage, Secret, ServerSettings, TLSMode
from maild.protocols.pop3.maildrop import POP3Maildrop
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import crlf, retrieve_everything

pytestmark = pytest.mark.dovecot

ACCOUNT = "anna-pop"
UIDL_RE = re.compile(r"([0-9a-f]{8})([0-9a-f]{8})\Z")  # pop3_uidl_format = %08Xu%08Xv (lower-case hex)


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that counts submitted jobs (one per POP3 step or window)."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="pop3-it")
        self.jobs = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def executor() -> Iterator[CountingExecutor]:
    """maild's POP3 pool for one test."""
    pool = CountingExecutor()
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def pop3_settings(
    dovecot: Dovecot,
    user: MailUser,
    tls: TLSMode = "implicit",
    *,
    port: int | None = None,
    password: str | None = None,
    ca_file: str | None = "dovecot",
    timeout_s: float = 10.0,
) -> ServerSettings:
    """Settings for ``user`` on ``dovecot`` (port chosen by TLS mode unless given)."""
    if port is None:
        port = dovecot.ports.pop3s if tls == "implicit" else dovecot.ports.pop3
    return ServerSettings(
        account=ACCOUNT,
        host=dovecot.host,
        port=port,
        tls=tls,
        ca_file=str(dovecot.ca_file) if ca_file == "dovecot" else ca_file,
        username=user.name,
        password=Secret(user.password if password is None else password),
        timeout_s=timeout_s,
    )


def uses_tls(maildrop: POP3Maildrop) -> bool:
    """Whether the session's socket is a TLS socket (white-box: reads the adapter's poplib object)."""
    return isinstance(maildrop._session.pop.sock, ssl.SSLSocket)  # type: ignore[union-attr]


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
async def test_byte_exact_in_every_tls_mode(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor, tls: TLSMode
) -> None:
    """Plaintext, STLS and implicit TLS: inventory and retrieve return the Maildir files' bytes.

    Steps: deliver 20 corpus messages and one with bare LFs; open; inventory (UIDLs in delivery order,
    sizes as LIST says); retrieve all; compare with the stored files (CRLF-normalised); check TLS.
    """
    raws = [*corpus.generate(20, seed=7, size_mix=corpus.SMALL_MIX), b"Subject: bare LF\n\none\n.\ntwo\n"]
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, tls), executor)
    await maildrop.open()
    try:
        assert uses_tls(maildrop) == (tls != "none")
        assert "PIPELINING" in maildrop.capabilities
        entries = await maildrop.inventory()
        got = [item async for item in maildrop.retrieve([e.key for e in entries])]
        await maildrop.close()
    finally:
        await maildrop.abort()
    files = [crlf(raw) for raw in dovecot.maildir_messages(mail_user.name)]
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == files
    assert [e.size_octets for e in entries] == [len(f) for f in files]
    uids = []
    for entry in entries:
        assert isinstance(entry.key, POP3Key)
        match = UIDL_RE.match(entry.key.uidl)
        assert match is not None
        uids.append(int(match[1], 16))
    assert uids == list(range(1, len(raws) + 1))


@pytest.mark.parametrize(
    ("window", "window_octets", "retr_jobs"), [(50, 16 * 2**20, 1), (1, 16 * 2**20, 12), (5, 2**40, 3)]
)
async def test_pipelined_and_unpipelined_paths(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: CountingExecutor,
    window: int,
    window_octets: int,
    retr_jobs: int,
) -> None:
    """A window of 50 retrieves 12 messages in one job, a window of 1 in twelve, a window of 5 in three;
    all byte-exact, including dot-stuffed lines and a 10,000-octet line."""
    raws = list(corpus.generate(10, seed=3))
    raws.append(b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n\r\n.\r\nend\r\n")
    raws.append(b"Subject: long line\r\n\r\n" + b"<p>" + b"x" * 10_000 + b"</p>\r\n.tail\r\n")
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(
        pop3_settings(dovecot, mail_user), executor, window=window, window_octets=window_octets
    )
    await maildrop.open()
    try:
        entries = await maildrop.inventory()
        before = executor.jobs
        got = [item async for item in maildrop.retrieve([e.key for e in entries])]
        assert executor.jobs - before == retr_jobs
        await maildrop.close()
    finally:
        await maildrop.abort()
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == raws


async def test_windows_split_by_octets(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor
) -> None:
    """window_octets below one message's size gives one RETR per window; each still arrives intact."""
    raws = list(corpus.generate(4, seed=5, size_mix=corpus.SMALL_MIX))
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor, window_octets=1)
    await maildrop.open()
    try:
        entries = await maildrop.inventory()
        before = executor.jobs
        got = [item async for item in maildrop.retrieve([e.key for e in entries])]
        assert executor.jobs - before == 4
        await maildrop.close()
    finally:
        await maildrop.abort()
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == raws


async def test_large_message(dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor) -> None:
    """A 25 MB message arrives byte-exact between two small ones in one pipelined window."""
    big = corpus.large_message(25_000_000, seed=1)
    raws = [corpus.make_message(subject="vorher"), big, corpus.make_message(subject="nachher")]
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await maildrop.open()
    try:
        got = await retrieve_everything(maildrop)
        await maildrop.close()
    finally:
        await maildrop.abort()
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == raws


async def test_empty_maildrop(dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor) -> None:
    """An empty maildrop has an empty inventory and retrieving nothing yields nothing."""
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, "starttls"), executor)
    await maildrop.open()
    try:
        assert await retrieve_everything(maildrop) == []
        await maildrop.close()
    finally:
        await maildrop.abort()


async def test_uidls_stable_across_sessions(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor
) -> None:
    """Two sessions see the same UIDLs for the same messages (RFC 1939 section 7)."""
    dovecot.deliver_many(mail_user.name, corpus.generate(5, seed=9, size_mix=corpus.SMALL_MIX))
    seen = []
    for _ in range(2):
        maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
        await maildrop.open()
        try:
            seen.append(await maildrop.inventory())
            await maildrop.close()
        finally:
            await maildrop.abort()
    assert seen[0] == seen[1]
    assert len(seen[0]) == 5


async def test_delete_then_close_removes(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor
) -> None:
    """DELE of two messages and +OK to QUIT removes exactly those two from the Maildir.

    Steps: deliver 4; open; inventory; delete the 1st and 3rd; close; 2 files remain; a new session
    lists the remaining two UIDLs.
    """
    raws = list(corpus.generate(4, seed=13, size_mix=corpus.SMALL_MIX))
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await maildrop.open()
    try:
        entries = await maildrop.inventory()
        await maildrop.delete([entries[0].key, entries[2].key])
        await maildrop.close()
    finally:
        await maildrop.abort()
    assert [crlf(m) for m in dovecot.maildir_messages(mail_user.name)] == [raws[1], raws[3]]
    again = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await again.open()
    try:
        assert [e.key for e in await again.inventory()] == [entries[1].key, entries[3].key]
    finally:
        await again.abort()


async def test_delete_then_abort_removes_nothing(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor
) -> None:
    """DELE of every message followed by abort() (RSET, QUIT) leaves the maildrop untouched."""
    raws = list(corpus.generate(3, seed=17, size_mix=corpus.SMALL_MIX))
    dovecot.deliver_many(mail_user.name, raws)
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await maildrop.open()
    entries = await maildrop.inventory()
    await maildrop.delete([e.key for e in entries])
    await maildrop.abort()
    assert [crlf(m) for m in dovecot.maildir_messages(mail_user.name)] == raws
    again = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await again.open()
    try:
        assert await again.inventory() == entries
    finally:
        await again.abort()


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
async def test_wrong_password(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor, tls: TLSMode
) -> None:
    """A wrong password is an AuthError naming the account and not showing either password."""
    wrong = 'not the password \\ "'
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, tls, password=wrong), executor)
    with pytest.raises(AuthError) as info:
        await maildrop.open()
    await maildrop.abort()
    assert ACCOUNT in str(info.value)
    assert wrong not in str(info.value)
    assert mail_user.password not in str(info.value)


async def test_closed_port(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor, free_port: int
) -> None:
    """Connecting to a port nobody listens on is a ConnectError naming the account."""
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, "none", port=free_port), executor)
    with pytest.raises(ConnectError, match=ACCOUNT):
        await maildrop.open()
    await maildrop.abort()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_untrusted_certificate(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor, tls: TLSMode
) -> None:
    """Without the test CA (system store only) the certificate is not trusted: ConnectError, no login."""
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, tls, ca_file=None), executor)
    with pytest.raises(ConnectError, match="TLS"):
        await maildrop.open()
    await maildrop.abort()
