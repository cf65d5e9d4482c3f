"""A reader holding the archive's write-ahead log is visible where an administrator looks (QA finding
F2 of session 8; before, one log warning was all). ``maild run`` as a subprocess with the WAL's bounds
lowered (checkpoints from 1 MiB, the writer's bound 4 MiB, its busy timeout 0.2 s: the real 32/128 MiB
and 10 s would need hundreds of MB of mail), the real Dovecot, and a reader in this process keeping a
read transaction open as a CRM's long query does."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support import corpus
from tests.support.alert_recorder import AlertRecorder
from tests.support.daemonproc import log_events, maild_cli, running_maild, status, stop_maild, wait_until
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

LOWERED = """
import sys
from maild.archive import checkpointer, opening
checkpointer.CHECKPOINT_WAL_OCTETS = 2**20
checkpointer.WAL_HARD_OCTETS = 4 * 2**20
opening.BUSY_TIMEOUT_MS = 200
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
MESSAGE_LINES = 2500
"""Lines of about 40 octets: messages of about 100 kB (held in memory, not spooled)."""


def textfile_metric(textfile: Path, name: str) -> str | None:
    """The value of metric ``name`` in the daemon's metrics textfile, or None (no file, no line)."""
    lines = textfile.read_text().splitlines() if textfile.exists() else []
    return next((line.split()[1] for line in lines if line.startswith(f"{name} ")), None)


def first_account(directory: Path) -> dict[str, Any]:
    """The first account of the daemon's status (its control socket in ``directory``), or {}."""
    accounts = status(directory / "control.sock").get("accounts")
    return accounts[0] if accounts else {}


def letters(first: int, n: int) -> list[bytes]:
    """``n`` distinct messages of about 100 kB."""
    return [
        corpus.make_message(subject=f"Brief {i}", body=f"Zeile des Briefes {i} mit etwas Text\n" * MESSAGE_LINES)
        for i in range(first, first + n)
    ]

@contextlib.contextmanager
def a_reader_holding_the_log(
    dovecot: Dovecot, mail_user: MailUser, directory: Path, cfg: Path, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Callable[[], None]]]:
    """The daemon (lowered WAL bounds, :data:`LOWERED`) after its first cycle, a reader's transaction
    open on its archive, and 60 messages (about 6 MB) fetched meanwhile; yields the daemon and a
    function that ends the reader's transaction (called at the end of the block if not yet)."""
    with running_maild([sys.executable, "-c", LOWERED, "-c", str(cfg), "run"], log=log) as daemon:
        wait_until(lambda: first_account(directory).get("last_success"), "the first cycle")
        reader = sqlite3.connect(directory / "state" / "maild.sqlite3", isolation_level=None)
        ended: list[bool] = []

        def end() -> None:
            if not ended:
                ended.append(True)
                reader.execute("COMMIT")
                reader.close()

        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM messages").fetchone()
            dovecot.deliver_many(mail_user.name, letters(0, 60))
            assert maild_cli(cfg, "fetch-now", "anna").returncode == 0
            assert first_account(directory)["messages"] == 60
            yield daemon, end
        finally:
            end()



def test_a_reader_holding_the_log_shows_in_status_check_metrics_and_one_alert(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: the daemon runs (bounds lowered); a reader begins a read transaction; 60 messages
    (about 6 MB) are fetched: all stored; ``maild status`` exits 1 with the line "archive: write-ahead
    log held by a reader since HH:MM, N MB; storing goes on" and how to find the reader; ``maild
    check`` exits 1, WARNING with the same facts; the metrics textfile says held 1 and the log's size;
    one ``wal_held`` alert; the log warns once, without an account; the reader ends; 60 more are
    fetched: the log is released, status exits 0, check is OK, metrics held 0, the alert recovers."""
    directory = short_dir()
    spec = AccountSpec("anna", "imap", mail_user.name, mail_user.password, extra={"idle": False})
    textfile = directory / "maild.prom"
    cfg = write_config(directory, dovecot, [spec], daemon={"metrics_textfile": str(textfile)})
    recorder = AlertRecorder(directory, cfg)

    def wal_alerts() -> list[str]:
        return recorder.states("wal_held")

    def metric(name: str) -> str | None:
        return textfile_metric(textfile, name)

    def anna() -> dict[str, Any]:
        return first_account(directory)

    log = directory / "daemon.log"
    with a_reader_holding_the_log(dovecot, mail_user, directory, cfg, log) as (daemon, end_reader):
        shown = maild_cli(cfg, "status")
        assert shown.returncode == 1, shown.stdout
        (line,) = [x for x in shown.stdout.splitlines() if "write-ahead log" in x and x.startswith("!")]
        assert line.startswith("! archive: write-ahead log held by a reader since ")
        assert line.endswith(" MB; storing goes on")
        assert f"`fuser -v {directory / 'state'}/*`" in shown.stdout
        check = maild_cli(cfg, "check")
        assert check.returncode == 1, check.stdout
        text, perf = check.stdout.strip().split(" | ")
        assert text.startswith("MAILD WARNING - archive: write-ahead log held by a reader since ")
        assert "storing goes on; end the long read transaction on the archive" in text
        assert any(p.startswith("wal=") for p in perf.split())
        wait_until(lambda: metric("maild_archive_wal_held") == "1", "the metrics saying held")
        held_octets = int(metric("maild_archive_wal_bytes") or 0)
        assert held_octets > 4 * 2**20
        wait_until(wal_alerts, "the wal_held alert")
        assert wal_alerts() == ["firing"]
        end_reader()
        dovecot.deliver_many(mail_user.name, letters(60, 60))
        assert maild_cli(cfg, "fetch-now", "anna").returncode == 0
        assert anna()["messages"] == 120
        assert maild_cli(cfg, "status").returncode == 0
        assert maild_cli(cfg, "check").returncode == 0
        wait_until(lambda: metric("maild_archive_wal_held") == "0", "the metrics saying released")
        assert int(metric("maild_archive_wal_bytes") or 0) < held_octets
        wait_until(lambda: len(wal_alerts()) == 2, "the recovery notice")
        assert wal_alerts() == ["firing", "recovered"]
        assert stop_maild(daemon) == 0
    assert log_events(log, "archive.wal.held") == ["warning"]
    assert log_events(log, "archive.wal.released") == ["info"]
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event", "").startswith("archive.wal."):
            assert "account" not in json.loads(line)
