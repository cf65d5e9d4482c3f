"""Kill test: `maild run` in POP3 ``delete`` mode, SIGKILLed at random moments, loses and duplicates nothing.

The number of trials and the seed come from ``MAILD_KILL_TRIALS`` (default 20) and ``MAILD_KILL_SEED``
(default 1); the benchmark script runs many more.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maild.control import request
from maild.errors import ControlError
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TRIALS = int(os.environ.get("MAILD_KILL_TRIALS", "20"))
SEED = int(os.environ.get("MAILD_KILL_SEED", "1"))


def message(i: int) -> bytes:
    """A distinct message of roughly 6-30 KB with CRLF line endings and a unique Message-ID."""
    rng = random.Random(i)
    lines = b"".join(
        b"Absatz %d: %s\r\n" % (n, b"x" * rng.randint(20, 200)) for n in range(rng.randint(60, 160))
    )
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Nachricht %d\r\n"
        b"Message-ID: <kill-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i, i)
    ) + lines


def archive(db_path: Path) -> tuple[list[bytes], str]:
    """(raw of every archived message, integrity_check result); empty when the archive does not exist yet."""
    if not db_path.exists():
        return [], "ok"
    with sqlite3.connect(db_path) as db:  # read-write open so a leftover WAL is recovered, as maild would
        raws = [r[0] for r in db.execute("SELECT raw FROM messages")]
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        dup_links = db.execute(
            "SELECT count(*) FROM (SELECT account, uidl FROM locations GROUP BY account, uidl HAVING count(*) > 1)"
        ).fetchone()[0]
    assert dup_links == 0
    return raws, check


def check_invariants(dovecot: Dovecot, user: str, delivered: dict[str, bytes], db_path: Path) -> set[str]:
    """Assert: every message that left the server is archived exactly once; nothing is duplicated.

    Returns:
        SHA-256 digests of the messages still on the server.
    """
    on_server = {
        hashlib.sha256(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")).hexdigest()
        for raw in dovecot.maildir_messages(user)
    }
    raws, check = archive(db_path)
    assert check == "ok"
    digests = [hashlib.sha256(r).hexdigest() for r in raws]
    assert len(digests) == len(set(digests)), "a message is stored twice"
    ids = [r.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for r in raws]
    assert len(ids) == len(set(ids)), "the same message is stored twice with different bytes"
    assert set(digests) <= set(delivered), "the archive holds something that was never delivered"
    gone = set(delivered) - on_server
    missing = gone - set(digests)
    assert not missing, f"{len(missing)} messages left the server but are not in the archive"
    return on_server


def test_sigkill_at_random_moments_loses_nothing(dovecot: Dovecot, mail_user: MailUser) -> None:
    """SIGKILL during fetch/delete cycles never loses or duplicates a message, and the archive stays intact.

    Steps: deliver 300 messages; repeatedly start `maild run` (retention "delete", poll every second) and
    SIGKILL it after a seeded random delay; after each kill check that each message gone from the server is
    archived exactly once and the store passes integrity_check; deliver a few new messages between trials;
    finally let maild run until the maildrop is empty and check that every delivered message is archived once.
    """
    rng = random.Random(SEED)
    delivered: dict[str, bytes] = {}
    counter = 0

    def deliver(n: int) -> None:
        nonlocal counter
        batch = [message(counter + k) for k in range(n)]
        counter += n
        for raw in batch:
            delivered[hashlib.sha256(raw).hexdigest()] = raw
        dovecot.deliver_many(mail_user.name, batch)

    deliver(300)
    directory = short_dir("maildkill-")
    spec = AccountSpec(
        "kill-pop",
        "pop3",
        mail_user.name,
        mail_user.password,
        extra={"retention": "delete", "poll_interval": "1s"},
    )
    cfg = write_config(directory, dovecot, [spec])
    db_path = directory / "state" / "maild.sqlite3"
    cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "warning", "run"]

    for _trial in range(TRIALS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(dovecot, mail_user.name, delivered, db_path)
        deliver(rng.randint(0, 10))

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = request(directory / "control.sock", {"command": "status"}, timeout_s=5)
            except ControlError:
                status = {}
            ready = bool(status.get("accounts")) and status["accounts"][0]["last_success"] is not None
            if ready and not dovecot.maildir_messages(mail_user.name):
                break
            time.sleep(0.25)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert check_invariants(dovecot, mail_user.name, delivered, db_path) == set()
    raws, _ = archive(db_path)
    assert sorted(raws) == sorted(delivered.values())
