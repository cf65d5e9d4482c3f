"""``maild retire A --into B`` of an account already retired says so (when, into which account), exits 0
and changes nothing, without reading any server (session 15: it ran the whole check again, printed
"retired" as if new and recorded a second retirement time). Into another account than the recorded
one: exit 1, nothing changed."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.move_queries import MigrationStore
from maild.cli.main import main

RETIRED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

CONFIG = """\
[daemon]
state_dir = "state"
control_socket = "control.sock"

[accounts.pop]
organisation = "Hausverwaltung Beispiel"
employee = "Anna Beispiel"
protocol = "pop3"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "anna"
password_file = "anna.secret"
enabled = false

[accounts.imap]
organisation = "Hausverwaltung Beispiel"
employee = "Anna Beispiel"
protocol = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "anna"
password_file = "anna.secret"

[accounts.other]
organisation = "Hausverwaltung Beispiel"
employee = "Anna Beispiel"
protocol = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "anna"
password_file = "anna.secret"
"""


def closed_port() -> int:
    """A loopback port with nothing listening: a server read by mistake fails the command."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def retired(tmp_path: Path) -> Path:
    """A configuration whose archive records ``pop`` retired into ``imap`` at :data:`RETIRED_AT`."""
    (tmp_path / "anna.secret").write_text("geheim\n")
    (tmp_path / "anna.secret").chmod(0o600)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(port=closed_port()))

    async def record() -> None:
        store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
        try:
            for name, protocol in (("pop", "pop3"), ("imap", "imap"), ("other", "imap")):
                await store.ensure_account(
                    name, "Hausverwaltung Beispiel", "Anna Beispiel", protocol, RETIRED_AT
                )
            await store.retire("pop", "imap", RETIRED_AT)
        finally:
            await store.close()

    asyncio.run(record())
    return cfg


def archive_rows(cfg: Path) -> list[tuple[object, ...]]:
    """Every row of the tables a retirement writes."""
    with sqlite3.connect(cfg.parent / "state" / "maild.sqlite3") as db:
        accounts = db.execute("SELECT name, retired_at, retired_into FROM accounts ORDER BY name").fetchall()
        moves = db.execute("SELECT * FROM moves ORDER BY source").fetchall()
        unfetched = db.execute("SELECT count(*) FROM unfetched_accepted").fetchall()
    return [*accounts, *moves, *unfetched]


@pytest.mark.parametrize("options", [[], ["--accept-unfetched"], ["--accept-deleted", "--accept-unfetched"]])
def test_retiring_a_retired_account_again_says_when_and_changes_nothing(
    retired: Path, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0, one line naming the time and the account it was retired into; the archive and the
    configuration are byte for byte as before (no server is read: its port is closed)."""
    before, config_before = archive_rows(retired), retired.read_bytes()
    assert main(["-c", str(retired), "retire", "pop", "--into", "imap", *options]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "pop was already retired into imap at 2026-12-01 09:30 UTC; nothing changed"
        " (`maild unretire pop` undoes it)\n"
    )
    assert err == ""
    assert archive_rows(retired) == before
    assert retired.read_bytes() == config_before


def test_retiring_a_retired_account_into_another_is_refused(
    retired: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Into another account than the recorded one: exit 1, the recorded one named, nothing changed."""
    before = archive_rows(retired)
    assert main(["-c", str(retired), "retire", "pop", "--into", "other"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "maild: pop was already retired into imap at 2026-12-01 09:30 UTC, not into other; nothing changed"
        " (`maild unretire pop` first to retire it into other)\n"
    )
    assert archive_rows(retired) == before
