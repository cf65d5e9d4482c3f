"""What ends an OAuth2 account's lockout by itself: the grant's fingerprint (QA of session 14).

A lockout (``auth_failed``) ends when the fingerprint the scheduler takes every LOCKOUT_RECHECK_S changes. For
OAuth2 it covered only the stored refresh token: a client-credentials account locked out by ``invalid_client``
(a client secret expired at the provider) stayed locked out after the admin wrote the new secret to
``client_secret_file``, until ``maild resume``; so did a delegated account of a confidential client.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from maild.auth import tokens
from maild.errors import ConfigError
from maild.secret import Secret

URL = "https://login.example.com/token"


class SecretFile:
    """A client secret the admin can replace (or make unreadable) between two readings."""

    def __init__(self, value: str) -> None:
        self.value: str | None = value

    def __call__(self) -> Secret:
        if self.value is None:
            raise ConfigError("accounts.anna.oauth2.client_secret_file: cannot read /etc/maild/secrets/app")
        return Secret(self.value)


def _client_credentials(secret: SecretFile) -> tokens.OAuth2Settings:
    return tokens.OAuth2Settings(account="anna", token_url=URL, client_id="cid", client_secret=secret)


def _delegated(tmp_path: Path, secret: SecretFile | None) -> tokens.OAuth2Settings:
    return tokens.OAuth2Settings(
        account="anna",
        token_url=URL,
        device_url="https://login.example.com/device",
        client_id="cid",
        client_secret=secret,
        token_dir=tmp_path,
    )


def _store(tmp_path: Path, refresh: str) -> None:
    tokens.RefreshTokenStore(tmp_path, "anna").save(Secret(refresh), "cid", URL, now=dt.datetime.now(dt.UTC))


def test_a_new_client_secret_changes_the_client_credentials_fingerprint() -> None:
    """Client credentials: the fingerprint is the secret's; a new secret in the file gives another one."""
    secret = SecretFile("old-secret")
    settings = _client_credentials(secret)
    before = tokens.grant_fingerprint(settings)
    assert before is not None
    assert tokens.grant_fingerprint(settings) == before
    secret.value = "new-secret"
    after = tokens.grant_fingerprint(settings)
    assert after is not None
    assert after != before
    assert "new-secret" not in after
    assert "old-secret" not in before


def test_a_new_client_secret_changes_the_delegated_fingerprint(tmp_path: Path) -> None:
    """Delegated access of a confidential client: a new client secret, or a new authorization, changes it."""
    secret = SecretFile("old-secret")
    settings = _delegated(tmp_path, secret)
    _store(tmp_path, "rt-1")
    first = tokens.grant_fingerprint(settings)
    secret.value = "new-secret"
    second = tokens.grant_fingerprint(settings)
    _store(tmp_path, "rt-2")
    third = tokens.grant_fingerprint(settings)
    assert None not in (first, second, third)
    assert len({first, second, third}) == 3


def test_a_public_client_is_fingerprinted_by_its_authorization(tmp_path: Path) -> None:
    """Delegated access of a public client (no secret): never authorized, then authorized, then again."""
    settings = _delegated(tmp_path, None)
    unauthorized = tokens.grant_fingerprint(settings)
    _store(tmp_path, "rt-1")
    authorized = tokens.grant_fingerprint(settings)
    _store(tmp_path, "rt-2")
    again = tokens.grant_fingerprint(settings)
    assert None not in (unauthorized, authorized, again)
    assert len({unauthorized, authorized, again}) == 3


@pytest.mark.parametrize("grant", ["client_credentials", "refresh_token"])
def test_an_unreadable_secret_gives_nothing_to_compare(tmp_path: Path, grant: str) -> None:
    """A client secret that cannot be read: None (the lockout stays; an unreadable file is no new secret)."""
    secret = SecretFile("s")
    secret.value = None
    settings = _client_credentials(secret) if grant == "client_credentials" else _delegated(tmp_path, secret)
    assert tokens.grant_fingerprint(settings) is None


def test_nothing_to_compare_for_a_token_command_or_a_missing_secret() -> None:
    """token_command (its output changes at every run) and client credentials without a secret: None."""
    assert tokens.grant_fingerprint(tokens.OAuth2Settings(account="anna", token_command=("helper",))) is None
    assert (
        tokens.grant_fingerprint(tokens.OAuth2Settings(account="anna", token_url=URL, client_id="cid"))
        is None
    )
