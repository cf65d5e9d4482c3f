"""A running daemon (``maild run`` as a subprocess) against the real Dovecot: the auth lockout and the
alert memory survive a restart (issue 17 item 5, "persist"), a replaced archive alerts and makes
``maild status`` and ``maild check`` say so (issue 15 item 4), and status answers with the right
figures while another process holds the archive's write lock (issue 15 item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import corpus
from tests.support.daemonproc import maild_cli, maild_command, running_maild, status, stop_maild, wait_until
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config


def with_alert_command(cfg: Path, events: Path, **keys: str) -> None:
    """Append an ``[alerts]`` table whose command appends each JSON event to ``events``."""
    script = cfg.parent / "alert.py"
    script.write_text(f"import sys\nwith open({str(events)!r}, 'a') as f:\n    f.write(sys.stdin.read())\n")
    # disk_full off: these tests are about other alerts, and the test machine's own disk may be full
    lines = [f"command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]", "disk_free_percent = 0"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    with cfg.open("a") as fh:
        fh.write("\n[alerts]\n" + "\n".join(lines) + "\n")


def received(events: Path) -> list[tuple[str, str]]:
    """(kind, state) of every event the alert command got so far."""
    text = events.read_text() if events.exists() else ""
    return [(e["kind"], e["state"]) for e in map(json.loads, text.splitlines())]


def account_status(cfg: Path) -> dict[str, Any]:
    """The first account of ``maild status --json`` (``{}`` while the daemon does not answer)."""
    accounts = status(cfg.parent / "control.sock").get("accounts")
    return accounts[0] if accounts else {}


def test_a_lockout_and_its_alerts_survive_a_restart(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Steps: a wrong password; three refused cycles lock the account out and send failing and
    locked_out; the daemon stops and starts again: the account is still locked out with the same
    three failures (no fresh tries against the server), and two housekeeping passes send nothing
    again; the right password and ``maild resume``: one recovery per kind."""
    directory = short_dir()
    events = directory / "events.jsonl"
    spec = AccountSpec("anna", "pop3", mail_user.name, "wrong-password-5150")
    cfg = write_config(directory, dovecot, [spec])
    with_alert_command(cfg, events, after="1s")
    locked = [("failing", "firing"), ("locked_out", "firing")]

    with running_maild(maild_command(cfg), log=directory / "first.log") as proc:
        wait_until(lambda: account_status(cfg).get("consecutive_failures") == 1, "the first refusal")
        for _ in range(2):
            maild_cli(cfg, "fetch-now", "anna")
        wait_until(lambda: sorted(received(events)) == locked, "the failing and locked_out alerts")
        assert stop_maild(proc) == 0

    with running_maild(maild_command(cfg), log=directory / "second.log") as proc:
        wait_until(lambda: account_status(cfg).get("state") == "auth_failed", "the restarted daemon")
        after_restart = account_status(cfg)
        assert after_restart["consecutive_failures"] == 3
        assert after_restart["history"]["cycles_failed"] == 3
        time.sleep(11)  # two housekeeping passes: an open alert is not sent again, no login tried
        assert account_status(cfg)["history"]["cycles_failed"] == 3
        assert sorted(received(events)) == locked

        (directory / "secrets" / "anna").write_text(mail_user.password + "\n")
        assert maild_cli(cfg, "resume", "anna").returncode == 0
        wait_until(lambda: len(received(events)) == 4, "the recovery notices")
        assert sorted(received(events)[2:]) == [("failing", "recovered"), ("locked_out", "recovered")]
        assert stop_maild(proc) == 0
    everything = (
        events.read_text() + (directory / "first.log").read_text() + (directory / "second.log").read_text()
    )
    assert "wrong-password-5150" not in everything
    assert mail_user.password not in everything


def test_a_replaced_archive_alerts_and_status_says_so(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Steps: a POP3 account with ``retention = "delete"`` fetches and deletes once; the archive file
    is removed under the daemon; housekeeping's guard check sends archive_replaced (while no cycle
    runs); ``maild status`` exits 1 showing the problem, ``maild check`` exits 2 (CRITICAL); a new
    message and ``fetch-now`` leave it on the server."""
    directory = short_dir()
    events = directory / "events.jsonl"
    spec = AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})
    cfg = write_config(directory, dovecot, [spec])
    with_alert_command(cfg, events)
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject="first")])

    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        wait_until(
            lambda: account_status(cfg).get("last_success") and not dovecot.maildir_files(mail_user.name),
            "the first message archived and deleted",
        )
        os.unlink(directory / "state" / "maild.sqlite3")
        wait_until(lambda: ("archive_replaced", "firing") in received(events), "the archive_replaced alert")
        event = json.loads((events.read_text().splitlines())[-1])
        assert "deleted under the running daemon" in event["message"]
        assert event["account"] is None

        shown = maild_cli(cfg, "status")
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "ARCHIVE PROBLEM: " in shown.stdout
        check = maild_cli(cfg, "check")
        assert check.returncode == 2, check.stdout
        assert check.stdout.startswith("MAILD CRITICAL - archive problem: archive ")

        later = corpus.make_message(subject="later")
        dovecot.deliver_many(mail_user.name, [later])
        maild_cli(cfg, "fetch-now", "anna")
        assert dovecot.maildir_messages(mail_user.name) == [later]
        assert stop_maild(proc) == 0


LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_status_answers_from_kept_counters_under_a_foreign_write_lock(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: three messages are archived (retention keep) without any status request, so the daemon
    has read no figures for status yet; another process takes the archive's write lock (BEGIN
    IMMEDIATE); two more messages and ``fetch-now --no-wait``: the daemon's commit now waits for the
    lock (its log says ``fetch.commit.started`` a second time); ``maild status --json`` answers
    while the lock is still held, with the three messages and their octets for the account and the
    archive; the lock released, the other two are archived."""
    directory = short_dir()
    log = directory / "daemon.log"
    spec = AccountSpec("anna", "pop3", mail_user.name, mail_user.password)
    cfg = write_config(directory, dovecot, [spec])
    first = [corpus.make_message(subject=f"first {n}") for n in range(3)]
    dovecot.deliver_many(mail_user.name, first)

    def commits() -> int:
        return log.read_text().count("fetch.commit.started") if log.exists() else 0

    with running_maild(maild_command(cfg, "--log-level", "debug"), log=log) as proc:
        wait_until(lambda: "fetch.complete" in (log.read_text() if log.exists() else ""), "the first cycle")
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(directory / "state" / "maild.sqlite3")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            dovecot.deliver_many(
                mail_user.name, [corpus.make_message(subject=f"later {n}") for n in range(2)]
            )
            assert maild_cli(cfg, "fetch-now", "--no-wait", "anna").returncode == 0
            wait_until(lambda: commits() == 2, "the daemon's commit waiting for the lock")
            answer = maild_cli(cfg, "status", "--json")
            assert holder.poll() is None  # the lock is still held
        finally:
            if holder.stdin is not None:
                holder.stdin.write("\n")
                holder.stdin.close()
            holder.wait(timeout=30)
            if holder.stdout is not None:
                holder.stdout.close()
        reply = json.loads(answer.stdout)
        octets = sum(len(m) for m in first)
        assert reply["accounts"][0]["messages"] == 3
        assert (reply["archive"]["messages"], reply["archive"]["octets"]) == (3, octets)
        wait_until(lambda: account_status(cfg).get("messages") == 5, "the two later messages archived")
        assert stop_maild(proc) == 0
