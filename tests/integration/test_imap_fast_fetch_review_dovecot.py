"""Session 11's review of the IMAP FETCH fast path against the real Dovecot 2.3: bodies at every size
edge the framing has (0 and 1 octet, the direct-read and spool thresholds and one octet either side),
bodies that look like protocol text, 8-bit and NUL octets, keyword flags; fetched by a real cycle into
the real archive, each archived message must be what the server serves, octet for octet (SHA-256),
with every body response taken by the fast path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import imaplib
from collections.abc import Iterator
from typing import Any

import pytest

from maild.archive.store import Store
from maild.protocols.imap import protocol as imap_protocol
from maild.protocols.imap import reading as imap_reading
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser, own_dovecot
from tests.support.fetching import archived, crlf, cycle, fast_path_heads, prepare

_FAKE_RESPONSES = (
    b'\r\n* 3 FETCH (UID 3 FLAGS () INTERNALDATE "07-Dec-2026 10:00:00 +0000" BODY[] {5}\r\nhello)\r\n'
    b")\r\nA1 OK done\r\n* BYE\r\n{12}\r\n"
)


@pytest.fixture(scope="module")
def compress_dovecot(dovecot: Dovecot) -> Iterator[Dovecot]:
    """A Dovecot offering COMPRESS=DEFLATE (``imap_zlib``); ``dovecot`` first, for its skip rules."""
    with own_dovecot("maild-zlib-", imap_compress=True) as server:
        yield server


def _sized(octets: int, fill: bytes = b"abcdefghij" * 7 + b"\r\n") -> bytes:
    """A message of exactly ``octets`` octets (a header, a blank line, then ``fill`` repeated), or
    its first octets when it is too small for a header."""
    head = b"Subject: %d octets\r\n\r\n" % octets
    body = fill * (octets // len(fill) + 1)
    return (head + body)[:octets]


def _served(dovecot: Dovecot, user: MailUser) -> dict[int, bytes]:
    """Every message of INBOX by UID, as Dovecot serves BODY.PEEK[] to another client (stdlib imaplib)."""
    client = imaplib.IMAP4(dovecot.host, dovecot.ports.imap)
    try:
        client.login(user.name, user.password)
        client.select("INBOX", readonly=True)
        _, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        served: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].split(b"UID ")[1].split()[0])
                served[uid] = item[1]
        return served
    finally:
        client.logout()


def _add_keywords(dovecot: Dovecot, user: MailUser, uids: str, keywords: str) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.ports.imap)
    try:
        client.login(user.name, user.password)
        client.select("INBOX")
        client.uid("STORE", uids, "+FLAGS", keywords)
    finally:
        client.logout()


@pytest.mark.dovecot
@pytest.mark.parametrize("compress", ["never", "always"])
async def test_every_size_edge_is_archived_as_the_server_serves_it(
    compress: str,
    request: pytest.FixtureRequest,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Steps: deliver messages of 0, 1, 2 octets, DIRECT_LITERAL_OCTETS and the spool threshold each
    -1/0/+1, bodies of fake responses, of every octet value (NUL included) and 8-bit text; add keyword
    flags to some; run one cycle into the archive; the archive holds exactly the octets another
    client reads from Dovecot for each UID (SHA-256 compared, nothing missing or twice), and the fast
    path took every body response. Uncompressed, and with COMPRESS=DEFLATE (RFC 4978: the fast path
    then frames inflated pieces, never read straight into a literal's buffer)."""
    dovecot: Dovecot = request.getfixturevalue("compress_dovecot" if compress == "always" else "dovecot")
    mail_user = dovecot.add_user(f"edges-{compress}")
    direct = imap_reading.DIRECT_LITERAL_OCTETS
    spool = store.spool.threshold_octets
    messages = [_sized(n) for n in (0, 1, 2, direct - 1, direct, direct + 1, spool - 1, spool, spool + 1)]
    messages += [
        b"Subject: fake responses\r\n\r\n" + _FAKE_RESPONSES * 3,
        b"Subject: octets\r\n\r\n" + bytes(range(256)) * 4 + b"\r\n",
        b"Subject: 8bit\r\n\r\n" + "Grüße, Ærø, 東京\r\n".encode() * 50,
        _sized(spool + 1, fill=_FAKE_RESPONSES),
    ]
    for raw in messages:
        dovecot.deliver(mail_user.name, raw)
    _add_keywords(dovecot, mail_user, "2:5", "($Label1 $Forwarded Junk a.b c+d -x _y \\Flagged)")
    served = await asyncio.to_thread(_served, dovecot, mail_user)
    assert len(served) == len(messages)
    for raw, (uid, octets) in zip(messages, sorted(served.items()), strict=True):
        if b"\0" not in raw:  # the reference is not bogus: Dovecot serves what was delivered
            assert octets == crlf(raw), uid

    taken = fast_path_heads(monkeypatch)
    inflated: list[int] = []
    inflate = imap_protocol._FastProtocol._inflate

    def counting(self: Any, data: bytes) -> None:
        inflated.append(len(data))
        inflate(self, data)

    monkeypatch.setattr(imap_protocol._FastProtocol, "_inflate", counting)
    account = dovecot_account(dovecot, mail_user, "imap", "none", compress=compress)
    await prepare(store, account)
    result = await cycle(account, store, executor)
    assert result.failures == []
    assert result.new_messages == len(messages)
    assert len(taken) == len(messages)
    assert (sum(inflated) > 0) == (compress == "always")
    digests = sorted(hashlib.sha256(raw).hexdigest() for raw in await archived(store))
    assert digests == sorted(hashlib.sha256(octets).hexdigest() for octets in served.values())
