"""No POP3 QUIT after reading messages the fetch could not keep (session 14).

A server set to delete what POP3 downloads (Gmail's "delete Gmail's copy", some hosters) removes the
messages it served at QUIT, ``RSET`` before it or not. Before session 14 every failed fetch cycle
ended its session with RSET then QUIT (``Maildrop.abort``), so a message read by RETR whose commit
failed (the disk full, a StoreError, SIGTERM while the batch was being committed) was removed from the
server without being archived: lost. Now a failed cycle ends with
:meth:`~maild.protocols.base.Maildrop.abandon`: a session that served a message not stored is hung up
without QUIT (RFC 1939 section 6: no UPDATE, nothing removed); RSET, QUIT is kept where nothing
unstored was served. The header fetch of failed messages (TOP n 0 in a session of its own) ends the
same way.

Every test runs real fetch cycles (the POP3 adapter, a SQLite archive) against the scripted server with
``delete_on_download="at-quit"``; each cycle test fails on main (the messages are gone after the
failed cycle).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.config.maildrop import make_maildrop
from maild.errors import StoreError
from maild.fetch.cycle_end import UNKEPT_WARNING
from maild.model import POP3Key
from maild.spool import Spool
from tests.faults.test_failed_headers import REFUSED, invoice
from tests.integration.test_archive_full_bookkeeping import assert_no_room, disk_full_at
from tests.support.fetching import archived, cycle, pop3_account, prepare
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, on_server, sample_message

BATCH_COMMIT = "INSERT OR IGNORE INTO messages"
"""The first write of a batch's commit (``maild.archive.batches``)."""


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")


def messages(count: int) -> list[bytes]:
    """``count`` distinct small messages."""
    return [sample_message(n) for n in range(1, count + 1)]


async def account_on(server: ScriptedPOP3, store: Store, retention: str = "keep") -> AccountConfig:
    """A POP3 account on ``server``, recorded in the archive."""
    account = pop3_account(server.host, server.port, "alice", "secret", retention=retention)
    return await prepare(store, account)



@pytest.mark.parametrize("retention", ["keep", "delete"])
async def test_disk_full_at_the_commit_leaves_every_served_message_on_the_server(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, retention: str
) -> None:
    """Three messages read by RETR, the disk full at their batch's commit: the cycle ends as "no
    room" (three local failures) without QUIT, so the server keeps all three (on main: RSET, QUIT,
    and the server removed the three it had served); room again: the next cycle archives them."""
    sent = messages(3)
    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = await account_on(server, store, retention)
        with disk_full_at(store, BATCH_COMMIT) as refused:
            full = await cycle(account, store, executor)
        assert refused
        assert_no_room(full, "database or disk is full")
        assert on_server(server) == sent  # main: [] (removed at QUIT)
        assert "RETR 1" in server.commands and "QUIT" not in server.commands
        again = await cycle(account, store, executor)
    assert (again.new_messages, again.failures) == (3, [])
    assert await archived(store) == sent


async def test_a_store_error_at_the_commit_leaves_the_served_messages_on_the_server(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive fails the batch's commit (StoreError, not a full disk): the cycle fails with it,
    without QUIT; the messages stay on the server and the next cycle archives them."""
    sent = messages(2)
    real = store.insert_batch

    async def failing(*args: Any) -> Any:
        raise StoreError("archive: writing: disk I/O error")

    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = await account_on(server, store)
        monkeypatch.setattr(store, "insert_batch", failing)
        with pytest.raises(StoreError, match="disk I/O error"):
            await cycle(account, store, executor)
        assert on_server(server) == sent  # main: [] (removed at QUIT)
        assert "RETR 2" in server.commands and "QUIT" not in server.commands
        monkeypatch.setattr(store, "insert_batch", real)
        again = await cycle(account, store, executor)
    assert again.new_messages == 2
    assert await archived(store) == sent


async def test_cancelled_while_a_batch_commits_leaves_the_unstored_messages_on_the_server(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM's path (the daemon and ``maild fetch`` cancel the cycle): batches of two, the first
    commit returns, the second hangs; the cycle is cancelled there, with the session in step (on
    main: RSET, QUIT, and all five messages, three of them not stored, were removed). Now no QUIT:
    the two stored messages and the three others are all still on the server, and the next cycle
    archives the three."""
    sent = messages(5)
    real = store.insert_batch
    calls = 0
    stuck = asyncio.Event()

    async def second_hangs(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await real(*args)
        stuck.set()
        await asyncio.Event().wait()  # until cancelled
        raise AssertionError("not reached")

    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = await account_on(server, store)
        monkeypatch.setattr(store, "insert_batch", second_hangs)
        task = asyncio.create_task(cycle(account, store, executor, batch_messages=2))
        await asyncio.wait_for(stuck.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert on_server(server) == sent  # main: [] (all five removed at QUIT)
        assert "RETR 4" in server.commands and "QUIT" not in server.commands
        assert await archived(store) == sent[:2]
        monkeypatch.setattr(store, "insert_batch", real)
        again = await cycle(account, store, executor)
    assert again.new_messages == 3
    assert await archived(store) == sent


async def test_a_failure_before_any_message_was_served_still_ends_with_rset_and_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where nothing unstored was served, the polite end stays: the archive fails at the presence
    write (after the listing, before any RETR): the session ends with RSET, QUIT; nothing removed."""
    sent = messages(2)

    async def failing(*args: Any) -> Any:
        raise StoreError("archive: writing: disk I/O error")

    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = await account_on(server, store)
        monkeypatch.setattr(store, "update_presence", failing)
        with pytest.raises(StoreError):
            await cycle(account, store, executor)
        commands = server.commands
        assert on_server(server) == sent
    assert "UIDL" in commands and not [c for c in commands if c.startswith(("RETR", "TOP"))]
    assert commands[-2:] == ["RSET", "QUIT"]


async def test_the_header_fetch_of_a_refused_message_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """RETR refused, TOP served: the Subject is read by ``TOP n 0`` in a session of its own, which
    now ends without QUIT, so the refused message stays on the server (on main its QUIT made the
    server remove it) and a later cycle can still fetch it."""
    refused = ScriptedMessage(invoice(), retr_error=REFUSED, top="serve")
    with ScriptedPOP3([sample_message(1), refused], delete_on_download="at-quit") as server:
        account = await account_on(server, store)
        result = await cycle(account, store, executor)
        commands = server.commands
        assert server.maildrop == [refused]
    assert [f.key for f in result.failures] == [POP3Key("uidl-2")]
    assert commands[-1] == "TOP 1 0"  # the header session: no QUIT after it


@pytest.mark.parametrize(
    ("retrieved", "kept", "polite"),
    [
        ((), (), True),  # nothing served
        ((1, 2), (1, 2), True),  # everything served is stored
        ((1, 2), (1, 2, 3), True),  # more stored than served
        ((1, 2), (1,), False),  # one served message not stored
        ((1, 2), (), False),  # none stored
        ((1,), (2,), False),  # another one stored
    ],
)
async def test_abandon_hangs_up_exactly_when_a_served_message_is_not_kept(
    executor: concurrent.futures.ThreadPoolExecutor,
    retrieved: tuple[int, ...],
    kept: tuple[int, ...],
    polite: bool,
) -> None:
    """:meth:`POP3Maildrop.abandon` at its threshold: RSET, QUIT when every message served is in
    ``kept`` (the at-quit server then removes only those), no further command when one is not."""
    sent = messages(3)
    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = pop3_account(server.host, server.port, "alice", "secret")
        maildrop = make_maildrop(account, executor)
        await maildrop.open()
        await maildrop.inventory()
        keys = [POP3Key(f"uidl-{n}") for n in retrieved]
        got = [item async for item in maildrop.retrieve(keys)]
        assert len(got) == len(keys)
        await maildrop.abandon({POP3Key(f"uidl-{n}") for n in kept})
        commands = server.commands
        left = on_server(server)
    if polite:
        assert commands[-2:] == ["RSET", "QUIT"]
        assert left == [raw for n, raw in enumerate(sent, start=1) if n not in retrieved]
    else:
        assert "RSET" not in commands and "QUIT" not in commands
        assert left == sent


@pytest.mark.parametrize(("kept", "polite"), [((), False), ((2,), True), ((1,), False)])
async def test_abandon_counts_a_message_read_by_top_as_served(
    executor: concurrent.futures.ThreadPoolExecutor, kept: tuple[int, ...], polite: bool
) -> None:
    """A message read whole by TOP (:meth:`POP3Maildrop.peek`, the listed-size and deletion
    checks) is served as much as one read by RETR: the at-quit server removes it at QUIT too."""
    sent = messages(2)
    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = pop3_account(server.host, server.port, "alice", "secret")
        maildrop = make_maildrop(account, executor)
        await maildrop.open()
        await maildrop.inventory()
        got = [item async for item in maildrop.peek([POP3Key("uidl-2")])]
        assert len(got) == 1 and server.commands[-1].startswith("TOP 2 ")
        await maildrop.abandon({POP3Key(f"uidl-{n}") for n in kept})
        commands = server.commands
        left = on_server(server)
    assert (commands[-1] == "QUIT") is polite
    assert left == (sent[:1] if polite else sent)


async def test_a_message_the_spool_could_not_take_withholds_the_quit_and_the_deletions(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    """Retention ``delete``: two small messages stored, a large one read by RETR and dropped because
    the spool had no room (a ``local`` failure; the cycle itself succeeds). QUIT would apply the two
    DELEs and let the at-quit server remove the large one (on main: gone, never archived); so the
    session ends without QUIT, the deletions are withheld with a warning, all three stay; room
    again: the next cycle archives the large one and deletes all three."""
    small, large = messages(2), sample_message(9, [b"x" * 200] * 40)
    sent = [*small, large]
    real = store.spool
    with ScriptedPOP3(sent, delete_on_download="at-quit") as server:
        account = await account_on(server, store, "delete")
        store.spool = Spool(tmp_path, threshold_octets=len(large) // 2, max_octets=len(large) // 2)
        first = await cycle(account, store, executor)
        store.spool = real
        assert on_server(server) == sent  # main: the large message gone, never archived
        assert [(f.key, f.kind) for f in first.failures] == [(POP3Key("uidl-3"), "local")]
        assert (first.new_messages, first.deleted) == (2, 0)
        assert [w for w in first.warnings if w == UNKEPT_WARNING.format(count=2)]
        assert "DELE 1" in server.commands and "QUIT" not in server.commands
        again = await cycle(account, store, executor)
        assert on_server(server) == []
    assert (again.new_messages, again.deleted, again.failures) == (1, 3, [])
    assert sorted(await archived(store)) == sorted(sent)


async def test_a_message_whose_retr_was_refused_is_not_served(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """``-ERR`` to RETR downloads nothing: a session that read only such a message still ends with
    RSET, QUIT (else one message the server refuses would withhold every cycle's deletions)."""
    refused = ScriptedMessage(invoice(), retr_error=REFUSED)
    with ScriptedPOP3([refused, sample_message(2)], delete_on_download="at-quit") as server:
        account = pop3_account(server.host, server.port, "alice", "secret")
        maildrop = make_maildrop(account, executor)
        await maildrop.open()
        await maildrop.inventory()
        got = [item async for item in maildrop.retrieve([POP3Key("uidl-1")])]
        assert [type(item).__name__ for item in got] == ["RetrievalFailure"]
        assert not maildrop.served_unkept(())
        await maildrop.abandon(())
        commands = server.commands
    assert commands[-2:] == ["RSET", "QUIT"]


@pytest.mark.parametrize("same_header", [True, False])
async def test_the_digest_inventory_counts_what_it_read(
    executor: concurrent.futures.ThreadPoolExecutor, same_header: bool
) -> None:
    """A server without UIDL: the inventory names messages whose header sections are alike by their
    whole content (RETR), the others by their header section (``TOP n 0``): both reads count as
    served (since session 15; before, the header reads did not and RSET, QUIT let this server
    remove them), so abandoning the session before they are stored sends nothing more."""
    head = b"From: a@example.com\r\nSubject: same\r\n\r\n"
    distinct = [  # a Message-ID and a Received field: named by the header section
        b"Received: from mx by pop; Mon, 01 Jan 2024 12:00:0%d +0000\r\nMessage-ID: <m%d@x>\r\n\r\nb\r\n"
        % (n, n)
        for n in (1, 2)
    ]
    sent = [head + b"one\r\n", head + b"two\r\n"] if same_header else distinct
    with ScriptedPOP3(sent, uidl=False, delete_on_download="at-quit") as server:
        account = pop3_account(server.host, server.port, "alice", "secret")
        maildrop = make_maildrop(account, executor)
        await maildrop.open()
        entries = await maildrop.inventory()
        assert len(entries) == 2 and maildrop.identity == "content-digest"
        assert any(c.startswith("RETR") for c in server.commands) is same_header
        await maildrop.abandon(())
        commands = server.commands
        left = on_server(server)
    assert left == sent  # TOP n 0 counts as a download on this server (before 15: [] by header)
    assert commands[-1] != "QUIT"
