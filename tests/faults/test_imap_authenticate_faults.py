"""IMAP AUTHENTICATE through maild's IMAP connection against a scripted server (issue 13).

Dovecot tests every mechanism and token source for real (tests/integration/test_oauth2_dovecot.py);
this covers what Dovecot will not do on request: a server that hangs or hangs up in the middle of the
exchange, throttling and SERVERBUG answers, and the continuation without SASL-IR. The secret is never
in an error.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from maild import errors
from maild.model import ServerSettings
from maild.protocols.imap.client import MAX_PENDING_CONTINUATIONS
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import DEFAULT_CAPABILITIES, ScriptedIMAP, Session

PASSWORD = "SENTINEL-imap-password"
PLAIN_RESPONSE = base64.b64encode(b"\0anna\0" + PASSWORD.encode()).decode()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server offering AUTH=PLAIN, with one message."""
    async with ScriptedIMAP({"INBOX": [b"Subject: a\r\n\r\nbody\r\n"]}) as s:
        s.capabilities = DEFAULT_CAPABILITIES + " AUTH=PLAIN"
        yield s


def settings(server: ScriptedIMAP, timeout_s: float = 5.0) -> ServerSettings:
    return ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret(PASSWORD), timeout_s)


async def test_password_accounts_use_authenticate_plain_with_sasl_ir(server: ScriptedIMAP) -> None:
    """AUTH=PLAIN and SASL-IR offered: one AUTHENTICATE line with the initial response, no LOGIN."""
    mailbox = IMAPMailbox(settings(server))
    await mailbox.open()
    await mailbox.close()
    assert server.commands_named("AUTHENTICATE") == [f"AUTHENTICATE PLAIN {PLAIN_RESPONSE}"]
    assert server.commands_named("LOGIN") == []


async def test_without_sasl_ir_the_response_follows_the_continuation(server: ScriptedIMAP) -> None:
    """Without SASL-IR the command carries only the mechanism; the response answers the server's ``+``."""
    server.capabilities = server.capabilities.replace("SASL-IR ", "")
    mailbox = IMAPMailbox(settings(server))
    await mailbox.open()
    await mailbox.close()
    assert server.commands_named("AUTHENTICATE") == ["AUTHENTICATE PLAIN"]
    assert server.continuations == [PLAIN_RESPONSE]


async def test_servers_without_auth_plain_get_login(server: ScriptedIMAP) -> None:
    """No AUTH=PLAIN: LOGIN, as before."""
    server.capabilities = DEFAULT_CAPABILITIES
    mailbox = IMAPMailbox(settings(server))
    await mailbox.open()
    await mailbox.close()
    assert server.commands_named("AUTHENTICATE") == []
    assert len(server.commands_named("LOGIN")) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("NO [AUTHENTICATIONFAILED] Authentication failed", errors.AuthError),
        ("NO [UNAVAILABLE] try later", errors.ThrottledError),
        ("NO [SERVERBUG] oops", errors.TransientError),
        ("BAD no such mechanism", errors.AuthError),
    ],
)
async def test_refusals_map_like_login(server: ScriptedIMAP, reply: str, error: type[Exception]) -> None:
    """A refused AUTHENTICATE is an AuthError (it counts toward the lockout), RFC 5530 codes defer or retry;
    the server's text is in the error, the secret is not."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} {reply} {PASSWORD}\r\n".encode())  # a server echoing the secret

    server.script["AUTHENTICATE"] = refuse
    mailbox = IMAPMailbox(settings(server))
    with pytest.raises(error) as caught:
        await mailbox.open()
    assert type(caught.value) is error
    assert reply.split("] ")[-1] in str(caught.value)
    assert PASSWORD not in str(caught.value) and PLAIN_RESPONSE not in str(caught.value)
    await mailbox.abort()


async def test_a_server_silent_after_authenticate_times_out(server: ScriptedIMAP) -> None:
    """No answer to AUTHENTICATE within timeout_s: NetworkTimeout, the connection discarded."""

    async def hang(session: Session, tag: str, args: str) -> None:
        await session.hang()

    server.script["AUTHENTICATE"] = hang
    mailbox = IMAPMailbox(settings(server, timeout_s=0.5))
    with pytest.raises(errors.NetworkTimeout, match="AUTHENTICATE"):
        await mailbox.open()
    await mailbox.abort()


async def test_a_hang_up_during_the_exchange_is_a_connect_error(server: ScriptedIMAP) -> None:
    """The server asks for the response, then drops the connection: ConnectError, no secret in it."""
    server.capabilities = server.capabilities.replace("SASL-IR ", "")

    async def drop(session: Session, tag: str, args: str) -> None:
        await session.send(b"+ \r\n")
        await session.reader.readline()
        session.drop()

    server.script["AUTHENTICATE"] = drop
    mailbox = IMAPMailbox(settings(server))
    with pytest.raises(errors.ConnectError) as caught:
        await mailbox.open()
    assert PASSWORD not in str(caught.value)
    await mailbox.abort()


async def test_a_flood_of_continuation_requests_is_a_protocol_error(server: ScriptedIMAP) -> None:
    """A server answering AUTHENTICATE with endless ``+`` lines: ProtocolError, memory bounded."""

    async def flood(session: Session, tag: str, args: str) -> None:
        await session.send(b"+ \r\n" * 1000)
        await session.hang()

    server.script["AUTHENTICATE"] = flood
    mailbox = IMAPMailbox(settings(server))
    with pytest.raises(errors.ProtocolError, match=f"more than {MAX_PENDING_CONTINUATIONS} unanswered"):
        await mailbox.open()
    await mailbox.abort()
