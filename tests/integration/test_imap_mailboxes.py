"""Several mailboxes, UIDVALIDITY changes, expunges, IMAP retention and a 25 MB message, against Dovecot.

Each test runs fetch cycles directly (``fetch_cycle`` with the adapter ``make_maildrop`` builds) on an
archive of its own, with the account read from a real configuration file.
"""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from maild.archive.store import Store
from maild.config.loader import AccountConfig, load_config
from maild.fetch.cycle import CycleResult, fetch_cycle, make_maildrop
from maild.model import MessageKey, RetrievalFailure, RetrievedMessage
from maild.protocols.base import Maildrop
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot


class RecordingMailbox(IMAPMailbox):
    """IMAPMailbox that remembers which keys it was asked to retrieve (bodies downloaded)."""

    retrieved: list[MessageKey]

    async def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        self.retrieved = getattr(self, "retrieved", []) + list(keys)
        async for item in super().retrieve(keys, window_octets=window_octets):
            yield item


class Archive:
    """An archive of the test's own plus one IMAP account on a Dovecot user."""

    def __init__(self, directory: Path, account: AccountConfig, store: Store) -> None:
        self.directory = directory
        self.account = account
        self.store = store
        self.executor = ThreadPoolExecutor(max_workers=1)

    async def cycle(self, maildrop: Maildrop | None = None, **kwargs: Any) -> CycleResult:
        """One fetch cycle through ``maildrop`` (default: what the daemon would build)."""
        drop = maildrop or make_maildrop(self.account, self.executor)
        return await fetch_cycle(self.account, self.store, drop, **kwargs)

    def recording(self) -> RecordingMailbox:
        acc = self.account
        return RecordingMailbox(
            acc.server_settings(), acc.mailboxes, list_all=acc.all_mailboxes, exclude=acc.exclude
        )

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
            return db.execute(sql, params).fetchall()

    def message_count(self) -> int:
        return int(self.rows("SELECT count(*) FROM messages")[0][0])


@pytest.fixture
async def archive_for() -> AsyncIterator[Callable[..., Awaitable[Archive]]]:
    """Make an :class:`Archive` for a Dovecot user with extra account keys; closed afterwards."""
    made: list[Archive] = []

    async def make(dovecot: Dovecot, user: MailUser, **extra: Any) -> Archive:
        directory = short_dir("maild-mbx-")
        spec = AccountSpec("anna-imap", "imap", user.name, user.password, extra={"timeout": "10s", **extra})
        account = load_config(write_config(directory, dovecot, [spec])).accounts["anna-imap"]
        store = await Store.open(directory / "state" / "maild.sqlite3")
        await store.ensure_account(
            account.name, account.organisation, account.employee, "imap", datetime.now(UTC)
        )
        archive = Archive(directory, account, store)
        made.append(archive)
        return archive

    yield make
    for archive in made:
        await archive.store.close()
        archive.executor.shutdown(wait=False)


def subjects_by_mailbox(archive: Archive) -> dict[str, list[str]]:
    """Readable mailbox name to the subjects archived from it (gone or not)."""
    out: dict[str, list[str]] = {}
    for mailbox, subject in archive.rows(
        "SELECT l.mailbox, m.subject FROM locations l JOIN messages m ON m.id = l.message ORDER BY l.uid"
    ):
        out.setdefault(mailbox, []).append(subject)
    return out


async def test_mailboxes_with_non_ascii_names_and_spaces(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """Mailboxes "Entwürfe 2026" and "Büro & Co/Rechnungen 2025" are fetched; archive and status use readable names.

    Steps: deliver one message into each of three mailboxes; cycle; a second cycle stores nothing;
    the mailbox table records each mailbox's UIDVALIDITY under its readable name.
    """
    names = ["INBOX", "Entwürfe 2026", "Büro & Co/Rechnungen 2025"]
    for name in names:
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"in {name}"), mailbox=name)
    archive = await archive_for(dovecot, mail_user, mailboxes=names)

    first = await archive.cycle()
    again = await archive.cycle()

    assert (first.new_messages, first.on_server, again.new_links) == (3, 3, 0)
    assert subjects_by_mailbox(archive) == {name: [f"in {name}"] for name in names}
    assert first.imap is not None
    assert first.imap.mailboxes == names
    states = await archive.store.mailbox_states("anna-imap")
    assert sorted(states) == sorted(names)
    assert all(state.uidnext == 2 for state in states.values())


async def test_all_mailboxes_with_exclusions(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """mailboxes = "all": \\Trash and \\Junk (special-use), \\NonExistent and excluded names (with children) are skipped.

    Steps: deliver into INBOX, "Entwürfe", "Archiv/2026" (its parent "Archiv" is \\NonExistent),
    "Trash", "Spam Verdacht" (\\Junk), "Newsletter" and "Newsletter/alt"; cycle with exclude =
    ["Newsletter"]; only INBOX, "Entwürfe" and "Archiv/2026" are archived.
    """
    boxes = ["INBOX", "Entwürfe", "Archiv/2026", "Trash", "Spam Verdacht", "Newsletter", "Newsletter/alt"]
    for name in boxes:
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"in {name}"), mailbox=name)
    archive = await archive_for(dovecot, mail_user, mailboxes="all", exclude=["Newsletter"])

    result = await archive.cycle()

    assert result.imap is not None
    assert result.imap.mailboxes[0] == "INBOX"
    assert sorted(result.imap.mailboxes) == ["Archiv/2026", "Entwürfe", "INBOX"]
    assert sorted(subjects_by_mailbox(archive)) == ["Archiv/2026", "Entwürfe", "INBOX"]
    assert result.new_messages == 3


async def test_uidvalidity_change_relinks_archived_messages_without_downloading(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """A forced UIDVALIDITY change: matched messages get new locations without a download; none is stored twice.

    Steps: deliver 5 messages (one without Message-ID); cycle; force a new UIDVALIDITY with
    ``doveadm mailbox update --uid-validity``; deliver one more; cycle with a recording adapter:
    the 4 messages with a Message-ID are relinked (not retrieved), the one without and the new one
    are retrieved; 6 distinct messages in the archive; old locations are marked gone; the change is
    logged as ``imap.uidvalidity-changed``; a third cycle does nothing.
    """
    raws = [corpus.make_message(subject=f"Nr. {n}") for n in range(4)]
    raws.append(corpus.make_message(subject="ohne Message-ID", with_message_id=False))
    dovecot.deliver_many(mail_user.name, raws)
    archive = await archive_for(dovecot, mail_user)
    first = await archive.cycle()
    assert first.new_messages == 5
    old_uidvalidity = (await archive.store.mailbox_states("anna-imap"))["INBOX"].uidvalidity

    new_uidvalidity = old_uidvalidity + 1000
    dovecot.doveadm(
        "mailbox", "update", "-u", mail_user.name, "--uid-validity", str(new_uidvalidity), "INBOX"
    )
    dovecot.deliver(mail_user.name, corpus.make_message(subject="neu"))
    drop = archive.recording()
    with capture_logs() as logs:
        second = await archive.cycle(drop)

    assert second.imap is not None
    [change] = second.imap.uidvalidity_changes
    assert (change.mailbox, change.old_uidvalidity, change.new_uidvalidity) == (
        "INBOX",
        old_uidvalidity,
        new_uidvalidity,
    )
    assert (change.relinked, change.to_retrieve) == (4, 2)
    assert [k.uid for k in drop.retrieved] == [5, 6]  # type: ignore[union-attr]
    assert (second.new_messages, second.new_links) == (1, 2)
    assert archive.message_count() == 6
    events = [e for e in logs if e["event"] == "imap.uidvalidity-changed"]
    assert len(events) == 1
    assert events[0]["log_level"] == "warning"
    rows = archive.rows("SELECT uidvalidity, count(*), count(gone_at) FROM locations GROUP BY uidvalidity")
    assert sorted(rows) == [(old_uidvalidity, 5, 5), (new_uidvalidity, 6, 0)]
    state = (await archive.store.mailbox_states("anna-imap"))["INBOX"]
    assert state.uidvalidity == new_uidvalidity

    third = await archive.cycle()
    assert third.imap is not None
    assert (third.imap.uidvalidity_changes, third.new_links) == ([], 0)


async def test_expunge_marks_gone_but_an_unselectable_mailbox_does_not(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """Expunged in INBOX: archived, gone_at set. Mailbox deleted on the server: SELECT fails, nothing of it marked gone.

    Steps: two messages in INBOX, two in "Projekt X"; cycle; expunge INBOX UID 1 and delete
    "Projekt X" with doveadm; cycle: the cycle succeeds, reports the SELECT failure, marks only the
    expunged message gone; every message stays in the archive.
    """
    for n in range(2):
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"inbox {n}"))
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"projekt {n}"), mailbox="Projekt X")
    archive = await archive_for(dovecot, mail_user, mailboxes=["INBOX", "Projekt X"])
    await archive.cycle()

    dovecot.doveadm("expunge", "-u", mail_user.name, "mailbox", "INBOX", "uid", "1")
    dovecot.doveadm("mailbox", "delete", "-u", mail_user.name, "Projekt X")
    second = await archive.cycle()

    assert second.imap is not None
    assert list(second.imap.mailbox_failures) == ["Projekt X"]
    assert "Projekt X" in second.imap.mailbox_failures["Projekt X"]
    gone = archive.rows("SELECT mailbox, uid, gone_at IS NOT NULL FROM locations ORDER BY mailbox, uid")
    assert gone == [("INBOX", 1, 1), ("INBOX", 2, 0), ("Projekt X", 1, 0), ("Projekt X", 2, 0)]
    assert archive.message_count() == 4


async def test_retention_delete_after_expunges_only_archived_old_messages(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """IMAP retention "delete-after": messages archived 31 days ago are expunged (UID EXPUNGE); newer ones stay.

    Steps: two messages; cycle at day 0; a third message; cycle at day 31: the first two are deleted
    on the server and recorded as deleted, the third stays; the archive keeps all three; another
    client's \\Deleted message is not expunged.
    """
    day0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for n in range(2):
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"alt {n}"))
    archive = await archive_for(dovecot, mail_user, retention="delete-after", retention_days=30)
    await archive.cycle(clock=lambda: day0)
    dovecot.deliver(mail_user.name, corpus.make_message(subject="neu"))
    dovecot.deliver(mail_user.name, corpus.make_message(subject="fremd gelöscht"), flags="T")

    later = await archive.cycle(clock=lambda: day0 + timedelta(days=31))

    assert later.deleted == 2
    left = sorted(raw for raw in dovecot.maildir_messages(mail_user.name))
    assert len(left) == 2  # "neu" (too young) and the other client's \Deleted message
    rows = archive.rows("SELECT uid, deleted_at IS NOT NULL FROM locations ORDER BY uid")
    assert rows == [(1, 1), (2, 1), (3, 0), (4, 0)]
    assert archive.message_count() == 4


async def test_25_mb_message_is_fetched_holding_at_most_three_copies(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """A 25 MB message is archived byte for byte; traced peak memory stays under three copies of it.

    tracemalloc traces Python's allocations (aioimaplib's literal buffer, the bytes handed to the
    store); SQLite's own copy is outside it.
    """
    raw = corpus.large_message(25_000_000)
    dovecot.deliver(mail_user.name, raw)
    archive = await archive_for(dovecot, mail_user, timeout="30s")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await archive.cycle()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.new_messages == 1
    assert archive.rows("SELECT raw FROM messages")[0][0] == raw
    copies = peak / len(raw)
    assert copies < 3.0, f"peak {peak} octets = {copies:.2f} copies of the message"


async def test_failed_select_of_every_mailbox_fails_the_cycle(
    dovecot: Dovecot, mail_user: MailUser, archive_for: Callable[..., Awaitable[Archive]]
) -> None:
    """When no configured mailbox can be selected the cycle fails (nothing to report as fetched)."""
    from maild.errors import ProtocolError

    archive = await archive_for(dovecot, mail_user, mailboxes=["Gibt es nicht"])
    with pytest.raises(ProtocolError, match="Gibt es nicht"):
        await archive.cycle()
