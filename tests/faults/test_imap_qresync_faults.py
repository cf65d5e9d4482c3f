"""CONDSTORE/QRESYNC servers that Dovecot will not imitate: a mailbox without mod-sequences.

RFC 7162 section 3.1.2: a server that cannot keep mod-sequences for a mailbox answers its SELECT with
``[NOMODSEQ]``; section 3.1.6 (the STATUS data item): it "MUST return 0 as the value of
HIGHESTMODSEQ". The QRESYNC parameter of SELECT (section 3.2.5, ``mod-sequence-value``, 1 and up)
cannot carry that 0: a strict server answers BAD. Dovecot always keeps mod-sequences (and takes a 0),
so the scripted server plays a strict one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from maild.archive.store import Store
from maild.fetch.cycle import fetch_cycle
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import (
    POST_LOGIN_CAPABILITIES,
    ScriptedIMAP,
    ScriptedMessage,
    Session,
    unquote,
)
from tests.faults.test_idle_faults import message, scripted_account, server_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_QRESYNC = re.compile(r"^(.*) \(QRESYNC \((\d+) (\d+)(?: [^)]*)?\)\)$", re.IGNORECASE)


def strict_nomodseq_server(server: ScriptedIMAP) -> None:
    """Make ``server`` a strict CONDSTORE/QRESYNC server whose mailboxes keep no mod-sequences:
    STATUS says ``HIGHESTMODSEQ 0``, SELECT says ``[NOMODSEQ]``, a QRESYNC mod-sequence of 0 is BAD."""
    server.post_login_capabilities = POST_LOGIN_CAPABILITIES + " ENABLE UNSELECT CONDSTORE QRESYNC"

    async def unselect(session: Session, tag: str, args: str) -> None:
        if session.selected is None:
            await session.send(f"{tag} BAD No mailbox selected\r\n".encode())
            return
        session.selected = None
        await session.send(f"{tag} OK Unselect completed\r\n".encode())

    async def enable(session: Session, tag: str, args: str) -> None:
        await session.send(f"* ENABLED QRESYNC\r\n{tag} OK Enabled\r\n".encode())

    async def status(session: Session, tag: str, args: str) -> None:
        name = unquote(args.rsplit(" (", 1)[0])
        box = server.mailboxes[name]
        uidnext = box.messages[-1].uid + 1 if box.messages else 1
        await session.send(
            f'* STATUS "{name}" (MESSAGES {len(box.messages)} UIDNEXT {uidnext} '
            f"UIDVALIDITY {box.uidvalidity} HIGHESTMODSEQ 0)\r\n{tag} OK Status completed\r\n".encode()
        )

    async def select(session: Session, tag: str, args: str) -> None:
        found = _QRESYNC.match(args)
        if found is not None and int(found.group(3)) == 0:
            session.selected = None
            await session.send(f"{tag} BAD Invalid QRESYNC parameters: mod-sequence 0\r\n".encode())
            return
        await session.default(tag, "SELECT", args if found is None else found.group(1))
        # the default's completion went out already; a NOMODSEQ server adds no HIGHESTMODSEQ to it

    server.script.update({"UNSELECT": unselect, "ENABLE": enable, "STATUS": status, "SELECT": select})


async def test_mailbox_without_modseq_is_never_selected_with_qresync_modseq_zero(store: Store) -> None:
    """A mailbox whose STATUS says HIGHESTMODSEQ 0 (no mod-sequences kept) and that got new mail is
    listed with a plain SELECT and the new message archived; maild never sends ``(QRESYNC (v 0))``,
    which a strict server refuses with BAD (before: that BAD failed every cycle of the account until
    the mailbox's record was a day old, and the new mail with it).

    Steps: cycle 1 lists INBOX (2 messages); cycle 2 finds STATUS's HIGHESTMODSEQ 0 against none
    recorded, lists it again and records 0; cycle 3 leaves it unselected; a message arrives; cycle 4
    must archive it. The session is kept between cycles, as the daemon keeps it (a fresh session
    selects INBOX with its sign-in and never enables QRESYNC).
    """
    await store.ensure_account("acct", "Kanzlei Berger", "Anna Berger", "imap", NOW)
    async with ScriptedIMAP({"INBOX": [message(1), message(2)]}) as server:
        strict_nomodseq_server(server)
        account = scripted_account(server)
        drop = IMAPMailbox(server_settings(server))

        async def cycle() -> int:  # the daemon's way: the session kept between cycles
            opened = drop.parked
            if opened:
                assert await drop.resume(max_age_s=60, probe_timeout_s=5)
            result = await fetch_cycle(
                account, store, drop, clock=lambda: NOW, opened=opened, keep_open=True
            )
            assert drop.parked
            return result.new_messages

        assert await cycle() == 2
        assert await cycle() == 0
        assert await cycle() == 0
        assert drop.unchanged == {"INBOX"}  # the record with HIGHESTMODSEQ 0 is used
        server.mailboxes["INBOX"].messages.append(ScriptedMessage(message(3), 3))
        assert await cycle() == 1
        await drop.abort()

    assert any(c.upper().startswith("ENABLE QRESYNC") for c in server.commands_named("ENABLE"))
    assert not [c for c in server.commands_named("SELECT") if "QRESYNC" in c.upper()]
    stored = await store._all("SELECT COUNT(*) FROM messages")
    assert [tuple(r) for r in stored] == [(3,)]


async def test_status_taken_after_the_preselected_listing_is_not_recorded(store: Store) -> None:
    """In a fresh session the first mailbox is selected and listed with the sign-in, *before* the
    status look: a message expunged and another delivered in between leave MESSAGES equal, and the
    later status (new UIDNEXT) recorded with the earlier listing made the next poll call the
    mailbox unchanged, so the new message was not fetched until the daily full listing. Now the
    listing's own SELECT answer is what is recorded unless the status look agrees with it.

    Steps: cycle 1 archives 1 and 2; in cycle 2 the server expunges 1 and receives 3 right before
    answering STATUS (after the pipelined SELECT and UID SEARCH); cycle 3 must archive 3.
    """
    await store.ensure_account("acct", "Kanzlei Berger", "Anna Berger", "imap", NOW)
    async with ScriptedIMAP({"INBOX": [message(1), message(2)]}) as server:
        inbox = server.mailboxes["INBOX"]
        race = {"armed": False}

        async def status(session: Session, tag: str, args: str) -> None:
            if race["armed"]:
                race["armed"] = False
                del inbox.messages[0]
                inbox.messages.append(ScriptedMessage(message(3), 3))
            uidnext = inbox.messages[-1].uid + 1
            await session.send(
                f'* STATUS "INBOX" (MESSAGES {len(inbox.messages)} UIDNEXT {uidnext} '
                f"UIDVALIDITY {inbox.uidvalidity})\r\n{tag} OK Status completed\r\n".encode()
            )

        server.script["STATUS"] = status
        account = scripted_account(server)

        async def cycle() -> int:
            result = await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)
            return result.new_messages

        assert await cycle() == 2
        race["armed"] = True
        assert await cycle() == 0  # 3 arrived after the listing: the next cycle's
        assert not race["armed"]
        assert await cycle() == 1

    stored = await store._all("SELECT COUNT(*) FROM messages")
    assert [tuple(r) for r in stored] == [(3,)]
