"""LIST-STATUS (RFC 5819) of many configured mailboxes against a server that caps its command lines.

RFC 7162 section 4 asks clients to keep command lines within 8,192 octets; Dovecot 2.3 answers a line
over 64 KiB with ``BAD ... IMAP command line too large`` (checked in session 15: 4,000 names of 20
characters). The scripted server here refuses lines over 8,192 octets, as a server may.
"""

from __future__ import annotations

import re

import pytest

from maild.protocols.imap.listing import MailboxStatus
from maild.protocols.imap.mailbox import IMAPMailbox, SyncHint
from maild.protocols.imap.status import MAX_LIST_PATTERNS_OCTETS
from tests.faults.imap_scripted import POST_LOGIN_CAPABILITIES, ScriptedIMAP, Session
from tests.faults.test_idle_faults import message, server_settings

#: Longest command line the scripted server takes, in octets (RFC 7162 section 4's figure).
SERVER_LINE_OCTETS = 8192


def list_status_server(server: ScriptedIMAP) -> None:
    """Give ``server`` LIST-STATUS (``LIST "" <patterns> RETURN (STATUS (...))``: ``"*"`` or a
    parenthesised list of quoted names) and a cap on the command line."""
    server.post_login_capabilities = POST_LOGIN_CAPABILITIES + " LIST-EXTENDED LIST-STATUS"

    async def listing(session: Session, tag: str, args: str) -> None:
        if len(f"{tag} LIST {args}") > SERVER_LINE_OCTETS:
            await session.send(f"{tag} BAD Error in IMAP command LIST: IMAP command line too large\r\n".encode())
            return
        patterns = args.split(" RETURN ", 1)[0].split(" ", 1)[1]
        wanted = None if patterns == '"*"' else set(re.findall(r'"([^"]*)"', patterns))
        lines = b""
        for name, box in server.mailboxes.items():
            if wanted is not None and name not in wanted:
                continue
            uidnext = box.messages[-1].uid + 1 if box.messages else 1
            lines += (
                f'* LIST (\\HasNoChildren) "/" "{name}"\r\n'
                f'* STATUS "{name}" (MESSAGES {len(box.messages)} UIDNEXT {uidnext}'
                f" UIDVALIDITY {box.uidvalidity})\r\n"
            ).encode()
        await session.send(lines + f"{tag} OK List completed\r\n".encode())

    server.script["LIST"] = listing


@pytest.mark.parametrize("configured", [10, 400])
async def test_many_configured_mailboxes_are_looked_at_within_the_line_cap(configured: int) -> None:
    """An account configured with 400 mailboxes (about 11 KB of quoted names): the status look lists
    every mailbox (``"*"``) instead of sending the names as patterns, so the server's cap on command
    lines is kept and unchanged mailboxes are still left unselected. Before, the names went into one
    LIST command: BAD from a server with a cap, a ProtocolError that failed every cycle that had a
    record to compare (every one but the first of each day). 10 names: still sent as patterns.
    """
    names = ["INBOX", "Projekte"] + [f"Kunden/Kunde {n:05d} GmbH und Co. KG" for n in range(configured - 2)]
    async with ScriptedIMAP({"INBOX": [message(1), message(2)], "Projekte": [message(3)]}) as server:
        list_status_server(server)
        mailbox = IMAPMailbox(server_settings(server), names)
        inbox = server.mailboxes["INBOX"]
        mailbox.sync_hints = {
            "Projekte": SyncHint(MailboxStatus("Projekte", 1, 2, inbox.uidvalidity), frozenset({1})),
        }
        await mailbox.open()
        entries = await mailbox.inventory()
        await mailbox.abort()

    assert mailbox.unchanged == {"Projekte"}
    assert len(entries) == 3
    [command] = server.commands_named("LIST")
    assert len(command) < SERVER_LINE_OCTETS
    if configured > 10:
        assert '"*"' in command
        assert sum(len(name) + 3 for name in names) > MAX_LIST_PATTERNS_OCTETS
    else:
        assert '"*"' not in command and '"Projekte"' in command


async def test_a_broken_name_not_configured_does_not_fail_the_status_look_of_many() -> None:
    """400 configured mailboxes are looked at with ``LIST "*"``, which also lists what is not
    configured: a mailbox there whose name is not valid modified UTF-7 (``Alt&Post``, an
    unterminated ``&`` run, as a broken client may create it; RFC 9051 section 5.1.3) is none of
    the account's and must not fail its inventory. Before (session 15's ``"*"``), the ProtocolError
    of that one name failed every cycle that had a record to compare; with the names sent as
    patterns it was never listed. A broken name among the configured ones' answers cannot occur:
    maild sends their names encoded itself."""
    names = ["INBOX", "Projekte"] + [f"Kunden/Kunde {n:05d} GmbH und Co. KG" for n in range(398)]
    async with ScriptedIMAP(
        {"INBOX": [message(1), message(2)], "Projekte": [message(3)], "Alt&Post": [message(4)]}
    ) as server:
        list_status_server(server)
        mailbox = IMAPMailbox(server_settings(server), names)
        inbox = server.mailboxes["INBOX"]
        mailbox.sync_hints = {
            "Projekte": SyncHint(MailboxStatus("Projekte", 1, 2, inbox.uidvalidity), frozenset({1})),
        }
        await mailbox.open()
        entries = await mailbox.inventory()
        await mailbox.abort()

    [command] = server.commands_named("LIST")
    assert '"*"' in command
    assert mailbox.unchanged == {"Projekte"}
    assert len(entries) == 3  # INBOX's two and Projekte's one: nothing of Alt&Post
    assert set(mailbox.statuses) == {"INBOX", "Projekte"}
