"""``maild fetch`` as a subprocess against the real Dovecot: what a one-shot says and leaves behind.

- A fetched account that left a message on the server (here: no room on this machine) exits 0,
  as the documented exit-code table says (exit 1 is for failed accounts), and says so: its result
  line counts the message as not retrieved, one indented line names it with the server's words, and
  stderr has the ``fetch.messages-not-retrieved`` line at warning (cron mail, the journal).
- After a clean exit, the state directory holds the archive, an empty ``-wal``, the ``-shm`` and the
  lock file, on purpose (docs/archive.md, "Reading while the daemon is stopped"): every commit is
  in the main file (a copy of ``maild.sqlite3`` alone holds every message), and a read-only reader
  that may not write the directory can still open it.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.namespaces import UNSHARE, namespace_state_dir


def maild_fetch(cfg: Path) -> subprocess.CompletedProcess[str]:
    """``python -m maild -c CFG fetch``, stdout and stderr to pipes (not a terminal: cron's view)."""
    return subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), "fetch"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_lines(stderr: str, event: str) -> list[dict[str, object]]:
    """The JSON log lines on ``stderr`` with this ``event``."""
    found = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


FILLED_FETCH = """
import os, subprocess, sys
state, cfg, out = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", state], check=True)
st = os.statvfs(state)
fd = os.open(os.path.join(state, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - 6 * 2**20)
os.close(fd)
for run in ("filled", "freed"):
    with open(os.path.join(out, run + ".out"), "w") as o, open(os.path.join(out, run + ".err"), "w") as e:
        rc = subprocess.run([sys.executable, "-m", "maild", "-c", cfg, "fetch"], stdout=o, stderr=e).returncode
    with open(os.path.join(out, run + ".rc"), "w") as f:
        f.write(str(rc))
    if run == "filled":
        os.unlink(os.path.join(state, "filler"))
"""
"""Two ``maild fetch`` runs in a user and mount namespace, the state directory on a 300 MiB tmpfs:
the first with 6 MiB left free, the second after the filler is removed (results in OUT/*.out, .err, .rc)."""


def test_a_message_left_on_the_server_for_lack_of_room_exits_1_says_so_and_warns(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: a small and an 8 MB message; the state directory's tmpfs filled to 6 MiB free (the one
    failure Dovecot cannot be made to give per message: it closes the session on an unreadable
    file); ``maild fetch`` exits 1 (a full disk here needs the admin; session 10, was 0), its line
    says "1 message not retrieved" (for lack of room on this machine), names the message below, and
    stderr has one warning naming the directory to free; with the space freed the next ``maild
    fetch`` archives it, exits 0 and warns no more."""
    directory, state = namespace_state_dir()
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject="klein"), corpus.large_message(8_000_000)])
    cfg = write_config(directory, dovecot, [AccountSpec("anna", "pop3", mail_user.name, mail_user.password)])

    subprocess.run([*UNSHARE, sys.executable, "-c", FILLED_FETCH, str(state), str(cfg), str(directory)], check=True)

    def run(name: str) -> tuple[int, str, str]:
        return (
            int((directory / f"{name}.rc").read_text()),
            (directory / f"{name}.out").read_text(),
            (directory / f"{name}.err").read_text(),
        )

    code, out, err = run("filled")
    assert code == 1, out + err
    head, *named = out.splitlines()
    assert re.match(r"anna: 1 new messages? \(", head), head
    assert head.endswith(
        ", 1 message not retrieved (retried at the next fetch; 1 for lack of room on this machine; listed below)"
    )
    assert len(named) == 1 and named[0].startswith("  not retrieved: UIDL ") and ": local spool: " in named[0]
    (warned,) = log_lines(err, "fetch.messages-not-retrieved")
    assert (warned["level"], warned["account"], warned["messages"], warned["local"]) == ("warning", "anna", 1, 1)
    assert str(warned["action"]).startswith(f"free space in {state} ")
    code, out, err = run("freed")
    assert code == 0, out + err
    assert re.match(r"anna: 1 new messages? \(", out) and "not retrieved" not in out, out
    assert log_lines(err, "fetch.messages-not-retrieved") == []


def test_after_a_clean_fetch_the_wal_is_empty_and_the_archive_file_alone_holds_everything(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """After ``maild fetch`` exits 0: the state directory holds ``maild.sqlite3``, an empty ``-wal``,
    the ``-shm`` (kept for read-only readers) and the lock file, nothing else (no spool file); a
    copy of ``maild.sqlite3`` alone, without its side files, holds every fetched message."""
    messages = [corpus.make_message(subject=f"Brief {n}") for n in range(3)]
    messages.append(corpus.large_message(1_500_000, seed=3))  # spooled on its way (>= 1 MiB)
    dovecot.deliver_many(mail_user.name, messages)
    directory = short_dir()
    cfg = write_config(directory, dovecot, [AccountSpec("anna", "imap", mail_user.name, mail_user.password)])

    fetched = maild_fetch(cfg)

    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    state = directory / "state"
    assert sorted(p.name for p in state.iterdir()) == [
        "maild.sqlite3", "maild.sqlite3-shm", "maild.sqlite3-wal", "maild.sqlite3.lock",
    ]  # fmt: skip
    assert (state / "maild.sqlite3-wal").stat().st_size == 0
    alone = directory / "copy" / "maild.sqlite3"
    alone.parent.mkdir()
    shutil.copyfile(state / "maild.sqlite3", alone)
    with sqlite3.connect(f"file:{alone}?mode=ro", uri=True) as conn:
        archived = sorted(bytes(row[0]) for row in conn.execute("SELECT raw FROM messages"))
    assert archived == sorted(messages)
