"""IMAP AUTHENTICATE (maild.auth.imap) against a scripted transport: what Dovecot will not do."""

from __future__ import annotations

import base64

import pytest

from maild.auth.imap import Continuation, TaggedStatus, authenticate
from maild.errors import AuthError, ProtocolError, ThrottledError
from maild.model import ServerSettings
from maild.secret import Secret

CAPS = frozenset({"IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2"})


class Scripted:
    """Answers each read with the next scripted response; records what was sent."""

    def __init__(self, *responses: Continuation | TaggedStatus) -> None:
        self.responses = list(responses)
        self.sent: list[bytes] = []

    async def send_command(self, command: bytes) -> None:
        self.sent.append(command)

    async def send_line(self, line: bytes) -> None:
        self.sent.append(line)

    async def read_response(self) -> Continuation | TaggedStatus:
        return self.responses.pop(0)


def settings(password: str = "pw-SENTINEL", mech: str | None = None) -> ServerSettings:
    return ServerSettings("a", "h", 143, "none", None, "anna", Secret(password), 5.0, sasl_mechanism=mech)


async def test_password_without_auth_plain_falls_back_to_login() -> None:
    """No AUTH=PLAIN and nothing forced: False (the caller uses LOGIN); nothing is sent."""
    transport = Scripted()
    assert not await authenticate(transport, frozenset({"IMAP4rev1", "AUTH=LOGIN"}), settings())
    assert transport.sent == []


async def test_plain_without_sasl_ir_waits_for_the_empty_continuation() -> None:
    """Without SASL-IR the response follows the server's empty '+' (RFC 3501 section 6.2.2)."""
    transport = Scripted(Continuation(b""), TaggedStatus("OK"))
    assert await authenticate(transport, CAPS, settings())
    assert transport.sent == [b"AUTHENTICATE PLAIN", base64.b64encode(b"\0anna\0pw-SENTINEL")]


async def test_plain_with_sasl_ir_sends_it_on_the_command_line() -> None:
    """With SASL-IR the initial response is on the AUTHENTICATE line (RFC 4959)."""
    transport = Scripted(TaggedStatus("OK"))
    assert await authenticate(transport, CAPS | {"SASL-IR"}, settings())
    assert transport.sent == [b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0anna\0pw-SENTINEL")]


async def test_cancelled_exchange_bad_is_a_refusal_without_the_password() -> None:
    """An unexpected challenge is cancelled with '*'; the BAD that follows is an AuthError, redacted."""
    transport = Scripted(
        Continuation(b""),
        Continuation(base64.b64encode(b"what?")),
        TaggedStatus("BAD", None, "pw-SENTINEL cancelled"),
    )
    with pytest.raises(AuthError, match="refused: BAD") as info:
        await authenticate(transport, CAPS, settings())
    assert transport.sent[-1] == b"*"
    assert "SENTINEL" not in str(info.value)


async def test_unavailable_is_throttled() -> None:
    """NO [UNAVAILABLE] is deferred, not refused (RFC 5530)."""
    with pytest.raises(ThrottledError, match=r"\[UNAVAILABLE\]"):
        await authenticate(
            Scripted(TaggedStatus("NO", "UNAVAILABLE", "try later")), CAPS | {"SASL-IR"}, settings()
        )


async def test_endless_challenges_are_a_protocol_error() -> None:
    """A server that never sends the tagged status ends in ProtocolError, not a loop."""
    transport = Scripted(*[Continuation(b"")] * 10)
    with pytest.raises(ProtocolError, match="did not end"):
        await authenticate(transport, CAPS, settings())


async def test_forced_mechanism_not_offered() -> None:
    """A forced mechanism the server lacks: AuthError naming what it offers."""
    with pytest.raises(AuthError, match=r"offers no SASL PLAIN \(AUTH=: XOAUTH2\)"):
        await authenticate(Scripted(), frozenset({"AUTH=XOAUTH2"}), settings(mech="PLAIN"))
