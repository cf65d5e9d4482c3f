"""Two processes signing in to one delegated account share its refresh token without breaking the grant.

Left by the QA of session 14: the daemon and ``maild compare``/``retire``/``migrate`` (or ``maild accounts
authorize``) each read the account's token file and refreshed with it. A provider rotating refresh tokens with
reuse detection revokes the whole grant when the same refresh token comes twice, and the daemon's save could
replace a fresh authorization with a rotation of the old grant. Each test runs one side in this process and
the other in a subprocess, against :class:`tests.support.token_endpoint.RotatingEndpoint`, which holds the
first refresh answer until the subprocess either reports the token lock busy or sends its own refresh.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

from maild.auth import tokens
from maild.secret import Secret
from tests.support.token_endpoint import RotatingEndpoint, rotating_endpoint

ROOT = Path(__file__).resolve().parents[2]

#: Run in the subprocess: reports "busy" the first time the token lock is found held, then "ok TOKEN" or
#: "error TYPE MESSAGE". Without a lock it never reports "busy".
CHILD = """
import fcntl, sys
from pathlib import Path

real = fcntl.flock
told = []

def flock(fd, op):
    try:
        return real(fd, op)
    except BlockingIOError:
        if not told:
            told.append(1)
            print("busy", flush=True)
        raise

fcntl.flock = flock
from maild.auth import tokens

mode, token_dir, url, device = sys.argv[1:5]
settings = tokens.OAuth2Settings(
    account="anna", token_url=url, device_url=device, client_id="c", token_dir=Path(token_dir)
)
try:
    if mode == "refresh":
        print("ok", tokens.OAuth2Tokens(settings).access_token().reveal(), flush=True)
    else:
        tokens.authorize(settings, lambda text: None)
        print("ok", flush=True)
except Exception as exc:
    print("error", type(exc).__name__, exc, flush=True)
"""


def _settings(endpoint: RotatingEndpoint, token_dir: Path) -> tokens.OAuth2Settings:
    return tokens.OAuth2Settings(
        account="anna",
        token_url=endpoint.url,
        device_url=endpoint.device_url,
        client_id="c",
        token_dir=token_dir,
    )


class _Refresh(threading.Thread):
    """``access_token()`` of a fresh token source in a thread of this process; ``result`` or ``error``."""

    def __init__(self, settings: tokens.OAuth2Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.result: Secret | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = tokens.OAuth2Tokens(self.settings).access_token()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _run_child(mode: str, endpoint: RotatingEndpoint, token_dir: Path) -> list[str]:
    """Run :data:`CHILD`; release the held refresh when it reports the lock busy or when it ends. Its
    result lines ("busy", "ok ...", "error ...")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", CHILD, mode, str(token_dir), endpoint.url, endpoint.device_url]
    lines: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdout is not None
        for line in child.stdout:
            word = line.split(" ", 1)[0].strip()
            if word in ("busy", "ok", "error"):
                lines.append(line.strip())
            if word == "busy":
                endpoint.release()
        child.wait(timeout=60)
    endpoint.release()
    return lines


def _held_refresh(endpoint: RotatingEndpoint, token_dir: Path) -> _Refresh:
    """A new grant's refresh token stored for ``anna`` in ``token_dir``, and this process refreshing it in a
    thread, its answer held by ``endpoint`` (``hold_first``) when this returns."""
    tokens.RefreshTokenStore(token_dir, "anna").save(
        Secret(endpoint.new_grant()), "c", endpoint.url, now=dt.datetime.now(dt.UTC)
    )
    here = _Refresh(_settings(endpoint, token_dir))
    here.start()
    assert endpoint.holding.wait(30)
    return here


def _stored(endpoint: RotatingEndpoint, token_dir: Path) -> str:
    loaded = tokens.RefreshTokenStore(token_dir, "anna").load("c", endpoint.url)
    assert loaded is not None
    return loaded[0].reveal()


def test_two_processes_refreshing_at_once_make_one_refresh_and_keep_the_grant(tmp_path: Path) -> None:
    """Steps: a stored refresh token; this process refreshes (the endpoint holds its answer); a second
    process asks for a token meanwhile; the answer is released. Both get the same access token, the endpoint
    rotated once and revoked nothing, and the file holds the grant's live refresh token."""
    with rotating_endpoint(hold_first=True) as endpoint:
        here = _held_refresh(endpoint, tmp_path)
        lines = _run_child("refresh", endpoint, tmp_path)
        here.join(60)

        assert here.error is None, here.error
        assert here.result is not None
        assert lines == ["busy", f"ok {here.result.reveal()}"]
        assert endpoint.reuses == 0
        assert endpoint.refreshes == 1
        assert _stored(endpoint, tmp_path) in endpoint.live_refresh_tokens()


def test_authorize_while_another_process_refreshes_keeps_the_new_authorization(tmp_path: Path) -> None:
    """Steps: a stored refresh token; this process refreshes (the endpoint holds its answer); `maild accounts
    authorize` runs in a second process and gets a new grant; the answer is released. The file ends with the
    new authorization's refresh token, not the old grant's rotation, and a later refresh uses it."""
    with rotating_endpoint(hold_first=True) as endpoint:
        here = _held_refresh(endpoint, tmp_path)
        lines = _run_child("authorize", endpoint, tmp_path)
        here.join(60)

        authorized = endpoint.grants[-1]
        assert _stored(endpoint, tmp_path) == authorized.live
        assert here.error is None, here.error
        assert lines == ["busy", "ok"]
        assert endpoint.reuses == 0


def test_a_file_changed_during_the_refresh_is_never_replaced(tmp_path: Path) -> None:
    """Steps: a stored refresh token; this process refreshes (the endpoint holds its answer); a writer that
    takes no lock (an older maild) stores another grant's token; the answer is released. The file keeps the
    other token: the refresh's rotation of the older token is not written over it."""
    with rotating_endpoint(hold_first=True) as endpoint:
        here = _held_refresh(endpoint, tmp_path)
        store = tokens.RefreshTokenStore(tmp_path, "anna")
        newer = endpoint.new_grant()
        store.save(Secret(newer), "c", endpoint.url, now=dt.datetime.now(dt.UTC))
        endpoint.release()
        here.join(60)

        assert here.error is None, here.error
        assert _stored(endpoint, tmp_path) == newer
