"""Secret files that are not regular files are refused at once, never read (QA of session 10).

A ``password_file`` naming a FIFO nobody writes made ``maild check-config``, the daemon's start and every
cycle of the account wait for ever (opening a FIFO for reading waits for a writer).
"""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import pytest

from maild.config.loader import load_config
from maild.config.passwords import PasswordSource
from maild.errors import ConfigError
from tests.unit.test_config import account_file

#: How long a test waits for the loader before calling it hung, in seconds (a generous bound:
#: the refusal is immediate; this only keeps a regression from hanging the suite).
HUNG_AFTER_S = 20


def _load_error(path: Path) -> str:
    """The loader's error for ``path``, run in a thread so that a hang fails instead of blocking."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(load_config, path)
        try:
            error = future.exception(timeout=HUNG_AFTER_S)
        except concurrent.futures.TimeoutError:
            # unblock the reader so the pool can shut down: a writer opens and closes the FIFO
            for fifo in path.parent.glob("*.fifo"):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail(f"load_config hung on {path} for {HUNG_AFTER_S} s")
    assert isinstance(error, ConfigError), error
    return str(error)


def test_password_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO as ``password_file``: one line naming the key and the kind of file, no wait for a writer."""
    os.mkfifo(tmp_path / "anna.fifo")
    error = _load_error(account_file(tmp_path, 'password_file = "anna.fifo"\n'))
    assert "accounts.acct.password_file" in error
    assert "is not a regular file (a FIFO)" in error


def test_client_secret_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    """The OAuth2 client secret is read the same way: a FIFO is refused too."""
    os.mkfifo(tmp_path / "app.fifo")
    body = (
        'host = "mail.example.org"\nauth = "oauth2"\n[accounts."acct".oauth2]\nclient_id = "cid"\n'
        'token_url = "https://login.example.org/token"\nclient_secret_file = "app.fifo"\n'
    )
    error = _load_error(account_file(tmp_path, body))
    assert "client_secret_file" in error
    assert "is not a regular file (a FIFO)" in error


def test_device_as_password_file_is_refused(tmp_path: Path) -> None:
    """A character device (``/dev/zero``, ``/dev/stdin`` of a daemon) is no password file either."""
    with pytest.raises(ConfigError, match=r"/dev/zero is not a regular file \(a character device\)"):
        PasswordSource(file=Path("/dev/zero")).resolve("acct")


def test_symbolic_link_to_a_regular_file_is_read(tmp_path: Path) -> None:
    """A symbolic link to a regular file (a rotated secret, a configuration management link) works."""
    (tmp_path / "real").write_text("Sommer2026!\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert PasswordSource(file=tmp_path / "link").resolve("acct").reveal() == "Sommer2026!"
