"""Sessions of one account waiting for its token lock share a failed attempt (QA of session 14).

Before: each session that waited while another's attempt failed asked the endpoint again as soon as it had the
lock. With a hanging token endpoint that is one HTTP_TIMEOUT_S (30 s) per session, one after the other (a cycle and
an IDLE watcher: a minute; a stop waited for all of them), and with a refusing one (``invalid_grant``) one refused
request per session.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from types import TracebackType

import pytest

from maild.auth import oauth2, tokens
from maild.errors import AuthError, MaildError, TransientError
from maild.secret import Secret

URL = "https://login.example.com/token"


class CountingLock:
    """The token lock, counting the threads that have come to it (held or waiting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrived = 0
        self._count = threading.Lock()

    def __enter__(self) -> None:
        with self._count:
            self.arrived += 1
        self._lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()


def _source(tmp_path: Path) -> tokens.OAuth2Tokens:
    settings = tokens.OAuth2Settings(
        account="anna",
        token_url=URL,
        device_url="https://login.example.com/device",
        client_id="c",
        token_dir=tmp_path,
    )
    tokens.RefreshTokenStore(tmp_path, "anna").save(Secret("rt-1"), "c", URL, now=dt.datetime.now(dt.UTC))
    return tokens.OAuth2Tokens(settings)


def _run_waiting_sessions(
    source: tokens.OAuth2Tokens, lock: CountingLock, release: threading.Event, sessions: int
) -> list[BaseException | Secret]:
    """Start ``sessions`` threads asking for a token; release the endpoint once all of them have come to the lock."""
    results: list[BaseException | Secret] = []

    def ask() -> None:
        try:
            results.append(source.access_token())
        except MaildError as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    while lock.arrived < sessions:
        threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.parametrize(
    "failure",
    [
        TransientError("account anna: token endpoint did not answer within 30 s", account="anna"),
        AuthError(
            "account anna: the refresh token was refused (invalid_grant)", account="anna", reauthorize=True
        ),
    ],
    ids=["hanging", "invalid_grant"],
)
@pytest.mark.parametrize("sessions", [2, 4])
def test_sessions_waiting_while_an_attempt_fails_share_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: MaildError, sessions: int
) -> None:
    """N sessions asking at once while the endpoint fails: one request, and every session gets its error."""
    release = threading.Event()
    calls: list[str] = []

    def failing_refresh(*args: object) -> oauth2.TokenResponse:
        calls.append("refresh")
        release.wait(30)
        raise failure

    monkeypatch.setattr(oauth2, "refresh", failing_refresh)
    source = _source(tmp_path)
    lock = CountingLock()
    source._lock = lock  # type: ignore[assignment]
    results = _run_waiting_sessions(source, lock, release, sessions)
    assert calls == ["refresh"]
    assert len(results) == sessions
    for result in results:
        assert type(result) is type(failure)
        assert str(result) == str(failure)
    assert all(getattr(r, "reauthorize", False) == getattr(failure, "reauthorize", False) for r in results)
    assert source.health().refresh_error == str(failure)


def test_a_later_call_after_a_failure_asks_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failure is shared only with sessions that waited for it: the next call (the account's retry) asks again."""
    answers: list[Exception | oauth2.TokenResponse] = [
        TransientError("account anna: token endpoint answered HTTP 503", account="anna"),
        oauth2.TokenResponse(Secret("at-2"), 3600.0, None),
    ]

    def scripted_refresh(*args: object) -> oauth2.TokenResponse:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(oauth2, "refresh", scripted_refresh)
    source = _source(tmp_path)
    with pytest.raises(TransientError, match="503"):
        source.access_token()
    assert source.access_token() == Secret("at-2")
    assert answers == []
    assert source.health().refresh_error is None


def test_sessions_waiting_while_an_attempt_succeeds_share_its_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """N sessions asking at once while the endpoint answers: one request, one token for all."""
    release = threading.Event()
    calls: list[str] = []

    def slow_refresh(*args: object) -> oauth2.TokenResponse:
        calls.append("refresh")
        release.wait(30)
        return oauth2.TokenResponse(Secret("at-1"), 3600.0, None)

    monkeypatch.setattr(oauth2, "refresh", slow_refresh)
    source = _source(tmp_path)
    lock = CountingLock()
    source._lock = lock  # type: ignore[assignment]
    assert _run_waiting_sessions(source, lock, release, 3) == [Secret("at-1")] * 3
    assert calls == ["refresh"]
