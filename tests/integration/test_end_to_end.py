"""maild end to end against a real Dovecot: the CLI, the daemon and its control socket."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from maild.cli.main import main
from tests.support import corpus
from tests.support.daemonproc import maild_command, running_maild, stop_maild, wait_for_status
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot


def fetched_counts(out: str) -> dict[str, tuple[int, int]]:
    """Account -> (new messages, already archived) from ``maild fetch`` output."""
    found = re.findall(r"^(\S+): (\d+) new messages?(?:, (\d+) already archived)?", out, re.M)
    return {name: (int(new), int(known or 0)) for name, new, known in found}


def sample(i: int, body_lines: int = 20) -> bytes:
    """A small distinct message with CRLF line endings, a dot-stuffing candidate and an umlaut subject."""
    return corpus.numbered_letter(
        i,
        body_lines=body_lines,
        subject_word=b"Nebenkostenabrechnung_Nr=2E",
        id_prefix="msg",
        tail=b".leading dot line\r\n",
    )


def archive_rows(state_dir: Path) -> list[tuple[str, int, bytes]]:
    """(account, message id, raw) for every location in the archive."""
    with sqlite3.connect(f"file:{state_dir / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT l.account, m.id, m.raw FROM locations l JOIN messages m ON m.id = l.message"
        ).fetchall()


def both(user: MailUser, pop_tls: str = "implicit", imap_tls: str = "implicit") -> list[AccountSpec]:
    """A POP3 and an IMAP account on the same Dovecot mailbox."""
    return [
        AccountSpec("anna-pop", "pop3", user.name, user.password, tls=pop_tls),
        AccountSpec("anna-imap", "imap", user.name, user.password, tls=imap_tls),
    ]


@pytest.mark.parametrize(
    ("pop_tls", "imap_tls"), [("implicit", "implicit"), ("starttls", "starttls"), ("none", "none")]
)
def test_fetch_stores_each_message_once_for_both_protocols(
    dovecot: Dovecot, mail_user: MailUser, pop_tls: str, imap_tls: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild fetch` stores every message once, linked to the POP3 and the IMAP account; a second fetch stores none.

    Steps: deliver 25 messages; fetch; compare the archive with the Maildir bytes; fetch again.
    """
    raws = [sample(i) for i in range(25)]
    dovecot.deliver_many(mail_user.name, raws)
    directory = short_dir()
    cfg = write_config(directory, dovecot, both(mail_user, pop_tls, imap_tls))

    assert main(["-c", str(cfg), "fetch"]) == 0
    counts = fetched_counts(capsys.readouterr().out)
    # both accounts see all 25; each message is new to the archive through exactly one of them
    assert {name: new + known for name, (new, known) in counts.items()} == {"anna-pop": 25, "anna-imap": 25}
    assert sum(new for new, _known in counts.values()) == 25

    rows = archive_rows(directory / "state")
    assert len({mid for _acc, mid, _raw in rows}) == 25
    assert sorted(acc for acc, _m, _r in rows) == ["anna-imap"] * 25 + ["anna-pop"] * 25
    assert {raw for _a, _m, raw in rows} == set(raws)  # byte-exact, CRLF kept, dot un-stuffed

    assert main(["-c", str(cfg), "fetch"]) == 0
    out = capsys.readouterr().out
    assert "anna-pop: 0 new messages" in out
    assert "anna-imap: 0 new messages" in out
    assert len(archive_rows(directory / "state")) == 50
    # each account's cycle time as fetch-now says it, then the total line of the whole command
    pop, imap, total = out.splitlines()
    assert all(re.search(r" retrieved, \d+\.\d{3} s\)$", line) for line in (pop, imap, total)), out
    assert total.startswith("all 2 accounts: 0 new messages (")
    assert fetched_counts(out).keys() == {"anna-pop", "anna-imap"}  # the total is no account's line


def test_wrong_password_fails_only_that_account(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused login fails its account (exit 1, error printed without the password); others still fetch."""
    dovecot.deliver(mail_user.name, sample(1))
    bad_password = 'wrong "pass" word'
    specs = [
        AccountSpec("good", "pop3", mail_user.name, mail_user.password),
        AccountSpec("bad-pop", "pop3", mail_user.name, bad_password),
        AccountSpec("bad-imap", "imap", mail_user.name, bad_password),
    ]
    cfg = write_config(short_dir(), dovecot, specs)
    assert main(["-c", str(cfg), "fetch"]) == 1
    captured = capsys.readouterr()
    assert "good: 1 new message (" in captured.out
    assert "bad-pop: FAILED" in captured.out
    assert "bad-imap: FAILED" in captured.out
    assert bad_password not in captured.out + captured.err


def test_unreachable_host_is_reported(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """A closed port fails the account with a connection error naming it."""
    from tests.support.dovecot import free_port

    port = free_port()
    specs = [
        AccountSpec(
            "closed-pop", "pop3", mail_user.name, mail_user.password, extra={"port": port, "timeout": "5s"}
        ),
        AccountSpec(
            "closed-imap", "imap", mail_user.name, mail_user.password, extra={"port": port, "timeout": "5s"}
        ),
    ]
    cfg = write_config(short_dir(), dovecot, specs)
    assert main(["-c", str(cfg), "fetch"]) == 1
    out = capsys.readouterr().out
    assert "closed-pop: FAILED" in out
    assert "closed-imap: FAILED" in out


def _maild(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def test_daemon_reports_both_accounts_with_1000_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    """With 1,000 messages, `maild fetch` stores 1,000 linked to both accounts, a second fetch 0, and a running
    daemon's `status --json` reports both accounts with 1,000 messages; SIGTERM stops it within seconds.

    Steps: deliver 1,000; `maild fetch` twice; start `maild run`; poll `maild status --json`; check the table
    output; SIGTERM; check the exit and the archive's integrity.
    """
    dovecot.deliver_many(mail_user.name, (sample(i, body_lines=40) for i in range(1000)))
    directory = short_dir()
    cfg = write_config(directory, dovecot, both(mail_user))

    first = _maild("-c", str(cfg), "fetch", timeout=300)
    assert first.returncode == 0, first.stderr
    counts = fetched_counts(first.stdout)
    assert {name: new + known for name, (new, known) in counts.items()} == {
        "anna-pop": 1000,
        "anna-imap": 1000,
    }
    assert sum(new for new, _known in counts.values()) == 1000
    second = _maild("-c", str(cfg), "fetch")
    assert "anna-pop: 0 new messages" in second.stdout
    assert "anna-imap: 0 new messages" in second.stdout

    with running_maild(maild_command(cfg, "--log-level", "debug"), log=directory / "daemon.log") as proc:
        status = wait_for_status(cfg, lambda s: all(a["last_success"] for a in s["accounts"]))
        accounts = {a["name"]: a for a in status["accounts"]}
        assert accounts["anna-pop"]["messages"] == 1000
        assert accounts["anna-imap"]["messages"] == 1000
        assert accounts["anna-pop"]["state"] == "waiting"
        assert accounts["anna-pop"]["organisation"] == "Hausverwaltung Beispiel"
        assert status["archive"]["messages"] == 1000
        table = _maild("-c", str(cfg), "status")
        assert table.returncode == 0
        assert "Hausverwaltung Beispiel" in table.stdout
        assert "anna-imap" in table.stdout
        assert oct(os.stat(directory / "control.sock").st_mode & 0o777) == "0o660"
        assert stop_maild(proc, timeout_s=15) == 0
    assert not (directory / "control.sock").exists()
    with sqlite3.connect(directory / "state" / "maild.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    output = (directory / "daemon.log").read_text()
    assert mail_user.password not in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    cycles = [e for e in events if e.get("event") == "fetch.complete"]
    assert {e["account"] for e in cycles} == {"anna-pop", "anna-imap"}
    assert {e["level"] for e in cycles} == {"debug"}  # nothing new: a quiet cycle is debug, not info


def test_status_without_daemon_is_one_clear_line(tmp_path: Path) -> None:
    """`maild status` with no daemon running says so in one line and exits 3 (systemctl's convention)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[daemon]\ncontrol_socket = "{tmp_path}/none.sock"\nstate_dir = "{tmp_path}"\n')
    done = _maild("-c", str(cfg), "status")
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0
    assert "not running" in done.stderr


def test_check_config_reports_unknown_key(tmp_path: Path) -> None:
    """`maild check-config` exits 1 and names the file and dotted key of an unknown key."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[daemon]\nstate_dirr = "/x"\n')
    done = _maild("-c", str(cfg), "check-config")
    assert done.returncode == 1
    assert "daemon.state_dirr" in done.stderr
    assert str(cfg) in done.stderr
