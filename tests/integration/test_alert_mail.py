"""Alerts end to end: a running daemon, a wrong password, Debian's msmtp as the sendmail program and a
local SMTP server (aiosmtpd) started by the test; the alert command and the mailbox receive exactly
fail → locked out → (still failing: nothing) → recovered, and never the password."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild, wait_until
from tests.support.dovecot import Dovecot, MailUser, free_port
from tests.support.maildconf import AccountSpec, short_dir, write_config

MSMTP = shutil.which("msmtp")


class Inbox:
    """aiosmtpd handler keeping every message received."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A local SMTP server on a free loopback port: (inbox, port)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.mark.dovecot
@pytest.mark.skipif(MSMTP is None, reason="Debian's msmtp is not installed (.ci/install installs it)")
def test_alerts_reach_the_command_and_the_mailbox_once_per_change(
    dovecot: Dovecot, mail_user: MailUser, smtp: tuple[Inbox, int]
) -> None:
    """Steps: start with a wrong password and ``after = "1s"``; the first refusal leads to ``failing``;
    two more (fetch-now) to ``locked_out``; housekeeping passes without new events; the right password
    and ``maild resume`` lead to one ``recovered`` per kind; ``maild alert-test`` reaches both channels.
    """
    inbox, port = smtp
    directory = short_dir()
    events_file = directory / "events.jsonl"
    script = directory / "alert.py"
    script.write_text(
        f"import sys\nwith open({str(events_file)!r}, 'a') as f:\n    f.write(sys.stdin.read())\n"
    )
    rc = directory / "msmtprc"
    rc.write_text(
        f"account default\nhost 127.0.0.1\nport {port}\nfrom maild@office.example\nauth off\ntls off\n"
    )
    rc.chmod(0o600)
    spec = AccountSpec("anna", "pop3", mail_user.name, "wrong-password-2931", extra={"poll_interval": "1h"})
    cfg = write_config(directory, dovecot, [spec])
    with cfg.open("a") as fh:
        fh.write(
            "\n[alerts]\n"
            f"command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n"
            'mail_to = "admin@office.example"\n'
            'mail_from = "maild@office.example"\n'
            f'sendmail = [{json.dumps(MSMTP)}, "-C", {json.dumps(str(rc))}]\n'
            'after = "1s"\n'
            "disk_free_percent = 0\n"  # not about the disk: the test machine's own may be nearly full
        )

    def events() -> list[dict[str, Any]]:
        text = events_file.read_text() if events_file.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    def kinds() -> list[tuple[str, str]]:
        return [(e["kind"], e["state"]) for e in events()]

    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        wait_until(lambda: ("failing", "firing") in kinds(), "the failing alert")
        for _ in range(2):
            maild_cli(cfg, "fetch-now", "anna")
        wait_until(lambda: ("locked_out", "firing") in kinds(), "the lockout alert")
        time.sleep(11)  # two housekeeping passes: still failing, nothing new may be sent
        assert kinds() == [("failing", "firing"), ("locked_out", "firing")]

        (directory / "secrets" / "anna").write_text(mail_user.password + "\n")
        assert maild_cli(cfg, "resume", "anna").returncode == 0
        wait_until(lambda: len(kinds()) == 4, "the recovery notices")
        assert sorted(kinds()[2:]) == [("failing", "recovered"), ("locked_out", "recovered")]

        test = maild_cli(cfg, "alert-test")
        assert test.returncode == 0, test.stdout + test.stderr
        assert test.stdout.splitlines() == ["command: sent", "mail: sent"]
        wait_until(lambda: len(inbox.messages) == 5, "five mails")
        assert stop_maild(proc) == 0

    first = events()[0]
    assert first["account"] == "anna"
    assert first["organisation"] == spec.organisation
    assert set(first) == {
        "kind",
        "state",
        "account",
        "organisation",
        "employee",
        "since",
        "at",
        "message",
        "next_step",
    }
    subjects = [m["Subject"] for _from, _to, m in inbox.messages]
    assert subjects[:2] == ["[maild] anna: fetching fails", "[maild] anna: locked out (login refused)"]
    assert sorted(subjects[2:4]) == [
        "[maild] recovered: anna: fetching fails",
        "[maild] recovered: anna: locked out (login refused)",
    ]
    assert subjects[4] == "[maild] test: alert test"
    assert all(
        to == ["admin@office.example"] and sender == "maild@office.example"
        for sender, to, _m in inbox.messages
    )
    everything = events_file.read_text() + "".join(m.as_string() for _f, _t, m in inbox.messages)
    everything += (directory / "daemon.log").read_text()
    assert "wrong-password-2931" not in everything
    assert mail_user.password not in everything
