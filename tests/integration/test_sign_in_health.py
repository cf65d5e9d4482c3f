"""Sign-in health (issue 13): the refresh token's age and end in status, the table and the log.

Against the scripted authorization server on loopback (no mail server needed): the refresh grant runs
for real; only the clock of the token source is moved, so that "5 days later" needs no waiting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest
import structlog

from maild.auth import tokens
from maild.cli.status_view import render_status
from maild.config.loader import AccountConfig
from maild.secret import Secret
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import account_status
from maild.service.status import ArchiveTotals, StatusReply
from tests.support.accounts import pop3_account
from tests.support.oauth_server import OAuthServer

DAY_S = 86400.0


pytestmark = pytest.mark.usefixtures("fresh_token_sources")


@pytest.fixture
def server(oauth_server_keeping_refresh_tokens: OAuthServer) -> OAuthServer:
    """The authorization server of these tests (keeps refresh tokens, like Google)."""
    return oauth_server_keeping_refresh_tokens


def delegated(server: OAuthServer, tmp_path: Path, age_days: float, lifetime: float | None) -> AccountConfig:
    """An OAuth2 account whose refresh token was stored ``age_days`` ago; ``lifetime`` in seconds."""
    server.add_client("health", None)
    refresh = server.issue_refresh_token("health", "anna")
    settings = tokens.OAuth2Settings(
        account="anna-pop",
        token_url=server.token_url,
        device_url=server.device_url,
        client_id="health",
        scope=("mail",),
        token_dir=tmp_path / "oauth2",
        refresh_token_lifetime_s=lifetime,
    )
    obtained = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    tokens.RefreshTokenStore(settings.token_dir, "anna-pop").save(  # type: ignore[arg-type]
        Secret(refresh), "health", server.token_url, now=obtained
    )
    account = pop3_account()
    return dataclasses.replace(
        account, sign_in=dataclasses.replace(account.sign_in, auth="oauth2", oauth2=settings)
    )


def test_a_refresh_token_near_its_end_warns_in_status_table_and_log(
    server: OAuthServer, tmp_path: Path
) -> None:
    """A 7-day refresh token stored 5 days ago: status says when it ends and warns; the table shows
    it; the log warns once a day, not at every refresh; no token in any of it."""
    account = delegated(server, tmp_path, age_days=5, lifetime=7 * DAY_S)
    rt = AccountRuntime(account)
    assert account_status(rt, 0).sign_in.to_json()["grant"] == "refresh_token"  # nothing asked yet

    assert account.sign_in.oauth2 is not None
    source = tokens.source_for(account.sign_in.oauth2)
    with structlog.testing.capture_logs() as logs:
        source.access_token()
        source.invalidate(source.access_token())
        source.access_token()  # a second refresh: no second warning the same day
    warnings = [e for e in logs if e["event"] == "oauth2.refresh_token.expiring"]
    assert len(warnings) == 1
    assert "ends in 2.0 days" in warnings[0]["detail"]

    sign_in = account_status(rt, 0).sign_in
    assert sign_in.auth == "oauth2"
    assert sign_in.refresh_token_obtained_at is not None and sign_in.refresh_token_expires_at is not None
    left = sign_in.refresh_token_expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1.9) < left < dt.timedelta(days=2.1)
    assert sign_in.token_expires_at is not None and sign_in.token_expires_at > dt.datetime.now(dt.UTC)
    assert sign_in.warning is not None and "run `maild accounts authorize anna-pop`" in sign_in.warning

    reply = StatusReply("1", dt.datetime.now(dt.UTC), (account_status(rt, 0),), ArchiveTotals(0, 0))
    table = render_status(reply, now=dt.datetime.now(dt.UTC), tz=dt.UTC)
    assert "sign-in: oauth2 (refresh_token), token until" in table
    assert "refresh token 5.0 days old, ends " in table
    assert "WARNING: the refresh token ends in 2.0 days" in table
    text = table + repr(reply.to_json()) + repr(logs)
    assert not any(secret in text for secret in [*server.access_tokens, *server.refresh_tokens])


def test_no_warning_far_from_the_end_without_a_lifetime_or_after_rotation(
    server: OAuthServer, tmp_path: Path
) -> None:
    """1 day of 7: no warning; an unknown lifetime: age shown, no end; a rotating provider: the
    refresh token is as old as the last refresh."""
    account = delegated(server, tmp_path / "a", age_days=1, lifetime=7 * DAY_S)
    assert account.sign_in.oauth2 is not None
    tokens.source_for(account.sign_in.oauth2).access_token()
    assert account_status(AccountRuntime(account), 0).sign_in.warning is None

    unknown = delegated(server, tmp_path / "b", age_days=80, lifetime=None)
    assert unknown.sign_in.oauth2 is not None
    tokens.source_for(unknown.sign_in.oauth2).access_token()
    sign_in = account_status(AccountRuntime(unknown), 0).sign_in
    assert sign_in.refresh_token_obtained_at is not None and sign_in.refresh_token_expires_at is None
    assert sign_in.warning is None

    server.rotate_refresh_tokens = True
    old = delegated(server, tmp_path / "c", age_days=89, lifetime=90 * DAY_S)
    assert old.sign_in.oauth2 is not None
    tokens.source_for(old.sign_in.oauth2).access_token()
    rotated = account_status(AccountRuntime(old), 0).sign_in
    assert rotated.warning is None
    assert rotated.refresh_token_obtained_at is not None
    assert abs(rotated.refresh_token_obtained_at.timestamp() - time.time()) < 60


def test_password_accounts_show_only_their_method(tmp_path: Path) -> None:
    """A password account: sign_in says "password", and the table adds no line."""
    rt = AccountRuntime(pop3_account())
    status = account_status(rt, 0)
    assert status.sign_in.to_json() == {
        "auth": "password",
        "grant": None,
        "token_expires_at": None,
        "refresh_token_obtained_at": None,
        "refresh_token_expires_at": None,
        "warning": None,
    }
    reply = StatusReply("1", dt.datetime.now(dt.UTC), (status,), ArchiveTotals(0, 0))
    assert "sign-in" not in render_status(reply, now=dt.datetime.now(dt.UTC), tz=dt.UTC)
