"""A scripted OAuth2 authorization server on loopback for tests: token, device and introspection endpoints.

Small and explicit rather than built on a library's server components: each endpoint is a few lines,
and tests steer it directly (approve or deny a device code, revoke a refresh token, shorten lifetimes,
queue ``slow_down`` answers) and read what it saw.

Endpoints (POST, ``application/x-www-form-urlencoded``, JSON answers):

- ``/token``: ``client_credentials`` (RFC 6749 section 4.4; client secret in the body), ``refresh_token``
  (section 6; rotates: every refresh returns a new refresh token and retires the old one), and
  ``urn:ietf:params:oauth:grant-type:device_code`` (RFC 8628 section 3.4/3.5).
- ``/device``: device authorization (RFC 8628 section 3.1/3.2).
- ``/introspect``: token introspection (RFC 7662 section 2) for Dovecot's oauth2 passdb:
  ``{"active": true, "username": USER}`` for a live access token, ``{"active": false}`` otherwise.

Runs :class:`http.server.ThreadingHTTPServer` in a daemon thread; :meth:`OAuthServer.close` stops it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Client", "DeviceGrant", "OAuthServer"]


@dataclass
class Client:
    """A registered client: its secret (None: public) and the mail user its app-only tokens act for."""

    client_id: str
    secret: str | None
    user: str = ""


@dataclass
class DeviceGrant:
    """A pending device authorization."""

    device_code: str
    user_code: str
    client_id: str
    expires_at: float
    user: str | None = None
    denied: bool = False
    polls: int = 0


@dataclass
class _Issued:
    user: str
    expires_at: float


@dataclass
class OAuthServer:
    """The server's state and controls. Start with :meth:`start`; URLs are on :attr:`base_url`."""

    access_lifetime_s: int = 3600
    device_interval_s: int = 1
    device_lifetime_s: int = 600
    clients: dict[str, Client] = field(default_factory=dict)
    access_tokens: dict[str, _Issued] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (client, user)
    devices: dict[str, DeviceGrant] = field(default_factory=dict)
    device_answers: list[str] = field(default_factory=list)
    """Error codes answered to the next device polls before anything else (e.g. ``"slow_down"``)."""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    introspections: int = 0
    token_prefix: str = "at-"
    rotate_refresh_tokens: bool = True
    """False: the refresh grant keeps the refresh token and returns none (as Google does)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> OAuthServer:
        """Listen on a free loopback port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8")))
                status, body = server.handle(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="oauth-server", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def device_url(self) -> str:
        return self.base_url + "/device"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    # -- controls ------------------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str | None = None, user: str = "") -> Client:
        """Register a client (``user``: whom its client-credentials tokens act for)."""
        with self._lock:
            self.clients[client_id] = client = Client(client_id, secret, user)
        return client

    def issue_refresh_token(self, client_id: str, user: str) -> str:
        """A refresh token as if ``user`` had authorized ``client_id``."""
        token = "rt-" + secrets.token_urlsafe(16)
        with self._lock:
            self.refresh_tokens[token] = (client_id, user)
        return token

    def issue_access_token(self, user: str, lifetime_s: float | None = None) -> str:
        """An access token for ``user`` (for token_command tests)."""
        token = self.token_prefix + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens[token] = _Issued(user, time.time() + (lifetime_s or self.access_lifetime_s))
        return token

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token (the next refresh gets ``invalid_grant``)."""
        with self._lock:
            self.refresh_tokens.clear()

    def expire_access_tokens(self) -> None:
        """Make every issued access token inactive (as if its lifetime ended)."""
        with self._lock:
            for issued in self.access_tokens.values():
                issued.expires_at = 0.0

    def pending_device(self) -> DeviceGrant | None:
        """The newest device grant not yet decided, or None."""
        with self._lock:
            for grant in reversed(list(self.devices.values())):
                if grant.user is None and not grant.denied:
                    return grant
        return None

    def approve(self, user_code: str, user: str) -> None:
        """The person signs in as ``user`` and enters ``user_code``."""
        with self._lock:
            next(g for g in self.devices.values() if g.user_code == user_code).user = user

    def deny(self, user_code: str) -> None:
        """The person declines."""
        with self._lock:
            next(g for g in self.devices.values() if g.user_code == user_code).denied = True

    def seen(self, text: str) -> bool:
        """Whether ``text`` appears in any form value received."""
        with self._lock:
            return any(text in v for _, form in self.requests for v in form.values())

    # -- endpoints -----------------------------------------------------------------------------------

    def handle(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((path, form))
            if path == "/introspect":
                return self._introspect(form)
            if path == "/device":
                return self._device(form)
            if path == "/token":
                return self._token(form)
        return 404, {"error": "not_found"}

    def _access(self, user: str) -> dict[str, Any]:
        token = self.token_prefix + secrets.token_urlsafe(24)
        self.access_tokens[token] = _Issued(user, time.time() + self.access_lifetime_s)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.access_lifetime_s}

    def _client(self, form: dict[str, str]) -> Client | None:
        client = self.clients.get(form.get("client_id", ""))
        if client is None or (client.secret is not None and form.get("client_secret") != client.secret):
            return None
        return client

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.introspections += 1
        issued = self.access_tokens.get(form.get("token", ""))
        if issued is None or issued.expires_at <= time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": issued.user, "exp": int(issued.expires_at)}

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client = self._client(form)
        if client is None:
            return 401, {"error": "invalid_client"}
        grant = DeviceGrant(
            device_code="dc-" + secrets.token_urlsafe(16),
            user_code=secrets.token_hex(4).upper(),
            client_id=client.client_id,
            expires_at=time.time() + self.device_lifetime_s,
        )
        self.devices[grant.device_code] = grant
        return 200, {
            "device_code": grant.device_code,
            "user_code": grant.user_code,
            "verification_uri": self.base_url + "/activate",
            "expires_in": self.device_lifetime_s,
            "interval": self.device_interval_s,
        }

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client = self._client(form)
        if client is None:
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return 200, self._access(client.user)
        if grant_type == "refresh_token":
            owner = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if owner is None or owner[0] != client.client_id:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "refresh token revoked or unknown",
                }
            answer = self._access(owner[1])
            if not self.rotate_refresh_tokens:
                self.refresh_tokens[form["refresh_token"]] = owner
                return 200, answer
            fresh = "rt-" + secrets.token_urlsafe(16)
            self.refresh_tokens[fresh] = owner
            return 200, {**answer, "refresh_token": fresh}
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            grant = self.devices.get(form.get("device_code", ""))
            if grant is None or grant.client_id != client.client_id:
                return 400, {"error": "invalid_grant"}
            grant.polls += 1
            if self.device_answers:
                return 400, {"error": self.device_answers.pop(0)}
            if grant.expires_at <= time.time():
                return 400, {"error": "expired_token"}
            if grant.denied:
                return 400, {"error": "access_denied"}
            if grant.user is None:
                return 400, {"error": "authorization_pending"}
            del self.devices[grant.device_code]
            answer = self._access(grant.user)
            fresh = "rt-" + secrets.token_urlsafe(16)
            self.refresh_tokens[fresh] = (client.client_id, grant.user)
            return 200, {**answer, "refresh_token": fresh}
        return 400, {"error": "unsupported_grant_type"}
