"""Retention ``"delete"`` end to end against the scripted POP3 server: refusals and awkward octets.

Real fetch cycles (POP3 adapter, SQLite archive) against :class:`ScriptedPOP3`, for what Dovecot will
not do on request: ``-ERR`` to one RETR, and replies cut into tiny TCP segments.
"""

from __future__ import annotations

import concurrent.futures
import poplib

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import NetworkTimeout
from maild.model import POP3Key, RetrievalFailure
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message


async def deleting_account(server: ScriptedPOP3, store: Store) -> AccountConfig:
    account = pop3_account(server.host, server.port, "alice", "secret", retention="delete")
    await prepare(store, account)
    return account


async def test_err_on_one_retr_keeps_that_message_and_retrieves_it_next_cycle(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """-ERR [SYS/TEMP] to one RETR: the others are archived and deleted, that one is kept, and the next cycle gets it.

    Steps: four messages, the second answers RETR with -ERR [SYS/TEMP]; cycle 1 archives and deletes
    1, 3 and 4, reports the failure and never sends DELE for message 2; the server stops refusing;
    cycle 2 archives and deletes it (now message 1); the archive holds all four once, byte-exact.
    """
    raws = [sample_message(n) for n in (1, 2, 3, 4)]
    throttled = ScriptedMessage(raws[1], retr_error="-ERR [SYS/TEMP] too many downloads, try later")
    with ScriptedPOP3([raws[0], throttled, raws[2], raws[3]]) as server:
        account = await deleting_account(server, store)
        first = await cycle(account, store, executor)
        assert server.maildrop == [throttled]
        first_commands = server.commands
        throttled.retr_error = None
        second = await cycle(account, store, executor)
        assert server.maildrop == []

    assert first.failures == [
        RetrievalFailure(POP3Key("uidl-2"), "-ERR [SYS/TEMP] too many downloads, try later")
    ]
    assert (first.new_links, first.deleted) == (3, 3)
    assert "DELE 2" not in first_commands
    assert (second.new_links, second.deleted, second.failures) == (1, 1, [])
    assert sorted(await archived(store)) == sorted(raws)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_awkward_octets_reach_the_archive_byte_exact(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, pipelining: bool
) -> None:
    """Long lines, dot-stuffed lines and terminators split across TCP segments are archived octet for octet.

    Steps: a message with a 5,000-octet line (poplib's limit is 2,048), one whose lines start with
    dots (stuffed on the wire), one sent in 7-octet writes, one whose last 5 octets (the terminator)
    arrive one segment each, and one whose body is a lone "." line; a "delete" cycle archives all of
    them exactly as built and deletes them.
    """
    raws = [
        sample_message(1, long_line_octets=5000),
        sample_message(2, [b".", b"..", b".hidden", b"..two", b"end."]),
        sample_message(3, [b"x" * 300, b".leading", b"tail"]),
        sample_message(4, [b"short", b"."]),
        sample_message(5, [b"."]),
    ]
    messages = [
        ScriptedMessage(raws[0]),
        ScriptedMessage(raws[1]),
        ScriptedMessage(raws[2], retr_write_octets=7),
        ScriptedMessage(raws[3], retr_tail_octets=5),
        ScriptedMessage(raws[4], retr_tail_octets=3),
    ]
    with ScriptedPOP3(messages, pipelining=pipelining, write_pause_s=0.001) as server:
        account = await deleting_account(server, store)
        result = await cycle(account, store, executor)
        assert server.maildrop == []

    assert (result.new_links, result.deleted, result.failures) == (5, 5, [])
    assert await archived(store) == raws


async def test_a_uidl_reused_after_maild_deleted_it_is_archived_then_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A new message under a UIDL maild already deleted is another message: archived as one, then deleted.

    Steps (session 13: it stayed on the server, never archived, warned every cycle): retention
    "delete"; cycle 1 archives and deletes "uidl-1"; the server then re-uses "uidl-1" for another
    message of the same size; cycle 2 frees the UIDL without a TOP (after +OK to QUIT the old message
    is gone, RFC 1939 section 6), archives the new message and deletes it.
    """
    with ScriptedPOP3([sample_message(1)]) as server:
        account = await deleting_account(server, store)
        await cycle(account, store, executor)
        server.add(ScriptedMessage(sample_message(2), uidl="uidl-1"))
        mark = len(server.commands)
        second = await cycle(account, store, executor)
        assert not any(c.startswith("TOP") for c in server.commands[mark:])
        assert server.maildrop == []

    assert (second.on_server, second.new_links, second.deleted, second.warnings) == (1, 1, 1, [])
    assert await archived(store) == [sample_message(1), sample_message(2)]


async def test_uidl_reused_after_an_unconfirmed_deletion_is_archived_before_it_is_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A UIDL that left without a confirmed deletion and names another message now is archived, then deleted.

    Steps (QA of session 13: before, the new message was deleted on the server unarchived; since then
    until session 14 it was left on the server, never archived): retention "delete"; cycle 1 archives
    "uidl-1" and sends DELE; the server deletes it at QUIT but its +OK is lost (recorded as not
    confirmed); cycle 2 records it gone; the server re-uses "uidl-1" for another message (another
    size); cycle 3 reads its header (TOP), finds another message, archives it under "uidl-1" and
    deletes it; the first message stays archived, its old location recorded gone under a freed name.
    """
    other = sample_message(2, [b"another body"])
    with ScriptedPOP3([sample_message(1)], quit_reply_lost=True) as server:
        account = await deleting_account(server, store)
        first = await cycle(account, store, executor)
        assert server.maildrop == []
        server.quit_reply_lost = False
        await cycle(account, store, executor)
        server.add(ScriptedMessage(other, uidl="uidl-1"))
        third = await cycle(account, store, executor)
        assert "TOP 1 0" in server.commands
        assert server.maildrop == []

    assert first.deleted == 0
    assert (third.on_server, third.new_links, third.deleted, third.warnings) == (1, 1, 1, [])
    assert await archived(store) == [sample_message(1), other]
    known = await store.locations(account.name)
    assert known[POP3Key("uidl-1")].deleted_at is not None
    [freed] = [key for key in known if isinstance(key, POP3Key) and key.uidl.startswith("uidl-1 re-used ")]
    assert known[freed].gone_at is not None
    assert known[freed].message != known[POP3Key("uidl-1")].message


async def test_a_message_back_with_its_size_after_it_left_is_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A UIDL that left the server and comes back with the archived size is the same message: deleted.

    Steps: retention "keep"; cycle 1 archives "uidl-1"; the server hides it for one cycle (recorded
    gone) and lists it again; a "delete" cycle takes it back (gone_at cleared), retrieves nothing and
    deletes it.
    """
    message = ScriptedMessage(sample_message(1))
    with ScriptedPOP3([message]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        with server._changed:
            server._maildrop.remove(message)
        await cycle(keeping, store, executor)
        assert (await store.locations(keeping.name))[POP3Key("uidl-1")].gone_at is not None
        server.add(message)
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []

    assert (result.on_server, result.new_links, result.deleted, result.warnings) == (1, 0, 1, [])
    assert (await store.locations(keeping.name))[POP3Key("uidl-1")].deleted_at is not None


async def test_an_account_pointed_at_another_server_archives_a_message_under_a_colliding_uidl(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A known UIDL that names another message on a new server (another size and header) is archived before it is deleted.

    Steps (QA of session 13: before, the new server's message was deleted unarchived; until session
    14 it was left on the server, never archived): an account archives "uidl-1" from one server
    (retention "keep"); its host is changed to another server that lists another message as
    "uidl-1" and a new one as "uidl-2"; a "delete" cycle reads the header of "uidl-1" (TOP), finds
    another message, archives both and deletes both; the archive holds all three.
    """
    stranger = sample_message(7, [b"a message of the new provider"])
    with ScriptedPOP3([sample_message(1)]) as old, ScriptedPOP3([stranger, sample_message(2)]) as new:
        account = pop3_account(old.host, old.port, "alice", "secret")
        await prepare(store, account)
        await cycle(account, store, executor)
        moved = with_retention(pop3_account(new.host, new.port, "alice", "secret"), "delete")
        result = await cycle(moved, store, executor)
        assert new.maildrop == []
        assert "TOP 1 0" in new.commands

    assert (result.on_server, result.new_links, result.deleted, result.warnings) == (2, 2, 2, [])
    assert sorted(await archived(store)) == sorted([sample_message(1), sample_message(2), stranger])


async def test_a_server_listing_other_sizes_for_the_same_messages_still_deletes_them(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A LIST size off by one from the archived octets, with the same header section, is the same message: deleted.

    Steps: retention "keep" archives two messages; the server then lists them at len(raw)+1 and
    len(raw)-1; a "delete" cycle reads both headers (TOP), finds them equal, records the server's
    sizes and deletes both, without warning.
    """
    raws = [sample_message(1), sample_message(2)]
    messages = [ScriptedMessage(raws[0]), ScriptedMessage(raws[1])]
    with ScriptedPOP3(messages) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        # listed off only now (archived before session 14 recorded sizes at retrieval, or a server change)
        messages[0].list_size, messages[1].list_size = len(raws[0]) + 1, len(raws[1]) - 1
        mark = len(server.commands)
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []
        tops = [c for c in server.commands[mark:] if c.startswith("TOP")]

    assert tops == ["TOP 1 0", "TOP 2 0"]
    assert (result.deleted, result.warnings) == (2, [])
    assert sorted(await archived(store)) == sorted(raws)


async def test_a_size_recorded_from_the_server_spares_the_header_check_next_time(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Once a differing LIST size is matched by header and recorded, a later cycle compares with it.

    Steps: retention "keep" archives a message, then listed one octet too large; a "delete" cycle whose QUIT
    is refused reads its header (TOP), records the server's size and applies no deletion; the next
    "delete" cycle finds the size it expects (nothing is freed or warned) and sends the one TOP every
    deletion candidate not retrieved in the session gets before DELE (review of session 14).
    """
    raw = sample_message(1)
    message = ScriptedMessage(raw)
    with ScriptedPOP3([message]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        message.list_size = len(raw) + 1
        deleting = with_retention(keeping, "delete")
        server.quit_error = "-ERR [SYS/TEMP] update failed"
        first = await cycle(deleting, store, executor)
        assert "TOP 1 0" in server.commands
        server.quit_error = None
        mark = len(server.commands)
        second = await cycle(deleting, store, executor)
        assert server.maildrop == []
        later = server.commands[mark:]

    assert first.deleted == 0
    assert [c for c in later if c.startswith(("TOP", "RETR"))] == ["TOP 1 0"]
    assert (second.deleted, second.new_links, second.warnings) == (1, 0, [])
    known = await store.locations(keeping.name)
    assert [loc.listed_size for loc in known.values()] == [len(raw) + 1]


async def test_a_one_line_reply_trickled_past_twice_the_timeout_ends_the_cycle_and_deletes_nothing(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A server trickling its +OK to DELE one octet at a time (never silent for timeout_s) is ended.

    Steps (QA of session 13: before, the cycle waited for the whole line, however slow: hours for a
    server sending an octet every few seconds): timeout_s 1 s; the server writes its 125-octet +OK to
    DELE one octet per 30 ms (about 3.8 s, over the 2 s limit of LINE_REPLY_TIMEOUTS x timeout_s);
    the cycle fails with NetworkTimeout naming the one-line reply; no QUIT, so nothing is deleted;
    the message is archived.
    """
    with ScriptedPOP3([sample_message(1)], dele_reply_padding=100, write_pause_s=0.03) as server:
        account = pop3_account(server.host, server.port, "alice", "secret", retention="delete", timeout_s=1.0)
        await prepare(store, account)
        with pytest.raises(NetworkTimeout, match="one-line reply still incomplete"):
            await cycle(account, store, executor)
        assert len(server.maildrop) == 1
        assert "QUIT" not in server.commands

    assert await archived(store) == [sample_message(1)]


async def test_a_greeting_trickled_past_twice_the_timeout_ends_the_connection(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A greeting written one octet at a time for longer than 2 x timeout_s ends the cycle before login.

    Steps (QA of session 13: poplib read the greeting however slowly it came): timeout_s 1 s; a
    125-octet greeting at one octet per 30 ms (about 3.8 s); the cycle fails with NetworkTimeout
    ("server too slow") and sends no command.
    """
    greeting = "+OK " + "x" * 119
    with ScriptedPOP3(
        [sample_message(1)], greeting=greeting, trickle_greeting=True, write_pause_s=0.03
    ) as server:
        account = pop3_account(server.host, server.port, "alice", "secret", timeout_s=1.0)
        await prepare(store, account)
        with pytest.raises(NetworkTimeout, match="server too slow: a one-line reply still incomplete"):
            await cycle(account, store, executor)
        assert server.commands == []


async def test_odd_uidls_and_shifted_message_numbers_end_to_end(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """UIDLs with quotes, 8-bit octets or over 70 octets survive the archive, and deletions follow UIDLs when numbers shift.

    Steps: five messages with odd UIDLs; a "keep" cycle archives them under exactly those UIDLs; another
    client deletes message 1 (so every message-number shifts down) and a new message arrives; a
    "delete" cycle archives the new one, deletes exactly the five on the server, and records the one
    the other client removed as gone, not as deleted by maild.
    """
    uidls = ["a'b\"c;DROP--", "ü-€-8bit", "x" * 100, "%2F..%00[]\\", "sha256:not-a-digest"]
    raws = [sample_message(n) for n in range(1, 7)]
    with ScriptedPOP3([ScriptedMessage(r, uidl=u) for r, u in zip(raws[:5], uidls, strict=True)]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        first = await cycle(keeping, store, executor)
        other = poplib.POP3(server.host, server.port, timeout=5)
        other.user("alice")
        other.pass_("secret")
        other.dele(1)
        other.quit()
        server.add(ScriptedMessage(raws[5], uidl="new"))
        second = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []

    wire = [POP3Key(u.encode("utf-8").decode("latin-1")) for u in [*uidls, "new"]]  # UIDLs are octets
    assert first.new_links == 5
    assert (second.on_server, second.new_links, second.deleted) == (5, 1, 5)
    locations = await store.locations(keeping.name)
    assert set(locations) == set(wire)
    assert locations[wire[0]].gone_at is not None
    assert locations[wire[0]].deleted_at is None
    assert all(locations[k].deleted_at is not None for k in wire[1:])
    assert await archived(store) == raws
