"""A hostile or broken token endpoint: every answer ends in one maild error line, within the time bound.

Found by the QA of session 11: a trickling endpoint held the token lock for as long as it trickled (each read
was bounded, not the exchange), and answers of the wrong shape escaped as TypeError, AttributeError,
OverflowError, RecursionError or http.client exceptions (a traceback and "internal error" in status).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from oauthlib.oauth2 import BackendApplicationClient, WebApplicationClient

from maild.auth import endpoint as endpoint_module
from maild.auth import oauth2, tokens
from maild.errors import MaildError, ProtocolError, TransientError
from maild.secret import Secret

_GOOD = b'{"access_token": "AT-1", "token_type": "Bearer", "expires_in": 3600}'


def _answer(body: bytes, *, extra_headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        + extra_headers
        + b"\r\n"
        + body
    )


def _read_request(conn: socket.socket) -> None:
    """Read one whole request (head and Content-Length body): closing with part of it unread makes the kernel
    answer with a reset, which can reach the client before the answer (a flaky RemoteDisconnected)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


class Endpoint:
    """A loopback server answering one POST with scripted pieces: (octets, pause in seconds after each octet);
    over TLS with ``tls`` (a server context)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.script: list[tuple[bytes, float]] = []
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}/token"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        """Serve the script written so far."""
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)  # closes the plain one when closed
            _read_request(conn)
            for data, pause_s in self.script:
                if pause_s == 0:
                    conn.sendall(data)
                    continue
                for octet in data:
                    if self.stop.is_set():
                        return
                    conn.sendall(bytes([octet]))
                    time.sleep(pause_s)
        except OSError:
            return  # the client gave up: what the trickle test wants
        finally:
            conn.close()


@pytest.fixture(params=["http", "https"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Endpoint]:
    """A scripted token endpoint over plain HTTP and over TLS (its CA trusted by way of SSL_CERT_FILE, which
    urllib's default context reads), stopped after the test."""
    tls = None
    if request.param == "https":
        ca = trustme.CA()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server = Endpoint(tls)
    yield server
    server.stop.set()
    server.listener.close()
    if server.thread.is_alive():
        server.thread.join(timeout=10)


def _fetch(url: str) -> oauth2.TokenResponse:
    return oauth2.client_credentials("anna", url, "c", Secret("client-SECRET"), ())


@pytest.mark.parametrize("trickled", ["whole answer", "body only"])
def test_a_trickling_endpoint_is_cut_off_after_the_exchange_limit(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, trickled: str
) -> None:
    """An endpoint sending one octet at a time, each within the read timeout, ends in TransientError at HTTP_TIMEOUT_S.

    Without the exchange deadline the answer (about 3 s of trickle against a 0.5 s limit) is read in full and
    the token returned.
    """
    monkeypatch.setattr(endpoint_module, "HTTP_TIMEOUT_S", 0.5)
    answer = _answer(_GOOD)
    if trickled == "whole answer":
        endpoint.script.append((answer, 0.05))
    else:
        endpoint.script.extend([(answer[: -len(_GOOD)], 0), (_GOOD, 0.05)])
    endpoint.start()
    with pytest.raises(TransientError, match=r"did not answer within 0\.5 s"):
        _fetch(endpoint.url)


def test_a_header_flood_is_one_transient_error(endpoint: Endpoint) -> None:
    """More header lines than http.client takes is a TransientError naming the endpoint, not an HTTPException."""
    endpoint.script.append((_answer(_GOOD, extra_headers=b"X-A: b\r\n" * 200), 0))
    endpoint.start()
    with pytest.raises(TransientError, match=r"answered with broken HTTP \(HTTPException\)"):
        _fetch(endpoint.url)


def test_a_well_behaved_endpoint_still_answers(endpoint: Endpoint) -> None:
    """The deadline leaves a prompt answer alone."""
    endpoint.script.append((_answer(_GOOD), 0))
    endpoint.start()
    assert _fetch(endpoint.url).access_token == Secret("AT-1")


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"[]",
        pytest.param(b"[" * 100_000, id="100000-nested-arrays"),
        b'{"error": 5}',
        b'{"error": ["invalid_grant"]}',
        b'{"access_token": "a", "token_type": "Bearer", "scope": 5}',
        b'{"access_token": "a", "token_type": "Bearer", "scope": {"a": 1}}',
        b'{"access_token": "a", "token_type": "Bearer", "expires_in": 1e400}',
        b'{"access_token": "a\\r\\nA1 LOGOUT", "token_type": "Bearer"}',
        b'{"access_token": "\\u00e9\\u0000", "token_type": "Bearer"}',
    ],
)
def test_answers_of_the_wrong_shape_are_protocol_errors(body: bytes) -> None:
    """Each malformed 200 answer is a ProtocolError citing RFC 6749, never a TypeError or the like."""
    for client in (BackendApplicationClient("c", scope=["s"]), WebApplicationClient("c")):
        with pytest.raises(ProtocolError, match=r"RFC 6749"):
            oauth2._parse_token("anna", client, body, ("client-SECRET",), grant="refresh_token")


@pytest.mark.parametrize("expires_in", ["1e12", "1e300"])
def test_a_huge_expires_in_is_capped_so_status_can_show_it(
    monkeypatch: pytest.MonkeyPatch, expires_in: str
) -> None:
    """expires_in beyond a year 9999 timestamp is taken as MAX_ACCESS_TOKEN_LIFETIME_S; health() still works.

    Without the cap, health() (status, alerts, and the token source itself after every refresh) raised
    ValueError or OverflowError converting the expiry to a date.
    """
    body = b'{"access_token": "a", "token_type": "Bearer", "expires_in": %s}' % expires_in.encode()
    answer = oauth2._parse_token("anna", BackendApplicationClient("c"), body, (), grant="client_credentials")
    assert answer.expires_in_s == oauth2.MAX_ACCESS_TOKEN_LIFETIME_S
    monkeypatch.setattr(oauth2, "client_credentials", lambda *args: answer)
    source = tokens.OAuth2Tokens(
        tokens.OAuth2Settings(
            account="anna", token_url="https://t/token", client_id="c", client_secret=lambda: Secret("s")
        ),
    )
    assert source.access_token() == Secret("a")
    health = source.health()
    assert health.token_expires_at is not None


def test_no_hostile_answer_escapes_as_another_exception_type() -> None:
    """A sample of broken answers: each is a MaildError (the daemon's one-line error), for both grants."""
    for body in (b"\xff", b"", b"{}", b'{"access_token": 5}', b'{"access_token": "a", "expires_in": "x"}'):
        for client in (BackendApplicationClient("c"), WebApplicationClient("c")):
            with pytest.raises(MaildError):
                oauth2._parse_token("anna", client, body, (), grant="client_credentials")


def test_an_unreachable_device_endpoint_is_named_as_such() -> None:
    """`maild accounts authorize` with the device endpoint down names the device authorization endpoint."""
    with pytest.raises(
        TransientError, match=r"device authorization endpoint http://127\.0\.0\.1:9/device unreachable"
    ):
        oauth2.start_device_authorization("anna", "http://127.0.0.1:9/device", "c", None, ())


def _redirect(location: str) -> bytes:
    return b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location.encode()


def test_a_redirect_to_ftp_is_refused_without_connecting(endpoint: Endpoint) -> None:
    """QA of session 12: urllib follows a redirect to ``ftp://``, whose connection the exchange deadline
    does not watch (an FTP server trickling its greeting held the thread for ten times the limit).
    Now such a redirect is a ProtocolError naming it, and the FTP address is never connected to."""
    ftp = socket.create_server(("127.0.0.1", 0))
    ftp.settimeout(0.2)
    try:
        endpoint.script.append((_redirect(f"ftp://127.0.0.1:{ftp.getsockname()[1]}/token"), 0))
        endpoint.start()
        with pytest.raises(
            ProtocolError, match=r"redirected to ftp://127\.0\.0\.1, which maild does not follow"
        ):
            _fetch(endpoint.url)
        with pytest.raises(TimeoutError):
            ftp.accept()  # nobody came
    finally:
        ftp.close()


@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("http://192.0.2.7/token", False),  # plain http off the machine: what the configuration refuses
        ("ftp://127.0.0.1/token", False),
        ("file:///etc/passwd", False),
        ("https://login.example/token", True),
        ("http://127.0.0.2:8080/token", True),
        ("http://localhost/token", True),
    ],
)
def test_redirects_are_followed_only_where_a_configured_endpoint_could_point(
    location: str, followed: bool
) -> None:
    """The redirect handler of the exchange's opener follows what ``check_endpoint`` would accept as a
    configured endpoint and refuses the rest before any connection (no network: the handler alone)."""
    import urllib.request

    opener = endpoint_module._opener(endpoint_module._Deadline(60))
    handler = next(h for h in opener.handlers if isinstance(h, urllib.request.HTTPRedirectHandler))
    request = urllib.request.Request("http://127.0.0.1:9/token", data=b"a=b", method="POST")
    if followed:
        assert handler.redirect_request(request, None, 302, "Found", {}, location) is not None
    else:
        with pytest.raises(endpoint_module._RefusedRedirect):
            handler.redirect_request(request, None, 302, "Found", {}, location)


def test_a_redirect_to_another_loopback_endpoint_is_followed(endpoint: Endpoint) -> None:
    """A redirect to a URL maild accepts is still followed to its answer."""
    second = Endpoint(endpoint.tls)
    second.script.append((_answer(_GOOD), 0))
    second.start()
    try:
        endpoint.script.append((_redirect(second.url), 0))
        endpoint.start()
        assert _fetch(endpoint.url).access_token == Secret("AT-1")
    finally:
        second.stop.set()
        second.listener.close()
