"""The IMAP ``compress`` setting (RFC 4978 COMPRESS=DEFLATE): configuration and the decision rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.config.loader import load_config
from maild.policy import AUTO_COMPRESS_BELOW_OCTETS_PER_S, want_compression
from tests.unit.test_config import account_file, load_error


@pytest.mark.parametrize(("body", "expected"), [("", "auto"), ('compress = "always"\n', "always")])
def test_compress_is_read_and_reaches_the_server_settings(tmp_path: Path, body: str, expected: str) -> None:
    """``compress`` defaults to "auto"; a given value reaches the adapter's ServerSettings."""
    account = load_config(account_file(tmp_path, body, protocol="imap")).accounts["acct"]
    assert account.compress == expected
    assert account.server_settings().compress == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"fast"', "expected one of auto, always, never"),
        ("1", 'expected "auto" or "always" or "never", got 1'),
    ],
)
def test_bad_compress_values_name_the_key(tmp_path: Path, value: str, expected: str) -> None:
    """An unknown value or a wrong type is a config error naming ``accounts.acct.compress``."""
    message = load_error(account_file(tmp_path, f"compress = {value}\n", protocol="imap"))
    assert "accounts.acct.compress" in message
    assert expected in message


def test_compress_is_unknown_for_pop3(tmp_path: Path) -> None:
    """POP3 has no COMPRESS: the key is unknown there."""
    message = load_error(account_file(tmp_path, 'compress = "never"\n'))
    assert "accounts.acct.compress: unknown key" in message


@pytest.mark.parametrize(
    ("mode", "offered", "rate", "wanted"),
    [
        ("never", True, 1.0, False),
        ("always", True, None, True),
        ("always", False, 1.0, False),
        ("auto", True, AUTO_COMPRESS_BELOW_OCTETS_PER_S * 0.99, True),
        ("auto", True, AUTO_COMPRESS_BELOW_OCTETS_PER_S, False),
        ("auto", False, 1.0, False),
        ("auto", True, None, False),
    ],
)
def test_want_compression(mode: str, offered: bool, rate: float | None, wanted: bool) -> None:
    """Compress only what the server offers: "always" always, "never" never, "auto" once a transfer
    from the server was measured slower than the threshold (not before any was measured)."""
    assert want_compression(mode, offered=offered, link_octets_per_s=rate) is wanted  # type: ignore[arg-type]
