"""Session 14: known POP3 UIDLs listed at another size, in every retention mode (maild/fetch/pop3_listed.py).

Real fetch cycles (POP3 adapter, SQLite archive) against :class:`ScriptedPOP3`: a UIDL re-used for a
new message between two polls, TOP-less servers and LF-stored maildrops (LIST counts one octet less
per line than RETR sends). Each test states what it caught on ``main`` before session 14.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.model import POP3Key
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message

WITHOUT_TOP = ("UIDL", "USER")
"""CAPA of a server that does not offer TOP (RFC 1939 section 7: TOP is optional)."""


def lf_size(raw: bytes) -> int:
    """What an LF-stored maildrop lists for ``raw``: one octet less per CRLF line."""
    return len(raw) - raw.count(b"\r\n")


async def keeping(server: ScriptedPOP3, store: Store) -> AccountConfig:
    account = pop3_account(server.host, server.port, "alice", "secret")
    await prepare(store, account)
    return account


def since(server: ScriptedPOP3, mark: int, verb: str) -> list[str]:
    """The commands starting with ``verb`` sent after the first ``mark`` ones."""
    return [c for c in server.commands[mark:] if c.startswith(verb)]


@pytest.mark.parametrize("capa", [None], ids=["top"])
async def test_keep_a_uidl_reused_between_two_polls_archives_the_new_message(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, capa: tuple[str, ...] | None
) -> None:
    """retention "keep": a UIDL re-used for a new message between two polls (never seen gone) gets it archived.

    Steps (main: the new message was taken for the archived one and never archived): cycle 1
    archives "uidl-1"; another client deletes it and the server gives "uidl-1" to a new message of
    another size before the next poll; cycle 2 compares (TOP), archives the new message under "uidl-1" and keeps
    the first archived, its old location recorded gone; cycle 3 sends neither TOP nor RETR.
    """
    first, second = sample_message(1), sample_message(2, [b"a longer body than the first one had"])
    with ScriptedPOP3([first], capa=capa) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        server.maildrop[0].raw = second  # deleted elsewhere, its UIDL re-used
        mark = len(server.commands)
        result = await cycle(account, store, executor)
        retrs = since(server, mark, "RETR")
        mark = len(server.commands)
        third = await cycle(account, store, executor)
        assert since(server, mark, "TOP") == since(server, mark, "RETR") == []

    assert retrs == ["RETR 1"]  # the new message, retrieved once
    assert (result.new_links, result.new_messages, result.warnings) == (1, 1, [])
    assert (third.new_links, third.warnings) == (0, [])
    assert await archived(store) == [first, second]
    known = await store.locations(account.name)
    current = known[POP3Key("uidl-1")]
    [freed] = [key for key in known if key != POP3Key("uidl-1")]
    assert (current.gone_at, known[freed].gone_at is not None) == (None, True)
    assert (await store.raw_messages([current.message]))[current.message] == second


async def test_keep_a_uidl_reused_at_the_same_size_is_not_caught(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The documented limit: a re-use at the very size of the archived message passes without a check.

    Catching it would need every known message's header section read in every poll. Recorded here so
    that a change of this behaviour is a decision (docs/guarantee.md, docs/retention.md).
    """
    first, second = sample_message(1), sample_message(2)
    assert len(first) == len(second)
    with ScriptedPOP3([first]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        server.maildrop[0].raw = second
        mark = len(server.commands)
        result = await cycle(account, store, executor)
        assert since(server, mark, "TOP") == []

    assert result.new_links == 0
    assert await archived(store) == [first]


@pytest.mark.parametrize("capa", [None], ids=["top"])
async def test_an_lf_stored_uidl_back_before_its_size_was_recorded_is_taken_back_and_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, capa: tuple[str, ...] | None
) -> None:
    """A UIDL that leaves and comes back listed at its LF size, never recorded, is shown to be the archived one.

    Steps (main: it stayed recorded gone, never deleted, warned every cycle; docs/guarantee.md of
    session 13): a "keep" cycle archives "uidl-1" (listed at its octets' size, so no server size is
    recorded); it leaves the listing for one cycle (recorded gone); it comes back listed one octet
    less per line; a "delete" cycle compares it (TOP), takes it back and deletes
    it; nothing new is archived.
    """
    raw = sample_message(1)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message], capa=capa) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        with server._changed:
            server._maildrop.remove(message)
        await cycle(account, store, executor)
        message.list_size = lf_size(raw)
        server.add(message)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert server.maildrop == []

    assert (result.new_links, result.deleted, result.warnings) == (0, 1, [])
    assert await archived(store) == [raw]
    assert (await store.locations(account.name))[POP3Key("uidl-1")].deleted_at is not None
