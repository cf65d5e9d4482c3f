"""Deletions done on the server whose record found the archive's disk full (session 13's warning
path of ``mark_deleted``), against the scripted POP3 server, which re-uses a UIDL on request.

The record that maild deleted a POP3 message (``deleted_at``) is what makes a later message under
the same UIDL another message (:func:`maild.pop3_uidls.listed_known`; until session 14
neither retrieved nor deleted, since then archived as a new message before it is deleted). When the
disk is full right after ``+OK`` to QUIT, that record is missing.
"""

from __future__ import annotations

import concurrent.futures

from maild.archive.store import Store
from tests.integration.test_archive_full_bookkeeping import DELETIONS, disk_full_at
from tests.support.fetching import archived, cycle, pop3_account, prepare
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message


async def test_a_reused_uidl_after_unrecorded_deletions_is_not_deleted_unarchived(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Steps: retention "delete"; cycle 1 archives and deletes "uidl-1" on the server, the disk full
    when the deletion is recorded (a warning); the server re-uses "uidl-1" for another message;
    cycle 2 (room again) records the deletion of the first, so it must not take that message for
    the archived one: it archives it, then deletes it (session 14; before, it stayed on the server)."""
    with ScriptedPOP3([sample_message(1)]) as server:
        account = pop3_account(server.host, server.port, "alice", "secret", retention="delete")
        await prepare(store, account)
        with disk_full_at(store, DELETIONS) as refused:
            first = await cycle(account, store, executor)
        assert refused and server.maildrop == []
        assert any("deletions done on the server are not recorded" in w for w in first.warnings)
        server.add(ScriptedMessage(sample_message(2), uidl="uidl-1"))
        second = await cycle(account, store, executor)
        assert server.maildrop == []  # before the fix: deleted, never archived

    assert (second.new_links, second.deleted) == (1, 1)
    assert await archived(store) == [sample_message(1), sample_message(2)]
    locations = await store.locations(account.name)
    assert len(locations) == 2
    assert all(location.deleted_at is not None for location in locations.values())


async def test_while_the_unrecorded_deletions_still_find_no_room_the_next_cycle_decides_nothing(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Steps: as above, but the disk stays full for cycle 2: it stops before the inventory (no
    room, a warning, no error), the impostor stays on the server, nothing retrieved; cycle 3 with
    room records the deletion first, then archives the impostor as a new message and deletes it."""
    with ScriptedPOP3([sample_message(1)]) as server:
        account = pop3_account(server.host, server.port, "alice", "secret", retention="delete")
        await prepare(store, account)
        with disk_full_at(store, DELETIONS):
            await cycle(account, store, executor)
            impostor = server.add(ScriptedMessage(sample_message(2), uidl="uidl-1"))
            second = await cycle(account, store, executor)
        assert server.maildrop == [impostor]
        assert store.unrecorded_deletions(account.name) == 1
        assert (second.deleted, second.new_links, second.failures) == (0, 0, [])
        assert any("before deleting anything" in w for w in second.warnings)
        third = await cycle(account, store, executor)
        assert server.maildrop == []

    assert (third.deleted, third.new_links) == (1, 1)
    assert store.unrecorded_deletions(account.name) == 0
    assert await archived(store) == [sample_message(1), sample_message(2)]
