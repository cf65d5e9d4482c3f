"""IMAPMailbox against a real Dovecot 2.3: what only IMAP does (UIDs, flags, mailbox names, sizes, hang-ups).

What both adapters do (bytes, sizes, TLS modes, deletion, login and connection errors) is the
Maildrop contract in ``tests/contract/test_maildrop_contract.py``.

The session ``dovecot`` fixture serves plaintext IMAP with STARTTLS and implicit TLS; ``mail_user``
logs in with a password containing a space, a double quote and a backslash. Faults that Dovecot will
not produce on request go through :class:`tests.support.proxy.FaultProxy` in front of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest

from maild.archive.store import Store
from maild.errors import ConnectError, NetworkTimeout, ProtocolError
from maild.model import IMAPKey, ServerSettings, TLSMode
from maild.protocols.imap import client as imap_client
from maild.protocols.imap import scan as imap_scan
from maild.protocols.imap import stream as imap_stream
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import archived, crlf, cycle, prepare, retrieve_everything
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot


def imap_settings(
    dovecot: Dovecot, user: MailUser, tls: TLSMode = "implicit", **overrides: Any
) -> ServerSettings:
    """Settings for ``user`` on ``dovecot`` (port chosen by TLS mode; ``overrides`` as for dovecot_account)."""
    return dovecot_account(dovecot, user, "imap", tls, **overrides).server_settings()


async def test_uids_uidvalidity_and_internaldate(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Dovecot offers IMAP4rev1 and UIDPLUS; keys are UIDs 1 to N under one UIDVALIDITY; INTERNALDATE is UTC.

    The Maildrop contract (tests/contract/) covers the bytes, sizes and TLS modes of both adapters.
    """
    dovecot.deliver_many(mail_user.name, corpus.generate(6, seed=11, size_mix=corpus.SMALL_MIX))
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user))
    await mailbox.open()
    try:
        assert {"IMAP4REV1", "UIDPLUS"} <= mailbox.capabilities
        entries = await mailbox.inventory()
        items = [item async for item in mailbox.retrieve([e.key for e in entries])]
    finally:
        await mailbox.close()
    assert [e.key.uid for e in entries] == list(range(1, 7))  # type: ignore[union-attr]
    assert len({e.key.uidvalidity for e in entries}) == 1  # type: ignore[union-attr]
    assert all(item.internaldate is not None and item.internaldate.tzinfo is UTC for item in items)  # type: ignore[union-attr]


async def test_retrieve_leaves_seen_untouched(dovecot: Dovecot, mail_user: MailUser) -> None:
    """BODY.PEEK[]: unread messages stay unread after retrieval; flags come back as the server holds them."""
    dovecot.deliver(mail_user.name, corpus.make_message(subject="unread"))
    dovecot.deliver(mail_user.name, corpus.make_message(subject="read"), flags="S")
    dovecot.deliver(mail_user.name, corpus.make_message(subject="flagged"), flags="F")
    for _round in range(2):
        mailbox = IMAPMailbox(imap_settings(dovecot, mail_user))
        await mailbox.open()
        items = await retrieve_everything(mailbox)
        await mailbox.close()
        assert [item.flags for item in items] == [  # type: ignore[union-attr]
            frozenset(),
            frozenset({"\\Seen"}),
            frozenset({"\\Flagged"}),
        ]
    names = sorted(path.name for path in dovecot.maildir_files(mail_user.name))
    assert sum(1 for name in names if re.search(r":2,[A-Z]*S", name)) == 1


async def test_unicode_space_and_quote_mailbox_names(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Mailboxes "Entwürfe 2026" and 'Chef "privat"' are selected correctly and keep readable names."""
    draft = corpus.make_message(subject="Entwurf")
    private = corpus.make_message(subject="Privat")
    dovecot.deliver(mail_user.name, draft, mailbox="Entwürfe 2026")
    dovecot.deliver(mail_user.name, private, mailbox='Chef "privat"')
    dovecot.create_mailbox(mail_user.name, "Sent")  # 'Sent Items' must not select this
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user), ["INBOX", "Entwürfe 2026", 'Chef "privat"'])
    await mailbox.open()
    items = await retrieve_everything(mailbox)
    await mailbox.close()
    assert [(item.key.mailbox, item.raw) for item in items] == [  # type: ignore[union-attr]
        ("Entwürfe 2026", draft),
        ('Chef "privat"', private),
    ]


async def test_non_ascii_password(dovecot: Dovecot, mail_user_factory: Callable[..., MailUser]) -> None:
    """A password with spaces, quotes, backslashes and umlauts logs in (sent as UTF-8 in a quoted string)."""
    user = mail_user_factory(password='Grüße an "alle" \\o/ ')
    mailbox = IMAPMailbox(imap_settings(dovecot, user, "starttls"))
    await mailbox.open()
    assert await mailbox.inventory() == []
    await mailbox.close()


async def test_host_name_is_verified(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Connecting by the name in the certificate works too (``localhost``)."""
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "implicit", host="localhost"))
    await mailbox.open()
    await mailbox.close()


async def test_missing_mailbox_is_reported_not_created(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A configured mailbox that does not exist is reported (and not created); INBOX is still inventoried."""
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user), ["INBOX", "Sent Items"])
    await mailbox.open()
    assert await mailbox.inventory() == []
    assert list(mailbox.mailbox_states) == ["INBOX"]
    assert "Sent Items" in mailbox.mailbox_failures["Sent Items"]
    await mailbox.close()
    only_missing = IMAPMailbox(imap_settings(dovecot, mail_user), ["Sent Items"])
    await only_missing.open()
    with pytest.raises(ProtocolError, match="Sent Items"):
        await only_missing.inventory()
    await only_missing.close()
    assert not dovecot.maildir_path(mail_user.name, "Sent Items").exists()
    assert not dovecot.maildir_path(mail_user.name, "Sent").exists()


async def test_delete_expunges_only_the_given_uids(dovecot: Dovecot, mail_user: MailUser) -> None:
    """UID STORE + UID EXPUNGE remove exactly the given messages; another client's \\Deleted one stays."""
    raws = [corpus.make_message(subject=f"Nr. {n}") for n in range(5)]
    dovecot.deliver_many(mail_user.name, raws)
    dovecot.deliver(mail_user.name, corpus.make_message(subject="marked elsewhere"), flags="T")
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user))
    await mailbox.open()
    entries = await mailbox.inventory()
    await mailbox.delete([entries[1].key, entries[3].key])
    remaining = await mailbox.inventory()
    await mailbox.close()
    assert [e.key.uid for e in remaining] == [1, 3, 5, 6]  # type: ignore[union-attr]
    assert len(dovecot.maildir_files(mail_user.name)) == 4


async def test_sizes_pass_then_retrieve_without_size_round_trips(
    dovecot: Dovecot, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sizes() reports RFC822.SIZE of every key (and leaves out an unknown UID); retrieve() afterwards
    sends no size pass and no batch FETCH (streaming needs none) and still yields every message
    byte-exact."""
    raws = [corpus.make_message(subject=f"Nr. {n}") for n in range(5)]
    dovecot.deliver_many(mail_user.name, raws)
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "none"))
    await mailbox.open()
    keys = [entry.key for entry in await mailbox.inventory()]
    ghost = IMAPKey("INBOX", keys[0].uidvalidity, 999)  # type: ignore[union-attr]
    sizes = await mailbox.sizes([*keys, ghost])
    fetched: list[str] = []
    real_uid_fetch = imap_scan.uid_fetch

    async def spy(connection: object, uids: object, items: str, require: object) -> object:
        fetched.append(items)
        return await real_uid_fetch(connection, uids, items, require)  # type: ignore[arg-type]

    monkeypatch.setattr(imap_scan, "uid_fetch", spy)
    items = [item async for item in mailbox.retrieve(keys)]
    await mailbox.close()
    assert sizes == {key: len(crlf(raw)) for key, raw in zip(keys, raws, strict=True)}
    assert fetched == []
    assert [item.raw for item in items] == [crlf(raw) for raw in raws]  # type: ignore[union-attr]


async def test_streaming_fetch_of_1200_messages_is_one_command_byte_exact_and_archived(
    dovecot: Dovecot,
    mail_user: MailUser,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """1,200 messages of mixed sizes over implicit TLS come in one streaming UID FETCH, byte-exact and in
    UID order, with a small window forcing reading to pause; fetch_cycle then archives every one.

    Steps: deliver 1,200 messages (every 100th one 300,000 octets, the rest small); retrieve everything
    with a 256 KiB window, recording each StreamingFetch's sequence set; compare; run one fetch cycle
    into a fresh archive and compare the archive with what was delivered.
    """
    raws = [
        corpus.large_message(300_000, seed=n) if n % 100 == 7 else corpus.make_message(subject=f"Nr. {n}")
        for n in range(1200)
    ]
    dovecot.deliver_many(mail_user.name, raws)
    sets: list[str] = []
    streams: list[imap_stream.RetrievalStream] = []

    class Recording(imap_client.StreamingFetch):
        def __init__(self, protocol: object, message_set: str, items: str, sink: Any, **kwargs: Any) -> None:
            sets.append(message_set)
            streams.append(sink.__self__)
            super().__init__(protocol, message_set, items, sink, **kwargs)

    monkeypatch.setattr(imap_client, "StreamingFetch", Recording)
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "implicit"))
    await mailbox.open()
    entries = await mailbox.inventory()
    items = [item async for item in mailbox.retrieve([e.key for e in entries], window_octets=lambda: 2**18)]
    await mailbox.close()
    assert sets == ["1:1200"]
    assert [item.key.uid for item in items] == list(range(1, 1201))  # type: ignore[union-attr]
    assert [item.raw for item in items] == [crlf(raw) for raw in raws]  # type: ignore[union-attr]
    assert streams[0].pauses > 0
    assert streams[0].peak_held_octets < 2**18 + 2 * 310_000 + 256 * 2**10

    account = dovecot_account(dovecot, mail_user, "imap", "implicit")
    await prepare(store, account)
    result = await cycle(account, store, executor)
    assert result.new_messages == 1200
    assert result.failures == []
    assert sorted(await archived(store)) == sorted(crlf(raw) for raw in raws)


async def test_two_thousand_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A 2,000-message mailbox: inventory and retrieval complete without RecursionError.

    Steps: deliver 2,000 small messages; inventory; retrieve all (one streaming FETCH); every message
    arrives and equals what was delivered.
    """
    raws = [b"Subject: %d\r\nMessage-ID: <%d@bulk>\r\n\r\nBody %d\r\n" % (n, n, n) for n in range(2000)]
    dovecot.deliver_many(mail_user.name, raws)
    mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "none"))
    await mailbox.open()
    items = await retrieve_everything(mailbox)
    await mailbox.close()
    assert len(items) == 2000
    assert [item.raw for item in items] == raws  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", ["command sent", "mid-literal"])
async def test_connection_lost_mid_fetch_fails_promptly(
    dovecot: Dovecot, mail_user: MailUser, cut: str
) -> None:
    """A connection cut during UID FETCH raises ConnectError at once instead of hanging (timeout 60 s).

    Steps: proxy in front of Dovecot; open and inventory; arm the cut (right after the FETCH command
    reaches the server, or 100,000 octets into the body data); retrieve; expect ConnectError within
    seconds; the session is discarded.
    """
    dovecot.deliver_many(mail_user.name, [corpus.large_message(300_000, seed=n) for n in range(3)])
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:
        mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "none", port=proxy.port, timeout_s=60))
        await mailbox.open()
        entries = await mailbox.inventory()
        if cut == "command sent":
            proxy.cut_when(b"BODY.PEEK[]", "up", after=True)
        else:
            proxy.cut_when(b"BODY[] {", "down", after=True)
        started = time.monotonic()
        with pytest.raises(ConnectError, match="connection lost"):
            async for _item in mailbox.retrieve([e.key for e in entries]):
                pass
        assert time.monotonic() - started < 5
        await mailbox.abort()


async def test_stalled_server_times_out(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A server that goes silent mid-session gives NetworkTimeout after timeout_s, not a hang."""
    dovecot.deliver(mail_user.name, corpus.make_message())
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:
        mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "none", port=proxy.port, timeout_s=1.0))
        await mailbox.open()
        entries = await mailbox.inventory()  # its SELECT and UID SEARCH went out with the sign-in
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(NetworkTimeout):
            async for _item in mailbox.retrieve([e.key for e in entries]):
                pass
        assert 0.9 < time.monotonic() - started < 4
        await mailbox.abort()
        proxy.reset()


async def test_cancellation_discards_session_and_leaves_server_usable(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Cancelling a retrieval mid-way discards that session; a new session retrieves everything."""
    raws = [corpus.large_message(200_000, seed=n) for n in range(5)]
    dovecot.deliver_many(mail_user.name, raws)
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:
        mailbox = IMAPMailbox(imap_settings(dovecot, mail_user, "none", port=proxy.port))
        await mailbox.open()
        entries = await mailbox.inventory()
        proxy.trickle(50_000)

        async def consume() -> None:
            async for _item in mailbox.retrieve([e.key for e in entries]):
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await mailbox.abort()
        proxy.reset()
    fresh = IMAPMailbox(imap_settings(dovecot, mail_user))
    await fresh.open()
    items = await retrieve_everything(fresh)
    await fresh.close()
    assert [item.raw for item in items] == raws  # type: ignore[union-attr]
    assert all(isinstance(key, IMAPKey) for key in (e.key for e in entries))
