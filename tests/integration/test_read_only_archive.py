"""A real read-only file system under the archive (issue 15 item 8): ``maild run`` in a user and mount
namespace (``unshare --user --map-root-user --mount``) with its state directory on a tmpfs that is
remounted read-only; every cycle fails with one line naming the read-only file system, and nothing
is deleted on the server.

Linux refuses to remount a file system read-only while a process holds a file on it open for writing
("mount point is busy"), which the running daemon does: so the daemon is stopped, the tmpfs remounted
read-only, and the daemon started again on it (SQLite then opens the archive read-only and every
write fails). The forced remount a kernel makes after disk errors cannot be made in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.support import corpus
from tests.support.daemonproc import end_process, maild_cli, status, wait_until
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, write_config
from tests.support.namespaces import UNSHARE, namespace_state_dir

DRIVER = """
import subprocess, sys
state, cfg = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", state], check=True)
run = [sys.executable, "-m", "maild", "-c", cfg, "run"]
daemon = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=open(cfg + ".first.log", "w"))
print("started", flush=True)
sys.stdin.readline()
daemon.terminate()
daemon.wait()
subprocess.run(["mount", "-o", "remount,ro", state], check=True)
daemon = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=open(cfg + ".second.log", "w"))
print("restarted", flush=True)
sys.stdin.readline()
daemon.terminate()
print("exit", daemon.wait(), flush=True)
"""


def test_a_read_only_archive_file_system_is_named_and_stops_deletions(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: a POP3 account with ``retention = "delete"``; the daemon archives and deletes a first
    message on a tmpfs; it stops, the tmpfs becomes read-only, it starts again; a second message
    arrives; ``maild fetch-now`` fails with one line naming the read-only file system, ``maild status``
    shows that line as the account's error, and the message is still on the server; the alert
    command gets the ``daemon`` alert (the account history cannot be written: read-only)."""
    directory, state = namespace_state_dir()
    spec = AccountSpec("anna", "pop3", mail_user.name, mail_user.password, extra={"retention": "delete"})
    cfg = write_config(directory, dovecot, [spec])
    events = directory / "events.jsonl"
    script = directory / "alert.py"
    script.write_text(f"import sys\nwith open({str(events)!r}, 'a') as f:\n    f.write(sys.stdin.read())\n")
    with cfg.open("a") as fh:
        fh.write(f"\n[alerts]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n")

    def daemon_alerts() -> list[dict[str, Any]]:
        text = events.read_text() if events.exists() else ""
        return [e for e in map(json.loads, text.splitlines()) if e["kind"] == "daemon"]

    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject="first")])
    socket = directory / "control.sock"

    def anna() -> dict[str, Any]:
        accounts = status(socket).get("accounts")
        return accounts[0] if accounts else {}

    driver = subprocess.Popen(
        [*UNSHARE, sys.executable, "-c", DRIVER, str(state), str(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdin is not None and driver.stdout is not None
        assert driver.stdout.readline().strip() == "started"
        wait_until(
            lambda: anna().get("last_success") and not dovecot.maildir_files(mail_user.name), "first cycle"
        )
        driver.stdin.write("ro\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "restarted"
        wait_until(lambda: anna().get("state") is not None, "the daemon on the read-only archive")

        later = corpus.make_message(subject="later")
        dovecot.deliver_many(mail_user.name, [later])
        fetched = maild_cli(cfg, "fetch-now", "anna")
        assert fetched.returncode == 1, fetched.stdout + fetched.stderr
        lines = fetched.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("anna: FAILED: ")
        assert f"the file system holding {state} is read-only" in lines[0]
        assert dovecot.maildir_messages(mail_user.name) == [later]  # nothing deleted
        shown = json.loads(maild_cli(cfg, "status", "--json").stdout)
        assert f"the file system holding {state} is read-only" in shown["accounts"][0]["last_error"]
        wait_until(daemon_alerts, "the daemon alert: the account history cannot be written")
        unwell = daemon_alerts()[0]
        assert unwell["state"] == "firing" and unwell["account"] is None
        assert "the account history cannot be written to the archive" in unwell["message"]
        assert "read-only" in unwell["message"]
        driver.stdin.write("stop\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "exit 0"
    finally:
        end_process(driver)
