"""Two move commands at once on one archive, against a real Dovecot (QA of session 13).

Before session 13 nothing kept a second `maild migrate A --to B` from running beside the first: both
compared, planned the same missing messages and uploaded them, so B held duplicates.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from maild.cli.main import main
from tests.integration.test_migration import ServerView, _pop_spec, letter
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.dovecot

FIRST_UPLOAD_WAIT_S = 60.0
"""How long the test waits for the first migrate's first recorded upload, in seconds (a bound against
a hang, not a timing assertion)."""


def _appends(state: Path) -> int:
    with sqlite3.connect(f"file:{state / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        try:
            return int(db.execute("SELECT count(*) FROM appends").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_a_second_migrate_beside_a_running_one_is_refused_and_nothing_is_uploaded_twice(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `maild migrate` started while another one of the same archive runs is refused; B gets each message once.

    Steps: 40 messages archived by POP3 (retention delete, then keep); the first `migrate pop --to imap`
    runs as a process through a proxy adding 30 ms each way; once its first upload is recorded, a
    second `migrate pop --to imap` (and `migrate --undo`) in this process exit 1 naming the move lock
    and the first one's PID, and upload nothing; the first finishes; B holds each of the 40 once.
    """
    messages = [letter(i) for i in range(40)]
    dovecot.deliver_many(mail_user.name, messages)
    directory = short_dir("maildtwo-")
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:
        imap = AccountSpec(
            "imap", "imap", mail_user.name, mail_user.password, tls="none", extra={"port": proxy.port}
        )
        cfg = write_config(directory, dovecot, [_pop_spec(mail_user), imap])
        assert main(["-c", str(cfg), "fetch", "pop"]) == 0
        write_config(directory, dovecot, [_pop_spec(mail_user, retention="keep"), imap])
        capsys.readouterr()
        proxy.latency(0.03)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        first = subprocess.Popen(
            [sys.executable, "-m", "maild", "-c", str(cfg), "migrate", "pop", "--to", "imap"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + FIRST_UPLOAD_WAIT_S
            while _appends(directory / "state") == 0 and first.poll() is None:
                assert time.monotonic() < deadline, "the first migrate recorded no upload"
                time.sleep(0.05)
            assert first.poll() is None, "the first migrate ended before the second could start"
            second = main(["-c", str(cfg), "migrate", "pop", "--to", "imap"])
            err = capsys.readouterr().err
            undo = main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--undo"])
            undo_err = capsys.readouterr().err
            out, first_err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert first.returncode == 0, first_err
    assert "uploaded 40, refused 0" in out
    assert second == 1, err
    assert undo == 1, undo_err
    for text in (err, undo_err):
        assert "another move command" in text
        assert f"PID {first.pid}" in text
    view = ServerView(dovecot, mail_user)
    counts = Counter(raw for raw, _w, _f in view.messages())
    view.close()
    assert sorted(counts) == sorted(messages)
    assert set(counts.values()) == {1}
