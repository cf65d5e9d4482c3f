"""Opening an IMAP session in few round trips, against a scripted server: what Dovecot cannot vary.

Dovecot always sends capabilities in its greeting and offers SASL-IR; here the greeting, the SASL
offer and the sign-in command are varied (RFC 9051 sections 5.5, 6.2.2, 7.1; RFC 4959).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from maild.errors import AuthError
from maild.model import Secret, ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import ScriptedIMAP, Session
from tests.support.proxy import FaultProxy


@pytest.fixture
def proxied() -> Iterator[list[FaultProxy]]:
    """Proxies started by a test, stopped after it."""
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def through(server: ScriptedIMAP, proxies: list[FaultProxy]) -> tuple[ServerSettings, FaultProxy]:
    """Plaintext settings for ``server`` through a new counting proxy."""
    proxy = FaultProxy(server.host, server.port)
    proxy.start()
    proxies.append(proxy)
    settings = ServerSettings("acct", proxy.host, proxy.port, "none", None, "anna", Secret("pw"), 5.0)
    return settings, proxy


async def open_and_select(settings: ServerSettings) -> IMAPMailbox:
    """Open a session and SELECT INBOX (the first configured mailbox)."""
    mailbox = IMAPMailbox(settings)
    await mailbox.open()
    await mailbox.connection.select("INBOX")
    return mailbox


async def test_login_carries_the_select_along(proxied: list[FaultProxy]) -> None:
    """Greeting with capabilities and LOGIN (no AUTH=PLAIN offered): LOGIN and SELECT leave in one
    packet, one round trip after the greeting, and no CAPABILITY command is sent."""
    async with ScriptedIMAP() as server:
        server.greeting = f"* OK [CAPABILITY {server.capabilities}] ready\r\n".encode()
        settings, proxy = through(server, proxied)
        mailbox = await open_and_select(settings)
        try:
            assert proxy.client_turns == 1
            assert [c.split()[1] for c in server.commands] == ["LOGIN", "SELECT"]
        finally:
            await mailbox.close()


async def test_greeting_without_capabilities_costs_one_capability(proxied: list[FaultProxy]) -> None:
    """A greeting without ``[CAPABILITY ...]``: one CAPABILITY (the library's), not two as before."""
    async with ScriptedIMAP() as server:
        settings, proxy = through(server, proxied)
        mailbox = await open_and_select(settings)
        try:
            assert [c.split()[1] for c in server.commands] == ["CAPABILITY", "LOGIN", "SELECT"]
            assert proxy.client_turns == 2
        finally:
            await mailbox.close()


async def test_nothing_follows_an_authenticate_that_waits_for_a_continuation() -> None:
    """AUTHENTICATE PLAIN without SASL-IR waits for the server's ``+``: the SELECT is not pipelined
    behind it (it would be taken for the SASL response); the continuation answered is the PLAIN
    response, and SELECT comes after the sign-in."""
    async with ScriptedIMAP() as server:
        server.capabilities = "IMAP4rev1 AUTH=PLAIN"
        server.greeting = f"* OK [CAPABILITY {server.capabilities}] ready\r\n".encode()
        settings = ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), 5.0)
        mailbox = await open_and_select(settings)
        try:
            assert [c.split()[1] for c in server.commands] == ["AUTHENTICATE", "SELECT"]
            assert server.continuations == [base64.b64encode(b"\0anna\0pw").decode()]
        finally:
            await mailbox.close()


async def test_failed_sign_in_with_a_pipelined_select_is_an_auth_error() -> None:
    """LOGIN refused while a SELECT rode along: the AuthError of the refusal, nothing else (the
    server refuses the SELECT too, unauthenticated)."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} NO [AUTHENTICATIONFAILED] nope\r\n".encode())

    async def not_authenticated(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} BAD not authenticated\r\n".encode())

    async with ScriptedIMAP() as server:
        server.greeting = f"* OK [CAPABILITY {server.capabilities}] ready\r\n".encode()
        server.script["LOGIN"] = refuse
        server.script["SELECT"] = not_authenticated
        settings = ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), 5.0)
        mailbox = IMAPMailbox(settings)
        with pytest.raises(AuthError, match="AUTHENTICATIONFAILED"):
            await mailbox.open()
        await mailbox.abort()
        assert [c.split()[1] for c in server.commands] == ["LOGIN", "SELECT"]
