"""SIGKILL during ``maild migrate --verify`` and ``--undo``, then a re-run: nothing else is touched.

``--verify`` only reads; ``--undo`` deletes only uploads it has just verified by SHA-256 and forgets
their records afterwards, so a kill anywhere leaves at most uploads flagged ``\\Deleted`` or
removed with their records still present, which the next run finishes ("already gone").
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_migration import letter
from tests.integration.test_move_same_mailbox import _uids
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot

MESSAGES = 30

KILLING_MAILD = """
import os, signal, sys
import maild.move.verify as v
import maild.archive.move_queries as q
point, nth = os.environ["KILL_AT"], int(os.environ.get("KILL_NTH", "1"))
count = {}
def kill_at(name, real):
    def wrapper(*args, **kwargs):
        count[name] = count.get(name, 0) + 1
        if name == point and count[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper
async def _after(real, name, *args, **kwargs):
    result = await real(*args, **kwargs)
    if name == point:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
def kill_after(name, real):
    return lambda *args, **kwargs: _after(real, name, *args, **kwargs)
v._matches = kill_at("check", v._matches)
q.MigrationStore.forget_appends = kill_at("forget", q.MigrationStore.forget_appends)
import maild.protocols.imap.deletion as deletion
deletion._store_deleted = kill_after("flagged", deletion._store_deleted)
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

#: Where a run is killed: (command, KILL_AT, KILL_NTH). ``check``: while comparing the n-th fetched
#: upload's SHA-256; ``flagged``: uploads flagged \\Deleted, not yet expunged; ``forget``: expunged,
#: records not yet forgotten.
POINTS = [
    ("--verify", "check", 1),
    ("--verify", "check", MESSAGES),
    ("--undo", "check", 7),
    ("--undo", "flagged", 1),
    ("--undo", "forget", 1),
]


def _maild(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _records(state: Path) -> int:
    with sqlite3.connect(f"file:{state / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM appends").fetchone()[0])


@pytest.mark.parametrize(("command", "point", "nth"), POINTS)
def test_kill_during_verify_or_undo_then_rerun(
    dovecot: Dovecot, mail_user: MailUser, command: str, point: str, nth: int
) -> None:
    """Killed at a chosen moment, verify changes nothing and undo removes only this move's uploads;
    a re-run finishes the job.

    Steps: 30 messages fetched by ``pop`` with retention delete (archive only); 3 other messages
    arrive; ``migrate`` uploads the 30; the command runs in a wrapper that SIGKILLs it at the point;
    the 3 other messages are all still there and nothing foreign appeared; ``--verify`` re-run verifies
    all that is left; ``--undo`` re-run exits 0 and leaves exactly the 3 others and no upload records.
    """
    directory = short_dir("maildkillmove-")
    dovecot.deliver_many(mail_user.name, [letter(i) for i in range(MESSAGES)])
    pop = AccountSpec("pop", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})
    imap = AccountSpec("imap", "imap", mail_user.name, mail_user.password)
    cfg = write_config(directory, dovecot, [pop, imap])
    assert _maild(cfg, "fetch", "pop").returncode == 0
    assert _maild(cfg, "fetch", "pop").returncode == 0
    pop.extra = {"retention": "keep", "enabled": False}
    cfg = write_config(directory, dovecot, [pop, imap])
    dovecot.deliver_many(mail_user.name, [letter(900 + i) for i in range(3)])
    done = _maild(cfg, "migrate", "pop", "--to", "imap")
    assert done.returncode == 0, done.stdout + done.stderr
    before = sorted(_uids(dovecot, mail_user))
    assert len(before) == MESSAGES + 3

    killed = subprocess.run(
        [sys.executable, "-c", KILLING_MAILD, "-c", str(cfg), "migrate", "pop", "--to", "imap", command],
        env={**os.environ, "KILL_AT": point, "KILL_NTH": str(nth)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    after = set(_uids(dovecot, mail_user))
    assert after <= set(before)
    stored = dovecot.maildir_messages(mail_user.name)
    for i in range(3):  # the other mail is all there
        assert sum(b"<migrate-%d@example.org>" % (900 + i) in raw for raw in stored) == 1
    if command == "--verify" or point == "check":
        assert sorted(after) == before
        assert _records(directory / "state") == MESSAGES
    if point == "forget":
        assert len(after) == 3  # expunged, records still there
        assert _records(directory / "state") == MESSAGES

    verified = _maild(cfg, "migrate", "pop", "--to", "imap", "--verify")
    if point == "forget":
        assert verified.returncode == 1
        assert f"missing {MESSAGES}" in verified.stdout
    else:
        assert verified.returncode == 0, verified.stdout
        assert f"verified {MESSAGES}" in verified.stdout

    undone = _maild(cfg, "migrate", "pop", "--to", "imap", "--undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert len(_uids(dovecot, mail_user)) == 3
    assert _records(directory / "state") == 0
