"""The ``token_expiry`` alert (issue 17 item 5) against the scripted authorization server on loopback,
delivered to a real alert command: a refresh token near its end fires, a fresh authorization
recovers, a token endpoint that stops answering fires again; no token in any event."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from maild.auth import tokens
from maild.config.alerts import AlertsConfig
from maild.config.loader import AccountConfig
from maild.errors import TransientError
from maild.secret import Secret
from maild.service.account_runtime import AccountRuntime
from maild.service.alert_delivery import deliver
from maild.service.alerts import AlertMonitor
from tests.support.accounts import pop3_account
from tests.support.oauth_server import OAuthServer

DAY_S = 86400.0


pytestmark = pytest.mark.usefixtures("fresh_token_sources")


@pytest.fixture
def server(oauth_server_keeping_refresh_tokens: OAuthServer) -> OAuthServer:
    """The authorization server of these tests (keeps refresh tokens, like Google)."""
    return oauth_server_keeping_refresh_tokens


def authorized(server: OAuthServer, settings: tokens.OAuth2Settings, age_days: float) -> None:
    """Store a refresh token the server knows, obtained ``age_days`` ago."""
    refresh = server.issue_refresh_token("expiry", "anna")
    obtained = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    assert settings.token_dir is not None
    tokens.RefreshTokenStore(settings.token_dir, settings.account).save(
        Secret(refresh), "expiry", server.token_url, now=obtained
    )


def oauth_account(server: OAuthServer, tmp_path: Path) -> AccountConfig:
    """A POP3 account signing in with a delegated OAuth2 grant whose refresh tokens live 7 days."""
    server.add_client("expiry", None)
    settings = tokens.OAuth2Settings(
        account="anna-pop",
        token_url=server.token_url,
        device_url=server.device_url,
        client_id="expiry",
        scope=("mail",),
        token_dir=tmp_path / "oauth2",
        refresh_token_lifetime_s=7 * DAY_S,
    )
    account = pop3_account()
    return dataclasses.replace(
        account, sign_in=dataclasses.replace(account.sign_in, auth="oauth2", oauth2=settings)
    )


async def test_token_expiry_fires_recovers_and_fires_when_refreshing_fails(
    server: OAuthServer, tmp_path: Path
) -> None:
    """Steps: a 7-day refresh token 5 days old with ``token_expiry_ahead = 3d``: before any token is
    asked for nothing is known (no event); after a refresh, token_expiry fires (it "ends at" a time two
    days ahead; a text that stays the same while time passes, so rate limiting holds);
    a new authorization (a fresh token, 7 days left): recovered; the token endpoint goes away and
    getting a token fails: fires again with the cause. Every event reaches the alert command; no
    access or refresh token appears in any."""
    out = tmp_path / "events.jsonl"
    command = (sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())")
    config = AlertsConfig(command=command, token_expiry_ahead_s=3 * DAY_S)
    monitor = AlertMonitor(config)
    account = oauth_account(server, tmp_path)
    settings = account.sign_in.oauth2
    assert settings is not None
    authorized(server, settings, age_days=5)
    rt = AccountRuntime(account)
    now = dt.datetime.now(dt.UTC)

    assert monitor.evaluate([rt], now) == []  # no token asked for yet: unknown
    source = tokens.source_for(settings)
    source.access_token()
    ending = monitor.evaluate([rt], now)
    assert [(e.kind, e.state, e.account) for e in ending] == [("token_expiry", "firing", "anna-pop")]
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert f"ends at {ends:%Y-%m-%d} " in ending[0].message
    assert "maild accounts authorize anna-pop" in ending[0].next_step
    assert monitor.evaluate([rt], now + dt.timedelta(hours=5)) == []  # rate-limited, the text unchanged

    authorized(server, settings, age_days=0)
    source.invalidate(source.access_token())
    source.access_token()
    renewed = monitor.evaluate([rt], now + dt.timedelta(hours=6))
    assert [(e.kind, e.state) for e in renewed] == [("token_expiry", "recovered")]

    server.close()
    source.invalidate(source.access_token())
    with pytest.raises(TransientError):
        source.access_token()
    broken = monitor.evaluate([rt], now + dt.timedelta(hours=7))
    assert [(e.kind, e.state) for e in broken] == [("token_expiry", "firing")]
    assert broken[0].message.startswith("getting a sign-in token fails: ")
    assert "unreachable" in broken[0].message

    for event in [*ending, *renewed, *broken]:
        assert [o.ok for o in await deliver(config, event)] == [True]
    lines = out.read_text().splitlines()
    assert [(e["kind"], e["state"]) for e in map(json.loads, lines)] == [
        ("token_expiry", "firing"),
        ("token_expiry", "recovered"),
        ("token_expiry", "firing"),
    ]
    everything = out.read_text()
    assert not any(secret in everything for secret in [*server.access_tokens, *server.refresh_tokens])
