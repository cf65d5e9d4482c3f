"""A real ``maild run`` whose archive is left inside a transaction (the first batch's ``COMMIT`` and the
``ROLLBACK`` after it fail: :mod:`tests.support.failing_rollback`) stops by itself and exits 75 for
systemd's ``Restart=on-failure``, having deleted nothing it did not archive; the restarted daemon
fetches and deletes normally; a second such failure within the hour exits 74, which the unit does not
restart (session 15; before, the daemon kept running with every deletion stopped until an admin
restarted it, and exited 0 at the next SIGTERM)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from maild.cli.main import EXIT_ARCHIVE_FAILING, EXIT_ARCHIVE_RESTART
from maild.service.restart_record import RECORD_NAME
from tests.support import corpus
from tests.support.alert_recorder import AlertRecorder
from tests.support.daemonproc import (
    log_events,
    maild_command,
    running_maild,
    stop_maild,
    wait_until_drained,
)
from tests.support.dovecot import Dovecot, MailUser
from tests.support.failing_rollback import failing_rollback_command
from tests.support.maildconf import AccountSpec, short_dir, write_config

EXIT_WAIT_S = 90.0
"""How long a test waits for the daemon to exit by itself (a hang guard, not a speed assertion)."""


def archived_messages(database: Path) -> int:
    """Messages committed in the archive, read by a connection of this process."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


def deliver(dovecot: Dovecot, user: str, count: int, tag: str) -> None:
    """Put ``count`` distinct messages into ``user``'s INBOX."""
    for i in range(count):
        dovecot.deliver(user, corpus.make_message(subject=f"{tag} {i}", body=f"{tag} body {i}\n"))


@pytest.mark.dovecot
def test_a_failed_rollback_exits_75_deletes_nothing_and_the_restart_fetches(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: three messages on a POP3 server with retention ``delete``; the daemon's first batch
    cannot commit or roll back: it exits 75 by itself, the three still on the server and none in the
    archive, the alert sent, the journal lines at error level, the restart record written; a normal
    daemon then archives all three and empties the maildrop, and stops with 0."""
    directory = short_dir()
    cfg = write_config(
        directory,
        dovecot,
        [AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})],
    )
    alerts = AlertRecorder(directory, cfg, "disk_free_percent = 0\n")
    deliver(dovecot, mail_user.name, 3, "first")
    database = directory / "state" / "maild.sqlite3"

    with running_maild(failing_rollback_command(cfg), log=directory / "failing.log") as proc:
        code = proc.wait(timeout=EXIT_WAIT_S)
    assert code == EXIT_ARCHIVE_RESTART, (directory / "failing.log").read_text()[-3000:]
    assert len(dovecot.maildir_files(mail_user.name)) == 3  # nothing deleted: nothing was committed
    assert archived_messages(database) == 0  # the open transaction was rolled back at the close
    assert log_events(directory / "failing.log", "archive.transaction.left-open") == ["error"]
    assert log_events(directory / "failing.log", "daemon.stopping-for-restart") == ["error"]
    assert "stopped for a restart (exit 75)" in (directory / "failing.log").read_text()
    assert alerts.states("archive_replaced") == ["firing"]
    assert json.loads((directory / "state" / RECORD_NAME).read_text())["reason"].endswith(
        "a transaction could not be rolled back and stays open"
    )

    with running_maild(maild_command(cfg), log=directory / "restarted.log") as proc:
        assert wait_until_drained(directory, dovecot, mail_user.name, timeout_s=60)
        assert stop_maild(proc) == 0
    assert archived_messages(database) == 3


@pytest.mark.dovecot
def test_a_second_failed_rollback_within_the_hour_exits_74(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Steps: the failing daemon exits 75; started again with the same failure at once, it exits 74
    (``RestartPreventExitStatus=``: no restart loop) and the messages stay on the server."""
    directory = short_dir()
    cfg = write_config(
        directory,
        dovecot,
        [AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})],
    )
    deliver(dovecot, mail_user.name, 2, "again")
    codes = []
    for run in ("one", "two"):
        with running_maild(failing_rollback_command(cfg), log=directory / f"{run}.log") as proc:
            codes.append(proc.wait(timeout=EXIT_WAIT_S))
    assert codes == [EXIT_ARCHIVE_RESTART, EXIT_ARCHIVE_FAILING], (directory / "two.log").read_text()[-3000:]
    assert "not restarted, check the archive's disk" in (directory / "two.log").read_text()
    assert len(dovecot.maildir_files(mail_user.name)) == 2


@pytest.mark.dovecot
def test_a_failed_rollback_in_a_one_shot_fetch_deletes_nothing_and_says_so(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """``maild fetch`` with the same failure (no daemon, no restart): exits non-zero, deletes nothing,
    archives nothing, and a line on stderr names the open transaction and what it means (session 15's
    review: before, only the cycle's "disk I/O error" and a JSON log line said anything)."""
    import subprocess

    directory = short_dir()
    cfg = write_config(
        directory,
        dovecot,
        [AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})],
    )
    deliver(dovecot, mail_user.name, 3, "oneshot")
    argv = [*failing_rollback_command(cfg)[:-1], "fetch"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=EXIT_WAIT_S, check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said[-3000:]
    assert "could not be rolled back" in said, said[-3000:]
    assert "nothing was deleted on any server after it" in done.stderr, said[-3000:]
    assert len(dovecot.maildir_files(mail_user.name)) == 3
    assert archived_messages(directory / "state" / "maild.sqlite3") == 0


FAIL_FROM_THE_START = (
    "import sys\n"
    "from tests.support import failing_rollback as f\n"
    "start = f.FailingEnd.__init__\n"
    "def at_once(self, raw):\n"
    "    start(self, raw)\n"
    "    self._batch = True\n"
    "f.FailingEnd.__init__ = at_once\n"
    "f.install()\n"
    "sys.exit(f.main(sys.argv[1:]))\n"
)
"""``python -c`` code: :mod:`tests.support.failing_rollback` with its first ``COMMIT`` of any kind failing
(the daemon's start-up writes, before any cycle)."""


@pytest.mark.dovecot
def test_a_failed_rollback_at_start_up_exits_75_and_is_recorded(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """The start-up's account records cannot commit or roll back (the archive exists already): exit 75
    and the restart record written, so a repeat within the hour is 74 (session 15's review: before, the
    StoreError escaped run() past the left-open check: exit 1, restarted every RestartSec, the record
    never written, so never 74)."""
    import asyncio
    import subprocess
    import sys

    from maild.archive.store import Store

    directory = short_dir()
    cfg = write_config(
        directory,
        dovecot,
        [AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})],
    )

    async def create() -> None:  # the archive and its schema, committed normally; no account yet
        store = await Store.open(directory / "state" / "maild.sqlite3")
        await store.close()

    (directory / "state").mkdir(exist_ok=True)
    asyncio.run(create())
    argv = [sys.executable, "-c", FAIL_FROM_THE_START, "-c", str(cfg), "run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=EXIT_WAIT_S, check=False)
    assert done.returncode == EXIT_ARCHIVE_RESTART, (done.stdout + done.stderr)[-3000:]
    assert (directory / "state" / RECORD_NAME).exists()
