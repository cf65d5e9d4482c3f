"""An idle daemon shows the truth about its write-ahead log: once the reader that held it ends, ``maild
status`` says so at once, without waiting for the next write (before, "held" stayed until the next
cycle stored something; issue 19, session 9's note, "Next session" 4). The same set-up as
tests/integration/test_wal_held.py: ``maild run`` with the WAL's bounds lowered, the real Dovecot, a
reader in this process keeping a read transaction open."""

from __future__ import annotations

from tests.integration.test_wal_held import a_reader_holding_the_log, first_account, textfile_metric
from tests.support.daemonproc import log_events, maild_cli, stop_maild, wait_until
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config


def test_status_shows_the_log_released_when_the_reader_ends_without_a_write(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: the daemon runs (bounds lowered); a reader begins a read transaction; 60 messages
    (about 6 MB) are fetched; ``maild status`` exits 1 ("held"), and again after its own re-check
    while the reader still reads; the reader ends; with no fetch and nothing written, ``maild
    status`` exits 0 and ``maild check`` is OK at once, the metrics textfile says held 0, the log
    says ``archive.wal.released`` once; no cycle ran meanwhile (still 60 messages)."""
    directory = short_dir()
    spec = AccountSpec("anna", "imap", mail_user.name, mail_user.password, extra={"idle": False})
    textfile = directory / "maild.prom"
    cfg = write_config(directory, dovecot, [spec], daemon={"metrics_textfile": str(textfile)})

    log = directory / "daemon.log"
    with a_reader_holding_the_log(dovecot, mail_user, directory, cfg, log) as (daemon, end_reader):
        for _ in range(2):  # the re-check's checkpoint cannot copy past the reader: still held
            held = maild_cli(cfg, "status")
            assert held.returncode == 1, held.stdout
            assert "write-ahead log held by a reader" in held.stdout
        wait_until(lambda: textfile_metric(textfile, "maild_archive_wal_held") == "1", "the metrics saying held")
        end_reader()

        shown = maild_cli(cfg, "status")
        assert shown.returncode == 0, shown.stdout
        assert "write-ahead log held" not in shown.stdout
        assert maild_cli(cfg, "check").returncode == 0
        wait_until(lambda: textfile_metric(textfile, "maild_archive_wal_held") == "0", "the metrics saying released")
        assert first_account(directory)["messages"] == 60
        assert stop_maild(daemon) == 0
    assert log_events(log, "archive.wal.held") == ["warning"]
    assert log_events(log, "archive.wal.released") == ["info"]
