"""Kill test: `maild run` SIGKILLed while a large message is in a spool file, or after it was spooled
and before its commit, loses nothing, records nothing of it and leaves no spool garbage (issue 19
item 2; maild.spool).

Steps, for each kill point (spool file open and still growing; spool file complete): deliver two
small messages around a 6 MB one; start `maild run` (POP3 with retention "delete", IMAP with "keep";
poll every second) through the fault proxy trickling 3 MB/s; watch the daemon's open descriptors for its spool file
(``/proc/PID/fd``: an unnamed ``O_TMPFILE`` beside the archive) and SIGKILL it at the point; then
check that every message gone from the server is archived exactly once, that a large message not in
the archive is still on the server with no UIDL recorded, and that no spool file is left; put a
named leftover beside the archive (as a crash on a file system without ``O_TMPFILE`` would); finally
run the daemon unkilled until the maildrop is empty (IMAP: one unkilled `maild fetch`): everything
archived once, the leftover swept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maild.spool import SPOOL_NAME_PREFIX
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.kill_trials import _drain, archive, check_invariants, message
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

LARGE_OCTETS = 6_000_000


def spool_fd_size(pid: int, directory: Path) -> int | None:
    """Size of the process's open spool file in ``directory`` (an unnamed or deleted file there), or None."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return None
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith(str(directory)) and target.endswith("(deleted)"):
                return os.stat(f"/proc/{pid}/fd/{name}").st_size
        except OSError:
            continue
    return None


def uidls(db_path: Path) -> int:
    """How many server identities (POP3 UIDLs, IMAP UIDs) the archive records."""
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        return int(db.execute("SELECT count(*) FROM locations").fetchone()[0])


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("point", ["growing", "complete"])
def test_sigkill_with_a_spooled_message_loses_nothing(
    dovecot: Dovecot, mail_user: MailUser, point: str, protocol: str
) -> None:
    """A SIGKILL while the large message is spooled loses nothing, duplicates nothing, leaves no file
    (POP3: written in the session's worker thread; IMAP: by executor jobs behind the event loop)."""
    directory = short_dir("maildspool-")
    raws = [message(1), corpus.large_message(LARGE_OCTETS, seed=9), message(2)]
    delivered = {hashlib.sha256(r).hexdigest(): r for r in raws}
    large_digest = hashlib.sha256(raws[1]).hexdigest()
    dovecot.deliver_many(mail_user.name, raws)
    db_path = directory / "state" / "maild.sqlite3"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = dovecot.ports.pop3s if protocol == "pop3" else dovecot.ports.imaps
    retention = "delete" if protocol == "pop3" else "keep"  # IMAP deletes only after days
    with FaultProxy(dovecot.host, port) as proxy:
        proxy.trickle(3_000_000)
        spec = AccountSpec(
            f"kill-{protocol}",
            protocol,
            mail_user.name,
            mail_user.password,
            extra={"retention": retention, "poll_interval": "1s", "port": proxy.port, "timeout": "10s"},
        )
        cfg = write_config(directory, dovecot, [spec])
        cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "debug", "run"]
        with (directory / "killed.log").open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        seen = 0
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                size = spool_fd_size(proc.pid, db_path.parent)
                if size is not None:
                    seen = max(seen, size)
                    if point == "growing" and 2**20 < size < LARGE_OCTETS - 2**20:
                        break
                    if point == "complete" and size >= LARGE_OCTETS:
                        break
                time.sleep(0.002)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert seen > 2**20, "the daemon never had the large message in a spool file"
        on_server = check_invariants(dovecot, mail_user.name, delivered, db_path)
        stored = {hashlib.sha256(r).hexdigest() for r in archive(db_path)[0]}
        if large_digest not in stored:
            assert large_digest in on_server
        if point == "growing":
            assert large_digest not in stored
            assert uidls(db_path) <= 1  # at most the small message before it (a POP3 or IMAP location)
        assert [n for n in os.listdir(db_path.parent) if n.startswith(SPOOL_NAME_PREFIX)] == []
        leftover = db_path.parent / f"{SPOOL_NAME_PREFIX}00112233aabbccdd"
        leftover.write_bytes(b"half a message")
        proxy.reset()
        if protocol == "pop3":
            _drain(cmd, env, directory, dovecot, mail_user, 60.0)
        else:  # retention "keep": one unkilled one-shot fetch takes what is missing
            done = subprocess.run(
                [*cmd[:-1], "fetch"], env=env, capture_output=True, timeout=120, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr
    on_server = check_invariants(dovecot, mail_user.name, delivered, db_path)
    assert on_server == (set() if protocol == "pop3" else set(delivered))
    assert sorted(archive(db_path)[0]) == sorted(raws)
    assert not leftover.exists()
    shutil.rmtree(directory)  # kept only when the test fails, for its logs
