"""Large mail blocked by this machine's disk is visible (issue 19's QA, left item (a)): ``maild run`` as
a subprocess against the real Dovecot, its state directory on a tmpfs in a user and mount namespace
(``unshare``), filled until a large message cannot be spooled. The message's failures are of kind
``local``: never set aside, ``maild status`` needs attention and says where to free space, ``maild
check`` is WARNING naming the account and the directory, one ``local_failure`` alert per episode,
one warning in the log; once space is freed the next cycle archives it and everything clears.

Whatever the spool's reserve (an absolute 256 MiB, or a share of the file system), the filled tmpfs
has less free space than the message, and the freed one more than the reserve plus the message.
"""

from __future__ import annotations

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

TMPFS_MIB = 300
"""Size of the state directory's tmpfs: freed, it keeps more than the spool's largest reserve
(256 MiB) free after the message; filled, it keeps only :data:`LEFT_FREE_MIB`."""
LEFT_FREE_MIB = 6
"""Free MiB left by the filler: less than the message, room for the archive's small commits."""
BIG_OCTETS = 8_000_000
"""The blocked message (above the spool threshold of 1 MiB, above the free space when filled)."""

DRIVER = FILL_AND_FREE_DRIVER + """daemon.terminate()
print("exit", daemon.wait(), flush=True)
"""


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_large_mail_blocked_by_the_disk_warns_once_and_flows_when_space_is_freed(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    """Steps: the daemon archives a small message on a fresh tmpfs; the tmpfs is filled to 6 MiB free;
    an 8 MB message arrives; three ``fetch-now`` cycles each fail it on this machine's side (kind
    local, 3 in a row, not set aside); ``maild status`` exits 1 naming the directory, ``maild check``
    exits 1 with a WARNING naming the account and "free space in STATE"; one local_failure alert and
    one warning log line for the three cycles; the filler is removed; the next cycle archives the
    message, check is OK, the alert recovers, and the log says the episode ended."""
    directory, state = namespace_state_dir()
    idle = {"idle": False} if protocol == "imap" else {}  # the cycles are the test's fetch-now, no push
    spec = AccountSpec("anna", protocol, mail_user.name, mail_user.password, extra=idle)
    cfg = write_config(directory, dovecot, [spec])
    # disk_full off: it fires too on the filled tmpfs, and is not this test's
    recorder = AlertRecorder(directory, cfg, "disk_free_percent = 0\n")

    def local_alerts() -> list[str]:
        return recorder.states("local_failure")

    def anna() -> dict[str, Any]:
        accounts = status(directory / "control.sock").get("accounts")
        return accounts[0] if accounts else {}

    big = corpus.large_message(BIG_OCTETS, seed=11)
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject="small")])
    driver = subprocess.Popen(
        [*UNSHARE, sys.executable, "-c", DRIVER, str(state), str(cfg), str(LEFT_FREE_MIB * 2**20), str(TMPFS_MIB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def tell(word: str, answer: str) -> None:
        assert driver.stdin is not None and driver.stdout is not None
        driver.stdin.write(word + "\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == answer

    try:
        assert driver.stdout is not None
        assert driver.stdout.readline().strip() == "started"
        wait_until(lambda: anna().get("messages") == 1, "the small message archived")
        tell("fill", "filled")
        dovecot.deliver_many(mail_user.name, [big])
        for _ in range(3):
            fetched = maild_cli(cfg, "fetch-now", "anna")
            # a full disk here is the admin's to end: exit 1, the line says why and where to look
            assert fetched.returncode == 1, fetched.stdout + fetched.stderr
            assert fetched.stdout.splitlines()[0].endswith(
                ", 1 message not retrieved (retried at the next fetch; 1 for lack of room on this machine;"
                " see maild status anna)"
            ), fetched.stdout
        (failing,) = anna()["failing_messages"]
        assert (failing["kind"], failing["failures"], failing["set_aside"]) == ("local", 3, False)
        assert failing["reason"].startswith("local spool: ")

        shown = maild_cli(cfg, "status")
        assert shown.returncode == 1, shown.stdout
        assert f"free space in {state}: large messages are spooled there" in shown.stdout
        check = maild_cli(cfg, "check")
        assert check.returncode == 1, check.stdout
        assert check.stdout.split(" | ")[0] == (
            f"MAILD WARNING - anna 1 message not retrieved: no room on this machine; free space in {state}"
        )
        wait_until(local_alerts, "the local_failure alert")
        assert local_alerts() == ["firing"]
        (fired,) = recorder.alerts("local_failure")
        assert fired["account"] == "anna" and fired["next_step"].startswith(f"free space in {state} ")

        tell("free", "freed")
        assert maild_cli(cfg, "fetch-now", "anna").returncode == 0
        after = anna()
        assert (after["messages"], after["failing_messages"]) == (2, [])
        assert maild_cli(cfg, "check").returncode == 0
        wait_until(lambda: len(local_alerts()) == 2, "the recovery notice")
        assert local_alerts() == ["firing", "recovered"]
        assert big in dovecot.maildir_messages(mail_user.name)  # retention keep: still on the server
        tell("stop", "exit 0")
    finally:
        end_process(driver)
    log = Path(f"{cfg}.log")
    assert log_events(log, "fetch.local-failure") == ["warning", "info", "info"]
    assert log_events(log, "fetch.local-failure.cleared") == ["info"]
