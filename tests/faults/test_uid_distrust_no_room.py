"""A UID map distrusted while the archive's disk is full (QA of session 13).

``verify_uid_map`` finds a known UID naming another message of the same size only through its
random header sample; the distrust is written as the removal of the mailbox's locations. When that
write finds the disk full, the cycle stops (no room), and the next cycle must not forget what was
found: a sample that happens to miss the reassigned UID would verify it by its size and delete the
new message, never archived, as the archived one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from maild.archive.store import Store
from maild.fetch import resync
from tests.faults.imap_scripted import ScriptedIMAP
from tests.faults.test_imap_faults import message
from tests.faults.test_imap_uid_reassignment import account_on, renumber, run
from tests.integration.test_archive_full_bookkeeping import disk_full_at
from tests.support.fetching import archived

UNLINK = "DELETE FROM locations WHERE account = ? AND mailbox = ?"
"""The statement of ``uidmap.unlink``: a distrusted mailbox's locations removed."""

A, B, D = message(1, size=100), message(2, size=100), message(4, size=100)


@pytest.fixture
async def inbox() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with A (UID 1) and B (UID 2) in INBOX, UIDVALIDITY 1234."""
    async with ScriptedIMAP({"INBOX": []}) as server:
        renumber(server, [A, B])
        yield server


async def test_a_distrust_that_found_no_room_is_not_forgotten(
    inbox: ScriptedIMAP, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: a "keep" cycle archives A (UID 1), B (UID 2); the server puts new message D, of B's
    size, at UID 2 (B gone); a "delete" cycle's header sample catches it, the disk full when the
    map's distrust is written: no room, nothing deleted; the next cycle's sample misses UID 2 (drawn
    empty): D must be retrieved before anything is deleted, never deleted unarchived."""
    assert len(B) == len(D) and B != D
    await run(await account_on(inbox, store, "keep"), store)
    renumber(inbox, [A, D])
    deleting = await account_on(inbox, store, "delete")
    with disk_full_at(store, UNLINK) as refused:
        full = await run(deleting, store)
    assert refused and full.deleted == 0
    assert len(inbox.mailboxes["INBOX"].messages) == 2

    def unlucky(population: Any, k: int) -> list[Any]:
        return []

    monkeypatch.setattr(resync._RANDOM, "sample", unlucky)
    again = await run(deleting, store)

    assert sorted(await archived(store)) == sorted([A, B, D])  # before the fix: D deleted, never archived
    assert again.deleted == 2
