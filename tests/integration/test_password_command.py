"""A blocking ``password_command`` does not block the daemon (issue 15, item 3).

The command is a script that announces it has started, then waits for the test's go-ahead: while it
waits, ``maild status`` answers and another account fetches. With the command on the event loop,
the status request itself would wait for it (the test would then fail at the status call's own
5 s limit: a hang guard, not a measured speed).
"""

from __future__ import annotations

import shutil
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import tomli_w

from tests.support.daemonproc import maild_command, running_maild, status, stop_maild
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

SCRIPT = """\
import pathlib, sys, time
directory = pathlib.Path(sys.argv[1])
(directory / "started").write_text(str(__import__("os").getpid()))
deadline = time.monotonic() + 120
while not (directory / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print((directory / "password").read_text().strip())
"""


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll ``predicate`` every 50 ms until it holds or ``timeout_s`` passed (a hang guard)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_blocking_password_command_leaves_status_and_other_accounts_alone(
    dovecot: Dovecot, mail_user_factory: Callable[..., MailUser]
) -> None:
    """Steps: account "slow" gets its password from a command that blocks until released, account
    "fast" from a file; both have mail. While the command blocks: status answers (listing both
    accounts) and "fast" is emptied. After the release, "slow" is emptied too."""
    slow_user, fast_user = mail_user_factory(), mail_user_factory()
    dovecot.deliver(slow_user.name, b"Subject: slow\r\n\r\nslow\r\n")
    dovecot.deliver(fast_user.name, b"Subject: fast\r\n\r\nfast\r\n")
    directory = short_dir()
    try:
        gate = directory / "gate"
        gate.mkdir()
        (gate / "password").write_text(slow_user.password)
        (directory / "askpass.py").write_text(SCRIPT)
        specs = [
            AccountSpec("slow", "pop3", slow_user.name, slow_user.password, extra={"retention": "delete"}),
            AccountSpec("fast", "pop3", fast_user.name, fast_user.password, extra={"retention": "delete"}),
        ]
        cfg = write_config(directory, dovecot, specs)
        doc = tomllib.loads(cfg.read_text())
        del doc["accounts"]["slow"]["password_file"]
        doc["accounts"]["slow"]["password_command"] = [
            sys.executable,
            str(directory / "askpass.py"),
            str(gate),
        ]
        cfg.write_bytes(tomli_w.dumps(doc).encode())
        sock = directory / "control.sock"
        with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
            assert wait_for(lambda: (gate / "started").exists())
            assert wait_for(lambda: not dovecot.maildir_files(fast_user.name))
            assert (gate / "started").exists() and not (gate / "release").exists()
            reply = status(sock)
            assert sorted(a["name"] for a in reply["accounts"]) == ["fast", "slow"]
            # ... answered while the very first run of the command still blocks (not after it was
            # killed at its 30 s timeout, as when it ran on the event loop)
            pid = int((gate / "started").read_text())
            assert "askpass.py" in Path(f"/proc/{pid}/cmdline").read_text()
            assert dovecot.maildir_files(slow_user.name)  # nothing fetched without the password
            (gate / "release").touch()
            assert wait_for(lambda: not dovecot.maildir_files(slow_user.name))
            assert stop_maild(proc) == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
