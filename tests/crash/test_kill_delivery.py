"""Kill tests: `maild run` with ``deliver_maildir`` and POP3 ``delete``, SIGKILLed between a store commit and
its Maildir delivery; after a restart every message is in the Maildir exactly once and none left the server
undelivered.

The random-kill test takes its number of trials and seed from ``MAILD_KILL_TRIALS`` (default 8 here) and
``MAILD_KILL_SEED`` (default 1).
"""

from __future__ import annotations

import collections
import contextlib
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

from tests.support.daemonproc import maild_command, running_maild, stop_maild, wait_until_drained
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TRIALS = min(int(os.environ.get("MAILD_KILL_TRIALS", "8")), 50)
SEED = int(os.environ.get("MAILD_KILL_SEED", "1"))

# Runs maild's CLI with Maildir writes wrapped: the process SIGKILLs itself just before writing file
# number BEFORE (the batch is committed, its files not yet written) or just after writing file number
# AFTER (the files are durable, their delivery rows not yet committed).
KILLING_MAILD = """
import os, signal, sys
import maild.archive.maildir as m
before, after = int(os.environ.get("KILL_BEFORE", "0")), int(os.environ.get("KILL_AFTER", "0"))
real, count = m._write_new, [0]
def write(directory, digest, raw):
    count[0] += 1
    if count[0] == before:
        os.kill(os.getpid(), signal.SIGKILL)
    path = real(directory, digest, raw)
    if count[0] == after:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
m._write_new = write
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def message(i: int) -> bytes:
    """A distinct CRLF message of a few KB with a body line starting "From "."""
    rng = random.Random(i)
    lines = b"".join(
        b"Absatz %d: %s\r\n" % (n, b"y" * rng.randint(20, 120)) for n in range(rng.randint(20, 60))
    )
    return (
        (
            b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Zustellung %d\r\n"
            b"Message-ID: <deliver-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
            % (i, i, i)
        )
        + lines
        + b"From the office\r\n"
    )


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def maildir_digests(root: Path) -> collections.Counter[str]:
    """SHA-256 of the content of every file in new/ and cur/, counted."""
    files = [f for sub in ("new", "cur") if (root / sub).is_dir() for f in (root / sub).iterdir()]
    return collections.Counter(digest(f.read_bytes()) for f in files)


def archived(db: Path) -> tuple[set[str], set[str]]:
    """(SHA-256 of every archived message, SHA-256 of every message with a delivery row)."""
    if not db.exists():
        return set(), set()
    with (
        contextlib.closing(sqlite3.connect(db)) as conn,
        conn,
    ):  # read-write, so a leftover WAL is recovered as maild would
        if conn.execute("PRAGMA user_version").fetchone()[0] < 2:  # killed before the schema was complete
            return set(), set()
        stored = {r[0] for r in conn.execute("SELECT sha256 FROM messages")}
        delivered = {
            r[0]
            for r in conn.execute("SELECT m.sha256 FROM deliveries d JOIN messages m ON m.id = d.message")
        }
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return stored, delivered


def on_server(dovecot: Dovecot, user: str) -> set[str]:
    return {digest(raw) for raw in dovecot.maildir_messages(user)}


def check_invariants(dovecot: Dovecot, user: str, sent: dict[str, bytes], db: Path, root: Path) -> None:
    """No file twice; nothing that left the server is missing from the archive or the Maildir."""
    files = maildir_digests(root)
    twice = [d for d, n in files.items() if n > 1]
    assert not twice, f"{len(twice)} messages are in the Maildir more than once"
    assert set(files) <= set(sent)
    stored, delivered = archived(db)
    assert delivered <= set(files), "a delivery row names a message whose file is missing"
    gone = set(sent) - on_server(dovecot, user)
    assert gone <= stored, "a message left the server but is not archived"
    assert gone <= set(files), "a message left the server but is not in the Maildir"


def run_until_empty(cfg: Path, directory: Path, dovecot: Dovecot, user: str) -> None:
    """Run `maild run` until the server is empty after a successful cycle (120 s at most), then stop it with SIGTERM."""
    with running_maild(maild_command(cfg, "--log-level", "warning")) as proc:
        wait_until_drained(directory, dovecot, user, timeout_s=120, poll_s=0.2)
        assert stop_maild(proc, timeout_s=30) == 0


def setup(dovecot: Dovecot, user: MailUser, count: int) -> tuple[dict[str, bytes], Path, Path, Path, Path]:
    sent = {digest(m): m for m in (message(i) for i in range(count))}
    dovecot.deliver_many(user.name, sent.values())
    directory = short_dir("maildkd-")
    root = directory / "Maildir"
    spec = AccountSpec(
        "kill-pop",
        "pop3",
        user.name,
        user.password,
        extra={"retention": "delete", "poll_interval": "1s", "deliver_maildir": str(root)},
    )
    cfg = write_config(directory, dovecot, [spec])
    return sent, directory, cfg, directory / "state" / "maild.sqlite3", root


@pytest.mark.parametrize(("point", "nth"), [("KILL_BEFORE", 1), ("KILL_BEFORE", 150), ("KILL_AFTER", 120)])
def test_sigkill_between_commit_and_delivery(
    dovecot: Dovecot, mail_user: MailUser, point: str, nth: int
) -> None:
    """SIGKILL after a store commit but before (or during) its Maildir delivery: after a restart each message is
    in the Maildir exactly once and the server was emptied only of delivered mail.

    Steps: deliver 250 messages; run `maild run` whose Maildir write SIGKILLs the process at the chosen file
    (before writing it, or after writing it but before the delivery rows commit); check that the archive holds
    committed messages without delivery rows and nothing undelivered left the server; restart `maild run`
    normally until the server is empty; every message is in the archive and in the Maildir once.
    """
    sent, directory, cfg, db, root = setup(dovecot, mail_user, 250)
    env = {**os.environ, point: str(nth)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLING_MAILD, "-c", str(cfg), "--log-level", "warning", "run"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    stored, delivered = archived(db)
    assert len(stored) >= nth, "the kill came before the batch was committed"
    assert len(delivered) < len(stored), "the kill did not fall between the commit and the delivery rows"
    assert on_server(dovecot, mail_user.name) == set(sent), "something was deleted before its delivery"
    files_before = maildir_digests(root)
    assert sum(files_before.values()) == (nth - 1 if point == "KILL_BEFORE" else nth)
    check_invariants(dovecot, mail_user.name, sent, db, root)

    run_until_empty(cfg, directory, dovecot, mail_user.name)

    files = maildir_digests(root)
    assert files == collections.Counter(set(sent)), (
        "after the restart each message must be there exactly once"
    )
    stored, delivered = archived(db)
    assert stored == delivered == set(sent)
    assert not dovecot.maildir_messages(mail_user.name)


def test_sigkill_at_random_moments_delivers_each_message_once(dovecot: Dovecot, mail_user: MailUser) -> None:
    """SIGKILL of `maild run` at random moments never writes a message twice to the Maildir, and nothing
    leaves the server before its file is durable.

    Steps: deliver 300 messages; repeatedly start `maild run` (retention "delete", deliver_maildir) and
    SIGKILL it after a seeded random delay, checking the invariants after each kill and delivering a few new
    messages; finally run until the server is empty: archive, delivery rows and Maildir hold every message once.
    """
    rng = random.Random(SEED)
    sent, directory, cfg, db, root = setup(dovecot, mail_user, 300)
    counter = len(sent)
    cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "warning", "run"]
    for _trial in range(TRIALS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(dovecot, mail_user.name, sent, db, root)
        extra = [message(counter + k) for k in range(rng.randint(0, 10))]
        counter += len(extra)
        sent.update({digest(m): m for m in extra})
        dovecot.deliver_many(mail_user.name, extra)

    run_until_empty(cfg, directory, dovecot, mail_user.name)

    files = maildir_digests(root)
    assert files == collections.Counter(set(sent))
    stored, delivered = archived(db)
    assert stored == delivered == set(sent)
