"""No POP3 QUIT after the cycle's checks read a message it did not keep (session 15).

A server set to delete what POP3 downloads removes, at QUIT, what it served by ``RETR`` and some also
by ``TOP``. Session 14 made the failure paths and a spool with no room hang up without QUIT; these
tests cover the reads that were still counted as kept on the success path:

- the listed-size check (:mod:`maild.fetch.pop3_listed`) reads another message under a known UIDL
  (``TOP n 0``) and frees the UIDL, but the new message is not stored (too large, set aside): its
  key's archived location named the old message, so the session counted it kept and sent QUIT;
- a server without UIDL: the digest inventory's ``TOP n 0`` header reads were not counted at all.

Each test runs real fetch cycles against :class:`ScriptedPOP3` with ``delete_on_download="at-quit"``
and, unless its docstring says otherwise, fails on the code before session 15 (the message is gone
from the server after the cycle).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import replace

import pytest

from maild.archive.store import Store
from maild.fetch.cycle_end import UNKEPT_WARNING
from maild.model import POP3Key
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, on_server, sample_message

BIG_BODY = [b"a body line that makes this message larger than max_message_size"] * 20
"""Body lines of a message well above :data:`MAX_SIZE`."""

MAX_SIZE = 600
"""The accounts' ``max_message_size`` in octets: above every small sample message, below a big one."""


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")



def test_the_sample_sizes_straddle_the_bound() -> None:
    """The small messages fit under MAX_SIZE and the big one does not (else the tests test nothing)."""
    assert len(sample_message(1)) <= MAX_SIZE < len(sample_message(2, BIG_BODY))


async def test_a_uidl_freed_for_a_too_large_message_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """retention "keep": a known UIDL re-used for a message above max_message_size. The check reads
    its header section (TOP n 0: another message), frees the UIDL, and the message is skipped as too
    large; the session ends without QUIT, so a server deleting what TOP served keeps it (before: the
    UIDL's archived location counted it kept, QUIT, and the server removed it unarchived). With
    max_message_size lifted the next cycle archives it."""
    first, second = sample_message(1), sample_message(2, BIG_BODY)
    with ScriptedPOP3([first]) as server:
        account = await prepare(
            store, pop3_account(server.host, server.port, "alice", "secret", max_message_size=MAX_SIZE)
        )
        await cycle(account, store, executor)  # archives "uidl-1"
        server.maildrop[0].raw = second  # deleted elsewhere, its UIDL re-used at another size
        server.delete_on_download = "at-quit"
        result = await cycle(account, store, executor)
        assert result.too_large == [POP3Key("uidl-1")]
        assert "TOP 1 0" in server.commands
        assert on_server(server) == [second]  # before: [] (removed at QUIT, never archived)
        assert server.commands[-1] != "QUIT"
        lifted = replace(account, max_message_size=None)
        again = await cycle(lifted, store, executor)
        assert again.new_messages == 1
    assert await archived(store) == [first, second]


async def test_a_uidl_freed_for_a_too_large_message_withholds_the_deletions(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """retention "delete": as above, with a new message archived in the same cycle: its deletion is
    withheld (no QUIT, the UNKEPT warning, deleted 0) instead of applied at a QUIT that would also
    remove the unarchived message the check read. (Held before session 15 too, by another road: the
    deletion step re-reads the locations, where the freed UIDL is no longer known.)"""
    first, second, third = sample_message(1), sample_message(2, BIG_BODY), sample_message(3)
    with ScriptedPOP3([first]) as server:
        account = await prepare(
            store, pop3_account(server.host, server.port, "alice", "secret", max_message_size=MAX_SIZE)
        )
        await cycle(account, store, executor)  # archives "uidl-1", keeps it on the server
        server.maildrop[0].raw = second
        server.add(third)
        server.delete_on_download = "at-quit"
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert on_server(server) == [second, third]  # before: [] (both removed at QUIT)
        assert server.commands[-1] != "QUIT"
    assert result.too_large == [POP3Key("uidl-1")]
    assert (result.new_messages, result.deleted) == (1, 0)
    assert UNKEPT_WARNING.format(count=1) in result.warnings
    assert await archived(store) == [first, third]


def distinct(n: int, body: list[bytes]) -> bytes:
    """A message a server without UIDL names by its header section (Received and Message-ID)."""
    head = b"Received: from mx by pop; Mon, 01 Jan 2024 12:00:0%d +0000\r\nMessage-ID: <m%d@x>\r\n" % (n, n)
    return head + b"Subject: %d\r\n\r\n" % n + b"".join(line + b"\r\n" for line in body)


@pytest.mark.parametrize("retention", ["keep", "delete"])
async def test_without_uidl_a_message_read_by_top_and_not_stored_ends_without_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, retention: str
) -> None:
    """A server without UIDL that deletes what TOP served at QUIT: the digest inventory names both
    messages by their header sections (TOP n 0); the second one's RETR is refused, so it is not
    stored. The session ends without QUIT (with "delete": the first one's deletion withheld), so the
    server keeps it (before: the header read was not counted, QUIT, removed unarchived). Once its
    RETR works, the next cycle archives it and ends with QUIT (everything served kept)."""
    first, second = distinct(1, [b"short"]), distinct(2, [b"refused"])
    refused = ScriptedMessage(second, retr_error="-ERR [SYS/TEMP] try later", top="serve")
    with ScriptedPOP3([first], uidl=False, delete_on_download="at-quit") as server:
        server.add(refused)
        account = await prepare(
            store, pop3_account(server.host, server.port, "alice", "secret", retention=retention)
        )
        result = await cycle(account, store, executor)
        assert result.identity == "content-digest" and len(result.failures) == 1
        assert on_server(server) == [first, second]  # before: [first] (second removed at QUIT)
        assert server.commands[-1] != "QUIT" and result.deleted == 0
        if retention == "delete":
            assert UNKEPT_WARNING.format(count=1) in result.warnings
        refused.retr_error = None
        again = await cycle(account, store, executor)
        assert again.new_messages == 1
        assert on_server(server) == []  # QUIT: everything served is archived now
        assert server.commands[-1] == "QUIT"
    assert sorted(await archived(store)) == sorted([first, second])


async def test_without_uidl_a_too_large_message_is_not_read(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A server without UIDL: a message above max_message_size is read neither by RETR nor by
    TOP n 0 (a server deleting what TOP served would remove it at QUIT, and counted as served it
    would withhold every QUIT); the small one is archived and deleted, the large one stays (before:
    TOP 2 0 was sent and this server removed it at QUIT)."""
    small, large = distinct(1, [b"short"]), distinct(2, BIG_BODY)
    with ScriptedPOP3([small, large], uidl=False, delete_on_download="at-quit") as server:
        account = await prepare(
            store,
            pop3_account(
                server.host, server.port, "alice", "secret", retention="delete", max_message_size=MAX_SIZE
            ),
        )
        result = await cycle(account, store, executor)
        assert on_server(server) == [large]  # before: [] (TOP-served, removed at QUIT)
        assert "TOP 2 0" not in server.commands and "RETR 2" not in server.commands
    assert [k.uidl for k in result.too_large if isinstance(k, POP3Key)] == [f"unidentified:{len(large)}:2"]
    assert (result.new_messages, result.deleted) == (1, 1)
    assert await archived(store) == [small]
