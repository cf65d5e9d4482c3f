"""`maild accounts set` and `accounts add --set`: any account key, validated like the loader, drop-ins only."""

from __future__ import annotations

import io
import sys
import tomllib
from pathlib import Path

import pytest

from maild.cli.main import main
from maild.config.dropin import parse_setting
from maild.config.loader import load_config
from tests.unit.test_accounts_cli import add_args, write_main_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A hand-written main config with one POP3 account (``anna-pop``)."""
    return write_main_config(tmp_path)


def test_values_are_toml_when_they_parse_else_strings() -> None:
    """KEY=VALUE values: booleans, numbers and arrays as TOML; anything else as a string."""
    assert parse_setting("enabled=false") == ("enabled", False)
    assert parse_setting("retention_days=30") == ("retention_days", 30)
    assert parse_setting('mailboxes=["INBOX", "Altpost"]') == ("mailboxes", ["INBOX", "Altpost"])
    assert parse_setting("retention=keep") == ("retention", "keep")
    assert parse_setting("poll_interval=5m") == ("poll_interval", "5m")
    assert parse_setting("host=10.0.0.1") == ("host", "10.0.0.1")


@pytest.mark.parametrize("text", ["retention", "=keep", "a.b=1", "x" * 5000 + "=1"])
def test_malformed_settings_are_refused(text: str) -> None:
    """No '=', an empty or dotted key, or an overlong argument: one clear error."""
    from maild.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_setting(text)


def test_set_changes_a_dropin_account_and_refuses_what_the_loader_refuses(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """set writes valid changes to the drop-in; an unknown key, an invalid value, the protocol and an
    account of the main file are refused with the drop-in (and the main file) unchanged."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main([*add_args(config, "bernd-imap"), "--set", "max_message_size=50000000"]) == 0
    dropin = config.parent / "accounts.d" / "bernd-imap.toml"
    assert tomllib.loads(dropin.read_text())["accounts"]["bernd-imap"]["max_message_size"] == 50_000_000
    capsys.readouterr()

    args = ["-c", str(config), "accounts", "set", "bernd-imap"]
    assert (
        main(
            [
                *args,
                "enabled=false",
                'mailboxes=["INBOX", "Altpost"]',
                "retention=delete-after",
                "retention_days=90",
            ]
        )
        == 0
    )
    assert "account bernd-imap: enabled = False" in capsys.readouterr().out
    account = load_config(config).accounts["bernd-imap"]
    assert not account.enabled
    assert account.mailboxes == ("INBOX", "Altpost")
    assert account.retention_days == 90

    before = dropin.read_bytes()
    for bad in ("colour=blue", "retention=sometimes", "protocol=pop3"):
        assert main([*args, bad]) in (1, 2)
        err = capsys.readouterr().err
        assert bad.split("=")[0] in err
        assert dropin.read_bytes() == before
    main_before = config.read_bytes()
    assert main(["-c", str(config), "accounts", "set", "anna-pop", "retention=keep"]) in (1, 2)
    assert "which maild never rewrites" in capsys.readouterr().err
    assert config.read_bytes() == main_before


def test_set_on_an_account_of_the_main_file_says_what_to_write_there(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account of the hand-written main file is refused in one line that gives the TOML lines to
    put in its table (never a password) and the drop-in it could move to."""
    main_before = config.read_bytes()

    code = main(["-c", str(config), "accounts", "set", "anna-pop", "retention=keep", "enabled=false", "password=geheim"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert f"account anna-pop is defined in {config}, which maild never rewrites" in err
    assert '`retention = "keep"; enabled = false; password = ********` in its [accounts.anna-pop] table' in err
    assert "`maild reload`" in err
    assert str(config.parent / "accounts.d" / "anna-pop.toml") in err
    assert "geheim" not in err
    assert config.read_bytes() == main_before


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("retention=sometimes", "accounts.anna-pop.retention: expected one of"),
        ("colour=blue", "accounts.anna-pop.colour: unknown key"),
        ("port=995x", "accounts.anna-pop.port: expected an integer 1-65535"),
        ("retention=delete-after", "accounts.anna-pop.retention_days: required"),
    ],
)
def test_set_on_an_account_of_the_main_file_validates_before_saying_what_to_write(
    config: Path, capsys: pytest.CaptureFixture[str], setting: str, named: str
) -> None:
    """For an account of the main file, an invalid key or value is refused as the loader would refuse
    it, in one line, instead of telling the admin to write it there (QA of session 10: `set anna-pop
    retention=bogus` answered "put `retention = "bogus"` in its table")."""
    main_before = config.read_bytes()

    code = main(["-c", str(config), "accounts", "set", "anna-pop", setting])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"maild: not changed, the setting is invalid: {config}: {named}")
    assert "never rewrites" not in err
    assert config.read_bytes() == main_before
