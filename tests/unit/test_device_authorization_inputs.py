"""``maild accounts authorize``: what a device authorization endpoint answers is checked before use (QA of session 14).

Before: an ``interval`` of 0 was taken as it came, so the command polled the token endpoint without a pause until
the code expired (thousands of requests in 15 minutes), and ``user_code`` and ``verification_uri`` went to the
terminal as they came (escape sequences included; any URL scheme, ``http://`` anywhere).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.auth import oauth2
from maild.errors import AuthError, ProtocolError

GOOD: dict[str, Any] = {
    "device_code": "dc-1",
    "user_code": "WDJB-MJHT",
    "verification_uri": "https://microsoft.com/devicelogin",
    "expires_in": 900,
    "interval": 5,
}


def _start(monkeypatch: pytest.MonkeyPatch, **members: Any) -> oauth2.DeviceAuthorization:
    answer = {**GOOD, **members}
    for key in [k for k, v in answer.items() if v is None]:
        del answer[key]
    monkeypatch.setattr(oauth2, "post", lambda *a, **k: (200, json.dumps(answer).encode()))
    return oauth2.start_device_authorization("anna", "https://login.example.com/device", "cid", None, ())


@pytest.mark.parametrize(
    ("interval", "expected_s"),
    [
        (0, oauth2.MIN_POLL_INTERVAL_S),
        (-3, oauth2.MIN_POLL_INTERVAL_S),
        (0.001, oauth2.MIN_POLL_INTERVAL_S),
        (oauth2.MIN_POLL_INTERVAL_S - 0.5, oauth2.MIN_POLL_INTERVAL_S),
        (oauth2.MIN_POLL_INTERVAL_S, oauth2.MIN_POLL_INTERVAL_S),
        (oauth2.MIN_POLL_INTERVAL_S + 1, oauth2.MIN_POLL_INTERVAL_S + 1),
        (5, 5.0),
        (None, oauth2.DEFAULT_POLL_INTERVAL_S),
        ("0", oauth2.DEFAULT_POLL_INTERVAL_S),
        (True, oauth2.DEFAULT_POLL_INTERVAL_S),
    ],
)
def test_polling_interval_is_at_least_the_floor(
    monkeypatch: pytest.MonkeyPatch, interval: Any, expected_s: float
) -> None:
    """The polling interval is the server's, but never under MIN_POLL_INTERVAL_S; not a number: the RFC's 5 s."""
    assert _start(monkeypatch, interval=interval).interval_s == expected_s


def test_an_interval_of_zero_does_not_poll_without_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """``interval: 0`` and a code valid 60 s, the person never approving: at most 60 polls, each after a pause."""
    grant = _start(monkeypatch, interval=0, expires_in=60)
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    polls = [0]

    def pending(*args: object, **kwargs: object) -> tuple[int, bytes]:
        polls[0] += 1
        now[0] += 0.001  # one loopback round trip
        return 400, b'{"error": "authorization_pending"}'

    monkeypatch.setattr(oauth2, "post", pending)
    with pytest.raises(AuthError, match="expired"):
        oauth2.poll_device_token(
            "anna", "https://t/token", "cid", None, grant, sleep=sleep, clock=lambda: now[0]
        )
    assert 0 < polls[0] <= 60
    assert min(pauses) >= oauth2.MIN_POLL_INTERVAL_S


@pytest.mark.parametrize(
    "members",
    [
        {"user_code": "WDJB\x1b]0;owned\x07MJHT"},
        {"user_code": "WDJB\nMJHT"},
        {"user_code": ""},
        {"user_code": "X" * (oauth2.MAX_USER_CODE_CHARS + 1)},
        {"verification_uri": "https://example.com/\x1b[2J"},
        {"verification_uri": "javascript:alert(1)"},
        {"verification_uri": "http://login.example.com/device"},
        {"verification_uri": "https://example.com/" + "a" * oauth2.MAX_SHOWN_URI_CHARS},
        {"verification_uri": None, "verification_url": "file:///etc/passwd"},
    ],
    ids=repr,
)
def test_what_is_shown_must_be_printable_and_https(
    monkeypatch: pytest.MonkeyPatch, members: dict[str, Any]
) -> None:
    """A user_code or verification URI that is not printable, too long, or not https:// is a ProtocolError."""
    with pytest.raises(ProtocolError, match="user_code or verification_uri"):
        _start(monkeypatch, **members)


@pytest.mark.parametrize(
    "members",
    [
        {"user_code": "X" * oauth2.MAX_USER_CODE_CHARS},
        {"user_code": "WDJB MJHT"},
        {"verification_uri": "https://e.com/" + "a" * (oauth2.MAX_SHOWN_URI_CHARS - len("https://e.com/"))},
        {"verification_uri": None, "verification_url": "https://www.google.com/device"},
        {"verification_uri": "http://127.0.0.1:8080/activate"},
    ],
    ids=repr,
)
def test_ordinary_answers_at_the_limits_are_accepted(
    monkeypatch: pytest.MonkeyPatch, members: dict[str, Any]
) -> None:
    """Codes and URIs at the limits, with a space, Google's member name, or loopback http are taken as they are."""
    grant = _start(monkeypatch, **members)
    assert grant.user_code == members.get("user_code", GOOD["user_code"])


@pytest.mark.parametrize(
    "complete",
    ["https://example.com/?code=\x1b[2J", "javascript:x", "http://example.com/?c=1", 7],
)
def test_a_bad_complete_uri_is_dropped(monkeypatch: pytest.MonkeyPatch, complete: Any) -> None:
    """A verification_uri_complete that could not be shown is left out; the plain URI and the code are shown."""
    assert _start(monkeypatch, verification_uri_complete=complete).verification_uri_complete == ""


@given(user_code=st.text(max_size=80), uri=st.text(max_size=80))
def test_whatever_is_answered_what_is_shown_is_printable_ascii(user_code: str, uri: str) -> None:
    """For any user_code and verification_uri: a ProtocolError, or both are printable ASCII and the URI is https."""
    answer = {**GOOD, "user_code": user_code, "verification_uri": "https://e.com/" + uri}
    body = json.dumps(answer).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(oauth2, "post", lambda *a, **k: (200, body))
        try:
            grant = oauth2.start_device_authorization(
                "anna", "https://login.example.com/device", "cid", None, ()
            )
        except ProtocolError:
            return
    shown = grant.user_code + grant.verification_uri + grant.verification_uri_complete
    assert shown.isascii()
    assert shown.isprintable()
    assert grant.verification_uri.startswith("https://")
    assert math.isfinite(grant.interval_s)

