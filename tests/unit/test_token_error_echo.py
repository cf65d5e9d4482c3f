"""A token endpoint echoing a secret in the ``error`` member of its error response (QA of session 14).

RFC 6749 section 5.2 makes ``error`` a short code, and only ``error_description`` was masked: an endpoint (or a
proxy in front of it) answering ``{"error": "<the refresh token>"}`` or ``{"error": "invalid_client <secret>"}``
had the secret shown whole in the AuthError, hence in the log, in status (``refresh_error``) and in alerts, after
the Secret objects that would have masked it globally had died. The code is now masked, made printable and cut.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.auth import oauth2, tokens
from maild.errors import AuthError
from maild.secret import Secret
from tests.support.token_endpoint import Answer, EchoEndpoint, echo_endpoint

REFRESH = "SENTINEL-refresh-4b1e"
CLIENT_SECRET = "SENTINEL-client-9c2d"
DEVICE_CODE = "SENTINEL-device-77aa"


@pytest.fixture
def echo() -> Iterator[EchoEndpoint]:
    """The echoing endpoint, stopped after the test."""
    with echo_endpoint() as server:
        yield server


def _every_sent_secret(form: dict[str, str]) -> str:
    return " ".join(form[key] for key in ("refresh_token", "client_secret", "device_code") if key in form)


ECHOES: dict[str, Answer] = {
    "the secrets as the code": lambda form: {"error": _every_sent_secret(form)},
    "a code followed by the secrets": lambda form: {"error": "invalid_client " + _every_sent_secret(form)},
    "the form as JSON in the code": lambda form: {"error": json.dumps(form)},
    "the secrets as the code, with a description": lambda form: {
        "error": _every_sent_secret(form),
        "error_description": "bad request",
    },
}


def _assert_clean(text: str) -> None:
    for secret in (REFRESH, CLIENT_SECRET, DEVICE_CODE):
        assert secret not in text
        assert secret[:-1] not in text  # nor cut one character short


@pytest.mark.parametrize("shape", list(ECHOES))
def test_refresh_grant_error_code_echoing_secrets_is_masked_everywhere(
    echo: EchoEndpoint, tmp_path: Path, shape: str
) -> None:
    """A refresh refused with the refresh token and client secret in ``error``: neither is in the error, status or log."""
    echo.answer = ECHOES[shape]
    settings = tokens.OAuth2Settings(
        account="anna",
        token_url=echo.url,
        device_url=echo.url,
        client_id="cid",
        client_secret=lambda: Secret(CLIENT_SECRET),
        token_dir=tmp_path,
    )
    tokens.RefreshTokenStore(tmp_path, "anna").save(
        Secret(REFRESH), "cid", echo.url, now=dt.datetime.now(dt.UTC)
    )
    source = tokens.OAuth2Tokens(settings)
    with capture_logs() as logs, pytest.raises(AuthError) as info:
        source.access_token()
    _assert_clean(str(info.value))
    assert "********" in str(info.value)
    _assert_clean(str(source.health().refresh_error))
    _assert_clean(repr(logs))


@pytest.mark.parametrize("shape", list(ECHOES))
def test_client_credentials_error_code_echoing_the_secret_is_masked(echo: EchoEndpoint, shape: str) -> None:
    """The client credentials grant refused with the client secret in ``error``: not in the AuthError."""
    echo.answer = ECHOES[shape]
    with pytest.raises(AuthError) as info:
        oauth2.client_credentials("anna", echo.url, "cid", Secret(CLIENT_SECRET), ())
    _assert_clean(str(info.value))


def test_device_poll_error_code_echoing_the_device_code_is_masked(echo: EchoEndpoint) -> None:
    """A device-code poll refused with the device code and client secret in ``error``: not in the AuthError."""
    echo.answer = ECHOES["a code followed by the secrets"]
    grant = oauth2.DeviceAuthorization(
        Secret(DEVICE_CODE), "ABCD-EFGH", "https://example.com/device", "", 600, 0
    )
    with pytest.raises(AuthError) as info:
        oauth2.poll_device_token("anna", echo.url, "cid", Secret(CLIENT_SECRET), grant, sleep=lambda s: None)
    _assert_clean(str(info.value))


@pytest.mark.parametrize("length", [oauth2.MAX_ERROR_CODE_CHARS - 1, oauth2.MAX_ERROR_CODE_CHARS, 10_000])
def test_error_code_is_cut_and_made_printable(echo: EchoEndpoint, length: int) -> None:
    """An ``error`` member of any length, with line breaks and escapes, is shown as at most MAX_ERROR_CODE_CHARS
    printable characters."""
    code = ("x\n\x1b[2J" * length)[:length]
    echo.answer = lambda form: {"error": code}
    with pytest.raises(AuthError) as info:
        oauth2.client_credentials("anna", echo.url, "cid", Secret(CLIENT_SECRET), ())
    shown = str(info.value).split("refused: ", 1)[1]
    assert len(shown) == min(length, oauth2.MAX_ERROR_CODE_CHARS)
    assert shown.isprintable()
    assert "\x1b" not in shown


def test_ordinary_error_codes_are_shown_as_sent(echo: EchoEndpoint) -> None:
    """``invalid_client`` with a description keeps both, unchanged."""
    echo.answer = lambda form: {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret"}
    with pytest.raises(AuthError, match=r"refused: invalid_client: AADSTS7000215: bad secret$"):
        oauth2.client_credentials("anna", echo.url, "cid", Secret(CLIENT_SECRET), ())
