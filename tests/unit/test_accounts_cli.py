"""`maild accounts list|add|remove`: drop-ins written atomically, the main file never touched."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.move_queries import MigrationStore
from maild.cli.main import main
from maild.config.dropin import set_enabled, write_atomic
from maild.config.loader import load_config
from maild.model import POP3Key, RetrievedMessage

MAIN = """\
# Hausverwaltung: written by hand, with comments that must survive
[daemon]
state_dir = "state"            # relative to this file
control_socket = "control.sock"

[accounts.anna-pop]
organisation = "Hausverwaltung Beispiel"
employee = "Anna Beispiel"
protocol = "pop3"
host = "pop.example.org"
username = "anna"
password_file = "anna.secret"   # mode 0600
"""


def write_main_config(tmp_path: Path) -> Path:
    """``tmp_path/config.toml``: :data:`MAIN`, a hand-written main config with one POP3 account (``anna-pop``)."""
    (tmp_path / "anna.secret").write_text("geheim\n")
    (tmp_path / "anna.secret").chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(MAIN)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A hand-written main config with one POP3 account."""
    return write_main_config(tmp_path)


def add_args(cfg: Path, name: str, *extra: str) -> list[str]:
    return [
        "-c",
        str(cfg),
        "accounts",
        "add",
        name,
        "--organisation",
        "Hausverwaltung Beispiel",
        "--employee",
        "Bernd Beispiel",
        "--protocol",
        "imap",
        "--host",
        "imap.example.org",
        *extra,
    ]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_list_remove_round_trip_keeps_main_file(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """add writes a drop-in and secret (private: the main file is 0600) that load, list shows them, remove
    takes them away; the main file stays byte-for-byte the same."""
    config.chmod(0o600)
    before = config.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.StringIO('pass "w" \\ord\n'))
    assert (
        main(
            add_args(config, "bernd-imap", "--mailbox", "INBOX", "--mailbox", "Entwürfe", "--tls", "starttls")
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "added account bernd-imap" in out
    assert "maild is not running" in out
    dropin = config.parent / "accounts.d" / "bernd-imap.toml"
    secret = config.parent / "secrets" / "bernd-imap"
    assert mode(dropin) == 0o600
    assert mode(secret) == 0o600
    assert mode(secret.parent) == 0o700
    assert secret.read_text() == 'pass "w" \\ord\n'
    table = tomllib.loads(dropin.read_text())["accounts"]["bernd-imap"]
    assert table["port"] == 143
    assert table["username"] == "bernd-imap"
    assert table["mailboxes"] == ["INBOX", "Entwürfe"]
    loaded = load_config(config).accounts["bernd-imap"]
    assert loaded.password.resolve("bernd-imap").reveal() == 'pass "w" \\ord'
    assert list(config.parent.joinpath("accounts.d").iterdir()) == [dropin]  # no temporary file left

    assert main(["-c", str(config), "accounts", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["accounts"]}
    assert rows["bernd-imap"]["state"] == "not running"
    assert rows["bernd-imap"]["configured_in"] == str(dropin)
    assert rows["anna-pop"]["host"] == "pop.example.org"
    assert main(["-c", str(config), "accounts", "list"]) == 0
    table_text = capsys.readouterr().out
    assert table_text.index("Anna Beispiel") < table_text.index("Bernd Beispiel")
    assert "bernd-imap" in table_text

    assert main(["-c", str(config), "accounts", "remove", "bernd-imap"]) == 0
    assert "no longer fetched" in capsys.readouterr().out
    assert not dropin.exists()
    assert not secret.exists()
    assert set(load_config(config).accounts) == {"anna-pop"}
    assert config.read_bytes() == before


def test_add_with_password_command_writes_no_secret(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--password-command is stored as an argv list; no secret file is written."""
    assert main(add_args(config, "cmd-imap", "--password-command", "pass show 'mail/bernd imap'")) == 0
    capsys.readouterr()
    table = tomllib.loads((config.parent / "accounts.d" / "cmd-imap.toml").read_text())["accounts"][
        "cmd-imap"
    ]
    assert table["password_command"] == ["pass", "show", "mail/bernd imap"]
    assert not (config.parent / "secrets").exists()


def test_invalid_account_is_not_added(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account that makes the configuration invalid is removed again with its secret; exit 1."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main(add_args(config, "bad-imap", "--poll-interval", "bald")) == 1
    err = capsys.readouterr().err
    assert "not added" in err
    assert "poll_interval" in err
    assert not (config.parent / "accounts.d" / "bad-imap.toml").exists()
    assert not (config.parent / "secrets" / "bad-imap").exists()


def test_add_refuses_existing_name_and_protocol_flags(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name in use, or flags of the other protocol, are refused before anything is written."""
    assert main(add_args(config, "anna-pop", "--password-command", "true")) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(add_args(config, "x-imap", "--retention", "delete", "--password-command", "true")) == 1
    assert "POP3" in capsys.readouterr().err
    assert not (config.parent / "accounts.d").exists()


def test_remove_refuses_an_account_of_the_main_file(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The main file is never rewritten: remove says to set enabled = false there instead."""
    before = config.read_bytes()
    assert main(["-c", str(config), "accounts", "remove", "anna-pop"]) == 1
    err = capsys.readouterr().err
    assert "enabled = false" in err
    assert config.read_bytes() == before


async def _archive(config: Path, shared: bool) -> None:
    """Give drop-in account "old-pop" two archived messages; with ``shared`` also link them to anna-pop."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store = await MigrationStore.open(config.parent / "state" / "maild.sqlite3")
    try:
        await store.ensure_account("old-pop", "Hausverwaltung Beispiel", "Bernd Beispiel", "pop3", now)
        await store.ensure_account("anna-pop", "Hausverwaltung Beispiel", "Anna Beispiel", "pop3", now)
        batch = [RetrievedMessage(POP3Key(f"u{n}"), b"Subject: %d\r\n\r\nx\r\n" % n) for n in (1, 2)]
        await store.store_batch("old-pop", batch, now)
        if shared:
            await store.store_batch("anna-pop", batch, now)
    finally:
        await store.close()


@pytest.mark.parametrize("shared", [False, True])
def test_purge_only_when_nothing_is_lost(
    config: Path, shared: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--purge refuses (changing nothing) when messages exist only for that account, else deletes its archive."""
    import asyncio

    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    args = add_args(config, "old-pop")
    args[args.index("imap")] = "pop3"
    args[args.index("imap.example.org")] = "pop.example.org"
    assert main(args) == 0
    asyncio.run(_archive(config, shared))
    capsys.readouterr()
    status = main(["-c", str(config), "accounts", "remove", "old-pop", "--purge"])
    captured = capsys.readouterr()
    dropin = config.parent / "accounts.d" / "old-pop.toml"
    if not shared:
        assert status == 1
        assert "2 of the 2 messages only old-pop links to" in captured.err
        assert "would be lost" in captured.err
        assert dropin.exists()
        return
    assert status == 0
    assert "purged the archive of old-pop: 0 messages" in captured.out
    assert not dropin.exists()
    assert main(["-c", str(config), "accounts", "list", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)["accounts"]]
    assert names == ["anna-pop"]


def test_write_atomic_and_set_enabled(tmp_path: Path) -> None:
    """Atomic writes end with mode 0600 and no temporary file; set_enabled rewrites only that key."""
    path = tmp_path / "a.toml"
    write_atomic(path, b'[accounts.a]\nhost = "x"\nenabled = true\n')
    assert mode(path) == 0o600
    set_enabled(path, "a", False)
    assert tomllib.loads(path.read_text()) == {"accounts": {"a": {"host": "x", "enabled": False}}}
    assert [p.name for p in tmp_path.iterdir()] == ["a.toml"]


def test_added_files_are_readable_through_the_main_files_group(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a group-readable main file (root:maild 0640), add gives the drop-in and secret that group and 0640,
    so a daemon running as the maild user can read what root wrote."""
    import grp

    group = grp.getgrnam("nogroup").gr_gid
    config.chmod(0o640)
    os.chown(config, -1, group)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main(add_args(config, "gruppe-imap", "--mailbox", "INBOX")) == 0
    capsys.readouterr()
    dropin = config.parent / "accounts.d" / "gruppe-imap.toml"
    secret = config.parent / "secrets" / "gruppe-imap"
    for path, expected in ((dropin, 0o640), (secret, 0o640), (secret.parent, 0o750), (dropin.parent, 0o750)):
        assert mode(path) == expected, path
        assert path.stat().st_gid == group, path


def test_add_imap_with_all_mailboxes_exclusions_and_retention(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """add --all-mailboxes --exclude writes mailboxes = "all" with exclude, and IMAP delete-after loads."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    args = add_args(config, "alle-imap", "--all-mailboxes", "--exclude", "Spam", "--exclude", "Papierkorb")
    args += ["--retention", "delete-after", "--retention-days", "30"]
    assert main(args) == 0
    capsys.readouterr()
    account = load_config(config).accounts["alle-imap"]
    assert account.all_mailboxes
    assert account.exclude == ("Spam", "Papierkorb")
    assert account.retention == "delete-after"
    assert account.retention_days == 30


@pytest.mark.parametrize(
    "extra",
    [("--retention", "delete"), ("--exclude", "Spam"), ("--all-mailboxes", "--mailbox", "INBOX")],
)
def test_add_refuses_contradictory_imap_flags(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    """IMAP delete, --exclude without --all-mailboxes, and both mailbox forms are refused; nothing is written."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main(add_args(config, "falsch-imap", *extra)) == 1
    assert not (config.parent / "accounts.d" / "falsch-imap.toml").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    "words",
    [["status"], ["status", "--json"], ["fetch-now"], ["fetch-now", "--no-wait"], ["pause", "anna-pop"],
     ["resume", "anna-pop"], ["reload"], ["metrics"]],
    ids=" ".join,
)  # fmt: skip
def test_daemon_commands_without_a_daemon_fail_in_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    """Every command that asks the daemon exits 1 (``status`` 3, systemctl's convention) with one line
    saying it is not running, and prints nothing."""
    assert main(["-c", str(config), *words]) == (3 if words[0] == "status" else 1)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"maild: maild is not running (no daemon on {config.parent / 'control.sock'})\n"


# -- add --provider (issue 13) ----------------------------------------------------------------------


def test_add_with_a_provider_asks_only_for_the_password_and_prints_the_steps(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`accounts add --provider gmx anna@gmx.de`: name and user name from the address, server from the
    preset (not written: the drop-in says provider = "gmx"), the password from standard input; the
    output says to switch on POP3/IMAP at GMX."""
    config.chmod(0o600)
    monkeypatch.setattr(sys, "stdin", io.StringIO("app password\n"))
    args = ["-c", str(config), "accounts", "add", "--provider", "gmx", "anna@gmx.de"]
    assert main([*args, "--organisation", "Kanzlei", "--employee", "Anna"]) == 0
    out = capsys.readouterr().out
    assert "added account anna-gmx.de" in out
    assert "POP3 und IMAP Zugriff erlauben" in out
    assert "checked against the documentation, not the server" in out
    dropin = tomllib.loads((config.parent / "accounts.d" / "anna-gmx.de.toml").read_text())
    table = dropin["accounts"]["anna-gmx.de"]
    assert table["provider"] == "gmx" and "host" not in table and "port" not in table
    account = load_config(config).accounts["anna-gmx.de"]
    assert (account.host, account.port, account.protocol, account.username) == (
        "imap.gmx.net",
        993,
        "imap",
        "anna@gmx.de",
    )


def test_add_microsoft365_writes_the_oauth2_table_and_names_the_permissions(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OAuth2 preset asks no password; client ID and tenant come from flags; the steps name the exact
    permissions and the authorize command."""
    config.chmod(0o600)
    args = ["-c", str(config), "accounts", "add", "--provider", "microsoft365", "anna@contoso.com"]
    extra = ["--organisation", "Kanzlei", "--employee", "Anna", "--protocol", "pop3"]
    ids = ["--client-id", "00000000-0000-0000-0000-000000000001", "--tenant", "contoso.onmicrosoft.com"]
    assert main([*args, *extra, *ids]) == 0
    out = capsys.readouterr().out
    assert "POP.AccessAsUser.All" in out and "offline_access" in out
    assert "https://outlook.office365.com/.default" in out
    assert "maild accounts authorize anna-contoso.com" in out
    account = load_config(config).accounts["anna-contoso.com"]
    oauth = account.sign_in.oauth2
    assert account.sign_in.auth == "oauth2" and oauth is not None
    assert oauth.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert oauth.scope == ("https://outlook.office.com/POP.AccessAsUser.All", "offline_access")
    assert not (config.parent / "secrets" / "anna-contoso.com").exists()


def test_add_without_provider_or_terminal_names_the_missing_flag(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --provider, --host is required; with no terminal a missing --employee is named, not asked."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    base = ["-c", str(config), "accounts", "add"]
    assert main([*base, "x1", "--organisation", "O", "--employee", "E", "--protocol", "imap"]) != 0
    assert "--host is required (or give --provider)" in capsys.readouterr().err
    assert main([*base, "--provider", "webde", "x2", "--organisation", "O"]) != 0
    assert "--employee is required (no terminal to ask on)" in capsys.readouterr().err
    assert not (config.parent / "accounts.d" / "x2.toml").exists()
