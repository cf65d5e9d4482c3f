"""A rotated refresh token that cannot be stored (disk full) is kept in memory, not lost with the old one.

Found by the QA of session 11: the provider retires the old refresh token when it rotates; when the state
directory could not take the new one (ENOSPC, a read-only remount), maild dropped it, and its next refresh
sent the retired token from the file: ``invalid_grant``, the account in auth_failed until a person ran
``maild accounts authorize`` again. The scripted authorization server rotates and retires as Microsoft does.
"""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.auth import token_store, tokens
from maild.errors import StoreError
from maild.secret import Secret
from tests.support.oauth_server import OAuthServer


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    """A rotating scripted authorization server with client ``c``."""
    srv = OAuthServer().start()
    srv.add_client("c")
    yield srv
    srv.close()


def _source(server: OAuthServer, token_dir: Path) -> tokens.OAuth2Tokens:
    settings = tokens.OAuth2Settings(
        account="anna",
        token_url=server.token_url,
        device_url=server.device_url,
        client_id="c",
        token_dir=token_dir,
    )
    return tokens.OAuth2Tokens(settings)


def _disk_full_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real = token_store.write_atomic

    def full(path: Path, data: bytes, **kwargs: object) -> None:
        monkeypatch.setattr(token_store, "write_atomic", real)  # the disk has room again afterwards
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(token_store, "write_atomic", full)


def _stored(token_dir: Path, server: OAuthServer) -> Secret:
    loaded = tokens.RefreshTokenStore(token_dir, "anna").load("c", server.token_url)
    assert loaded is not None
    return loaded[0]


def test_a_rotated_token_the_disk_could_not_take_is_used_and_stored_at_the_next_try(
    server: OAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: a stored token; a refresh rotates it while the disk is full (StoreError saying the new one is kept);
    the next refresh uses the kept token (the file's was retired), succeeds and stores the newest."""
    first = server.issue_refresh_token("c", "anna")
    tokens.RefreshTokenStore(tmp_path, "anna").save(
        Secret(first), "c", server.token_url, now=dt.datetime.now(dt.UTC)
    )
    source = _source(server, tmp_path)
    _disk_full_once(monkeypatch)
    with pytest.raises(StoreError, match="No space left on device; the new refresh token is kept in memory"):
        source.access_token()
    assert _stored(tmp_path, server) == Secret(first)  # the old file, unchanged
    assert first not in server.refresh_tokens  # retired by the rotation

    assert source.access_token().reveal().startswith("at-")
    newest = _stored(tmp_path, server)
    assert newest.reveal() in server.refresh_tokens  # live at the provider
    assert source.health().refresh_error is None


def test_a_new_authorization_wins_over_the_token_kept_in_memory(
    server: OAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the file changes after the failed save (`maild accounts authorize`), the file's token is used."""

    store = tokens.RefreshTokenStore(tmp_path, "anna")
    store.save(
        Secret(server.issue_refresh_token("c", "anna")), "c", server.token_url, now=dt.datetime.now(dt.UTC)
    )
    source = _source(server, tmp_path)
    _disk_full_once(monkeypatch)
    with pytest.raises(StoreError):
        source.access_token()
    server.revoke_refresh_tokens()  # the person's new authorization replaces every earlier grant
    authorized = server.issue_refresh_token("c", "anna")
    store.save(Secret(authorized), "c", server.token_url, now=dt.datetime.now(dt.UTC))

    assert source.access_token().reveal().startswith("at-")
    assert any(form.get("refresh_token") == authorized for _, form in server.requests)
