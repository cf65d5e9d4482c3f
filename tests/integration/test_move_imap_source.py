"""A move whose source is an IMAP account that deletes, on a mailbox the target reaches under another name.

One Dovecot mailbox is reached as ``127.0.0.1`` (the old IMAP account ``old``) and as ``localhost`` (the
new IMAP account ``imap``), as a provider's ``imap.provider.de`` and ``mail.provider.de`` may be one
mailbox. QA of session 10: ``migrate`` refused a deleting POP3 source only, so with an IMAP source on
``retention = "delete-after"`` it uploaded everything, and ``retention_days`` after the source's next
fetch had archived the uploaded copies (new UIDs), that fetch deleted them all again (the content check
that suspends deletions during a move covers POP3 accounts only).
"""

from __future__ import annotations

import imaplib
import sqlite3

import pytest

from maild.cli.main import main
from tests.integration.test_migration import letter
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot


def _accounts(user: MailUser, old: dict[str, object]) -> list[AccountSpec]:
    """``old`` (IMAP at 127.0.0.1, with ``old``'s extra keys) and ``imap`` (IMAP at localhost)."""
    return [
        AccountSpec("old", "imap", user.name, user.password, extra=old),
        AccountSpec("imap", "imap", user.name, user.password, extra={"host": "localhost"}),
    ]


def _count(dovecot: Dovecot, user: MailUser) -> int:
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context())
    try:
        client.login(user.name, user.password)
        client.select("INBOX", readonly=True)
        typ, data = client.uid("SEARCH", "ALL")
        assert typ == "OK"
        return len(data[0].split()) if data and data[0] else 0
    finally:
        client.logout()


def _empty(dovecot: Dovecot, user: MailUser) -> None:
    """An employee deletes every message in her mail program (STORE \\Deleted, EXPUNGE)."""
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context())
    try:
        client.login(user.name, user.password)
        client.select("INBOX")
        client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()
    finally:
        client.logout()


def test_deleting_imap_source_is_refused_whatever_the_host_names(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """``migrate`` refuses a source IMAP account that deletes, as it refuses a POP3 one.

    Steps: ``old`` (IMAP at 127.0.0.1, delete-after 1 day) archives 6 messages; an employee empties
    the mailbox; ``migrate old --to imap`` (localhost) is refused with the one line naming
    ``retention = "keep"``, nothing uploaded; with ``old`` on "keep" the same command uploads 6.
    """
    directory = short_dir("maildmvi-")
    dovecot.deliver_many(mail_user.name, [letter(i) for i in range(6)])
    deleting = {"retention": "delete-after", "retention_days": 1}
    cfg = write_config(directory, dovecot, _accounts(mail_user, deleting))
    assert main(["-c", str(cfg), "fetch", "old"]) == 0
    _empty(dovecot, mail_user)
    capsys.readouterr()

    assert main(["-c", str(cfg), "migrate", "old", "--to", "imap"]) == 1
    err = capsys.readouterr().err
    assert "account old deletes the messages it fetches (retention = 'delete-after')" in err
    assert "host names cannot tell" in err
    assert len(err.strip().splitlines()) == 1
    assert _count(dovecot, mail_user) == 0

    cfg = write_config(directory, dovecot, _accounts(mail_user, {"retention": "keep"}))
    assert main(["-c", str(cfg), "migrate", "old", "--to", "imap"]) == 0
    assert "uploaded 6, refused 0" in capsys.readouterr().out
    assert _count(dovecot, mail_user) == 6


def test_another_deleting_imap_account_on_the_mailbox_cannot_undo_an_unfinished_move(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """The content check that suspends deletions during a move covers IMAP accounts too.

    Steps: ``pop`` (POP3 at 127.0.0.1, delete) archives 5 messages and deletes them; ``pop`` is
    disabled, ``migrate pop --to imap`` (localhost) uploads 5; ``other`` (IMAP at 127.0.0.1, the same
    mailbox, delete-after 1 day) archives the uploaded copies; a day passes (its first-fetch times
    moved back); its next fetch deletes nothing and says why; the server still holds 5.
    """
    directory = short_dir("maildmvo-")
    dovecot.deliver_many(mail_user.name, [letter(i) for i in range(5)])
    pop = AccountSpec("pop", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})
    imap = AccountSpec("imap", "imap", mail_user.name, mail_user.password, extra={"host": "localhost"})
    cfg = write_config(directory, dovecot, [pop, imap])
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0  # the second cycle deletes what the first archived
    assert _count(dovecot, mail_user) == 0

    pop = AccountSpec("pop", "pop3", mail_user.name, mail_user.password, extra={"enabled": False})
    other = AccountSpec(
        "other",
        "imap",
        mail_user.name,
        mail_user.password,
        extra={"retention": "delete-after", "retention_days": 1},
    )
    cfg = write_config(directory, dovecot, [pop, imap, other])
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    assert _count(dovecot, mail_user) == 5
    assert main(["-c", str(cfg), "fetch", "other"]) == 0
    with sqlite3.connect(directory / "state" / "maild.sqlite3") as db:
        db.execute("UPDATE locations SET first_fetched_at = '2020-01-01T00:00:00Z' WHERE account = 'other'")
    capsys.readouterr()

    assert main(["-c", str(cfg), "fetch", "other"]) == 0

    out = capsys.readouterr().out
    assert "deleted on the server" not in out
    assert "deletion suspended: 5 messages on other's server are also in IMAP account imap" in out
    assert "`maild retire pop --into imap`" in out
    assert _count(dovecot, mail_user) == 5
