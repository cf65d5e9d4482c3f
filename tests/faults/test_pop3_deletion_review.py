"""Review of session 15's POP3 deletion path: what a server deleting downloaded mail at QUIT keeps.

The listed-size check (:mod:`maild.fetch.pop3_listed`) reads messages listed under a UIDL maild
knows; the session counts every known UIDL as kept (its archived location), so each read the check
makes and does not keep must reach :func:`maild.fetch.pop3_listed.read_unkept`, or the cycle ends
with QUIT and a server set to delete what POP3 downloads removes a message maild never archived.

Each test runs real fetch cycles against :class:`ScriptedPOP3` with ``delete_on_download="at-quit"``
and fails on ``main`` at b007733 (the message is gone from the server after the cycle).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.errors import ProtocolError
from maild.fetch.cycle_end import UNKEPT_WARNING
from maild.model import POP3Key
from maild.spool import Spool
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, on_server, sample_message

LARGE_BODY = [b"x" * 200] * 40
"""Body lines of a message the tests' small spool cannot take (about 8 kB)."""


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")



def sessions(commands: list[str]) -> list[list[str]]:
    """The commands of each session, in order (each begins with CAPA, then USER)."""
    starts = [i - 1 for i, command in enumerate(commands) if command.startswith("USER ")]
    return [commands[a:b] for a, b in zip(starts, [*starts[1:], len(commands)], strict=True)]


@pytest.mark.parametrize("retention", ["keep", "delete"])
async def test_a_check_retr_the_spool_could_not_take_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, tmp_path: Path, retention: str
) -> None:
    """A known UIDL re-used at another size for a large message whose TOP the server refuses: the
    check reads it whole (RETR) to compare, and the spool has no room for it (a ``local``
    failure, read and dropped). It was served and not kept, so the session ends without QUIT (with
    "delete": the small message's deletion withheld); before, check_contents counted only the
    messages it compared as read, the UIDL's archived location counted this one kept, QUIT, and
    the server removed it unarchived. With room again the next cycle archives it."""
    first, large, third = sample_message(1), sample_message(2, LARGE_BODY), sample_message(3)
    real = store.spool
    with ScriptedPOP3([first]) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)  # archives "uidl-1", keeps it on the server
        account = with_retention(account, retention)
        server.maildrop[0].raw = large  # deleted elsewhere, its UIDL re-used at another size
        server.maildrop[0].top = "-ERR TOP not now"
        server.add(third)
        server.delete_on_download = "at-quit"
        store.spool = Spool(tmp_path, threshold_octets=len(large) // 2, max_octets=len(large) // 2)
        try:
            result = await cycle(account, store, executor)
        finally:
            store.spool = real
        assert "TOP 1 0" in server.commands and "RETR 1" in server.commands
        assert on_server(server) == [large, third]  # before: [] (large removed at QUIT, never archived)
        assert server.commands[-1] != "QUIT"
        assert (result.new_messages, result.deleted) == (1, 0)
        if retention == "delete":
            assert UNKEPT_WARNING.format(count=1) in result.warnings
        again = await cycle(account, store, executor)
        assert again.new_messages == 1 and again.failures == []
    assert sorted(await archived(store)) == sorted([first, third, large])
    assert POP3Key("uidl-1") not in result.too_large


async def test_a_relisted_uidl_the_spool_could_not_take_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    """retention "delete": maild deleted "uidl-1" (+OK to QUIT) and the server lists it again for a
    large new message. Its UIDL is freed without TOP (relisted) and the cycle retrieves it; the
    spool has no room (read whole by RETR, dropped: a ``local`` failure). It was served and not
    kept, so the session ends without QUIT; before, its key was still in the cycle's snapshot of
    known identities (a deleted location), counted kept, QUIT, and the server removed it
    unarchived. With room again the next cycle archives and deletes it."""
    first, large = sample_message(1), sample_message(2, LARGE_BODY)
    real = store.spool
    with ScriptedPOP3([first]) as server:
        account = await prepare(
            store, pop3_account(server.host, server.port, "alice", "secret", retention="delete")
        )
        done = await cycle(account, store, executor)  # archives "uidl-1" and deletes it
        assert done.deleted == 1 and on_server(server) == []
        server.add(ScriptedMessage(large, uidl="uidl-1"))  # the server re-uses the UIDL
        server.delete_on_download = "at-quit"
        store.spool = Spool(tmp_path, threshold_octets=len(large) // 2, max_octets=len(large) // 2)
        try:
            result = await cycle(account, store, executor)
        finally:
            store.spool = real
        later = server.commands[server.commands.index("QUIT") + 1 :]  # the first cycle's QUIT
        assert "RETR 1" in later and "QUIT" not in later  # (then the failed message's TOP 1 0)
        assert [(f.key, f.kind) for f in result.failures] == [(POP3Key("uidl-1"), "local")]
        assert on_server(server) == [large]  # before: [] (removed at QUIT, never archived)
        again = await cycle(account, store, executor)
        assert (again.new_messages, again.deleted) == (1, 1)
        assert on_server(server) == []
    assert sorted(await archived(store)) == sorted([first, large])


async def test_a_failed_cycle_after_a_refused_retr_of_a_topped_message_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A server deleting what TOP served at QUIT: a known UIDL re-used at another size; the check
    reads its header section (TOP n 0: another message), frees the UIDL, and its RETR is refused.
    The cycle then fails at a DELE the server refuses (the session still in step). The failure path
    must hang up: before, the refused RETR took the key out of the served ledger although its TOP
    had served it, so abandon() sent RSET, QUIT and the server removed it, never archived."""
    first, other, third = sample_message(1), sample_message(2, [b"another body"] * 3), sample_message(3)
    with ScriptedPOP3([first]) as server:
        account = await prepare(store, pop3_account(server.host, server.port, "alice", "secret"))
        await cycle(account, store, executor)  # archives "uidl-1", keeps it on the server
        reused = server.maildrop[0]
        reused.raw, reused.top, reused.retr_error = other, "serve", "-ERR [SYS/TEMP] try later"
        server.add(ScriptedMessage(third, dele_error="-ERR cannot delete now"))
        server.delete_on_download = "at-quit"
        with pytest.raises(ProtocolError):
            await cycle(with_retention(account, "delete"), store, executor)
        session = sessions(server.commands)[1]  # the failed cycle's
        assert session[-3:] == ["TOP 1 0", "RETR 1", "DELE 2"]  # before: then RSET, QUIT
        assert on_server(server) == [other, third]  # before: [] (other removed at QUIT, never archived)
        reused.retr_error = None
        server.maildrop[1].dele_error = None
        again = await cycle(with_retention(account, "delete"), store, executor)
        assert again.new_messages == 1
    assert sorted(await archived(store)) == sorted([first, other, third])
