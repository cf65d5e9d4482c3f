"""OAuth2 grants over HTTP: client credentials, refresh, device authorization (RFC 6749, RFC 8628).

Library: **oauthlib** (4.0.1). It is sans-I/O: it builds token request bodies and parses token
responses (errors included: ``invalid_grant``, ``slow_down``, ...) and never opens a connection,
which matches how maild keeps protocol grammar apart from I/O (see the POP3 and SASL wire modules).
The HTTP exchange is :mod:`urllib.request` in :mod:`maild.auth.endpoint`, so every answer is bounded
in size (:data:`MAX_RESPONSE_OCTETS`) and time (:data:`HTTP_TIMEOUT_S`) by us, and no HTTP stack
comes in as a dependency. authlib would bring httpx and its own client objects to configure; msal is
Microsoft-only (no Gmail). oauthlib's own ``DeviceClient`` does not build the device authorization
request (it makes a GET URI; RFC 8628 section 3.1 wants a POST form), so that request and its
response are built and checked here. Two oauthlib behaviours this module relies on (4.0.1): a granted
scope that differs from the requested one raises ``Warning`` carrying the parsed token (Microsoft
answers ``.default`` with the explicit scopes), taken as success here; RFC 8628's error codes come
back as ``CustomOAuth2Error`` and are matched on the ``error`` member, never on text.

Everything here blocks: call it from a worker thread (:mod:`maild.auth.tokens` does) or from the
CLI, never on the event loop. Secrets (client secret, tokens) never appear in an error message: the
server's ``error_description`` is shown only after every secret sent is removed from it.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from maild.auth.endpoint import HTTP_TIMEOUT_S, MAX_RESPONSE_OCTETS, endpoint_allowed, post
from maild.auth.sasl import redact
from maild.errors import AuthError, ConfigError, ProtocolError, ThrottledError, TransientError
from maild.secret import Secret

if TYPE_CHECKING:
    from oauthlib.oauth2 import OAuth2Error

# oauthlib (some 80 modules) and urllib.request (http.client, email) are imported by the functions
# that talk to an endpoint: the configuration loader imports this module for check_endpoint, and
# `maild status` or a one-shot fetch of password accounts would pay their start-up time for nothing.

__all__ = [
    "DEVICE_CODE_GRANT",
    "HTTP_TIMEOUT_S",
    "MAX_ACCESS_TOKEN_LIFETIME_S",
    "MAX_ERROR_CODE_CHARS",
    "MAX_RESPONSE_OCTETS",
    "MAX_SHOWN_URI_CHARS",
    "MAX_USER_CODE_CHARS",
    "MIN_POLL_INTERVAL_S",
    "DeviceAuthorization",
    "TokenResponse",
    "check_endpoint",
    "client_credentials",
    "poll_device_token",
    "refresh",
    "start_device_authorization",
]

#: Longest access-token lifetime believed, in seconds (1 day; real ones are 1 hour): a larger or
#: infinite ``expires_in`` is taken as this, so the token is refreshed at least daily and the expiry
#: shown by status stays a date.
MAX_ACCESS_TOKEN_LIFETIME_S: Final = 86400.0
#: RFC 8628 section 3.2: the polling interval when the server names none, in seconds.
DEFAULT_POLL_INTERVAL_S: Final = 5.0
#: Longest ``user_code`` shown, in characters (RFC 8628 section 6.1 suggests 8 or 9).
MAX_USER_CODE_CHARS: Final = 64
#: Longest verification URI shown, in characters.
MAX_SHOWN_URI_CHARS: Final = 2048
#: Shortest polling interval taken from a device authorization response, in seconds: RFC 8628 section 3.2
#: lets the server name any; an ``interval`` of 0 had ``maild accounts authorize`` poll the token endpoint
#: without a pause until the code expired (thousands of requests; QA of session 14).
MIN_POLL_INTERVAL_S: Final = 1.0
#: RFC 8628 section 3.5: how much ``slow_down`` adds to the polling interval, in seconds.
SLOW_DOWN_STEP_S: Final = 5.0
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: Longest ``error`` member of a token endpoint's error response shown, in characters (real codes,
#: RFC 6749 section 5.2, are under 30); longer ones are cut after masking the secrets in them.
MAX_ERROR_CODE_CHARS: Final = 100

#: Token endpoint errors that may pass: retried with backoff (RFC 6749 section 5.2 has no such
#: code; ``temporarily_unavailable`` and ``server_error`` come from section 4.1.2.1).
_TRANSIENT_ERRORS: Final = frozenset({"temporarily_unavailable", "server_error"})


def check_endpoint(url: str, where: str) -> None:
    """Accept only ``https://`` endpoints, or ``http://`` to a loopback address (tests, local proxies):
    :func:`maild.auth.endpoint.endpoint_allowed`, which also decides where a redirect may go.

    Raises:
        ConfigError: another scheme, or plain http to a host that is not loopback; names ``where``.
    """
    if not endpoint_allowed(url):
        raise ConfigError(f"{where}: expected an https:// URL (http:// only to loopback), got {url!r}")


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token response (RFC 6749 section 5.1).

    Attributes:
        access_token: the bearer token.
        expires_in_s: lifetime in seconds from the response, or None when the server gave none.
        refresh_token: a new refresh token, or None (keep the old one, RFC 6749 section 6).
        scope: the granted scope, space-separated, or ``""``.
    """

    access_token: Secret
    expires_in_s: float | None
    refresh_token: Secret | None
    scope: str = ""

    def __repr__(self) -> str:
        return f"TokenResponse(<secret>, expires_in_s={self.expires_in_s}, scope={self.scope!r})"


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """A device authorization response (RFC 8628 section 3.2).

    Attributes:
        device_code: the code to poll the token endpoint with (a secret).
        user_code: what the person types at ``verification_uri``.
        verification_uri: where the person goes (Google calls the member ``verification_url``).
        verification_uri_complete: the same with the code filled in, or ``""``.
        expires_in_s: seconds until both codes expire.
        interval_s: seconds to wait between polls.
    """

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in_s: float
    interval_s: float


def _describe(exc: OAuth2Error, secrets: Iterable[str]) -> str:
    """``error: description`` of an error response, every secret sent masked in both members before they
    are cut; the ``error`` member is a code by RFC 6749 section 5.2 (NQSCHAR), but an endpoint may echo
    the refresh token or the client secret in it (QA of session 14: shown whole in the error, the log
    and status), or send 60 KB: it is masked, its other characters than printable ASCII replaced by
    ``?``, and cut to :data:`MAX_ERROR_CODE_CHARS`."""
    secrets = tuple(secrets)
    text = _printable_code(str(exc.error or "error"), secrets)
    if exc.description:
        text += f": {redact(str(exc.description), secrets)[:300]}"  # masked before the cut
    return text


def _printable_code(code: str, secrets: Iterable[str]) -> str:
    """An endpoint's ``error`` code as shown: secrets masked, other characters than printable ASCII
    replaced by ``?``, cut to :data:`MAX_ERROR_CODE_CHARS`."""
    masked = redact(code, tuple(secrets))
    return "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in masked)[:MAX_ERROR_CODE_CHARS]


def _token_error(account: str, exc: OAuth2Error, secrets: Iterable[str], *, grant: str) -> Exception:
    """The maild error for an error response of the token endpoint (RFC 6749 section 5.2)."""
    what = _describe(exc, secrets)
    if exc.error in _TRANSIENT_ERRORS:
        return TransientError(f"account {account}: token endpoint: {what}", account=account)
    if exc.error == "invalid_grant" and grant != "client_credentials":
        return AuthError(
            f"account {account}: the refresh token was refused ({what}); "
            f"run `maild accounts authorize {account}`",
            account=account,
            reauthorize=True,
        )
    return AuthError(f"account {account}: token request ({grant}) refused: {what}", account=account)


def _is_vschar(text: str) -> bool:
    """True when ``text`` is 1*VSCHAR (printable ASCII, RFC 6749 appendix A.12 and A.17)."""
    return bool(text) and text.isascii() and text.isprintable()


def _parse_token(
    account: str, client: Any, body: bytes, secrets: Iterable[str], *, grant: str, status: int = 200
) -> TokenResponse:
    """Parse a token endpoint answer (HTTP ``status``, ``body``) with oauthlib; a maild error for error
    responses.

    Raises:
        ThrottledError: HTTP 429 (RFC 6585 section 4), whatever the body says: the provider asks
            for fewer requests; backed off like a server's throttling, never counted as a refusal.
        TransientError: HTTP 408; an error response of :data:`_TRANSIENT_ERRORS`.
        AuthError: another error response (RFC 6749 section 5.2), as :func:`_token_error`.
        ProtocolError: anything but a JSON object (naming the HTTP status when it was not 200),
            members of the wrong type, an ``access_token`` that is not printable ASCII (RFC 6749
            appendix A.12).
    """
    from oauthlib.oauth2 import OAuth2Error

    if status in (408, 429):
        # QA of session 14: a 429 with an error object was an AuthError, and three in a row locked the
        # account out (auth_failed) until `maild resume`; without one it was a "permanent" error
        kind = ThrottledError if status == 429 else TransientError
        code = _device_error_code(body)
        raise kind(
            f"account {account}: token endpoint answered HTTP {status}"
            f" ({'too many requests' if status == 429 else 'request timeout'})"
            + (f": {_printable_code(code, secrets)}" if code else ""),
            account=account,
        )
    answered = f"HTTP {status} and " if status != 200 else ""
    malformed = ProtocolError(
        f"account {account}: token endpoint answered {answered}something other than a JSON object"
        " with an access_token",
        account=account,
        standard="RFC 6749 section 5.1",
    )
    try:
        text = body.decode("utf-8")
        if not isinstance(json.loads(text), dict):
            raise malformed
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise malformed from None
    try:
        params = dict(client.parse_request_body_response(text))
    except Warning as changed:  # oauthlib: the granted scope differs from the requested one
        params = dict(getattr(changed, "token", {}))
    except OAuth2Error as exc:
        if exc.error not in ("missing_token", "missing_token_type"):
            if not isinstance(exc.error, str):
                raise malformed from None
            raise _token_error(account, exc, secrets, grant=grant) from None
        params = {}  # neither a token nor an error response: reported below
    except (ValueError, TypeError, AttributeError, OverflowError):  # oauthlib on members of the wrong type
        raise malformed from None
    access = params.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProtocolError(
            f"account {account}: token response without access_token",
            account=account,
            standard="RFC 6749 section 5.1",
        )
    if not _is_vschar(access):
        raise ProtocolError(
            f"account {account}: token response with an access_token that is not printable ASCII",
            account=account,
            standard="RFC 6749 appendix A.12",
        )
    expires = params.get("expires_in")
    if isinstance(expires, str):  # some endpoints (Azure AD v1) send it as a string
        try:
            expires = float(expires)
        except ValueError:
            expires = None
    lifetime_s = None
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0:  # NaN > 0 is False
        lifetime_s = min(float(expires), MAX_ACCESS_TOKEN_LIFETIME_S)
    refresh_token = params.get("refresh_token")
    scope = params.get("scope", "")
    return TokenResponse(
        access_token=Secret(access),
        expires_in_s=lifetime_s,
        refresh_token=Secret(refresh_token)
        if isinstance(refresh_token, str) and _is_vschar(refresh_token)
        else None,
        scope=" ".join(str(part) for part in scope) if isinstance(scope, list) else str(scope),
    )


def _form(body: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(body, keep_blank_values=True)


def client_credentials(
    account: str, token_url: str, client_id: str, client_secret: Secret, scope: tuple[str, ...]
) -> TokenResponse:
    """Get an access token with the client credentials grant.

    Standard: RFC 6749 section 4.4 (client authenticated with ``client_secret`` in the body,
    section 2.3.1, as Microsoft's and Google's endpoints accept).

    Raises:
        AuthError: the endpoint refused the client or the scope. TransientError: unreachable, 5xx,
            ``temporarily_unavailable``. ProtocolError: a malformed answer.
    """
    from oauthlib.oauth2 import BackendApplicationClient

    client = BackendApplicationClient(client_id, scope=list(scope) or None)
    body = client.prepare_request_body(
        include_client_id=True, client_secret=client_secret.reveal(), scope=list(scope) or None
    )
    status, answer = post(account, token_url, _form(body))
    return _parse_token(
        account, client, answer, (client_secret.reveal(),), grant="client_credentials", status=status
    )


def refresh(
    account: str,
    token_url: str,
    client_id: str,
    client_secret: Secret | None,
    refresh_token: Secret,
    scope: tuple[str, ...],
) -> TokenResponse:
    """Get a new access token (and maybe a new refresh token) with a refresh token.

    Standard: RFC 6749 section 6.

    Raises:
        AuthError: ``invalid_grant`` (revoked, expired, rotated away): the message says to run
            ``maild accounts authorize NAME``; other refusals with the server's error code.
        TransientError, ProtocolError: as :func:`client_credentials`.
    """
    from oauthlib.oauth2 import WebApplicationClient

    client = WebApplicationClient(client_id)
    extra: dict[str, str] = {"client_id": client_id}
    if client_secret is not None:
        extra["client_secret"] = client_secret.reveal()
    body = client.prepare_refresh_body(
        refresh_token=refresh_token.reveal(), scope=list(scope) or None, **extra
    )
    secrets = (refresh_token.reveal(), *([client_secret.reveal()] if client_secret else []))
    status, answer = post(account, token_url, _form(body))
    return _parse_token(account, client, answer, secrets, grant="refresh_token", status=status)


def start_device_authorization(
    account: str, device_url: str, client_id: str, client_secret: Secret | None, scope: tuple[str, ...]
) -> DeviceAuthorization:
    """Ask for a device code and a user code.

    Standard: RFC 8628 sections 3.1 and 3.2.

    The ``interval`` is taken as at least :data:`MIN_POLL_INTERVAL_S`.

    Raises:
        AuthError: the endpoint refused (``invalid_client``, ``invalid_scope``, ...).
        ProtocolError: a malformed answer, also a ``user_code`` or ``verification_uri`` that is not
            printable or too long, or a ``verification_uri`` that is not ``https://``.
        TransientError: as :func:`client_credentials`.
    """
    fields = [("client_id", client_id)]
    if client_secret is not None:
        fields.append(("client_secret", client_secret.reveal()))
    if scope:
        fields.append(("scope", " ".join(scope)))
    status, body = post(account, device_url, fields, what="device authorization endpoint")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ProtocolError(
            f"account {account}: device authorization endpoint answered HTTP {status} without a JSON object",
            account=account,
            standard="RFC 8628 section 3.2",
        )
    if status != 200 or "error" in data:
        secrets = [client_secret.reveal()] if client_secret else []
        # masked before the cut: a secret cut in two is not recognised (QA of session 10)
        code = redact(str(data.get("error", f"HTTP {status}")), secrets)[:100]
        desc = redact(str(data.get("error_description", "")), secrets)[:300]
        raise AuthError(
            f"account {account}: device authorization refused: {code}" + (f": {desc}" if desc else ""),
            account=account,
        )
    uri = data.get("verification_uri", data.get("verification_url"))
    device_code, user_code, expires = data.get("device_code"), data.get("user_code"), data.get("expires_in")
    if not (
        isinstance(device_code, str)
        and isinstance(user_code, str)
        and isinstance(uri, str)
        and isinstance(expires, int | float)
        and math.isfinite(expires)
        and expires > 0
    ):
        raise ProtocolError(
            f"account {account}: device authorization response lacks device_code, user_code,"
            " verification_uri or expires_in",
            account=account,
            standard="RFC 8628 section 3.2",
        )
    complete = data.get("verification_uri_complete", "")
    complete = complete if isinstance(complete, str) and _shown_uri(complete) else ""
    # what the person is shown on the terminal: printable, and a URI maild itself would ask (QA of
    # session 14: escape sequences in user_code or verification_uri reached the terminal as they came)
    if not (
        _is_vschar(user_code.replace(" ", "!")) and len(user_code) <= MAX_USER_CODE_CHARS and _shown_uri(uri)
    ):
        raise ProtocolError(
            f"account {account}: device authorization response with a user_code or verification_uri"
            " that is not printable, too long, or not an https:// URL",
            account=account,
            standard="RFC 8628 section 3.2",
        )
    interval = data.get("interval", DEFAULT_POLL_INTERVAL_S)
    if not (isinstance(interval, int | float) and not isinstance(interval, bool) and math.isfinite(interval)):
        interval = DEFAULT_POLL_INTERVAL_S
    return DeviceAuthorization(
        device_code=Secret(device_code),
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=complete,
        expires_in_s=float(expires),
        interval_s=max(float(interval), MIN_POLL_INTERVAL_S),
    )


def _shown_uri(uri: str) -> bool:
    """Whether ``uri`` may be shown for a person to open: printable ASCII, at most
    :data:`MAX_SHOWN_URI_CHARS`, ``https://`` (``http://`` to loopback only, as for endpoints)."""
    return _is_vschar(uri) and len(uri) <= MAX_SHOWN_URI_CHARS and endpoint_allowed(uri)


def poll_device_token(
    account: str,
    token_url: str,
    client_id: str,
    client_secret: Secret | None,
    grant: DeviceAuthorization,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TokenResponse:
    """Poll the token endpoint until the person approves, denies, or the code expires.

    Waits ``interval`` seconds before each poll; ``authorization_pending`` polls again;
    ``slow_down`` adds :data:`SLOW_DOWN_STEP_S` to the interval for this and all later polls;
    ``access_denied`` and ``expired_token`` end it (RFC 8628 section 3.5). The wait also ends when
    ``expires_in`` has passed.

    Raises:
        AuthError: denied, expired, or another refusal; the message says what to do.
        TransientError: the endpoint stayed unreachable. ProtocolError: a malformed answer.
    """
    from oauthlib.oauth2 import DeviceClient

    client = DeviceClient(client_id)
    interval = grant.interval_s
    deadline = clock() + grant.expires_in_s
    secrets = [grant.device_code.reveal(), *([client_secret.reveal()] if client_secret else [])]
    while True:
        if clock() + interval > deadline:
            raise AuthError(
                f"account {account}: the code {grant.user_code} expired before it was entered; "
                f"run `maild accounts authorize {account}` again",
                account=account,
            )
        sleep(interval)
        extra = {"client_secret": client_secret.reveal()} if client_secret is not None else {}
        body = client.prepare_request_body(grant.device_code.reveal(), include_client_id=True, **extra)
        status, answer = post(account, token_url, _form(body))
        try:
            return _parse_token(account, client, answer, secrets, grant="device_code", status=status)
        except ThrottledError:  # HTTP 429 while polling: as slow_down (RFC 8628 section 3.5)
            interval += SLOW_DOWN_STEP_S
            continue
        except AuthError as exc:
            code = _device_error_code(answer)
            if code == "authorization_pending":
                continue
            if code == "slow_down":
                interval += SLOW_DOWN_STEP_S
                continue
            if code == "access_denied":
                raise AuthError(
                    f"account {account}: the sign-in was denied at the provider; run "
                    f"`maild accounts authorize {account}` again to retry",
                    account=account,
                ) from None
            if code == "expired_token":
                raise AuthError(
                    f"account {account}: the code {grant.user_code} expired before it was entered; "
                    f"run `maild accounts authorize {account}` again",
                    account=account,
                ) from None
            raise exc from None


def _device_error_code(body: bytes) -> str:
    """The ``error`` member of a token endpoint error response (RFC 6749 section 5.2), or ``""``."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""
