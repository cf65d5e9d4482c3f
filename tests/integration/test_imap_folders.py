"""Many mailboxes polled cheaply (issue 19 item 3), against Dovecot with and without the extensions.

On the session Dovecot a changed mailbox is selected with QRESYNC (expunges from VANISHED); on the
plain one with SELECT and ``UID SEARCH ALL``.

Every test runs twice: on the session Dovecot (LIST-STATUS, CONDSTORE: one ``LIST ... RETURN
(STATUS ...)`` looks at every mailbox) and on a Dovecot whose ``imap_capability`` hides LIST-STATUS,
CONDSTORE, QRESYNC and NOTIFY (pipelined STATUS, no HIGHESTMODSEQ). The fetch cycles are real
(``fetch_cycle`` with the adapter the daemon builds); the adapter's ``unchanged`` set tells which
mailboxes it left unselected.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maild.archive import sync_state
from maild.archive.store import Store
from maild.config.loader import AccountConfig, load_config
from maild.fetch.cycle import CycleResult, fetch_cycle, make_maildrop
from maild.fetch.folders import FULL_LISTING_INTERVAL
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.conftest import _dispose, _new_directory
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot

#: Dovecot 2.3's capabilities after login less LIST-STATUS, CONDSTORE, QRESYNC and NOTIFY.
PLAIN_CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS"
    " THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS"
    " LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH BINARY MOVE LITERAL+"
    " SPECIAL-USE"
)
FOLDERS = ["INBOX", "Kunden/Meier", "Kunden/Schulz", "Projekte", "Rechnungen 2026"]


@pytest.fixture(scope="module")
def plain_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this module's own that hides LIST-STATUS, CONDSTORE, QRESYNC and NOTIFY."""
    server = Dovecot(
        _new_directory(), extra_config=f"\nprotocol imap {{\n  imap_capability = {PLAIN_CAPABILITY}\n}}\n"
    )
    server.start()
    try:
        yield server
    finally:
        _dispose(server)


@pytest.fixture(params=["extensions", "plain"])
def server(request: pytest.FixtureRequest) -> Dovecot:
    """The session Dovecot (LIST-STATUS, CONDSTORE) or the plain one."""
    name = "dovecot" if request.param == "extensions" else "plain_dovecot"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def user(server: Dovecot, request: pytest.FixtureRequest) -> MailUser:
    """A new user on ``server`` with one message in each of :data:`FOLDERS`."""
    slug = request.node.name.split("[")[0][-20:].replace("_", "-")
    made = server.add_user(f"f{id(request) % 100000}-{slug}", "pw folders")
    for folder in FOLDERS:
        for n in range(2):
            server.deliver(made.name, corpus.make_message(subject=f"{folder} {n}"), mailbox=folder)
    return made


class Account:
    """An archive of the test's own and one IMAP account with ``mailboxes = "all"``."""

    def __init__(self, directory: Path, account: AccountConfig, store: Store) -> None:
        self.directory = directory
        self.account = account
        self.store = store
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.last: IMAPMailbox | None = None

    async def cycle(self, **kwargs: Any) -> CycleResult:
        drop = make_maildrop(self.account, self.executor)
        assert isinstance(drop, IMAPMailbox)
        self.last = drop
        return await fetch_cycle(self.account, self.store, drop, **kwargs)

    @property
    def unchanged(self) -> frozenset[str]:
        assert self.last is not None
        return self.last.unchanged

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()


@pytest.fixture
async def account_for() -> AsyncIterator[Callable[..., Awaitable[Account]]]:
    made: list[Account] = []

    async def make(server: Dovecot, user: MailUser, **extra: Any) -> Account:
        directory = short_dir("maild-fold-")
        spec = AccountSpec(
            "office", "imap", user.name, user.password, extra={"timeout": "10s", "mailboxes": "all", **extra}
        )
        account = load_config(write_config(directory, server, [spec])).accounts["office"]
        store = await Store.open(directory / "state" / "maild.sqlite3")
        await store.ensure_account(
            account.name, account.organisation, account.employee, "imap", datetime.now(UTC)
        )
        made.append(Account(directory, account, store))
        return made[-1]

    yield make
    for account in made:
        await account.store.close()
        account.executor.shutdown(wait=False)


async def test_unchanged_mailboxes_are_left_unselected_and_changes_are_seen(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """After a complete cycle every mailbox is skipped; a new message, an expunge and a new mailbox are seen.

    Steps: cycle (10 messages, every mailbox listed); cycle: all five unchanged, nothing new; deliver
    one message into "Projekte": only "Projekte" is listed and the message archived; expunge one of
    "Kunden/Meier": only it is listed, that message recorded as gone; create "Neu" with a message:
    it is listed and fetched, the others stay unchanged.
    """
    account = await account_for(server, user)
    first = await account.cycle()
    assert first.new_messages == 10
    assert account.unchanged == frozenset()
    assert account.last is not None
    extensions = not server.extra_config
    assert ("LIST-STATUS" in account.last.capabilities) is extensions
    assert ("CONDSTORE" in account.last.capabilities) is extensions
    assert all((s.highest_modseq is not None) is extensions for s in account.last.statuses.values())
    assert set(await sync_state.load(account.store, "office")) == set(FOLDERS)

    second = await account.cycle()
    assert second.new_messages == 0
    assert account.unchanged == set(FOLDERS)
    assert second.on_server == 10

    server.deliver(user.name, corpus.make_message(subject="neu in Projekte"), mailbox="Projekte")
    third = await account.cycle()
    assert third.new_messages == 1
    assert account.unchanged == set(FOLDERS) - {"Projekte"}

    server.doveadm("expunge", "-u", user.name, "mailbox", "Kunden/Meier", "uid", "1")
    fourth = await account.cycle()
    assert account.unchanged == set(FOLDERS) - {"Kunden/Meier"}
    assert fourth.on_server == 10
    gone = account.rows("SELECT mailbox, uid FROM locations WHERE gone_at IS NOT NULL")
    assert gone == [("Kunden/Meier", 1)]  # with QRESYNC: from VANISHED (EARLIER), no UID listing
    assert account.last is not None
    assert ("QRESYNC" in account.last.connection.enabled) is extensions

    server.deliver(user.name, corpus.make_message(subject="ganz neu"), mailbox="Neu")
    fifth = await account.cycle()
    assert fifth.new_messages == 1
    assert account.unchanged == set(FOLDERS)
    sixth = await account.cycle()
    assert (sixth.new_messages, account.unchanged) == (0, {*FOLDERS, "Neu"})


async def test_uidvalidity_change_and_deleted_mailbox_are_noticed(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """A new UIDVALIDITY makes a mailbox be listed and recovered; a deleted mailbox loses its record.

    Steps: two cycles (everything unchanged in the second); force a new UIDVALIDITY on "Projekte"
    and delete "Rechnungen 2026" on the server; cycle: "Projekte" is listed, its change reported
    and its messages relinked without a download; the deleted mailbox's messages are recorded as
    gone (it is no longer listed) and its sync record is removed; nothing is archived twice.
    """
    account = await account_for(server, user)
    await account.cycle()
    await account.cycle()
    assert account.unchanged == set(FOLDERS)
    old = (await sync_state.load(account.store, "office"))["Projekte"].uidvalidity
    server.doveadm("mailbox", "update", "-u", user.name, "--uid-validity", str(old + 1000), "Projekte")
    server.doveadm("mailbox", "delete", "-u", user.name, "Rechnungen 2026")

    result = await account.cycle()
    assert result.imap is not None
    assert [c.mailbox for c in result.imap.uidvalidity_changes] == ["Projekte"]
    assert result.new_messages == 0
    assert account.unchanged == set(FOLDERS) - {"Projekte", "Rechnungen 2026"}
    records = await sync_state.load(account.store, "office")
    assert "Rechnungen 2026" not in records
    assert records["Projekte"].uidvalidity == old + 1000
    gone = account.rows("SELECT mailbox, count(*) FROM locations WHERE gone_at IS NOT NULL GROUP BY mailbox")
    assert sorted(gone) == [("Projekte", 2), ("Rechnungen 2026", 2)]
    assert account.rows("SELECT count(*) FROM messages") == [(10,)]


async def test_message_due_for_deletion_makes_its_mailbox_listed_and_checked(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """With retention "delete-after", a mailbox whose messages are due is listed (UID check included) and expunged.

    Steps: cycle at day 0; cycle 12 hours later: all unchanged; cycle at day 31: every mailbox holds due
    messages, so none is skipped; all ten are deleted on the server (only verified keys may be).
    """
    day0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    account = await account_for(server, user, retention="delete-after", retention_days=30)
    await account.cycle(clock=lambda: day0)
    await account.cycle(clock=lambda: day0 + timedelta(hours=12))
    assert account.unchanged == set(FOLDERS)

    late = await account.cycle(clock=lambda: day0 + timedelta(days=31))
    assert account.unchanged == frozenset()
    assert late.deleted == 10
    assert all(not server.maildir_files(user.name, folder) for folder in FOLDERS)


async def test_every_mailbox_is_listed_in_full_once_a_day(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """A record older than FULL_LISTING_INTERVAL gives no hint: the mailbox is listed (and checked) again."""
    day0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    account = await account_for(server, user)
    await account.cycle(clock=lambda: day0)
    await account.cycle(clock=lambda: day0 + FULL_LISTING_INTERVAL - timedelta(minutes=1))
    assert account.unchanged == set(FOLDERS)
    await account.cycle(clock=lambda: day0 + FULL_LISTING_INTERVAL)
    assert account.unchanged == frozenset()
    await account.cycle(clock=lambda: day0 + FULL_LISTING_INTERVAL + timedelta(minutes=1))
    assert account.unchanged == set(FOLDERS)


async def test_kept_session_sees_mail_in_the_mailbox_it_left_selected(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """A kept session (the daemon's) polls by status too, and misses nothing in any mailbox.

    Steps: cycle keeping the session; take it back and cycle: every mailbox unchanged; deliver one
    message into every mailbox (one of them is still selected on the server); take the session
    back and cycle: all five new messages are archived.
    """
    account = await account_for(server, user)
    await account.cycle(keep_open=True)
    drop = account.last
    assert drop is not None
    assert drop.parked
    assert await drop.resume(max_age_s=60, probe_timeout_s=10)
    await fetch_cycle(account.account, account.store, drop, opened=True, keep_open=True)
    assert drop.unchanged == set(FOLDERS)

    for folder in FOLDERS:
        server.deliver(user.name, corpus.make_message(subject=f"später {folder}"), mailbox=folder)
    assert await drop.resume(max_age_s=60, probe_timeout_s=10)
    result = await fetch_cycle(account.account, account.store, drop, opened=True, keep_open=True)
    assert result.new_messages == len(FOLDERS)
    assert drop.unchanged == frozenset()
    await drop.abort()


async def test_notify_is_asked_for_only_where_the_server_offers_it(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """The IDLE session sets NOTIFY where offered (and something besides its mailbox is watched), and
    otherwise watches its one mailbox as before."""
    from maild.protocols.imap.idle import IMAPIdleSession

    account = await account_for(server, user)
    settings = (await account.account.resolved()).server_settings()
    session = IMAPIdleSession(settings, "INBOX", None)
    await session.open()
    try:
        await session.select_mailbox()
        assert await session.notify() is (not server.extra_config)
        assert session.notifying is (not server.extra_config)
        await session.idle_start()
        await session.idle_done()
    finally:
        await session.abort()
    only_inbox = IMAPIdleSession(settings, "INBOX", ())  # nothing else to watch: no NOTIFY
    await only_inbox.open()
    try:
        await only_inbox.select_mailbox()
        assert not await only_inbox.notify()
    finally:
        await only_inbox.abort()


async def test_mailbox_deleted_and_created_again_or_renamed_loses_nothing(
    server: Dovecot, user: MailUser, account_for: Callable[..., Awaitable[Account]]
) -> None:
    """A mailbox deleted and created again under its name with as many (other) messages, and one
    renamed with a new one created under its old name, are listed again: every message is archived
    once, nothing of the old ones is lost (QA of session 15).

    Steps: two cycles (all unchanged in the second); delete "Projekte" and create it again holding
    two new messages (same MESSAGES and UIDNEXT as recorded); rename "Kunden/Schulz" to "Alt/Schulz"
    and create "Kunden/Schulz" with two new messages; cycle: both listed, 4 new messages, the
    renamed mailbox's 2 not archived twice (same octets); a further cycle: all unchanged.
    """
    account = await account_for(server, user)
    await account.cycle()
    await account.cycle()
    assert account.unchanged == set(FOLDERS)
    server.doveadm("mailbox", "delete", "-u", user.name, "Projekte")
    server.create_mailbox(user.name, "Projekte")
    server.doveadm("mailbox", "rename", "-u", user.name, "Kunden/Schulz", "Alt/Schulz")
    server.create_mailbox(user.name, "Kunden/Schulz")
    for folder in ("Projekte", "Kunden/Schulz"):
        for n in range(2):
            server.deliver(user.name, corpus.make_message(subject=f"wieder {folder} {n}"), mailbox=folder)

    result = await account.cycle()
    assert result.new_messages == 4
    assert account.unchanged == set(FOLDERS) - {"Projekte", "Kunden/Schulz"}
    assert account.rows("SELECT count(*) FROM messages") == [(14,)]
    present = account.rows(
        "SELECT mailbox, count(*) FROM locations WHERE gone_at IS NULL GROUP BY mailbox ORDER BY mailbox"
    )
    assert ("Alt/Schulz", 2) in present and ("Projekte", 2) in present and ("Kunden/Schulz", 2) in present
    await account.cycle()
    assert account.unchanged == {*FOLDERS, "Alt/Schulz"}
