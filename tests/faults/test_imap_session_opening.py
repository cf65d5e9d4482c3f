"""Opening an IMAP session in few round trips, against a scripted server: what Dovecot cannot vary.

Dovecot always sends capabilities in its greeting and offers SASL-IR; here the greeting, the SASL
offer and the sign-in command are varied (RFC 9051 sections 5.5, 6.2.2, 7.1; RFC 4959).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from maild.errors import AuthError
from maild.model import ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
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
    await mailbox.connection.selection.select("INBOX")
    return mailbox


async def test_login_carries_the_select_and_the_search_along(proxied: list[FaultProxy]) -> None:
    """Greeting with capabilities and LOGIN (no AUTH=PLAIN offered): LOGIN, SELECT and UID SEARCH ALL
    leave in one packet, one round trip after the greeting, and no CAPABILITY command is sent; the
    inventory then takes the search's answer without a round trip of its own (it took two before)."""
    async with ScriptedIMAP({"INBOX": [b"Subject: a\r\n\r\nx\r\n", b"Subject: b\r\n\r\ny\r\n"]}) as server:
        server.greeting = f"* OK [CAPABILITY {server.capabilities}] ready\r\n".encode()
        settings, proxy = through(server, proxied)
        mailbox = IMAPMailbox(settings)
        try:
            await mailbox.open()
            entries = await mailbox.inventory()
            assert proxy.client_turns == 1
            assert server.commands[0].split()[1] == "LOGIN"
            assert [c.split(maxsplit=1)[1] for c in server.commands[1:]] == [
                'SELECT "INBOX"',
                "UID SEARCH ALL",
            ]
            assert [e.key.uid for e in entries] == [1, 2]  # type: ignore[union-attr]
        finally:
            await mailbox.close()


async def test_a_refused_pipelined_select_leaves_its_search_unread_and_the_next_mailbox_listed(
    proxied: list[FaultProxy],
) -> None:
    """The first configured mailbox does not exist: its pipelined SELECT is answered NO and the UID
    SEARCH behind it BAD (no mailbox selected, RFC 9051 section 6.3.2). Steps:

    1. the inventory records the refusal for that mailbox and never reads the BAD as a listing;
    2. the second mailbox is selected and searched (one more round trip) and its UIDs listed;
    3. the session stays usable (LOGOUT answered).
    """
    async with ScriptedIMAP({"INBOX": [b"Subject: a\r\n\r\nx\r\n"]}) as server:
        server.greeting = f"* OK [CAPABILITY {server.capabilities}] ready\r\n".encode()
        settings, proxy = through(server, proxied)
        mailbox = IMAPMailbox(settings, ("Gone", "INBOX"))
        await mailbox.open()
        entries = await mailbox.inventory()
        assert [(e.key.mailbox, e.key.uid) for e in entries] == [("INBOX", 1)]  # type: ignore[union-attr]
        assert "NONEXISTENT" in mailbox.mailbox_failures["Gone"]
        assert [c.split(maxsplit=1)[1] for c in server.commands[1:]] == [
            'SELECT "Gone"',
            "UID SEARCH ALL",
            'SELECT "INBOX"',
            "UID SEARCH ALL",
        ]
        assert proxy.client_turns == 2
        await mailbox.close()


async def test_greeting_without_capabilities_costs_one_capability(proxied: list[FaultProxy]) -> None:
    """A greeting without ``[CAPABILITY ...]``: one CAPABILITY (the library's), not two as before."""
    async with ScriptedIMAP() as server:
        settings, proxy = through(server, proxied)
        mailbox = await open_and_select(settings)
        try:
            assert [c.split()[1] for c in server.commands] == ["CAPABILITY", "LOGIN", "SELECT", "UID"]
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
    """LOGIN refused while a SELECT and a UID SEARCH rode along: the AuthError of the refusal,
    nothing else (the server refuses the other two as well, unauthenticated)."""

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
        assert [c.split()[1] for c in server.commands] == ["LOGIN", "SELECT", "UID"]
