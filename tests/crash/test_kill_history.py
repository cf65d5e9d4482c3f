"""The account history counts what each committed batch archived, so a crash mid-cycle does not make
it undercount (issue 17 item 4): ``maild run`` killed with SIGKILL after its first batch committed."""

from __future__ import annotations

import signal
import sqlite3
import sys
import time

from tests.support import corpus
from tests.support.daemonproc import running_maild
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

MESSAGES = 400
"""Two batches of 200 (``BATCH_MESSAGES``): the kill lands after the first commit, in the second."""
RATE_OCTETS_PER_S = 40_000.0
"""The proxy's trickle: the second batch's retrieval takes seconds, so the kill lands inside it."""


def test_history_counts_the_committed_batches_of_a_killed_cycle(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: 400 messages behind a trickling proxy; the daemon logs ``fetch.commit.complete`` for its
    first batch and is killed (SIGKILL) before the cycle ends; in the archive the account's history
    counts exactly the messages and octets linked to the account, not 0 as when it was written only
    at cycle end."""
    directory = short_dir()
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"m {n}") for n in range(MESSAGES)])
    log = directory / "daemon.log"
    with FaultProxy(dovecot.host, dovecot.ports.pop3s) as proxy:
        proxy.trickle(RATE_OCTETS_PER_S)
        spec = AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"port": proxy.port})
        cfg = write_config(directory, dovecot, [spec])
        command = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "debug", "run"]
        with running_maild(command, log=log, env={"PYTHONUNBUFFERED": "1"}) as proc:
            deadline = time.monotonic() + 120
            while "fetch.commit.complete" not in (log.read_text() if log.exists() else ""):
                assert time.monotonic() < deadline, "no batch committed"
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert "fetch.complete" not in log.read_text().replace("fetch.commit.complete", "")  # killed mid-cycle
    db = sqlite3.connect(directory / "state" / "maild.sqlite3")
    try:
        linked, octets = db.execute(
            "SELECT count(*), coalesce(sum(m.size_octets), 0) FROM locations l JOIN messages m ON m.id = l.message"
            " WHERE l.account = 'anna'"
        ).fetchone()
        history = db.execute(
            "SELECT fetched_messages, fetched_octets FROM account_history WHERE account = 'anna'"
        ).fetchone()
    finally:
        db.close()
    assert 0 < linked < MESSAGES
    assert history == (linked, octets)
