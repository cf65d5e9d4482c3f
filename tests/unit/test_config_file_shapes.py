"""Configuration files of the wrong shape, each one clear line (QA of session 10): larger than
MAX_CONFIG_OCTETS (`maild -c /dev/zero check-config` read until memory ran out), an account name with an
unquoted dot."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from maild.config.loader import MAX_CONFIG_OCTETS, load_config
from maild.errors import ConfigError
from tests.unit.test_config import account_file


def _oversized(path: Path) -> Path:
    """A valid TOML file one octet over the limit: a comment, so only its size is wrong."""
    path.write_bytes(b"#" + b"x" * MAX_CONFIG_OCTETS + b"\n")
    return path


def test_oversized_main_file_is_one_line_naming_it(tmp_path: Path) -> None:
    """A main file over the limit is refused in one line naming the file and the limit."""
    path = _oversized(tmp_path / "config.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value) == f"{path}: larger than {MAX_CONFIG_OCTETS} octets: not a maild configuration file"
    )


def test_oversized_dropin_is_named_and_the_rest_still_checked(tmp_path: Path) -> None:
    """A drop-in over the limit is one problem naming it; the main file's account is still loaded
    (and its own errors would be reported beside it)."""
    main = account_file(tmp_path, "")
    (tmp_path / "accounts.d").mkdir()
    dropin = _oversized(tmp_path / "accounts.d" / "big.toml")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.problems == (
        f"{dropin}: larger than {MAX_CONFIG_OCTETS} octets: not a maild configuration file",
    )


def test_an_account_name_with_an_unquoted_dot_says_how_to_quote_it(tmp_path: Path) -> None:
    """``[accounts.anna.pop]`` is TOML for a table ``pop`` inside account ``anna``: one line saying so and
    how to write the name (before: ``accounts.anna.protocol: required key is missing``)."""
    path = tmp_path / "config.toml"
    path.write_text('[accounts.anna.pop]\norganisation = "O"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == (
        f"{path}: accounts.anna.pop: a table inside account anna; an account name with a dot is written"
        ' quoted: [accounts."anna.pop"]',
    )


@pytest.mark.parametrize("kind", ["dangling symbolic link", "symbolic link loop", "directory", "FIFO"])
def test_a_dropin_that_is_not_a_file_is_an_error_not_skipped(tmp_path: Path, kind: str) -> None:
    """`accounts.d/x.toml` that is not a regular file (a link to a moved file, a loop, a directory, a FIFO)
    is one problem naming it: skipped silently, its accounts vanished on the next reload while check-config
    said OK (QA of session 11). A symbolic link to a drop-in file is read as before."""
    main = account_file(tmp_path, "")
    ddir = tmp_path / "accounts.d"
    ddir.mkdir()
    entry = ddir / "x.toml"
    if kind == "dangling symbolic link":
        entry.symlink_to(tmp_path / "moved-away.toml")
    elif kind == "symbolic link loop":
        entry.symlink_to(entry)
    elif kind == "directory":
        entry.mkdir()
    else:
        os.mkfifo(entry)
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{entry}: ")

    if kind == "directory":
        entry.rmdir()
    else:
        entry.unlink()
    target = tmp_path / "real.toml"
    target.write_text(
        '[accounts.other]\norganisation = "O"\nemployee = "E"\nprotocol = "pop3"\nusername = "u"\n'
        'host = "mail.example.org"\npassword_command = ["true"]\n'
    )
    entry.symlink_to(target)
    assert set(load_config(main).accounts) == {"acct", "other"}


def _load_beside_a_fifo(main: Path, fifo: Path) -> ConfigError:
    """load_config(main) in a thread; the ConfigError it raised. Fails the test if it blocked (on ``fifo``)."""
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_config(main)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # unblock the reader so that the thread ends, then fail
        with open(fifo, "wb"):
            pass
        thread.join(timeout=10)
        pytest.fail("load_config blocked on the FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
    return outcome[0]


def test_a_main_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """`maild -c FIFO ...` (or MAILD_CONFIG naming one) is one line at once; opening a FIFO nobody writes
    blocked every command, check-config included, for ever (QA of session 11)."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    error = _load_beside_a_fifo(fifo, fifo)
    assert str(error) == f"{fifo}: not a regular file (a FIFO); a configuration is a TOML file"


def test_a_ca_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """`ca_file` naming a FIFO is one problem at once; OpenSSL's read of it blocked check-config, `run` and
    every fetch for ever (QA of session 11)."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    main = account_file(tmp_path, f'ca_file = "{fifo}"\n')
    error = _load_beside_a_fifo(main, fifo)
    assert error.problems == (f"{main}: accounts.acct.ca_file: {fifo} is not a regular file (a FIFO)",)
