"""Session 14: known POP3 UIDLs listed at another size, in every retention mode (maild/fetch/pop3_listed.py).

Real fetch cycles (POP3 adapter, SQLite archive) against :class:`ScriptedPOP3`: a UIDL re-used for a
new message between two polls, TOP-less servers and LF-stored maildrops (LIST counts one octet less
per line than RETR sends). Each test states what it caught on ``main`` before session 14.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from maild import policy, pop3_uidls
from maild.archive import failures as failures_store
from maild.archive.store import Store
from maild.errors import ConnectError, NetworkTimeout, ProtocolError
from maild.model import POP3Key
from tests.support.fetching import (
    WITHOUT_TOP,
    archived,
    cycle,
    keeping,
    since,
    with_retention,
)
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message


def lf_size(raw: bytes) -> int:
    """What an LF-stored maildrop lists for ``raw``: one octet less per CRLF line."""
    return len(raw) - raw.count(b"\r\n")


@pytest.mark.parametrize("capa", [None, WITHOUT_TOP], ids=["top", "without-top"])
async def test_keep_a_uidl_reused_between_two_polls_archives_the_new_message(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, capa: tuple[str, ...] | None
) -> None:
    """retention "keep": a UIDL re-used for a new message between two polls (never seen gone) gets it archived.

    Steps (main: the new message was taken for the archived one and never archived): cycle 1
    archives "uidl-1"; another client deletes it and the server gives "uidl-1" to a new message of
    another size before the next poll; cycle 2 compares (TOP, or without TOP one RETR whose octets
    are archived at once, not downloaded twice), archives the new message under "uidl-1" and keeps
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

    assert retrs == ["RETR 1"]
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


async def test_an_lf_stored_maildrop_records_sizes_at_retrieval_and_deletes_without_top(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """LIST sizes one octet less per line (LF-stored) are recorded when the message is retrieved.

    Steps (main: on a server without TOP such messages, once archived by a "keep" cycle, were never
    deleted, warned every cycle): a TOP-less server lists LF sizes; a "keep" cycle archives two
    messages; a "delete" cycle finds the sizes it expects (nothing freed, no warning), compares each
    by one RETR as every deletion candidate not retrieved in the session (review of session 14) and
    deletes both.
    """
    raws = [sample_message(1), sample_message(2, [b"two", b"lines"])]
    messages = [ScriptedMessage(raw, list_size=lf_size(raw)) for raw in raws]
    with ScriptedPOP3(messages, capa=WITHOUT_TOP) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        known = await store.locations(account.name)
        assert sorted(loc.listed_size or 0 for loc in known.values()) == sorted(map(lf_size, raws))
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert (since(server, mark, "RETR"), since(server, mark, "TOP")) == (["RETR 1", "RETR 2"], [])
        assert server.maildrop == []

    assert (result.deleted, result.new_links, result.warnings) == (2, 0, [])
    assert await archived(store) == raws


@pytest.mark.parametrize("capa", [None, WITHOUT_TOP], ids=["top", "without-top"])
async def test_an_lf_stored_uidl_back_before_its_size_was_recorded_is_taken_back_and_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, capa: tuple[str, ...] | None
) -> None:
    """A UIDL that leaves and comes back listed at its LF size, never recorded, is shown to be the archived one.

    Steps (main: it stayed recorded gone, never deleted, warned every cycle; docs/guarantee.md of
    session 13): a "keep" cycle archives "uidl-1" (listed at its octets' size, so no server size is
    recorded); it leaves the listing for one cycle (recorded gone); it comes back listed one octet
    less per line; a "delete" cycle compares it (TOP, or RETR without TOP), takes it back and deletes
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


@pytest.mark.parametrize("limit", [2, 3, 4])
async def test_retr_checks_stop_at_their_limit_and_the_rest_wait_for_the_next_cycle(
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
) -> None:
    """At most MAX_POP3_RETR_CHECKS downloads per cycle (3 suspects, the limit at 3 - 1, 3, 3 + 1).

    Steps: a TOP-less server holds three archived messages, then lists them one octet off; a "delete"
    cycle downloads ``min(limit, 3)`` of them, deletes those and says the rest wait; the next cycle
    checks and deletes the rest.
    """
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_RETR_CHECKS", limit)
    raws = [sample_message(n) for n in (1, 2, 3)]
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws], capa=WITHOUT_TOP) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        for message in server.maildrop:
            message.list_size = len(message.raw) + 1
        mark = len(server.commands)
        first = await cycle(with_retention(account, "delete"), store, executor)
        retrs = since(server, mark, "RETR")
        second = await cycle(with_retention(account, "delete"), store, executor)
        assert server.maildrop == []

    done = min(limit, 3)
    assert (len(retrs), first.deleted, second.deleted) == (done, done, 3 - done)
    assert any("1 messages" in w and "later cycle" in w for w in first.warnings) == (done == 2)
    assert second.warnings == []
    assert await archived(store) == raws


@pytest.mark.parametrize(("octets", "downloads"), [(None, 1), (-1, 1), (0, 2), (1, 2)])
async def test_retr_checks_stop_at_their_octet_bound_but_always_make_one(
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    octets: int | None,
    downloads: int,
) -> None:
    """MAX_POP3_RETR_CHECK_OCTETS bounds a cycle's downloads by LIST size (at two sizes -1, +0, +1).

    With the bound at 0 (None here) the first download is still made, so a message larger than the
    bound is not left waiting for ever.
    """
    raws = [sample_message(1), sample_message(2), sample_message(3)]
    listed = [len(raw) + 1 for raw in raws]
    bound = 0 if octets is None else listed[0] + listed[1] + octets
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_RETR_CHECK_OCTETS", bound)
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws], capa=WITHOUT_TOP) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        for message, size in zip(server.maildrop, listed, strict=True):
            message.list_size = size
        mark = len(server.commands)
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert len(since(server, mark, "RETR")) == downloads

    assert result.deleted == downloads


async def test_a_retr_refused_for_the_check_leaves_the_message_with_a_warning(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """RETR -ERR to the content check: not deleted, not taken for another message, a warning saying so."""
    raw = sample_message(1)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message], capa=WITHOUT_TOP) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        message.list_size, message.retr_error = len(raw) + 1, "-ERR [SYS/TEMP] later"
        result = await cycle(with_retention(account, "delete"), store, executor)
        assert [m.raw for m in server.maildrop] == [raw]

    assert (result.new_links, result.deleted) == (0, 0)
    assert any("neither TOP nor RETR could compare" in w for w in result.warnings)


async def test_a_retr_check_breaking_the_session_is_set_aside_after_three_and_new_mail_still_arrives(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A message whose check download breaks the session every time stops the account's deletions only 3 times.

    Steps: a TOP-less server holds an archived message, then lists it one octet off and drops the
    connection in its RETR; a new message arrives; each of three "delete" cycles archives what is new
    first, then fails in the check (nothing deleted) and counts one failure for the message; the
    fourth skips it (set aside), deletes what it may and warns; the message stays on the server. Then
    the server serves it whole and a retry is asked for (`maild fetch-now --retry-failed`): the fifth
    cycle compares it, finds the archived message, deletes it and clears its failure record.
    """
    raw, new = sample_message(1), sample_message(2)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message], capa=WITHOUT_TOP) as server:
        account = with_retention(await keeping(server, store), "delete")
        await cycle(with_retention(account, "keep"), store, executor)
        message.list_size, message.retr_drop_after_octets = len(raw) + 1, 40
        server.add(new)
        for _ in range(policy.SET_ASIDE_AFTER_FAILURES):
            with pytest.raises((ConnectError, NetworkTimeout, ProtocolError)):
                await cycle(account, store, executor)
        assert await archived(store) == [raw, new]
        records = await failures_store.failure_records(store, account.name)
        assert records[POP3Key("uidl-1")].failures == policy.SET_ASIDE_AFTER_FAILURES
        fourth = await cycle(account, store, executor)
        assert [m.raw for m in server.maildrop] == [raw]
        message.retr_drop_after_octets = None
        await failures_store.request_retry(store, account.name)
        fifth = await cycle(account, store, executor)
        assert server.maildrop == []

    assert fourth.deleted == 1
    assert any("neither TOP nor RETR could compare" in w for w in fourth.warnings)
    assert (fifth.deleted, fifth.new_links, fifth.warnings) == (1, 0, [])
    assert await failures_store.failure_records(store, account.name) == {}


async def test_a_top_breaking_the_session_costs_the_cycle_its_deletions_not_its_new_mail(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The check runs after the cycle's retrieval committed: a server dropping the connection on TOP
    of a message listed at another size fails the cycle (nothing deleted) but the new mail is archived.

    Steps: retention "delete"; a "keep" cycle archives "uidl-1"; the server then lists it one octet
    off and drops the connection on its TOP, and a new message arrives; the "delete" cycle fails, the
    new message is archived (not deleted: no QUIT), "uidl-1" stays on the server. Before (the check
    ran before the retrieval) every such cycle failed without archiving anything new.
    """
    raw, new = sample_message(1), sample_message(2)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message]) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        message.list_size, message.top = len(raw) + 1, "drop"
        server.add(new)
        with pytest.raises((ConnectError, NetworkTimeout, ProtocolError)):
            await cycle(with_retention(account, "delete"), store, executor)
        assert [m.raw for m in server.maildrop] == [raw, new]

    assert await archived(store) == [raw, new]


async def test_a_message_archived_by_the_retr_check_on_an_lf_maildrop_is_not_downloaded_again(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The RETR check's other message gets its LF LIST size recorded with it: the next poll sends no RETR.

    Steps: a TOP-less server listing LF sizes; a "keep" cycle archives "uidl-1"; the server gives
    "uidl-1" to a new message; cycle 2 downloads it once (RETR check), finds another message and
    archives it; cycle 3 sends neither TOP nor RETR. Without the recorded size it downloaded the new
    message again to compare it.
    """
    first, second = sample_message(1), sample_message(2, [b"a longer body than the first one had"])
    message = ScriptedMessage(first, list_size=lf_size(first))
    with ScriptedPOP3([message], capa=WITHOUT_TOP) as server:
        account = await keeping(server, store)
        await cycle(account, store, executor)
        message.raw, message.list_size = second, lf_size(second)
        mark = len(server.commands)
        result = await cycle(account, store, executor)
        assert since(server, mark, "RETR") == ["RETR 1"]
        mark = len(server.commands)
        third = await cycle(account, store, executor)
        assert since(server, mark, "RETR") == since(server, mark, "TOP") == []

    assert (result.new_links, third.new_links, third.warnings) == (1, 0, [])
    assert await archived(store) == [first, second]
