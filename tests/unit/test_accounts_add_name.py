"""``maild accounts add ADDRESS``: the account name made from an e-mail address never changes letters
silently; a non-ASCII address needs ``--name`` (QA of session 15: ``ännä@x.de`` gave ``nn--x.de``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.cli.main import main
from maild.cli.provider_add import account_name
from maild.config.loader import ACCOUNT_NAME_RE, load_config
from maild.errors import ConfigError
from tests.unit.test_accounts_cli import add_args, write_main_config


def test_a_non_ascii_address_without_name_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`accounts add 'ännä@x.de'` exits 1 with one line asking for --name; no drop-in, no secret."""
    config = write_main_config(tmp_path)

    assert main(add_args(config, "ännä@x.de", "--password-command", "pass x")) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ännä@x.de" in err
    assert "--name NAME" in err
    assert not (tmp_path / "accounts.d").exists()


def test_a_non_ascii_address_with_name_keeps_the_address_as_user_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --name the account is that name and the address, letters and all, is the user name."""
    config = write_main_config(tmp_path)
    config.chmod(0o600)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))

    assert main(add_args(config, "ännä@x.de", "--name", "anna-x.de")) == 0

    assert "added account anna-x.de" in capsys.readouterr().out
    assert load_config(config).accounts["anna-x.de"].username == "ännä@x.de"


def test_name_beside_a_plain_account_name_is_refused() -> None:
    """--name with a first argument that is no address would be two names for one account."""
    with pytest.raises(ConfigError, match="--name is for an e-mail address"):
        account_name("anna", "bernd")


@given(st.emails())
def test_an_ascii_address_still_gives_its_name_and_user_name(address: str) -> None:
    """Any ASCII address gives a name of its lower-cased letters, digits and ._- (others become -),
    with the address as user name: the made name is what it was before session 15."""
    name, username = account_name(address)

    assert username == address
    assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in name)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_an_address_with_any_non_ascii_character_is_refused_unless_named(local: str, domain: str) -> None:
    """Every address holding a non-ASCII character is refused without --name, and taken with it."""
    address = f"{local}@{domain}"
    if address.isascii():
        assert account_name(address)[1] == address
        return
    with pytest.raises(ConfigError) as info:
        account_name(address)
    assert "\n" not in str(info.value)
    assert account_name(address, "chosen") == ("chosen", address)
    assert ACCOUNT_NAME_RE.fullmatch("chosen")
