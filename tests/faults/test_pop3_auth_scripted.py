"""POP3 AUTH (RFC 5034) against a scripted server, for what Dovecot will not do: echoing secrets,
odd challenges, long initial responses, throttling codes."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from maild.errors import AuthError, ProtocolError, ThrottledError
from maild.model import ServerSettings
from maild.protocols.pop3.session import POP3Session
from maild.secret import Secret

TOKEN = "SENTINEL-token-" + "x" * 40
CAPA = b"+OK\r\nUSER\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n"

Script = Callable[["Conversation"], None]


@dataclass
class Conversation:
    """One scripted connection: what the client sent, and helpers to answer."""

    file: socket.SocketIO | None = None
    sock: socket.socket | None = None
    received: list[bytes] = field(default_factory=list)

    def line(self) -> bytes:
        assert self.sock is not None
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                break
            data += chunk
        if data:  # not EOF
            self.received.append(data.rstrip(b"\r\n"))
        return data.rstrip(b"\r\n")

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def greet_and_capa(self) -> None:
        self.send(b"+OK ready\r\n")
        assert self.line() == b"CAPA"
        self.send(CAPA)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], tuple[int, Conversation]]]:
    """Start a one-connection server running ``script``; yields (port, conversation)."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> tuple[int, Conversation]:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        conv = Conversation()

        def run() -> None:
            sock, _ = listener.accept()
            conv.sock = sock
            with sock, contextlib.suppress(OSError, AssertionError):
                script(conv)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1], conv

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


class FixedTokens:
    """A token source giving the same token until invalidated, then ``fresh``."""

    def __init__(self, token: str, fresh: str | None = None) -> None:
        self.token, self.fresh = Secret(token), Secret(fresh or token)
        self.invalidated = 0

    def access_token(self) -> Secret:
        return self.fresh if self.invalidated else self.token

    def invalidate(self, token: Secret) -> None:
        self.invalidated += 1


def settings(
    port: int, *, auth: str = "oauth2", mech: str | None = None, tokens: object = None
) -> ServerSettings:
    return ServerSettings(
        "acct",
        "127.0.0.1",
        port,
        "none",
        None,
        "anna",
        Secret("" if auth == "oauth2" else "pw-SENTINEL"),
        5.0,
        auth=auth,  # type: ignore[arg-type]
        sasl_mechanism=mech,
        tokens=tokens if tokens is not None else (FixedTokens(TOKEN) if auth == "oauth2" else None),  # type: ignore[arg-type]
    )


def connect(s: ServerSettings) -> POP3Session:
    session = POP3Session(s, 2**20)
    session.connect()
    return session


def b64json(obj: object) -> bytes:
    return base64.b64encode(json.dumps(obj).encode())


def test_long_initial_response_is_sent_after_an_empty_challenge(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """An AUTH line over 255 octets is split: AUTH MECH, empty '+', then the response (RFC 5034 section 4)."""
    long_token = "SENTINEL-" + "t" * 400

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        assert c.line() == b"AUTH XOAUTH2"
        c.send(b"+ \r\n")
        c.line()
        c.send(b"+OK logged in\r\n")
        assert c.line() == b"CAPA"
        c.send(CAPA)

    port, conv = serve(script)
    session = connect(settings(port, mech="XOAUTH2", tokens=FixedTokens(long_token)))
    session.close()
    assert base64.b64decode(conv.received[2]) == f"user=anna\x01auth=Bearer {long_token}\x01\x01".encode()


def test_refusal_that_echoes_the_token_is_redacted(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """A server echoing the base64 response and the token in -ERR: neither reaches the AuthError."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        line = c.line()
        c.send(b"-ERR [AUTH] bad: " + line.split()[-1] + b" / " + TOKEN.encode() + b"\r\n")

    port, _ = serve(script)
    with pytest.raises(AuthError, match="refused") as info:
        connect(settings(port, mech="OAUTHBEARER"))
    assert "SENTINEL" not in str(info.value)
    assert "********" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(("mech", "reply"), [("XOAUTH2", b""), ("OAUTHBEARER", b"AQ==")])
def test_error_challenge_is_answered_then_retried_once_with_a_new_token(
    serve: Callable[[Script], tuple[int, Conversation]], mech: str, reply: bytes
) -> None:
    """The JSON error challenge gets '' (XOAUTH2) or AQ== (OAUTHBEARER); a new token is tried once."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"+ " + b64json({"status": "401", "schemes": "bearer"}) + b"\r\n")
        assert c.line() == reply
        c.send(b"-ERR [AUTH] Authentication failed.\r\n")
        c.line()
        c.send(b"+OK in\r\n")
        assert c.line() == b"CAPA"
        c.send(CAPA)

    port, conv = serve(script)
    tokens = FixedTokens(TOKEN, "SENTINEL-fresh")
    connect(settings(port, mech=mech, tokens=tokens)).close()
    assert tokens.invalidated == 1
    assert b"SENTINEL-fresh" in base64.b64decode(conv.received[3].split()[-1])


def test_no_second_attempt_when_the_source_has_no_other_token(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """Refused again with the same token: reported at once with the server's status, not retried."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"+ " + b64json({"status": "invalid_token", "scope": "mail"}) + b"\r\n")
        c.line()
        c.send(b"-ERR [AUTH] Authentication failed.\r\n")

    port, conv = serve(script)
    with pytest.raises(AuthError, match=r"status=invalid_token scope=mail"):
        connect(settings(port, mech="OAUTHBEARER"))
    assert len(conv.received) == 3


def test_unexpected_second_challenge_is_cancelled(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """A challenge PLAIN does not expect gets '*' (RFC 5034 section 4); the -ERR that follows is an AuthError."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"+ " + base64.b64encode(b"more?") + b"\r\n")
        assert c.line() == b"*"
        c.send(b"-ERR AUTH cancelled\r\n")

    port, _ = serve(script)
    with pytest.raises(AuthError, match="cancelled"):
        connect(settings(port, auth="password"))


def test_challenge_that_is_not_base64_is_a_protocol_error(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """A malformed challenge ends the session with ProtocolError citing RFC 5034."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"+ !!!not base64!!!\r\n")
        c.line()

    port, _ = serve(script)
    with pytest.raises(ProtocolError, match="RFC 5034"):
        connect(settings(port, auth="password"))


def test_throttle_code_on_auth_is_transient(serve: Callable[[Script], tuple[int, Conversation]]) -> None:
    """-ERR [LOGIN-DELAY] to AUTH is a ThrottledError (RFC 2449 section 8.1.1), not a refusal."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"-ERR [LOGIN-DELAY] wait 15 minutes\r\n")

    port, _ = serve(script)
    with pytest.raises(ThrottledError, match="LOGIN-DELAY"):
        connect(settings(port, auth="password"))


def test_forced_mechanism_not_offered_sends_nothing(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """sasl_mechanism the server does not list: AuthError naming what it offers; no AUTH sent."""

    def script(c: Conversation) -> None:
        c.send(b"+OK ready\r\n")
        c.line()
        c.send(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
        c.line()

    port, conv = serve(script)
    with pytest.raises(AuthError, match=r"offers no SASL XOAUTH2 \(CAPA SASL: PLAIN\)"):
        connect(settings(port, mech="XOAUTH2"))
    assert conv.received == [b"CAPA"]


def test_password_plain_uses_auth_and_never_user_pass(
    serve: Callable[[Script], tuple[int, Conversation]],
) -> None:
    """auth = "password" with PLAIN offered: AUTH PLAIN with NUL user NUL password (RFC 4616)."""

    def script(c: Conversation) -> None:
        c.greet_and_capa()
        c.line()
        c.send(b"+OK in\r\n")
        c.line()
        c.send(CAPA)

    port, conv = serve(script)
    connect(settings(port, auth="password")).close()
    assert conv.received[1] == b"AUTH PLAIN " + base64.b64encode(b"\0anna\0pw-SENTINEL")
