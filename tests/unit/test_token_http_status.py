"""What the token endpoint's HTTP status makes of an answer (QA of session 14).

Before: the status was dropped and only the body read. HTTP 429 (too many requests) with an error object such as
``{"error": "invalid_request"}`` was an AuthError, so three throttled refreshes in a row locked the account out
(``auth_failed``, until ``maild resume``); without one (an HTML page) it was a "permanent" ProtocolError whose
line did not say HTTP 429, as for any other status with a body that is not JSON (a proxy's 403 or 404 page).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.auth import oauth2, tokens
from maild.errors import AuthError, ProtocolError, ThrottledError, TransientError
from maild.secret import Secret
from maild.service.account_runtime import AccountRuntime
from tests.support.accounts import pop3_account
from tests.support.token_endpoint import EchoEndpoint, echo_endpoint

CLIENT_SECRET = "SENTINEL-client-5e1f"


@pytest.fixture
def endpoint() -> Iterator[EchoEndpoint]:
    """The scripted endpoint, stopped after the test."""
    with echo_endpoint() as server:
        yield server


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": "invalid_request", "error_description": "AADSTS50196: client request loop"}',
        b'{"error": "rate_limit_exceeded"}',
        b"<html><body>Too Many Requests</body></html>",
        b"",
    ],
)
def test_http_429_is_throttling_whatever_the_body(endpoint: EchoEndpoint, body: bytes) -> None:
    """HTTP 429 with an error object, an HTML page or nothing: ThrottledError naming HTTP 429, no AuthError."""
    endpoint.status, endpoint.raw = 429, body
    with pytest.raises(ThrottledError, match=r"token endpoint answered HTTP 429 \(too many requests\)"):
        oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())


def test_http_429_echoing_the_secret_in_its_code_is_masked(endpoint: EchoEndpoint) -> None:
    """The error code a 429 carries is shown masked, like any other."""
    endpoint.status = 429
    endpoint.answer = lambda form: {"error": "slow down " + form["client_secret"]}
    with pytest.raises(ThrottledError) as info:
        oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())
    assert CLIENT_SECRET not in str(info.value)
    assert "slow down ********" in str(info.value)


def test_http_408_is_transient(endpoint: EchoEndpoint) -> None:
    """HTTP 408 (request timeout): a TransientError, retried with backoff."""
    endpoint.status, endpoint.raw = 408, b"<html>timeout</html>"
    with pytest.raises(TransientError, match="HTTP 408") as info:
        oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())
    assert not isinstance(info.value, ThrottledError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 407])
def test_a_page_that_is_not_json_names_the_http_status(endpoint: EchoEndpoint, status: int) -> None:
    """A 4xx with a body that is not JSON (a proxy's page): one ProtocolError line naming the HTTP status."""
    endpoint.status, endpoint.raw = status, b"<html>Forbidden by policy</html>"
    with pytest.raises(ProtocolError, match=f"answered HTTP {status} and something other than a JSON object"):
        oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())


def test_a_200_that_is_not_json_reads_as_before(endpoint: EchoEndpoint) -> None:
    """HTTP 200 with a body that is not JSON: the line names no status, as before."""
    endpoint.status, endpoint.raw = 200, b"<html>"
    with pytest.raises(ProtocolError, match="answered something other than a JSON object"):
        oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())


def test_an_ordinary_refusal_is_still_an_auth_error(endpoint: EchoEndpoint) -> None:
    """HTTP 400 invalid_client stays an AuthError (counted toward the lockout), HTTP 401 too."""
    for status in (400, 401):
        endpoint.status = status
        endpoint.answer = lambda form: {"error": "invalid_client"}
        with pytest.raises(AuthError, match="invalid_client"):
            oauth2.client_credentials("anna", endpoint.url, "cid", Secret(CLIENT_SECRET), ())


def test_three_throttled_refreshes_do_not_lock_the_account_out(
    endpoint: EchoEndpoint, tmp_path: Path
) -> None:
    """Three cycles whose refresh got HTTP 429 with an error object: backoff each time, never auth_failed."""
    endpoint.status = 429
    endpoint.answer = lambda form: {"error": "invalid_request", "error_description": "throttled"}
    settings = tokens.OAuth2Settings(
        account="anna", token_url=endpoint.url, device_url=endpoint.url, client_id="cid", token_dir=tmp_path
    )
    tokens.RefreshTokenStore(tmp_path, "anna").save(
        Secret("rt-1"), "cid", endpoint.url, now=dt.datetime.now(dt.UTC)
    )
    source = tokens.OAuth2Tokens(settings)
    runtime = AccountRuntime(pop3_account("anna"))
    for _ in range(3):
        with pytest.raises(TransientError) as info:
            source.access_token()
        runtime.failed(info.value, dt.datetime.now(dt.UTC))
    assert runtime.state == "backoff"
    assert runtime.auth_failures == 0
    assert endpoint.requests == 3


def test_http_429_while_polling_a_device_code_slows_down(endpoint: EchoEndpoint) -> None:
    """A 429 while `maild accounts authorize` polls is taken as slow_down: the wait grows, the polling goes on."""
    endpoint.status = 429
    endpoint.answer = lambda form: {"error": "too_many"}
    grant = oauth2.DeviceAuthorization(Secret("dc"), "ABCD", "https://example.com/device", "", 30, 1)
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    with pytest.raises(AuthError, match="expired"):
        oauth2.poll_device_token("anna", endpoint.url, "cid", None, grant, sleep=sleep, clock=lambda: now[0])
    assert pauses[:3] == [1, 1 + oauth2.SLOW_DOWN_STEP_S, 1 + 2 * oauth2.SLOW_DOWN_STEP_S]
