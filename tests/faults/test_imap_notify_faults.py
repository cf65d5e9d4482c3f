"""NOTIFY (RFC 5465) offered but refused: what Dovecot will not do on request.

A server may advertise NOTIFY and still refuse a ``NOTIFY SET`` (too many mailboxes to watch, a
filter it does not support: RFC 5465 section 3 allows NO and BAD). The IDLE watcher must then watch
its own mailbox as a server without NOTIFY would be watched, not reconnect for ever.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from maild.service.idle import IdleWatcher
from tests.faults.imap_scripted import POST_LOGIN_CAPABILITIES, ScriptedIMAP, Session
from tests.faults.test_idle_faults import make_watcher, message, scripted_account
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    "refusal",
    [
        "NO [NOTIFICATIONOVERFLOW] Too many mailboxes",
        "BAD Unsupported filter",
        "NO Not now",
        # RFC 5530 LIMIT: an implementation limit, the same NOTIFY fails again after a reconnection
        "NO [LIMIT] Too many mailboxes to watch",
    ],
)
async def test_refused_notify_leaves_idle_on_the_selected_mailbox(
    refusal: str, watchers: list[IdleWatcher]
) -> None:
    """NOTIFY SET answered NO or BAD: the watcher goes on to IDLE on its mailbox in the same session
    (one LOGIN, mode "idle", ``notifying`` False, the refusal logged), and a push there still ends
    a wait. Before, the refusal was a ProtocolError that dropped the session: the watcher logged in
    again and again (backoff up to reconnect_cap_s) and never entered IDLE, so mail waited for the
    poll."""
    async with ScriptedIMAP({"INBOX": [message(1)], "Projekte": [message(2)]}) as server:
        server.post_login_capabilities = POST_LOGIN_CAPABILITIES + " NOTIFY"

        async def notify(session: Session, tag: str, args: str) -> None:
            await session.send(f"{tag} {refusal}\r\n".encode())

        server.script["NOTIFY"] = notify
        watcher = make_watcher(watchers, scripted_account(server, mailboxes=("INBOX", "Projekte")))
        with capture_logs() as logs:
            watcher.start()
            await eventually(lambda: watcher.mode == "idle", 'mode "idle"')
        assert await watcher.wait(0.5) == "push"  # the catch-up after connecting (no store)
        assert await server.push(b"* 2 EXISTS\r\n") == 1
        assert await watcher.wait(5.0) == "push"

    assert not watcher.notifying
    assert len(server.commands_named("NOTIFY SET")) == 1
    assert len(server.commands_named("LOGIN")) == 1
    refused = [e for e in logs if e["event"] == "imap.notify-refused"]
    assert len(refused) == 1
    assert refusal.split(" ")[0] in refused[0]["error"]


async def test_notify_of_many_configured_mailboxes_watches_personal() -> None:
    """400 configured mailboxes (about 11 KB of names) are not sent as a NOTIFY ``mailboxes`` filter
    but as ``personal``, within a server's cap on command lines (RFC 7162 section 4's 8,192 octets
    here): NOTIFY is in effect. Before, the long line was refused (BAD): no NOTIFY, the other
    mailboxes polled only."""
    from maild.protocols.imap.idle import IMAPIdleSession
    from tests.faults.test_idle_faults import server_settings

    names = [f"Kunden/Kunde {n:05d} GmbH und Co. KG" for n in range(400)]
    async with ScriptedIMAP({"INBOX": [message(1)]}) as server:
        server.post_login_capabilities = POST_LOGIN_CAPABILITIES + " NOTIFY"

        async def notify(session: Session, tag: str, args: str) -> None:
            too_long = len(f"{tag} NOTIFY {args}") > 8192
            await session.send(f"{tag} {'BAD command line too large' if too_long else 'OK NOTIFY completed'}\r\n".encode())

        server.script["NOTIFY"] = notify
        session = IMAPIdleSession(server_settings(server), "INBOX", names)
        await session.open()
        await session.select_mailbox()
        assert await session.notify()
        await session.abort()

    [command] = server.commands_named("NOTIFY SET")
    assert "(personal (MessageNew MessageExpunge))" in command
