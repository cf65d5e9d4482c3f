"""Moving a mailbox from POP3 to IMAP against a real Dovecot: compare, migrate, kill and re-run, retire.

The seed text's scenario: an office fetched a mailbox by POP3 with "delete messages on the server", so
its old mail exists only in maild's archive; the mailbox is to be used by IMAP from now on.
"""

from __future__ import annotations

import email.utils
import imaplib
import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from maild.cli.main import main
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

BERLIN = timezone(timedelta(hours=1))
FIRST_DATE = datetime(2025, 3, 1, 8, 0, tzinfo=BERLIN)


def letter(i: int, *, message_id: bool = True, body: bytes | None = None, octets: int = 0) -> bytes:
    """A distinct message (CRLF), dated ``FIRST_DATE`` + ``i`` hours, with an encoded umlaut subject."""
    date = email.utils.format_datetime(FIRST_DATE + timedelta(hours=i))
    head = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\n"
        b"To: anna@example.com\r\n"
        b"Subject: =?utf-8?q?Abrechnung_f=C3=BCr_Wohnung?= %d\r\n"
        b"Date: %s\r\n" % (i, date.encode())
    )
    if message_id:
        head += b"Message-ID: <migrate-%d@example.org>\r\n" % i
    text = body if body is not None else b"Nachricht %d\r\n.Zeile mit Punkt\r\n" % i
    if octets:
        text += b"x" * 76 + b"\r\n"
        text *= max(1, octets // 78)
    return head + b"\r\n" + text


def twins() -> list[bytes]:
    """Two messages without Message-ID whose header sections are equal and whose bodies differ."""
    return [
        letter(10_000, message_id=False, body=b"erste Fassung\r\n"),
        letter(10_000, message_id=False, body=b"zweite\r\n"),
    ]


class ServerView:
    """What a separate stdlib imaplib client sees in the user's INBOX."""

    def __init__(self, dovecot: Dovecot, user: MailUser) -> None:
        self.client = imaplib.IMAP4_SSL(
            dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context()
        )
        self.client.login(user.name, user.password)
        self.client.select("INBOX", readonly=True)

    def messages(self) -> list[tuple[bytes, datetime, bytes]]:
        """(raw, INTERNALDATE in UTC, flags) of every message."""
        typ, data = self.client.uid("FETCH", "1:*", "(INTERNALDATE FLAGS BODY.PEEK[])")
        assert typ == "OK"
        out = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, raw = item
            stamp = imaplib.Internaldate2tuple(meta)
            assert stamp is not None
            when = datetime.fromtimestamp(time.mktime(stamp), UTC)
            flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
            out.append((raw, when, flags.group(1) if flags else b""))
        return out

    def close(self) -> None:
        self.client.logout()


def archive_counts(state: Path) -> tuple[int, int]:
    """(distinct messages in the archive, upload records)."""
    with sqlite3.connect(f"file:{state / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        return (
            db.execute("SELECT count(*) FROM messages").fetchone()[0],
            db.execute("SELECT count(*) FROM appends").fetchone()[0],
        )


def _maild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _pop_spec(user: MailUser, **extra: object) -> AccountSpec:
    return AccountSpec("pop", "pop3", user.name, user.password, extra={"retention": "delete", **extra})


def test_pop3_to_imap_compare_migrate_kill_rerun_retire(
    dovecot: Dovecot, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's procedure loses nothing and duplicates nothing, even when `migrate` is killed halfway.

    Steps: `pop` (POP3, retention delete) fetches 200 messages (two without Message-ID, equal headers,
    different bodies), so they exist only in the archive; 50 new messages arrive; `imap` is added with
    `maild accounts add` (through a proxy that adds latency); pop is told to keep mail; `compare pop imap`
    lists exactly the 200 archive-only messages; `migrate` runs as a subprocess and is SIGKILLed after
    some uploads; some upload records are deleted (as if killed between the server's OK and the
    record); `migrate` again: 250 on the server, none twice, INTERNALDATE = Date, \\Seen set; `compare`
    exits 0; `retire` refuses while pop is enabled in the main file, then succeeds; `accounts list`
    shows the retirement; `fetch` of imap leaves 250 distinct messages in the archive.
    """
    old = [letter(i) for i in range(198)] + twins()
    dovecot.deliver_many(mail_user.name, old)
    directory = short_dir("maildmig-")
    cfg = write_config(directory, dovecot, [_pop_spec(mail_user)])
    assert main(["-c", str(cfg), "fetch"]) == 0
    assert "pop: 200 new messages" in capsys.readouterr().out
    assert main(["-c", str(cfg), "fetch"]) == 0  # the deletions were confirmed by +OK to QUIT
    assert dovecot.maildir_files(mail_user.name) == []

    new = [letter(1000 + i) for i in range(50)]
    dovecot.deliver_many(mail_user.name, new)

    with FaultProxy(dovecot.host, dovecot.ports.imaps) as proxy:
        monkeypatch.setattr(sys, "stdin", io.StringIO(mail_user.password + "\n"))
        args = ["-c", str(cfg), "accounts", "add", "imap", "--organisation", "Hausverwaltung Beispiel"]
        args += ["--employee", "Anna Beispiel", "--protocol", "imap", "--host", dovecot.host]
        args += ["--port", str(proxy.port), "--ca-file", str(dovecot.ca_file), "--username", mail_user.name]
        assert main(args) == 0
        assert "maild is not running" in capsys.readouterr().out

        # pop deletes what it fetches from the same mailbox: migrate refuses until that stops
        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 1
        assert 'retention = "keep"' in capsys.readouterr().err
        main_file = write_config(directory, dovecot, [_pop_spec(mail_user, retention="keep")])
        main_bytes = main_file.read_bytes()

        assert main(["-c", str(cfg), "compare", "pop", "imap", "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["counts"]["only_in_source"] == 200
        assert report["counts"]["archive_only"] == 200
        assert report["counts"]["only_in_target"] == 50
        assert report["counts"]["in_both"] == 0
        assert report["counts"]["bodies_downloaded"] == 0
        assert {m["where"] for m in report["only_in_source"]} == {"archive only"}
        assert Counter(m["message_id"] for m in report["only_in_source"])[None] == 2
        assert {m["subject"] for m in report["only_in_target"]} == {
            f"Abrechnung für Wohnung {1000 + i}" for i in range(50)
        }

        proxy.latency(0.003)  # each APPEND now takes a few round trips of >= 6 ms
        proc = subprocess.Popen(
            [sys.executable, "-m", "maild", "-c", str(cfg), "migrate", "pop", "--to", "imap"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        recorded = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if (directory / "state" / "maild.sqlite3").exists():
                recorded = archive_counts(directory / "state")[1]
                if recorded >= 40:
                    break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proxy.latency(0)
        with sqlite3.connect(directory / "state" / "maild.sqlite3") as db:
            kept = db.execute("SELECT count(*) FROM appends").fetchone()[0]
            assert 0 < kept < 200, "migrate was not killed halfway"
            db.execute(
                "DELETE FROM appends WHERE rowid IN (SELECT rowid FROM appends ORDER BY appended_at DESC LIMIT 5)"
            )
        view = ServerView(dovecot, mail_user)
        on_server = len(view.messages())
        view.close()
        assert 50 + kept <= on_server < 250

        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
        out = capsys.readouterr().out
        assert f"uploaded {250 - on_server}, refused 0" in out
        assert "nothing of pop is missing in imap" in out

    # the proxy is gone: point imap straight at Dovecot (the drop-in is maild's to rewrite, the test's too)
    dropin = directory / "accounts.d" / "imap.toml"
    dropin.write_text(dropin.read_text().replace(f"port = {proxy.port}", f"port = {dovecot.ports.imaps}"))

    view = ServerView(dovecot, mail_user)
    seen = view.messages()
    view.close()
    assert len(seen) == 250
    raws = Counter(raw for raw, _when, _flags in seen)
    assert set(raws) == set(old) | set(new)
    assert max(raws.values()) == 1
    for raw, when, flags in seen:
        if raw in set(old):
            date = re.search(rb"^Date: (.*)\r$", raw, re.M)
            assert date is not None
            assert when == email.utils.parsedate_to_datetime(date.group(1).decode()).astimezone(UTC)
            assert b"\\Seen" in flags

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--summary"]) == 0
    assert "only in pop: 0" in capsys.readouterr().out

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    assert "enabled = false" in capsys.readouterr().err
    write_config(directory, dovecot, [_pop_spec(mail_user, retention="keep", enabled=False)])
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    out = capsys.readouterr().out
    assert "retired into imap" in out
    # the 50 that reached the mailbox after pop's last fetch were read by retire's check (TOP) and,
    # their octets not in pop's archive, kept there before QUIT (a server may delete what is read)
    assert "its archive keeps 250 messages" in out

    assert main(["-c", str(cfg), "fetch"]) == 0
    assert "imap: 0 new messages, 250 already archived" in capsys.readouterr().out  # see above
    assert archive_counts(directory / "state")[0] == 250
    assert main(["-c", str(cfg), "accounts", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["accounts"]}
    assert rows["pop"]["retired_into"] == "imap"
    assert rows["pop"]["messages"] == 250  # with the 50 retire's check kept (see above)
    assert rows["pop"]["state"] == "not running"
    assert rows["imap"]["messages"] == 250
    assert main(["-c", str(cfg), "accounts", "list"]) == 0
    assert "migrated into imap" in capsys.readouterr().out
    assert main_file.read_bytes() != main_bytes  # (the test, as the admin, edited it; maild never did)


class QuotaDovecot(Dovecot):
    """A Dovecot whose IMAP refuses messages over 64 KiB (``quota_max_mail_size``: NO [LIMIT])."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_file.open("a", encoding="utf-8") as conf:
            conf.write(
                "mail_plugins = $mail_plugins quota\n"
                "plugin {\n  quota = maildir:User quota\n  quota_max_mail_size = 64k\n}\n"
            )


@pytest.fixture
def quota_dovecot() -> Iterator[Dovecot]:
    """A private :class:`QuotaDovecot` (skipped or failed like the ``dovecot`` fixture when unusable)."""
    from tests.conftest import _skip_or_fail_without_dovecot

    _skip_or_fail_without_dovecot()
    server = QuotaDovecot(tempfile.mkdtemp(prefix="maild-quota-", dir="/tmp"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_refused_message_is_reported_and_the_rest_uploaded(
    quota_dovecot: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message the server refuses (NO [LIMIT], too big) is reported with the reply; the others are uploaded.

    Steps: 5 messages (one of 100 KB) fetched by POP3 with retention delete; `migrate` to IMAP exits 1 and
    names the refusal; the server holds the 4 others; a second `migrate` tries only the refused one again.
    """
    user = quota_dovecot.add_user("quota-user", "pw quota")
    messages = [letter(i) for i in range(4)] + [letter(99, octets=100_000)]
    quota_dovecot.deliver_many(user.name, messages)
    directory = short_dir("maildquota-")
    specs = [_pop_spec(user), AccountSpec("imap", "imap", user.name, user.password)]
    cfg = write_config(directory, quota_dovecot, specs)
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    write_config(directory, quota_dovecot, [_pop_spec(user, retention="keep"), specs[1]])
    capsys.readouterr()

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 1
    out = capsys.readouterr().out
    assert "uploaded 4, refused 1" in out
    assert "Abrechnung für Wohnung 99" in out
    assert "NO [LIMIT]" in out
    assert "1 messages of pop are missing in imap" in out
    view = ServerView(quota_dovecot, user)
    assert sorted(raw for raw, _w, _f in view.messages()) == sorted(messages[:4])
    view.close()

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [r["subject"] for r in report["refused"]] == ["Abrechnung für Wohnung 99"]
    assert report["appended"] == []
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    assert "1 messages of pop are missing in imap" in capsys.readouterr().err


def test_cut_connection_refuses_that_message_goes_on_and_a_rerun_finishes(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """A connection cut in the middle of one APPEND refuses that message and `migrate` goes on in a new
    session (exit 1: one refused); re-running uploads the refused one, once.

    Steps: 30 messages archived by POP3 (retention delete); a proxy cuts the connection once, while
    the 12th is sent; migrate uploads the other 29 and reports the 12th refused; migrate again:
    uploads 1; 30 on the server, none twice; `migrate --dry-run` then plans nothing.
    """
    messages = [letter(i) for i in range(30)]
    dovecot.deliver_many(mail_user.name, messages)
    directory = short_dir("maildcut-")
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:  # plaintext, so the proxy sees the APPEND
        specs = [
            _pop_spec(mail_user),
            AccountSpec(
                "imap", "imap", mail_user.name, mail_user.password, tls="none", extra={"port": proxy.port}
            ),
        ]
        cfg = write_config(directory, dovecot, specs)
        assert main(["-c", str(cfg), "fetch", "pop"]) == 0
        write_config(directory, dovecot, [_pop_spec(mail_user, retention="keep"), specs[1]])
        capsys.readouterr()
        proxy.cut_when(b"Abrechnung_f=C3=BCr_Wohnung?= 11\r\n", direction="up", once=True)
        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 1
        out = capsys.readouterr().out
        assert "stopped early" not in out
        assert "uploaded 29, refused 1" in out
        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
        assert "uploaded 1, refused 0" in capsys.readouterr().out
        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--dry-run"]) == 0
        assert "0 to upload" in capsys.readouterr().out
    view = ServerView(dovecot, mail_user)
    assert sorted(raw for raw, _w, _f in view.messages()) == sorted(messages)
    view.close()


def test_compare_with_all_mailboxes_scans_what_list_shows(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """With mailboxes = "all" on B, compare scans every listed mailbox, so mail filed away counts as present.

    Steps: 3 messages archived by POP3 (retention delete); copies of two reappear on the server, one
    in INBOX and one in "Archiv/2025"; compare with the IMAP account (mailboxes = "all") finds one
    missing; with --mailbox INBOX two.
    """
    old = [letter(i) for i in range(3)]
    dovecot.deliver_many(mail_user.name, old)
    directory = short_dir("maildall-")
    imap = AccountSpec("imap", "imap", mail_user.name, mail_user.password, extra={"mailboxes": "all"})
    cfg = write_config(directory, dovecot, [_pop_spec(mail_user), imap])
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    dovecot.deliver(mail_user.name, old[0])
    dovecot.create_mailbox(mail_user.name, "Archiv/2025")
    dovecot.deliver(mail_user.name, old[1], "Archiv/2025")
    capsys.readouterr()
    assert main(["-c", str(cfg), "compare", "pop", "imap", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report["mailboxes"]) >= {"INBOX", "Archiv/2025"}
    assert (report["counts"]["only_in_source"], report["counts"]["in_both"]) == (1, 2)
    assert main(["-c", str(cfg), "compare", "pop", "imap", "--mailbox", "INBOX", "--summary"]) == 1
    assert "only in pop: 2" in capsys.readouterr().out
