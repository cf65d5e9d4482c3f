"""POP3Maildrop against a real Dovecot 2.3: what only POP3 does (UIDL format, pipelined windows, RSET on abort).

What both adapters do (bytes, sizes, TLS modes, deletion, login and connection errors) is the
Maildrop contract in ``tests/contract/test_maildrop_contract.py``.

The session ``dovecot`` fixture serves POP3 with STLS and POP3S; ``mail_user`` logs in with a password
containing a space, a double quote and a backslash. Dovecot serves Maildir files with bare LF turned
into CRLF, so bytes are compared with the CRLF-normalised files.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from maild.model import POP3Key, RetrievedMessage, ServerSettings, TLSMode
from maild.protocols.pop3.maildrop import POP3Maildrop
from tests.support import corpus
from tests.support.accounts import dovecot_account
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
    dovecot: Dovecot, user: MailUser, tls: TLSMode = "implicit", **overrides: Any
) -> ServerSettings:
    """Settings for ``user`` on ``dovecot`` (port chosen by TLS mode; ``overrides`` as for dovecot_account)."""
    return dovecot_account(dovecot, user, "pop3", tls, **overrides).server_settings()


async def test_uidls_follow_delivery_order_and_pipelining_is_offered(
    dovecot: Dovecot, mail_user: MailUser, executor: CountingExecutor
) -> None:
    """Dovecot offers PIPELINING and lists UIDLs as %08Xu%08Xv, UIDs in delivery order (RFC 1939 section 7).

    The Maildrop contract (tests/contract/) covers the bytes, sizes and TLS modes of both adapters.
    """
    dovecot.deliver_many(mail_user.name, corpus.generate(5, seed=7, size_mix=corpus.SMALL_MIX))
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user), executor)
    await maildrop.open()
    try:
        assert "PIPELINING" in maildrop.capabilities
        entries = await maildrop.inventory()
        await maildrop.close()
    finally:
        await maildrop.abort()
    uids = []
    for entry in entries:
        assert isinstance(entry.key, POP3Key)
        match = UIDL_RE.match(entry.key.uidl)
        assert match is not None
        uids.append(int(match[1], 16))
    assert uids == list(range(1, 6))


@pytest.mark.parametrize(
    ("window", "window_octets", "retr_jobs"),
    [(50, 16 * 2**20, 1), (1, 16 * 2**20, 12), (5, 2**40, 3), (50, 1, 12)],
)
async def test_pipelined_and_unpipelined_paths(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: CountingExecutor,
    window: int,
    window_octets: int,
    retr_jobs: int,
) -> None:
    """A window of 50 retrieves 12 messages in one job, a window of 1 in twelve, a window of 5 in three,
    and window_octets below one message's size one RETR per job; all byte-exact, including dot-stuffed
    lines and a 10,000-octet line."""
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


@pytest.mark.parametrize(("tls", "builds_context"), [("none", False), ("starttls", True), ("implicit", True)])
async def test_tls_context_is_built_only_for_sessions_that_use_tls(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: CountingExecutor,
    monkeypatch: pytest.MonkeyPatch,
    tls: TLSMode,
    builds_context: bool,
) -> None:
    """A plaintext session never loads the CA store (35-55 ms of CPU per one-shot); STLS and POP3S do."""
    from maild.protocols.pop3 import session
    from maild.protocols.tls import client_context

    built: list[str | None] = []

    def counting(ca_file: str | None) -> Any:
        built.append(ca_file)
        return client_context(ca_file)

    monkeypatch.setattr(session, "client_context", counting)
    dovecot.deliver_many(mail_user.name, corpus.generate(2, seed=11, size_mix=corpus.SMALL_MIX))
    maildrop = POP3Maildrop(pop3_settings(dovecot, mail_user, tls), executor)
    await maildrop.open()
    try:
        assert len(await maildrop.inventory()) == 2
        await maildrop.close()
    finally:
        await maildrop.abort()
    assert bool(built) is builds_context
