"""UIDs reassigned under an unchanged UIDVALIDITY (Proton Bridge #220 and other gateways after a resync).

Dovecot keeps its UIDs; the scripted server (:mod:`tests.faults.imap_scripted`) is made to renumber
its mailbox between two cycles while reporting the same UIDVALIDITY. Each test runs real fetch cycles
into a real archive and checks that the new message at a known UID is fetched, the locations are put
right, the event is shown, and nothing is deleted by a UID not re-verified in the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.fetch.cycle import CycleResult, fetch_cycle
from maild.model import IMAPKey
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMessage, default_fetch_writer
from tests.faults.test_imap_faults import message, settings
from tests.support.accounts import imap_account
from tests.support.fetching import archived, prepare

A, B, C = message(1), message(2, size=300), message(3, size=900)


@pytest.fixture
async def inbox() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with A (UID 1) and B (UID 2) in INBOX, UIDVALIDITY 1234."""
    async with ScriptedIMAP({"INBOX": [A, B]}) as server:
        yield server


async def account_on(server: ScriptedIMAP, store: Store, retention: str) -> AccountConfig:
    """An IMAP account on the scripted ``server``, recorded in the archive."""
    reach = settings(server)
    account = imap_account(
        "bridged",
        host=reach.host,
        port=reach.port,
        username="anna",
        password=reach.password.reveal(),
        retention=retention,
        retention_days=None if retention != "delete-after" else 0,
        idle=False,
    )
    return await prepare(store, account)


async def run(account: AccountConfig, store: Store) -> CycleResult:
    """One fetch cycle on a fresh session."""
    return await fetch_cycle(account, store, IMAPMailbox(account.server_settings(), account.mailboxes))


def renumber(server: ScriptedIMAP, raws: list[bytes]) -> None:
    """Give INBOX these messages at UIDs 1, 2, ..., UIDVALIDITY unchanged (what a resyncing bridge does)."""
    server.mailboxes["INBOX"].messages = [ScriptedMessage(raw, uid) for uid, raw in enumerate(raws, 1)]


async def test_a_new_message_at_a_known_uid_is_fetched_and_nothing_is_deleted_by_a_stale_uid(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """After a renumbering that puts new message C at B's old UID 2 (B moves to UID 3), the next cycle
    notices, stores C, links A, B, C to their real UIDs, warns, and deletes only by UIDs it verified.

    Steps: a "keep" cycle archives A (UID 1) and B (UID 2); the server renumbers to A, C, B under the
    same UIDVALIDITY; a "delete" cycle runs: UID 2's size no longer matches, its header differs, so
    INBOX's map is distrusted; the retrieval re-fetches UIDs 1-3 (A and B by SHA-256 already
    archived, C new), and deletes UIDs 1-3, each retrieved (so verified) in this session.
    """
    await run(await account_on(inbox, store, "keep"), store)
    renumber(inbox, [A, C, B])

    result = await run(await account_on(inbox, store, "delete"), store)

    assert result.new_messages == 1
    assert sorted(await archived(store)) == sorted([A, B, C])
    assert len(result.warnings) == 1
    assert "reassigned under an unchanged UIDVALIDITY" in result.warnings[0]
    assert result.imap is not None
    assert [(e.mailbox, e.reassigned) for e in result.imap.uid_map_distrusted] == [("INBOX", 1)]
    locations = await store.locations("bridged")
    raws = await store.raw_messages([locations[IMAPKey("INBOX", 1234, uid)].message for uid in (1, 2, 3)])
    by_uid = {uid: raws[locations[IMAPKey("INBOX", 1234, uid)].message] for uid in (1, 2, 3)}
    assert by_uid == {1: A, 2: C, 3: B}
    assert result.deleted == 3
    assert inbox.mailboxes["INBOX"].messages == []


async def test_a_size_the_server_misreports_is_checked_by_header_and_then_trusted(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """A server whose RFC822.SIZE is off for a message (its header section still matches) is not taken
    for a renumbering: no warning, nothing fetched again, the size recorded, and the UID deletable."""
    await run(await account_on(inbox, store, "keep"), store)

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        return default_fetch_writer(seq, msg, items).replace(
            b"RFC822.SIZE %d" % len(B), b"RFC822.SIZE %d" % (len(B) + 7)
        )

    inbox.fetch_writer = writer
    result = await run(await account_on(inbox, store, "delete"), store)

    assert (result.warnings, result.new_links) == ([], 0)
    assert result.deleted == 2
    rows = await store._all("SELECT uid, server_size FROM locations ORDER BY uid")
    assert [tuple(r) for r in rows] == [(1, None), (2, len(B) + 7)]


async def test_an_unverified_uid_is_not_deleted(inbox: ScriptedIMAP, store: Store) -> None:
    """A known UID the server does not return in the size check is not verified in this session, so
    "delete" leaves it on the server (the other is deleted)."""
    await run(await account_on(inbox, store, "keep"), store)

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        if msg.uid == 2 and "RFC822.SIZE" in items.upper() and "BODY" not in items.upper():
            return b""
        return default_fetch_writer(seq, msg, items)

    inbox.fetch_writer = writer
    result = await run(await account_on(inbox, store, "delete"), store)

    assert result.deleted == 1
    assert [m.uid for m in inbox.mailboxes["INBOX"].messages] == [2]


async def test_a_renumbering_that_keeps_sizes_is_caught_by_the_header_sample(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """Two messages of the same size swapped between UIDs 1 and 2 (sizes all match) are caught by the
    header sample (a small mailbox is sampled whole): the map is distrusted and put right."""
    same_size_a = message(7, size=100)
    same_size_b = message(8, size=100)
    assert len(same_size_a) == len(same_size_b)
    renumber(inbox, [same_size_a, same_size_b])
    await run(await account_on(inbox, store, "keep"), store)
    renumber(inbox, [same_size_b, same_size_a])

    result = await run(await account_on(inbox, store, "keep"), store)

    locations = await store.locations("bridged")
    raws = await store.raw_messages([locations[IMAPKey("INBOX", 1234, uid)].message for uid in (1, 2)])
    assert [raws[locations[IMAPKey("INBOX", 1234, uid)].message] for uid in (1, 2)] == [
        same_size_b,
        same_size_a,
    ]
    assert result.new_messages == 0
    assert result.imap is not None
    assert [e.reassigned for e in result.imap.uid_map_distrusted] == [2]


async def test_a_header_less_message_at_a_known_uid_is_not_taken_for_the_archived_one(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """A header-less message (it starts with the empty line) archived at UID 1, then another
    header-less message of another size at UID 1 under the same UIDVALIDITY: two empty header
    sections prove nothing (session 13), so the map is distrusted and the new message is fetched
    before "delete" removes it; before, the empty sections compared equal, UID 1 was verified by
    its header and the new message was deleted on the server, never archived."""
    first = b"\r\nno header at all, first\r\n"
    other = b"\r\nno header at all, and another message altogether\r\n"
    renumber(inbox, [first])
    await run(await account_on(inbox, store, "keep"), store)
    renumber(inbox, [other])

    result = await run(await account_on(inbox, store, "delete"), store)

    assert sorted(await archived(store)) == sorted([first, other])
    assert result.new_messages == 1
    assert inbox.mailboxes["INBOX"].messages == []


async def test_an_all_header_message_matches_the_header_section_the_server_sends(
    inbox: ScriptedIMAP, store: Store
) -> None:
    """A message that is all header (no empty line, no body) whose server size is off: IMAP's
    BODY[HEADER] adds the empty line, which is no difference (the map is trusted, nothing fetched
    again, no warning, the UID deletable)."""
    only_header = b"Subject: only a header\r\nMessage-ID: <only@test>\r\n"
    renumber(inbox, [only_header])
    await run(await account_on(inbox, store, "keep"), store)

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        out = default_fetch_writer(seq, msg, items)
        return out.replace(b"RFC822.SIZE %d" % len(only_header), b"RFC822.SIZE %d" % (len(only_header) + 3))

    inbox.fetch_writer = writer
    result = await run(await account_on(inbox, store, "delete"), store)

    assert (result.warnings, result.new_links, result.new_messages) == ([], 0, 0)
    assert result.deleted == 1
