"""The account's token lock (:meth:`RefreshTokenStore.locked`) and the access token shared through the token file.

A lock taken through another open file description conflicts with the block's flock(2) even in one process,
so these tests hold it here; the tests with a second process are in
``tests/integration/test_token_two_processes.py``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from pathlib import Path

import pytest

from maild.auth import endpoint, token_store, tokens
from maild.auth.token_store import TOKEN_LOCK_WAIT_S, RefreshTokenStore
from maild.errors import StoreError, TransientError
from maild.secret import Secret
from tests.support.token_endpoint import RotatingEndpoint, rotating_endpoint

NOW = 1_800_000_000.0


def _hold(store: RefreshTokenStore) -> int:
    """Take the account's lock through a descriptor of our own, as another process would."""
    store.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class _Clock:
    """A monotonic clock that advances only when the lock sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_a_lock_held_for_the_whole_wait_gives_one_transient_error_naming_the_file(tmp_path: Path) -> None:
    """Held elsewhere for ``wait_s`` seconds: TransientError with the lock file's path, after waiting that long."""
    store = RefreshTokenStore(tmp_path, "anna")
    fd = _hold(store)
    clock = _Clock()
    try:
        with (
            pytest.raises(TransientError, match=r"another maild process held .*anna\.lock for 45 s"),
            store.locked(clock=clock, sleep=clock.sleep),
        ):
            pytest.fail("the block ran without the lock")
    finally:
        os.close(fd)
    assert clock.now == pytest.approx(TOKEN_LOCK_WAIT_S, abs=token_store.TOKEN_LOCK_POLL_S)


def test_the_lock_is_had_as_soon_as_the_holder_lets_go(tmp_path: Path) -> None:
    """Released by its holder during the wait (one poll before the deadline), the lock is taken: the block runs."""
    store = RefreshTokenStore(tmp_path, "anna")
    fd = _hold(store)
    clock = _Clock()
    polls_before_deadline = round(TOKEN_LOCK_WAIT_S / token_store.TOKEN_LOCK_POLL_S) - 1

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps == polls_before_deadline:
            os.close(fd)

    ran = False
    with store.locked(clock=clock, sleep=sleep):
        ran = True
    assert ran


def test_an_abandoned_wait_ends_at_once(tmp_path: Path) -> None:
    """A stop (``abandoned()`` true) ends the wait without sleeping: TransientError "stopped"."""
    store = RefreshTokenStore(tmp_path, "anna")
    fd = _hold(store)
    clock = _Clock()
    try:
        with (
            pytest.raises(TransientError, match="stopped while waiting"),
            store.locked(abandoned=lambda: True, clock=clock, sleep=clock.sleep),
        ):
            pytest.fail("the block ran without the lock")
    finally:
        os.close(fd)
    assert clock.sleeps == 0


def test_the_directory_is_locked_when_the_lock_file_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock file that cannot be created (read-only state directory): the directory is flocked instead."""
    store = RefreshTokenStore(tmp_path, "anna")
    real = os.open

    def no_lock_file(path: object, flags: int, mode: int = 0o777) -> int:
        if Path(str(path)) == store.lock_path:
            raise OSError(30, "Read-only file system")
        return real(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(token_store.os, "open", no_lock_file)
    with store.locked():
        fd = real(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_nothing_to_lock_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the lock file nor the directory can be opened: StoreError naming the lock file."""

    def refuse(path: object, flags: int, mode: int = 0o777) -> int:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(token_store.os, "open", refuse)
    with (
        pytest.raises(StoreError, match=r"cannot open .*anna\.lock: Permission denied"),
        RefreshTokenStore(tmp_path, "anna").locked(),
    ):
        pytest.fail("the block ran without the lock")


def _source(endpoint: RotatingEndpoint, token_dir: Path, now: list[float]) -> tokens.OAuth2Tokens:
    settings = tokens.OAuth2Settings(
        account="anna", token_url=endpoint.url, client_id="c", device_url="x", token_dir=token_dir
    )
    return tokens.OAuth2Tokens(settings, clock=lambda: now[0])


@pytest.mark.parametrize(
    ("left_s", "shared"),
    [
        (tokens.REFRESH_MARGIN_S - 1, False),
        (tokens.REFRESH_MARGIN_S, False),
        (tokens.REFRESH_MARGIN_S + 1, True),
    ],
)
def test_a_stored_access_token_is_used_only_with_more_than_the_margin_left(
    tmp_path: Path, left_s: float, shared: bool
) -> None:
    """A second source (another process) takes the access token stored by the first when more than
    REFRESH_MARGIN_S seconds of it are left, and refreshes otherwise."""
    with rotating_endpoint() as endpoint:
        RefreshTokenStore(tmp_path, "anna").save(
            Secret(endpoint.new_grant()), "c", endpoint.url, now=dt.datetime.fromtimestamp(NOW, dt.UTC)
        )
        now = [NOW]
        first = _source(endpoint, tmp_path, now).access_token()
        now[0] = NOW + 3600 - left_s  # the endpoint's tokens live 3,600 s
        second = _source(endpoint, tmp_path, now).access_token()
        assert (second == first) is shared
        assert endpoint.refreshes == (1 if shared else 2)
        assert endpoint.reuses == 0


def test_a_refused_access_token_is_not_taken_again_from_the_file(tmp_path: Path) -> None:
    """After a server refused the access token (invalidate), the source refreshes instead of reusing the
    copy in the token file, where it still looks valid."""
    with rotating_endpoint() as endpoint:
        RefreshTokenStore(tmp_path, "anna").save(
            Secret(endpoint.new_grant()), "c", endpoint.url, now=dt.datetime.fromtimestamp(NOW, dt.UTC)
        )
        now = [NOW]
        source = _source(endpoint, tmp_path, now)
        refused = source.access_token()
        source.invalidate(refused)
        assert source.access_token() != refused
        assert endpoint.refreshes == 2


def test_a_refresh_without_rotation_keeps_when_the_token_was_obtained(tmp_path: Path) -> None:
    """The access token is stored with an unrotated refresh token, whose obtained time (its age for status)
    stays the one the file had."""
    with rotating_endpoint() as endpoint:
        token = endpoint.new_grant()
        obtained = dt.datetime.fromtimestamp(NOW - 86400, dt.UTC)
        store = RefreshTokenStore(tmp_path, "anna")
        store.save(Secret(token), "c", endpoint.url, now=obtained)
        endpoint.rotate = False
        now = [NOW]
        access = _source(endpoint, tmp_path, now).access_token()
        grant = store.load_grant("c", endpoint.url)
        assert grant is not None
        assert grant.refresh_token == Secret(token)
        assert grant.obtained_at == obtained
        assert grant.access_token == access
        assert grant.access_expires_at == NOW + 3600


def test_a_stop_ends_a_token_source_waiting_for_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: the lock held elsewhere; a token source waits for it in a thread; the daemon's stop calls
    abort_exchanges. The wait ends with TransientError "stopped", not after TOKEN_LOCK_WAIT_S."""
    store = RefreshTokenStore(tmp_path, "anna")
    store.save(Secret("rt"), "c", "http://127.0.0.1:9/token", now=dt.datetime.now(dt.UTC))
    fd = _hold(store)
    busy = threading.Event()

    class Shim:
        LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                busy.set()
                raise

    monkeypatch.setattr(token_store, "fcntl", Shim)
    settings = tokens.OAuth2Settings(
        account="anna",
        token_url="http://127.0.0.1:9/token",
        client_id="c",
        device_url="x",
        token_dir=tmp_path,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tokens.OAuth2Tokens(settings).access_token()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    waiter = threading.Thread(target=run, daemon=True)
    try:
        waiter.start()
        assert busy.wait(30)
        endpoint.abort_exchanges()
        waiter.join(30)
    finally:
        os.close(fd)
    assert len(errors) == 1
    assert isinstance(errors[0], TransientError)
    assert "stopped while waiting" in str(errors[0])
