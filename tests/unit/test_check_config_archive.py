"""`maild check-config` checks the configuration against the archive: an account's protocol is fixed.

QA of session 10: an account switched from pop3 to imap in place (same name) got "OK" from
check-config, then `maild reload` rejected it and `maild run` refused to start with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.cli.main import main
from tests.support.archive import build_archive, imap, pop


def _config(directory: Path, protocols: dict[str, str]) -> Path:
    """A main file with one account per entry of ``protocols`` and its state directory."""
    (directory / "pw").write_text("pw\n")
    (directory / "pw").chmod(0o600)
    text = f'[daemon]\nstate_dir = "{directory / "state"}"\ncontrol_socket = "{directory / "c.sock"}"\n'
    for name, protocol in protocols.items():
        text += (
            f'[accounts.{name}]\norganisation = "O"\nemployee = "E"\nprotocol = "{protocol}"\n'
            f'host = "mail.example.org"\nusername = "anna"\npassword_file = "pw"\n'
        )
    path = directory / "config.toml"
    path.write_text(text)
    return path


async def _archive(directory: Path) -> None:
    """An archive in which ``anna`` was created as POP3 and ``bernd`` as IMAP."""
    await build_archive(
        directory / "state" / "maild.sqlite3",
        [
            ("anna", pop(1), b"Subject: a\r\n\r\nx\r\n"),
            ("bernd", imap("INBOX", 1), b"Subject: b\r\n\r\ny\r\n"),
        ],
    )


async def test_an_account_switched_to_another_protocol_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """anna, created as POP3 in the archive, now configured as IMAP: one line naming the file, the
    dotted key and the way forward; exit 1. bernd (unchanged) and a new account pass."""
    await _archive(tmp_path)
    config = _config(tmp_path, {"anna": "imap", "bernd": "imap", "carla": "pop3"})

    assert main(["-c", str(config), "check-config"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [
        f"maild: {config}: accounts.anna.protocol: the archive has anna as pop3 and an account's protocol is"
        " fixed for its life; add the mailbox again as a new account (see 'Moving a mailbox from POP3 to"
        " IMAP' in docs/moving-a-mailbox.md)"
    ]


async def test_unchanged_protocols_and_a_missing_archive_are_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an archive (a new installation) and with every protocol as recorded: OK, exit 0."""
    config = _config(tmp_path, {"anna": "pop3"})
    assert main(["-c", str(config), "check-config"]) == 0
    assert capsys.readouterr().out == f"{config}: OK, 1 account\n"

    await _archive(tmp_path)
    config = _config(tmp_path, {"anna": "pop3", "bernd": "imap"})
    assert main(["-c", str(config), "check-config"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"{config}: OK, 2 accounts\n", "")


async def test_an_archive_that_cannot_be_read_is_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file in the archive's place that SQLite cannot read: the files are still checked (OK, exit 0)
    and the archive check is a warning saying why it was not made."""
    config = _config(tmp_path, {"anna": "imap"})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "maild.sqlite3").write_bytes(b"not a database" * 100)
    assert main(["-c", str(config), "check-config"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{config}: OK, 1 account\n"
    assert captured.err.startswith("warning: the archive was not checked (protocols of existing accounts): ")
    assert captured.err.count("\n") == 1


async def test_the_daemon_started_with_a_switched_protocol_exits_78_so_systemd_does_not_loop(
    tmp_path: Path,
) -> None:
    """`maild run` with anna (POP3 in the archive) configured as IMAP: one line saying so and exit 78
    (EX_CONFIG, which the unit's RestartPreventExitStatus= names; QA of session 10: it exited 1 and
    systemd restarted it every few seconds for ever)."""
    import subprocess
    import sys

    await _archive(tmp_path)
    config = _config(tmp_path, {"anna": "imap", "bernd": "imap"})

    done = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 78, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "maild: account anna was created as pop3 and cannot become imap; add the mailbox again as a new"
        " account (see 'Moving a mailbox from POP3 to IMAP' in docs/moving-a-mailbox.md)"
    )
    assert "daemon.stopped" not in done.stderr  # it never started: no stop is logged before the refusal


def test_the_daemon_on_a_newer_archive_exits_65_so_systemd_does_not_loop(tmp_path: Path) -> None:
    """`maild run` on an archive a newer maild wrote: one line naming both versions and exit 65
    (EX_DATAERR, which the unit's RestartPreventExitStatus= names since session 14: before, exit 1 and
    systemd started it again every RestartSec for ever, to the same refusal); the file is untouched."""
    import sqlite3
    import subprocess
    import sys

    from maild.archive.schema import SCHEMA_VERSION
    from maild.cli.main import EXIT_ARCHIVE_NEEDS_ADMIN

    config = _config(tmp_path, {"anna": "pop3"})
    archive = tmp_path / "state" / "maild.sqlite3"
    archive.parent.mkdir()
    with sqlite3.connect(archive) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    octets = archive.read_bytes()

    done = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, EXIT_ARCHIVE_NEEDS_ADMIN) == (65, 65), done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"maild: archive {archive} has schema version {SCHEMA_VERSION + 1}, newer than this maild"
        f" ({SCHEMA_VERSION}); upgrade maild"
    )
    assert archive.read_bytes() == octets
