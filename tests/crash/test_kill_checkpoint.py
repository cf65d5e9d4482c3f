"""Kill test: `maild run` SIGKILLed while its checkpointer is copying the WAL into the database file
loses nothing and duplicates nothing (issue 19 item 6; maild.archive.checkpointer).

Steps: deliver 40 messages of about 200 kB; start `maild run` (POP3, retention "delete", poll every
second) through a wrapper that lowers the checkpointer's bound to 4 MiB and, once armed, SIGKILLs the
process as soon as a checkpoint has started writing into the database file (a watcher thread sees
the file change while the checkpoint call has not returned); wait until the first cycle has deleted
every message on the server (so the last of them are durable only in the WAL); deliver 40 more and
arm the kill. After the kill: the wal-index left behind shows a checkpoint begun and not finished
(``nBackfillAttempted`` above ``nBackfill``); every message gone from the server is archived exactly
once and the archive passes ``integrity_check``; a daemon run unkilled then empties the maildrop with
everything archived once.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from maild.archive.checkpointer import read_wal_state
from tests.support.dovecot import Dovecot, MailUser
from tests.support.kill_trials import _drain, archive, check_invariants, server_digests
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

KILLING_MAILD = """
import os, signal, sys, threading
sys.setswitchinterval(0.0001)  # the watcher gets the GIL soon after the copy's first write
from maild.archive import checkpointer
checkpointer.CHECKPOINT_WAL_OCTETS = 4 << 20
armed = os.environ["ARM_FILE"]
real = checkpointer.Checkpointer._checkpoint
def watch(path, before, done):
    while not done.is_set():
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != before:
            os.kill(os.getpid(), signal.SIGKILL)
def _checkpoint(self, conn):
    if not os.path.exists(armed):
        return real(self, conn)
    st = os.stat(self.path)
    done = threading.Event()
    threading.Thread(target=watch, args=(self.path, (st.st_size, st.st_mtime_ns), done), daemon=True).start()
    try:
        return real(self, conn)
    finally:
        done.set()
checkpointer.Checkpointer._checkpoint = _checkpoint
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def letter(i: int) -> bytes:
    """A distinct message of about 200 kB (random text: pages of its own) with a unique Message-ID."""
    rng = random.Random(i)
    body = b"".join(b"%d %s\r\n" % (n, rng.randbytes(48).hex().encode()) for n in range(2000))
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Brief %d\r\n"
        b"Message-ID: <ckpt-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i, i)
    ) + body


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``condition`` became true within ``timeout_s`` seconds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_while_the_checkpointer_copies_loses_nothing(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A SIGKILL in the middle of a checkpoint's copy loses nothing and duplicates nothing."""
    directory = short_dir("maildckpt-")
    first = [letter(i) for i in range(40)]
    second = [letter(i) for i in range(40, 80)]
    delivered = {hashlib.sha256(r).hexdigest(): r for r in first + second}
    db_path = directory / "state" / "maild.sqlite3"
    arm = directory / "armed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ARM_FILE": str(arm)}
    spec = AccountSpec(
        "kill-pop",
        "pop3",
        mail_user.name,
        mail_user.password,
        extra={"retention": "delete", "poll_interval": "1s", "timeout": "10s"},
    )
    cfg = write_config(directory, dovecot, [spec])
    dovecot.deliver_many(mail_user.name, first)
    killing = [sys.executable, "-c", KILLING_MAILD, "-c", str(cfg), "--log-level", "debug", "run"]
    with (directory / "killed.log").open("wb") as out:
        proc = subprocess.Popen(killing, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        assert wait_for(lambda: not server_digests(dovecot, mail_user.name), 120), "first cycle never ended"
        dovecot.deliver_many(mail_user.name, second)
        arm.touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9, (directory / "killed.log").read_text()[-2000:]

    fd = os.open(f"{db_path}-shm", os.O_RDONLY)
    try:
        left = read_wal_state(fd)
    finally:
        os.close(fd)
    assert left is not None
    assert left.attempted > left.backfilled, f"the kill did not land inside a checkpoint: {left}"

    check_invariants(dovecot, mail_user.name, delivered, db_path)
    assert {hashlib.sha256(r).hexdigest() for r in first} <= {
        hashlib.sha256(r).hexdigest() for r in archive(db_path)[0]
    }
    cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "debug", "run"]
    _drain(cmd, env, directory, dovecot, mail_user, 120.0)
    assert check_invariants(dovecot, mail_user.name, delivered, db_path) == set()
    assert sorted(archive(db_path)[0]) == sorted(first + second)
    shutil.rmtree(directory)  # kept only when the test fails, for its logs
