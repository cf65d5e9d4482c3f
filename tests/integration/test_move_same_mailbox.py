"""Moving a mailbox when host names do not say it is one mailbox, and the dead ends of a move, on Dovecot.

One Dovecot mailbox is reached as ``127.0.0.1`` (POP3) and as ``localhost`` (IMAP), as a provider's
``pop.provider.de`` and ``imap.provider.de`` are one mailbox. Issue 16: with the POP3 account deleting,
``migrate`` once uploaded everything and the next POP3 fetch deleted it all again.
"""

from __future__ import annotations

import imaplib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from maild.cli.main import main
from tests.integration.test_migration import letter
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot


def _accounts(
    user: MailUser, *, pop: dict[str, object], office: dict[str, object] | None = None
) -> list[AccountSpec]:
    """``pop`` (POP3 at 127.0.0.1), ``imap`` (IMAP at localhost), optionally ``office`` (POP3 at localhost)."""
    specs = [
        AccountSpec("pop", "pop3", user.name, user.password, extra=pop),
        AccountSpec("imap", "imap", user.name, user.password, extra={"host": "localhost"}),
    ]
    if office is not None:
        specs.append(
            AccountSpec("office", "pop3", user.name, user.password, extra={"host": "localhost", **office})
        )
    return specs


def _imap(dovecot: Dovecot, user: MailUser) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context())
    client.login(user.name, user.password)
    return client


def _uids(dovecot: Dovecot, user: MailUser, mailbox: str = "INBOX") -> list[bytes]:
    client = _imap(dovecot, user)
    try:
        client.select(mailbox, readonly=True)
        typ, data = client.uid("SEARCH", "ALL")
        assert typ == "OK"
        return data[0].split() if data and data[0] else []
    finally:
        client.logout()


def _delete_on_server(dovecot: Dovecot, user: MailUser, uids: list[bytes]) -> None:
    """An employee deletes messages in their mail program (STORE \\Deleted, EXPUNGE)."""
    client = _imap(dovecot, user)
    try:
        client.select("INBOX")
        client.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()
    finally:
        client.logout()


def _archive_only(directory: Path, dovecot: Dovecot, user: MailUser, count: int) -> Path:
    """Deliver ``count`` messages, fetch them with ``pop`` (retention delete): they exist only in the archive."""
    dovecot.deliver_many(user.name, [letter(i) for i in range(count)])
    cfg = write_config(directory, dovecot, _accounts(user, pop={"retention": "delete"}))
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert _uids(dovecot, user) == []
    return cfg


def test_two_host_names_for_one_mailbox_cannot_undo_a_move(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither the deleting source nor another deleting POP3 account on the same mailbox undoes uploads.

    Steps: ``pop`` (127.0.0.1, delete) archives 12 messages and deletes them; ``migrate pop --to imap``
    (localhost) is refused although the host names differ; with pop on "keep" it uploads 12; a second
    POP3 account ``office`` (localhost, delete) on the same mailbox fetches them: its deletions are
    suspended with the reason in its output, and the server still holds 12; after ``retire`` the move is
    finished.
    """
    directory = short_dir("maildmove-")
    cfg = _archive_only(directory, dovecot, mail_user, 12)
    capsys.readouterr()

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 1
    err = capsys.readouterr().err
    assert "host names cannot tell" in err
    assert 'retention = "keep"' in err
    assert _uids(dovecot, mail_user) == []

    cfg = write_config(
        directory, dovecot, _accounts(mail_user, pop={"retention": "keep"}, office={"retention": "delete"})
    )
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    assert "uploaded 12, refused 0" in capsys.readouterr().out
    assert len(_uids(dovecot, mail_user)) == 12

    assert main(["-c", str(cfg), "fetch", "office"]) == 0
    out = capsys.readouterr().out
    assert "office: 0 new messages, 12 already archived" in out
    assert "deleted on the server" not in out
    assert "deletion suspended: 12 messages on office's server are also in IMAP account imap" in out
    assert "`maild retire pop --into imap`" in out
    assert main(["-c", str(cfg), "fetch", "office"]) == 0  # a second cycle, the messages known: still nothing
    assert len(_uids(dovecot, mail_user)) == 12
    with sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute(
            "SELECT count(*) FROM locations WHERE deleted_at IS NOT NULL AND account = 'office'"
        ).fetchone() == (0,)
        assert db.execute("SELECT source, target, finished_at FROM moves").fetchall() == [
            ("pop", "imap", None)
        ]

    # the source itself set back to "delete" by mistake: suspended too
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "delete"}))
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert "deleted on the server" not in capsys.readouterr().out
    assert len(_uids(dovecot, mail_user)) == 12

    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep", "enabled": False}))
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    with sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        finished = db.execute("SELECT finished_at FROM moves").fetchone()[0]
    assert finished is not None


def test_deleted_after_upload_has_a_way_forward_both_ways(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uploads deleted in the IMAP mailbox before ``retire``: ``--reupload`` puts them back,
    ``retire --accept-deleted`` accepts their loss (the archive keeps them); every refusal names both.

    Steps: 10 messages archive-only; migrate uploads 10; an employee deletes 3; migrate exits 1 naming
    ``--reupload`` and ``--accept-deleted``; retire refuses naming both; ``migrate --reupload`` uploads the
    3 again; the employee deletes 2; ``retire --accept-deleted`` lists and accepts the 2 and retires;
    ``compare`` exits 0 and counts them as accepted; the archive still holds all 10.
    """
    directory = short_dir("maildmove-")
    cfg = _archive_only(directory, dovecot, mail_user, 10)
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep"}))
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    capsys.readouterr()
    _delete_on_server(dovecot, mail_user, _uids(dovecot, mail_user)[:3])

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 1
    out = capsys.readouterr().out
    assert "3 left out: uploaded earlier but no longer in imap" in out
    assert "maild migrate pop --to imap --reupload" in out
    assert "maild retire pop --into imap --accept-deleted" in out

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    err = capsys.readouterr().err
    assert "3 were uploaded earlier and are no longer in imap" in err
    assert "--accept-deleted" in err
    assert "--reupload" in err

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--reupload"]) == 0
    assert "uploaded 3, refused 0" in capsys.readouterr().out
    assert len(_uids(dovecot, mail_user)) == 10

    _delete_on_server(dovecot, mail_user, _uids(dovecot, mail_user)[-2:])
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep", "enabled": False}))
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap", "--accept-deleted"]) == 0
    out = capsys.readouterr().out
    assert "2 messages uploaded earlier are no longer in imap; accepted as deleted" in out
    assert out.count("accepted as deleted") == 3  # the sentence and one line per message
    assert "retired into imap" in out

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["accepted_deleted"] == 2
    assert counts["missing"] == 0
    with sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (10,)


def test_migrate_retire_and_compare_agree_on_the_mailboxes(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uploads into a mailbox the target does not fetch are warned about and counted by compare and retire.

    Steps: 5 messages archive-only; ``migrate --mailbox Altpost`` is refused naming ``--create``, which
    creates it; ``migrate --mailbox Altpost --create`` uploads 5 and
    warns that imap does not fetch Altpost; ``compare`` (no --mailbox) finds all 5; Altpost is deleted;
    ``retire`` refuses naming ``--accept-deleted``, which then retires.
    """
    directory = short_dir("maildmove-")
    cfg = _archive_only(directory, dovecot, mail_user, 5)
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep", "enabled": False}))
    capsys.readouterr()

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--mailbox", "Altpost"]) == 1
    assert "--mailbox Altpost --create" in capsys.readouterr().err
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--mailbox", "Altpost", "--create"]) == 0
    captured = capsys.readouterr()
    assert "uploaded 5, refused 0" in captured.out
    assert "imap does not fetch mailbox 'Altpost'" in captured.err
    assert len(_uids(dovecot, mail_user, "Altpost")) == 5

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "INBOX, Altpost" in out
    assert "nothing of pop is missing in imap" in out
    client = _imap(dovecot, mail_user)  # someone deletes the whole mailbox: a way forward all the same
    client.delete("Altpost")
    client.logout()
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    assert "5 were uploaded earlier and are no longer in imap" in capsys.readouterr().err
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap", "--accept-deleted"]) == 0


def _flags(dovecot: Dovecot, user: MailUser) -> list[bytes]:
    client = _imap(dovecot, user)
    try:
        client.select("INBOX", readonly=True)
        typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        return [item for item in data if isinstance(item, bytes)]
    finally:
        client.logout()


def test_report_verify_detects_a_tampered_upload_and_undo_removes_only_this_moves_uploads(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """migrate prints its plan and writes a JSON and CSV report; --verify fetches each upload by APPENDUID
    and catches one changed on the server; --undo removes exactly the verified uploads, leaving the
    changed one and the mailbox's other mail alone; unretire undoes a retire.

    Steps: 6 messages archive-only; 2 other messages arrive in INBOX; ``migrate --unseen`` prints the
    plan, uploads 6 without flags and names its report files; ``--verify`` exits 0 with 6 verified; one
    uploaded message's file is altered on the server (same size); ``--verify`` exits 1 naming it
    "changed"; ``retire`` then ``--undo`` is refused until ``unretire``; ``--undo`` removes 5, leaves 3
    (the changed upload and the 2 others); a second ``--undo`` changes nothing.
    """
    directory = short_dir("maildmove-")
    cfg = _archive_only(directory, dovecot, mail_user, 6)
    others = [letter(500 + i) for i in range(2)]
    dovecot.deliver_many(mail_user.name, others)
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep", "enabled": False}))
    capsys.readouterr()

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--unseen"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^plan: 6 messages \(\d+(\.\d)? k?B\) into imap, mailbox INBOX$", out, re.M), out
    report_line = next(line for line in out.splitlines() if line.startswith("report: "))
    json_path = Path(report_line.split()[1])
    assert json_path.parent == directory / "state" / "moves"
    doc = json.loads(json_path.read_text())
    assert len(doc["messages"]) == 6
    assert {m["outcome"] for m in doc["messages"]} == {"uploaded"}
    assert all(m["uid"] and m["uidvalidity"] and len(m["sha256"]) == 64 for m in doc["messages"])
    csv_lines = json_path.with_suffix(".csv").read_text().splitlines()
    assert csv_lines[0] == "archive_id,sha256,message_id,subject,mailbox,uidvalidity,uid,outcome"
    assert len(csv_lines) == 7
    assert not any(b"\\Seen" in f for f in _flags(dovecot, mail_user))

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--verify"]) == 0
    assert "6 uploads checked by SHA-256: verified 6" in capsys.readouterr().out

    uploaded = {m["uid"] for m in doc["messages"]}
    # the file as Dovecot stores it (LF line endings): same size, one character changed
    victim = next(f for f in dovecot.maildir_files(mail_user.name) if b"Nachricht 3\n" in f.read_bytes())
    victim.write_bytes(victim.read_bytes().replace(b"Nachricht 3\n", b"Nachricht X\n"))
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--verify"]) == 1
    out = capsys.readouterr().out
    assert "verified 5, changed 1" in out
    assert "Wohnung 3" in out

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--undo"]) == 1
    assert "maild unretire pop" in capsys.readouterr().err
    assert (
        main(["-c", str(cfg), "unretire", "pop"]) == 1
    )  # disabled in the main file, which maild never rewrites
    assert "set enabled = true in [accounts.pop] there" in capsys.readouterr().err
    cfg = write_config(directory, dovecot, _accounts(mail_user, pop={"retention": "keep"}))
    assert main(["-c", str(cfg), "unretire", "pop"]) == 0
    assert "no longer retired into imap" in capsys.readouterr().out

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--undo"]) == 1
    out = capsys.readouterr().out
    assert "removed 5, changed 1" in out
    left = _uids(dovecot, mail_user)
    assert len(left) == 3
    assert {int(u) for u in left} & uploaded != set()  # the changed upload stays
    bodies = dovecot.maildir_messages(mail_user.name)
    assert all(raw in bodies for raw in others)

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--undo"]) == 1
    assert "changed 1" in capsys.readouterr().out
    assert len(_uids(dovecot, mail_user)) == 3
