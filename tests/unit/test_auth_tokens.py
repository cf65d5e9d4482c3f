"""Token sources: in-memory caching and refresh before expiry, token_command bounds, the refresh-token file."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from maild.auth import oauth2, tokens
from maild.errors import AuthError, ConfigError, StoreError
from maild.secret import Secret


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_store_writes_0600_atomically_and_reads_back(tmp_path: Path) -> None:
    """The refresh token file is 0600 in a 0700 directory and holds the token for its client only."""
    store = tokens.RefreshTokenStore(tmp_path / "oauth2", "anna")
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    store.save(Secret("rt-1"), "client", "https://t/token", now=now)
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "oauth2").stat().st_mode & 0o777) == 0o700
    assert store.load("client", "https://t/token") == (Secret("rt-1"), now)
    assert store.load("other-client", "https://t/token") is None
    assert list((tmp_path / "oauth2").iterdir()) == [store.path]  # no temporary file left


def test_damaged_store_is_a_store_error_without_content(tmp_path: Path) -> None:
    """A damaged file says so and to authorize again; nothing of its content is shown."""
    store = tokens.RefreshTokenStore(tmp_path, "anna")
    store.path.write_text('{"refresh_token": "SENTINEL"')
    with pytest.raises(StoreError, match="damaged; authorize again") as info:
        store.load("c", "u")
    assert "SENTINEL" not in str(info.value)


def _device_settings(token_dir: Path) -> tokens.OAuth2Settings:
    """Settings for account ``anna`` with a device-code flow and its refresh token kept in ``token_dir``."""
    return tokens.OAuth2Settings(
        account="anna",
        token_url="https://t/token",
        device_url="https://t/device",
        client_id="c",
        token_dir=token_dir,
    )


def _command_source(argv: list[str], clock: Clock) -> tokens.OAuth2Tokens:
    return tokens.OAuth2Tokens(tokens.OAuth2Settings(account="anna", token_command=tuple(argv)), clock=clock)


def test_token_command_is_cached_then_rerun(tmp_path: Path) -> None:
    """The command's token is reused for COMMAND_TOKEN_TTL_S minus the margin, and after invalidate() it is run again."""
    counter = tmp_path / "n"
    counter.write_text("0")
    script = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) + 1; "
        "p.write_text(str(n)); print(f'tok-{n}')"
    )
    clock = Clock()
    source = _command_source([sys.executable, "-c", script], clock)
    first = source.access_token()
    assert first == Secret("tok-1")
    assert source.access_token() == first
    clock.now += tokens.COMMAND_TOKEN_TTL_S - tokens.REFRESH_MARGIN_S + 1
    assert source.access_token() == Secret("tok-2")
    source.invalidate(Secret("tok-2"))
    assert source.access_token() == Secret("tok-3")
    source.invalidate(Secret("not-current"))
    assert source.access_token() == Secret("tok-3")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/nonexistent/helper"], "FileNotFoundError"),
        (
            [sys.executable, "-c", "import sys; print('SENTINEL'); sys.exit(3)"],
            "exited 3 without printing a token",
        ),
        ([sys.executable, "-c", "pass"], "exited 0 without printing a token"),
        ([sys.executable, "-c", f"print('S' * {tokens.MAX_TOKEN_OCTETS + 1})"], "more than"),
    ],
)
def test_token_command_failures_never_show_output(argv: list[str], message: str) -> None:
    """A failing token_command is a ConfigError naming the command, never its output."""
    with pytest.raises(ConfigError, match=message) as info:
        _command_source(argv, Clock()).access_token()
    assert "SENTINEL" not in str(info.value)


def test_token_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command running longer than TOKEN_COMMAND_TIMEOUT_S is stopped and reported."""
    monkeypatch.setattr(tokens, "TOKEN_COMMAND_TIMEOUT_S", 0.2)
    with pytest.raises(ConfigError, match="TimeoutExpired"):
        _command_source([sys.executable, "-c", "import time; time.sleep(5)"], Clock()).access_token()


def test_refresh_before_expiry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The access token is reused until REFRESH_MARGIN_S before expires_in, then refreshed (rotation stored)."""
    issued: list[str] = []

    def fake_refresh(
        account: str, url: str, cid: str, secret: object, rt: Secret, scope: object
    ) -> oauth2.TokenResponse:
        issued.append(rt.reveal())
        n = len(issued)
        return oauth2.TokenResponse(Secret(f"at-{n}"), 600.0, Secret(f"rt-{n + 1}"))

    monkeypatch.setattr(oauth2, "refresh", fake_refresh)
    settings = _device_settings(tmp_path)
    tokens.RefreshTokenStore(tmp_path, "anna").save(
        Secret("rt-1"), "c", "https://t/token", now=dt.datetime.now(dt.UTC)
    )
    clock = Clock()
    source = tokens.OAuth2Tokens(settings, clock=clock)
    assert source.access_token() == Secret("at-1")
    clock.now += 600 - tokens.REFRESH_MARGIN_S - 1
    assert source.access_token() == Secret("at-1")
    clock.now += 2
    assert source.access_token() == Secret("at-2")
    assert issued == ["rt-1", "rt-2"]
    assert tokens.RefreshTokenStore(tmp_path, "anna").load("c", "https://t/token")[0] == Secret("rt-3")  # type: ignore[index]


def test_never_authorized_says_what_to_run(tmp_path: Path) -> None:
    """No stored refresh token: AuthError (reauthorize) naming `maild accounts authorize NAME`."""
    settings = _device_settings(tmp_path)
    with pytest.raises(AuthError, match=r"run `maild accounts authorize anna`") as info:
        tokens.OAuth2Tokens(settings).access_token()
    assert info.value.reauthorize


def test_unreachable_token_endpoint_is_transient() -> None:
    """Connection refused at the token endpoint is a TransientError (backoff), not an AuthError."""
    from maild.errors import TransientError

    with pytest.raises(TransientError, match="unreachable"):
        oauth2.client_credentials("anna", "http://127.0.0.1:9/token", "c", Secret("s"), ())


def test_only_https_or_loopback_http_endpoints() -> None:
    """check_endpoint accepts https and loopback http, refuses the rest."""
    oauth2.check_endpoint("https://login.example.com/t", "k")
    oauth2.check_endpoint("http://127.0.0.1:8080/t", "k")
    oauth2.check_endpoint("http://localhost/t", "k")
    for bad in ("http://login.example.com/t", "ftp://x/t", "https:///t", "file:///etc/passwd"):
        with pytest.raises(ConfigError, match="https://"):
            oauth2.check_endpoint(bad, "k")


def test_source_for_reuses_one_source_per_configuration() -> None:
    """Equal settings share a source (the token outlives a cycle); changed settings replace it."""
    tokens._SOURCES.clear()
    a = tokens.OAuth2Settings(account="zz", token_command=("a",))
    assert tokens.source_for(a) is tokens.source_for(
        tokens.OAuth2Settings(account="zz", token_command=("a",))
    )
    b = tokens.OAuth2Settings(account="zz", token_command=("b",))
    assert tokens.source_for(b) is not tokens.source_for(a)
    assert len([k for k in tokens._SOURCES if k.account == "zz"]) == 1
    tokens._SOURCES.clear()


def test_token_response_with_another_scope_and_string_lifetime_is_accepted() -> None:
    """A granted scope other than the requested one (oauthlib raises Warning) and expires_in as a string still parse."""
    from oauthlib.oauth2 import BackendApplicationClient

    client = BackendApplicationClient("c", scope=["https://outlook.office365.com/.default"])
    body = b'{"access_token": "at", "token_type": "Bearer", "expires_in": "3599", "scope": "POP.AccessAsUser.All"}'
    answer = oauth2._parse_token("anna", client, body, (), grant="client_credentials")
    assert answer.access_token == Secret("at")
    assert answer.expires_in_s == 3599.0
    assert answer.scope == "POP.AccessAsUser.All"


def test_token_error_description_is_redacted() -> None:
    """An error_description echoing the secret sent is shown with the secret replaced."""
    from oauthlib.oauth2 import BackendApplicationClient

    body = b'{"error": "invalid_client", "error_description": "secret SENTINEL-x is wrong"}'
    with pytest.raises(AuthError, match=r"invalid_client: secret \*\*\*\*\*\*\*\* is wrong"):
        oauth2._parse_token(
            "anna", BackendApplicationClient("c"), body, ("SENTINEL-x",), grant="client_credentials"
        )


def test_oversized_or_malformed_token_responses() -> None:
    """A body that is not a JSON object, or has no access_token, is a ProtocolError citing RFC 6749."""
    from oauthlib.oauth2 import BackendApplicationClient

    from maild.errors import ProtocolError

    for body in (b"<html>", b'{"token_type": "Bearer"}'):
        with pytest.raises(ProtocolError, match=r"RFC 6749 section 5\.1"):
            oauth2._parse_token("anna", BackendApplicationClient("c"), body, (), grant="client_credentials")
