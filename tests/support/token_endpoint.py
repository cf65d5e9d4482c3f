"""Loopback token endpoints for tests: one answering every POST with a scripted JSON object and HTTP status
(what maild makes of an endpoint's answers: echoed secrets, throttling, errors), and one that rotates refresh
tokens and revokes the whole grant when a rotated-away token comes back (refresh-token reuse detection, RFC 6819
section 5.2.2.3, OAuth 2.1 section 4.3.1), with a device flow that starts a new grant."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "EchoEndpoint", "RotatingEndpoint", "echo_endpoint", "rotating_endpoint"]

Answer = Callable[[dict[str, str]], dict[str, Any]]

Respond = Callable[[str, dict[str, str]], tuple[int, bytes]]
"""``(path, form) -> (HTTP status, JSON body)``: what a loopback endpoint answers to one POST."""


def serve_posts(respond: Respond) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A loopback HTTP server on a free port, serving in a daemon thread, answering each POST of a form
    (``application/x-www-form-urlencoded``) with ``respond(path, form)`` as ``application/json``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            status, body = respond(self.path, form)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


class EchoEndpoint:
    """A loopback token endpoint answering HTTP ``status`` (400) with whatever ``answer(form)`` makes of the
    request, or ``raw``."""

    def __init__(self) -> None:
        self.answer: Answer = lambda form: {"error": "invalid_grant"}
        self.status = 400
        self.raw: bytes | None = None
        """Sent instead of the JSON of ``answer`` when set."""
        self.requests = 0
        self.httpd, self.thread = serve_posts(self._respond)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    def _respond(self, _path: str, form: dict[str, str]) -> tuple[int, bytes]:
        self.requests += 1
        return self.status, self.raw if self.raw is not None else json.dumps(self.answer(form)).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def echo_endpoint() -> Iterator[EchoEndpoint]:
    """An :class:`EchoEndpoint`, stopped at the end of the block."""
    server = EchoEndpoint()
    try:
        yield server
    finally:
        server.close()


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class _Grant:
    """One authorization: its live refresh token, the ones rotated away, and whether it was revoked."""

    def __init__(self, refresh_token: str) -> None:
        self.live: str | None = refresh_token
        self.retired: set[str] = set()


class RotatingEndpoint:
    """A loopback authorization server that rotates the refresh token at every refresh and revokes the whole
    grant when a retired refresh token is used again (as Microsoft's and OAuth 2.1's reuse detection do).

    ``hold_first``: the first refresh request is held (not answered) until :meth:`release`, or until a second
    refresh request arrives; :attr:`holding` is set while it is held. Counters: :attr:`refreshes` (tokens
    rotated or, with :attr:`rotate` false, refreshes answered), :attr:`reuses` (grants revoked for reuse).
    """

    def __init__(self, *, hold_first: bool = False) -> None:
        self._lock = threading.Lock()
        self._serial = 0
        self.grants: list[_Grant] = []
        self.access_tokens: list[str] = []
        self.refreshes = 0
        self.reuses = 0
        self.refresh_requests = 0
        self.rotate = True
        """False: a refresh answers the same refresh token (a provider that does not rotate)."""
        self._hold = hold_first
        self.holding = threading.Event()
        self._released = threading.Event()
        self.httpd, self.thread = serve_posts(self._respond)
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{base}/token"
        self.device_url = f"{base}/device"

    def _respond(self, path: str, form: dict[str, str]) -> tuple[int, bytes]:
        status, answer = self.handle(path, form)
        return status, json.dumps(answer).encode()

    def new_grant(self) -> str:
        """Start a grant (an authorization) and return its refresh token."""
        with self._lock:
            return self._new_grant_locked()

    def live_refresh_tokens(self) -> set[str]:
        """The refresh tokens usable now (one per grant not revoked)."""
        with self._lock:
            return {g.live for g in self.grants if g.live is not None}

    def release(self) -> None:
        """Answer the held refresh request."""
        self._released.set()

    def handle(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON answer to a POST of ``form`` to ``path``."""
        if path == "/device":
            return 200, {
                "device_code": "dc-1",
                "user_code": "ABCD-EFGH",
                "verification_uri": "http://127.0.0.1/verify",
                "expires_in": 600,
                "interval": 1,
            }
        if form.get("grant_type") == DEVICE_CODE_GRANT:
            with self._lock:
                return 200, self._tokens(self._new_grant_locked())
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            self.refresh_requests += 1
            held = self._hold and self.refresh_requests == 1
            if self._hold and self.refresh_requests == 2:
                self._released.set()  # a second refresh came while the first is held: both go on
        if held:
            self.holding.set()
            self._released.wait(60)
            self.holding.clear()
        return self._refresh(form.get("refresh_token", ""))

    def _refresh(self, token: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            for grant in self.grants:
                if grant.live is not None and grant.live == token and not self.rotate:
                    self.refreshes += 1
                    return 200, self._tokens(token)
                if grant.live is not None and grant.live == token:
                    grant.retired.add(token)
                    grant.live = self._next("rt")
                    self.refreshes += 1
                    return 200, self._tokens(grant.live)
                if token in grant.retired:
                    if grant.live is not None:
                        self.reuses += 1
                    grant.live = None  # reuse of a rotated-away token: the whole grant is revoked
                    return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}
            return 400, {"error": "invalid_grant"}

    def _new_grant_locked(self) -> str:
        token = self._next("rt")
        self.grants.append(_Grant(token))
        return token

    def _tokens(self, refresh_token: str) -> dict[str, Any]:
        access = self._next("at")
        self.access_tokens.append(access)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": refresh_token,
        }

    def _next(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial}"

    def close(self) -> None:
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def rotating_endpoint(*, hold_first: bool = False) -> Iterator[RotatingEndpoint]:
    """A :class:`RotatingEndpoint`, stopped at the end of the block."""
    server = RotatingEndpoint(hold_first=hold_first)
    try:
        yield server
    finally:
        server.close()
