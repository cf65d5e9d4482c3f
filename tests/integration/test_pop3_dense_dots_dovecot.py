"""Against Dovecot: messages dense with dots (session 11's dense-dot windows of the POP3 line-dot
search) are archived exactly as the server stores them, SHA-256 for SHA-256, whatever the density,
wherever the stuffed lines fall against the windows of 1, 2 and 4 KiB, in bodies kept in memory,
handed out as the receive buffer, with more stuffed lines than remembered, and spooled.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import random

import pytest

from maild.archive.store import Store
from maild.protocols.pop3.decoder import (
    DENSE_DOTS_MISSES,
    DENSE_DOTS_OCTETS,
    DENSE_DOTS_WINDOW_OCTETS,
    MAX_STUFFED_LINES,
    TAKE_BUFFER_OCTETS,
)
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import archived, cycle, prepare, with_retention

pytestmark = pytest.mark.dovecot

_HEAD = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: dots %d\r\nMessage-ID: <dots-%d@x.example>\r\n\r\n"


def _dense(n: int, stuffed_at: int) -> bytes:
    """A message whose body starts with dots dense enough for the fallback (more than
    DENSE_DOTS_MISSES within DENSE_DOTS_OCTETS each) and has a line starting with "." whose line
    break begins ``stuffed_at`` octets into the body, then more dense text and dotted lines."""
    head = _HEAD % (n, n)
    filler = b"a." * (DENSE_DOTS_MISSES + 1) * (DENSE_DOTS_OCTETS // 4 + 1)
    body = (filler + b"x" * stuffed_at)[: max(0, stuffed_at - 2)]
    body = body.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n.stuffed." + b"b." * 700 + b"\r\n..\r\n"
    return head + body + b"end.\r\n"


def _messages() -> list[bytes]:
    rng = random.Random(1211)
    raws = []
    n = 0
    # the first window ends about DENSE_DOTS_WINDOW_OCTETS past the fallback, which comes after the
    # status line and 17 dots: every offset around it; the later, doubled windows at a few offsets
    offsets = [*range(DENSE_DOTS_WINDOW_OCTETS - 64, DENSE_DOTS_WINDOW_OCTETS + 128)]
    offsets += [
        edge + delta
        for edge in (3 * DENSE_DOTS_WINDOW_OCTETS, 7 * DENSE_DOTS_WINDOW_OCTETS)
        for delta in range(-8, 9)
    ]
    for stuffed_at in offsets:
        raws.append(_dense(n, stuffed_at))
        n += 1
    lines = [
        rng.choice([b".", b"..", b"a.b.c", b".x.y.z", b"...", b"q"]) * rng.randrange(1, 40)
        for _ in range(20_000)
    ]
    many = b"\r\n".join(lines) + b"\r\n"
    assert many.count(b"\r\n.") > MAX_STUFFED_LINES
    raws.append(_HEAD % (n, n) + many)  # more stuffed lines than remembered
    n += 1
    big = b"\r\n".join(lines * (TAKE_BUFFER_OCTETS // len(many) + 2)) + b"\r\n"
    raws.append(_HEAD % (n, n) + big)  # at least TAKE_BUFFER_OCTETS: handed out whole, or spooled
    n += 1
    raws.append(_HEAD % (n, n) + b"." * 5000 + b"\r\n" + b"\r\n.".join([b"."] * 3000) + b"\r\n")
    return raws


async def test_dot_dense_messages_are_archived_as_served(
    dovecot: Dovecot, mail_user: MailUser, executor: concurrent.futures.ThreadPoolExecutor, store: Store
) -> None:
    """Every message is archived with the SHA-256 of what Dovecot stores, and deleted only after."""
    raws = _messages()
    dovecot.deliver_many(mail_user.name, raws)
    account = await prepare(store, with_retention(dovecot_account(dovecot, mail_user, "pop3"), "delete"))
    result = await cycle(account, store, executor)
    assert result.failures == []
    digests = sorted(hashlib.sha256(raw).hexdigest() for raw in await archived(store))
    assert digests == sorted(hashlib.sha256(raw).hexdigest() for raw in raws)
    assert result.deleted == len(raws)
