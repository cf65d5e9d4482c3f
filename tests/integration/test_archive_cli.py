"""The archive as the office uses it, against a real Dovecot: Maildir delivery, queries while fetching, export."""

from __future__ import annotations

import imaplib
import json
import mailbox
import os
import pwd
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from maild.archive.reader import ArchiveReader, MessageFilter
from maild.cli.main import main
from maild.errors import ControlError, StoreError
from maild.service.control_client import request
from tests.support import corpus
from tests.support.daemonproc import maild_command, running_maild, stop_maild
from tests.support.dovecot import MAIL_OWNER, Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot


def sample(i: int, body_lines: int = 30) -> bytes:
    """A distinct CRLF message with lines starting "From " and an umlaut subject."""
    return corpus.numbered_letter(
        i,
        body_lines=body_lines,
        id_prefix="archive",
        tail=b"From the landlord, with regards\r\n>From a quote\r\n",
    )


def maild(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "maild", *args], capture_output=True, timeout=timeout, check=False
    )


def wait_for(cfg_dir: Path, predicate: Any, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll the daemon's status until ``predicate(status)`` holds."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = request(cfg_dir / "control.sock", {"command": "status"}, timeout_s=5)
        except ControlError:
            last = {}
        if last.get("accounts") and predicate(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"status never matched; last: {last}")


def maildir_bytes(root: Path, folder: str | None = None) -> list[bytes]:
    box = mailbox.Maildir(root, factory=None, create=False)
    if folder is not None:
        box = box.get_folder(folder)
    return sorted(box.get_bytes(k) for k in box.iterkeys())


def test_queries_work_while_the_daemon_fetches_1000_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    """While `maild run` fetches and deletes 1,000 messages, read-only queries keep answering; afterwards the
    Maildir, the queries and both exports hold every message once, byte for byte.

    Steps: deliver 1,000 messages; start `maild run` (POP3, retention "delete", deliver_maildir); query the
    archive in a loop (in-process reader and the CLI) until it holds 1,000; wait for the server to be empty;
    check the Maildir, `messages list/show/raw`, `export --mbox` and `export --maildir` (twice).
    """
    raws = [sample(i) for i in range(1000)]
    dovecot.deliver_many(mail_user.name, raws)
    directory = short_dir("maildarch-")
    spec = AccountSpec(
        "anna-pop",
        "pop3",
        mail_user.name,
        mail_user.password,
        extra={
            "retention": "delete",
            "deliver_maildir": str(directory / "mail" / "{employee}" / "{account}"),
        },
    )
    cfg = write_config(directory, dovecot, [spec])
    db = directory / "state" / "maild.sqlite3"
    root = directory / "mail" / "Anna Beispiel" / "anna-pop"

    seen: list[int] = []
    cli_runs = 0
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not seen or seen[-1] < 1000):
            if db.exists():
                try:
                    with ArchiveReader(db) as reader:
                        seen.append(len(reader.list_messages(MessageFilter(account="anna-pop"))))
                except StoreError as exc:  # the daemon may still be creating the schema
                    if seen or "has schema version" not in str(exc):
                        raise
            if seen and cli_runs < 5 and len(seen) % 10 == 1:
                done = maild("-c", str(cfg), "messages", "list", "--limit", "0", "--json")
                assert done.returncode == 0, done.stderr
                assert len(json.loads(done.stdout)) <= 1000
                cli_runs += 1
        assert seen and seen[-1] == 1000, seen[-5:]
        assert any(0 < n < 1000 for n in seen), "no query ran while the daemon was fetching"
        assert cli_runs > 0
        assert seen == sorted(seen), "a query saw fewer messages than an earlier one"
        wait_for(
            directory,
            lambda s: s["accounts"][0]["last_success"] and not dovecot.maildir_files(mail_user.name),
        )
        assert stop_maild(proc, timeout_s=30) == 0

    assert maildir_bytes(root) == sorted(raws)

    listed = maild("-c", str(cfg), "messages", "list", "--limit", "0", "--json", "--from", "jürgen")
    items = json.loads(listed.stdout)
    assert len(items) == 1000
    assert {i["on_server"] for i in items} == {False}
    assert {tuple(i["accounts"]) for i in items} == {("anna-pop",)}
    one = next(i for i in items if i["subject"] == "Nebenkostenabrechnung 7")
    shown = maild("-c", str(cfg), "messages", "show", one["id"][:12])
    assert shown.returncode == 0
    assert "Subject: Nebenkostenabrechnung 7" in shown.stdout.decode()
    assert "Zeile 29 der Nachricht 7" in shown.stdout.decode()
    assert maild("-c", str(cfg), "messages", "raw", one["id"]).stdout == raws[7]

    mbox_file = directory / "anna.mbox"
    assert maild("-c", str(cfg), "export", "--account", "anna-pop", "--mbox", str(mbox_file)).returncode == 0
    box = mailbox.mbox(mbox_file, create=False)
    try:
        back = sorted(re.sub(rb"(?m)^>(>*From )", rb"\1", box.get_bytes(k)) for k in box.iterkeys())
    finally:
        box.close()
    assert back == sorted(r.replace(b"\r\n", b"\n") for r in raws)

    export_dir = directory / "export"
    for expected in (b"1,000 messages written", b"0 messages written"):
        done = maild("-c", str(cfg), "export", "--account", "anna-pop", "--maildir", str(export_dir))
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout
        assert done.stderr == b""  # no progress counter when stderr is not a terminal
    assert maildir_bytes(export_dir) == sorted(raws)


def test_delivered_maildir_is_served_by_dovecot(
    dovecot: Dovecot, mail_user_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dovecot serves the Maildir maild delivered (INBOX and the Maildir++ folder Archiv/2026) byte for byte.

    Steps: deliver to INBOX and Archiv/2026 of one user; `maild fetch` an IMAP account with both mailboxes and
    deliver_maildir pointing at a second user's Maildir; hand the files to the mail owner; read both mailboxes
    of the second user by IMAP.
    """
    source: MailUser = mail_user_factory()
    reader_user: MailUser = mail_user_factory()
    inbox = [sample(i) for i in range(5)]
    archiv = [sample(i) for i in range(100, 103)]
    dovecot.deliver_many(source.name, inbox)
    dovecot.deliver_many(source.name, archiv, "Archiv/2026")
    target = dovecot.mail_dir / reader_user.name / "Maildir"
    spec = AccountSpec(
        "anna-imap",
        "imap",
        source.name,
        source.password,
        extra={"mailboxes": ["INBOX", "Archiv/2026"], "deliver_maildir": str(target)},
    )
    cfg = write_config(short_dir(), dovecot, [spec])
    assert main(["-c", str(cfg), "fetch"]) == 0
    assert "anna-imap: 8 new messages" in capsys.readouterr().out
    owner = pwd.getpwnam(MAIL_OWNER)
    for path in [target, *target.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)

    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    with imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=context) as client:
        client.login(reader_user.name, reader_user.password)
        served: dict[str, list[bytes]] = {}
        for name in ("INBOX", "Archiv/2026"):
            typ, _ = client.select(f'"{name}"', readonly=True)
            assert typ == "OK", name
            typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            assert typ == "OK"
            served[name] = sorted(part[1] for part in data if isinstance(part, tuple))
    assert served == {"INBOX": sorted(inbox), "Archiv/2026": sorted(archiv)}
