"""The archive's own disk full while a batch commits is a failure on this machine's side, the same for
POP3 and IMAP (QA finding F8 of session 8: IMAP's batch failed the cycle as SQLite's "database or disk
is full", logged at error, ``maild check`` CRITICAL). ``maild run`` as a subprocess against the real
Dovecot, its state directory on a tmpfs in a user and mount namespace (``unshare``) filled until the
archive cannot take a batch of small messages (below the spool's threshold: nothing is spooled, the
commit itself finds no room). Each cycle then ends with the messages as local failures: the account
is not in error, ``maild status`` needs attention and says where to free space, ``maild check`` is a
WARNING, one ``local_failure`` alert per episode, nothing deleted on the server (retention
``delete``), the batch's transaction rolled back; once space is freed the next cycle archives every
message once, deletes them on the server, and everything clears.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import corpus
from tests.support.alert_recorder import AlertRecorder
from tests.support.daemonproc import end_process, log_events, maild_cli, status, wait_until
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, write_config
from tests.support.namespaces import FILL_AND_FREE_DRIVER, UNSHARE, namespace_state_dir

TMPFS_MIB = 64
"""Size of the state directory's tmpfs (the archive, its WAL and the filler)."""
LEFT_FREE_OCTETS = 96 * 2**10
"""Free octets left by the filler: less than the batch's pages need in the WAL."""
MESSAGES = 24
"""Small messages (about 40 kB each, below the spool's 1 MiB threshold) arriving on the full disk."""

DRIVER = FILL_AND_FREE_DRIVER + """db = sqlite3.connect(os.path.join(state, "maild.sqlite3"))
ok = db.execute("PRAGMA integrity_check").fetchone()[0]
n = db.execute("SELECT count(*) FROM messages").fetchone()[0]
db.close()
print(ok, n, flush=True)
sys.stdin.readline()
daemon.terminate()
print("exit", daemon.wait(), flush=True)
"""


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_full_archive_disk_is_a_local_failure_and_loses_nothing(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    """Steps: the daemon archives (POP3: and deletes on the server) a first message on a fresh tmpfs; the
    tmpfs is filled to 96 KiB free; 24 small messages arrive; two ``fetch-now`` cycles (exit 1, "for
    lack of room on this machine") each end with them as local failures ("local archive: ... database or disk is full"), the account waiting, not
    in error; ``maild status`` exits 1 naming the directory and the full archive, ``maild check``
    exits 1 with a WARNING naming the account and "free space in STATE"; one local_failure alert; the
    24 are all still on the server; the filler is removed; the next cycle archives all 24 (POP3: and
    deletes them on the server); check is OK, the alert recovers; the archive's integrity check is ok with 25
    messages; the log has no error line and one warning for the episode."""
    directory, state = namespace_state_dir()
    # POP3 deletes what is archived (a full disk must not let it delete the rest); IMAP keeps (its
    # deletion is delete-after N days), and the server's copy shows what the archive lacks
    extra: dict[str, Any] = {"retention": "delete"} if protocol == "pop3" else {"idle": False}
    spec = AccountSpec("anna", protocol, mail_user.name, mail_user.password, extra=extra)
    cfg = write_config(directory, dovecot, [spec])
    # disk_full off: it fires too on the filled tmpfs, and is not this test's
    recorder = AlertRecorder(directory, cfg, "disk_free_percent = 0\n")

    def local_alerts() -> list[str]:
        return recorder.states("local_failure")

    def anna() -> dict[str, Any]:
        accounts = status(directory / "control.sock").get("accounts")
        return accounts[0] if accounts else {}

    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject="first")])
    arriving = [
        corpus.make_message(subject=f"Brief {i}", body=(f"Zeile {i} des Briefes, etwas Text.\n" * 1100))
        for i in range(MESSAGES)
    ]
    driver = subprocess.Popen(
        [*UNSHARE, sys.executable, "-c", DRIVER, str(state), str(cfg), str(LEFT_FREE_OCTETS), str(TMPFS_MIB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def tell(word: str) -> str:
        assert driver.stdin is not None and driver.stdout is not None
        driver.stdin.write(word + "\n")
        driver.stdin.flush()
        return driver.stdout.readline().strip()

    try:
        assert driver.stdout is not None
        assert driver.stdout.readline().strip() == "started"
        wait_until(lambda: anna().get("messages") == 1, "the first message archived")
        kept = 0 if protocol == "pop3" else 1
        wait_until(lambda: len(dovecot.maildir_messages(mail_user.name)) == kept, "the first message deleted")
        assert tell("fill") == "filled"
        dovecot.deliver_many(mail_user.name, arriving)
        for _ in range(2):
            fetched = maild_cli(cfg, "fetch-now", "anna")
            # a full disk here is the admin's to end: exit 1, the line says how many and why
            assert fetched.returncode == 1, fetched.stdout + fetched.stderr
            assert " for lack of room on this machine; see maild status anna)" in fetched.stdout
        now = anna()
        assert (now["state"], now["consecutive_failures"], now["last_error"]) == ("waiting", 0, None)
        failures = now["last_cycle"]["failures"]
        assert failures and {f["kind"] for f in failures} == {"local"}
        assert all(f["reason"].startswith("local archive: ") for f in failures)
        assert all("database or disk is full" in f["reason"] for f in failures)
        assert now["messages"] == 1
        assert now["failing_messages"] == []  # no records: a full disk says nothing about a message
        assert len(dovecot.maildir_messages(mail_user.name)) == kept + MESSAGES  # nothing deleted

        shown = maild_cli(cfg, "status")
        assert shown.returncode == 1, shown.stdout
        assert f"free space in {state}: the archive is there, and its disk is full" in shown.stdout
        check = maild_cli(cfg, "check")
        assert check.returncode == 1, check.stdout
        n = len(failures)
        assert check.stdout.split(" | ")[0] == (
            f"MAILD WARNING - anna {n} message{'s' if n > 1 else ''} not retrieved: no room on this"
            f" machine; free space in {state}"
        )
        wait_until(local_alerts, "the local_failure alert")
        assert local_alerts() == ["firing"]

        assert tell("free") == "freed"
        assert maild_cli(cfg, "fetch-now", "anna").returncode == 0
        after = anna()
        assert (after["messages"], after["failing_messages"], after["state"]) == (MESSAGES + 1, [], "waiting")
        on_server = dovecot.maildir_messages(mail_user.name)
        assert on_server == ([] if protocol == "pop3" else on_server[:1] + arriving)  # POP3: deleted now
        assert maild_cli(cfg, "check").returncode == 0
        wait_until(lambda: len(local_alerts()) == 2, "the recovery notice")
        assert local_alerts() == ["firing", "recovered"]
        assert tell("integrity") == f"ok {MESSAGES + 1}"
        assert tell("stop") == "exit 0"
    finally:
        end_process(driver)
    log = Path(f"{cfg}.log")
    assert log_events(log, "fetch.failed") == []
    assert log_events(log, "fetch.local-failure") == ["warning", "info"]
    assert log_events(log, "fetch.local-failure.cleared") == ["info"]
    errors = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if line.startswith("{") and json.loads(line).get("level") in ("error", "critical")
    ]
    assert errors == []
