"""FETCH replies as real servers send them: items left out or sent late, spurious CRLF after a literal.

Dovecot always answers FETCH correctly; the scripted server (:mod:`tests.faults.imap_scripted`) is
made to answer as Gmail and Exchange sometimes do (INTERNALDATE, FLAGS or RFC822.SIZE missing, or in a
second FETCH response for the same message) and as some servers do after a literal (an extra empty
line inside the open parenthesised list: CPython bpo-44408, IMAPClient #162). Each test runs the real
adapter, and where it matters a real fetch cycle into a real archive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from maild.archive.store import Store
from maild.fetch.cycle import fetch_cycle
from maild.model import RetrievalFailure, RetrievedMessage
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMessage, default_fetch_writer
from tests.faults.test_imap_faults import collect, keys, message, opened, settings
from tests.support.accounts import imap_account
from tests.support.fetching import prepare

DATED = b"Date: Tue, 03 Mar 2026 10:15:00 +0100\r\n"


@pytest.fixture
async def inbox() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with four messages in INBOX, the second with a Date header."""
    raws = [message(1), DATED + message(2), message(3), message(4)]
    async with ScriptedIMAP({"INBOX": raws}) as server:
        yield server


def body_response(seq: int, msg: ScriptedMessage, before: bytes, after: bytes) -> bytes:
    """``* seq FETCH (<before> BODY[] {n}CRLF<octets><after>``: ``after`` must close the list and the line."""
    return b"* %d FETCH (%sBODY[] {%d}\r\n" % (seq, before, len(msg.raw)) + msg.raw + after


async def test_spurious_crlf_after_a_literal_is_tolerated_and_the_session_stays_usable(
    inbox: ScriptedIMAP,
) -> None:
    """An empty line (and a blank one) after a literal inside the open list does not fail the
    message: every message arrives with its octets exact, and the session goes on to a second FETCH."""

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        if "BODY" not in items.upper():
            return default_fetch_writer(seq, msg, items)
        head = b'UID %d FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" ' % msg.uid
        if msg.uid == 1:  # CRLF right after the literal, then the closing parenthesis
            return body_response(seq, msg, head, b"\r\n)\r\n")
        if msg.uid == 2:  # a blank line, then more items
            return body_response(
                seq, msg, b"UID 2 ", b'\r\n  \r\n FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700")\r\n'
            )
        return default_fetch_writer(seq, msg, items)

    inbox.fetch_writer = writer
    mailbox = await opened(inbox)
    first = await collect(mailbox, keys([1, 2, 3]))
    again = await collect(mailbox, keys([4]))
    await mailbox.close()

    assert all(isinstance(item, RetrievedMessage) for item in [*first, *again])
    assert [item.raw for item in first] == [message(1), DATED + message(2), message(3)]  # type: ignore[union-attr]
    assert first[0].flags == {"\\Seen"}  # type: ignore[union-attr]
    assert again[0].raw == message(4)  # type: ignore[union-attr]


async def test_optional_items_missing_or_late_are_merged_or_filled_in(inbox: ScriptedIMAP) -> None:
    """INTERNALDATE and FLAGS left out: the body is stored with the Date header (else the arrival
    time) and no flags, and the gap is recorded; items sent in a second response are merged; only a
    missing body fails its message.

    Steps: UID 1 without INTERNALDATE and without a Date header (arrival time); UID 2 without
    INTERNALDATE and FLAGS (Date header); UID 3 with FLAGS and INTERNALDATE in a second FETCH
    response after the body; UID 4 without a body at all.
    """

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        if "BODY" not in items.upper():
            return default_fetch_writer(seq, msg, items)
        if msg.uid == 1:
            return body_response(seq, msg, b"UID 1 FLAGS (\\Seen) ", b")\r\n")
        if msg.uid == 2:
            return body_response(seq, msg, b"UID 2 ", b")\r\n")
        if msg.uid == 3:
            return body_response(seq, msg, b"UID 3 ", b")\r\n") + (
                b'* %d FETCH (UID 3 FLAGS (\\Flagged) INTERNALDATE "01-Jan-2026 00:00:00 +0100")\r\n' % seq
            )
        return b'* %d FETCH (UID 4 FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700")\r\n' % seq

    inbox.fetch_writer = writer
    mailbox = await opened(inbox)
    before = datetime.now(UTC)
    first, second, third, fourth = await collect(mailbox, keys([1, 2, 3, 4]))
    await mailbox.close()

    assert isinstance(first, RetrievedMessage)
    assert first.missing == ("INTERNALDATE",)
    assert first.internaldate is not None
    assert first.internaldate >= before.replace(microsecond=0)
    assert first.flags == {"\\Seen"}
    assert isinstance(second, RetrievedMessage)
    assert second.missing == ("FLAGS", "INTERNALDATE")
    assert second.internaldate == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)
    assert second.flags == frozenset()
    assert isinstance(third, RetrievedMessage)
    assert third.missing == ()
    assert third.flags == {"\\Flagged"}
    assert third.internaldate == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert isinstance(fourth, RetrievalFailure)
    assert "BODY[]" in fourth.reason


async def test_a_cycle_archives_messages_without_internaldate_and_records_the_gap(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """A fetch cycle against a server that never sends INTERNALDATE archives every message (none
    is refused and retried forever) and records ``INTERNALDATE`` in ``locations.missing_items``."""

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        if "BODY" not in items.upper():
            return default_fetch_writer(seq, msg, items)
        return body_response(seq, msg, b"UID %d FLAGS () " % msg.uid, b")\r\n")

    inbox.fetch_writer = writer
    server = settings(inbox)
    account = await prepare(
        store,
        imap_account(
            "quirky", host=server.host, port=server.port, username="anna", password=server.password.reveal()
        ),
    )
    result = await fetch_cycle(account, store, IMAPMailbox(account.server_settings(), account.mailboxes))

    assert (result.new_links, result.failures) == (4, [])
    rows = await store._all("SELECT uid, missing_items, internaldate FROM locations ORDER BY uid")
    assert [(r[0], r[1]) for r in rows] == [(uid, "INTERNALDATE") for uid in (1, 2, 3, 4)]
    assert rows[1][2] == "2026-03-03T09:15:00Z"  # the Date header
