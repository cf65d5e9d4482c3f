"""A token endpoint echoing a secret in the ``error`` member of its error response (QA of session 14).

RFC 6749 section 5.2 makes ``error`` a short code, and only ``error_description`` was masked: an endpoint (or a
proxy in front of it) answering ``{"error": "<the refresh token>"}`` or ``{"error": "invalid_client <secret>"}``
had the secret shown whole in the AuthError, hence in the log, in status (``refresh_error``) and in alerts, after
the Secret objects that would have masked it globally had died. The code is now masked, made printable and cut.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from maild.auth import oauth2, tokens
from maild.errors import AuthError
from maild.model import Secret

REFRESH = "SENTINEL-refresh-4b1e"
CLIENT_SECRET = "SENTINEL-client-9c2d"
DEVICE_CODE = "SENTINEL-device-77aa"

Answer = Callable[[dict[str, str]], dict[str, Any]]


class EchoEndpoint:
    """A loopback token endpoint answering HTTP 400 with whatever ``answer(form)`` makes of the request."""

    def __init__(self) -> None:
        self.answer: Answer = lambda form: {"error": "invalid_grant"}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                body = json.dumps(owner.answer(form)).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo() -> Iterator[EchoEndpoint]:
    """The echoing endpoint, stopped after the test."""
    server = EchoEndpoint()
    yield server
    server.close()


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
