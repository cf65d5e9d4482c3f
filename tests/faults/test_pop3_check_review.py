"""Session 13's review of the POP3 deletion check (maild/fetch/pop3_check.py) against a scripted server.

Each test names the defect it caught; each failed before its fix.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from maild import pop3_uidls
from maild.archive.store import Store
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message

HEADER_ONLY = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: Office <office@example.com>\r\n"
    b"Subject: no body at all\r\n"
    b"Message-ID: <header-only@example.org>\r\n"
)
"""A message that is all header section: no empty line, no body (RFC 5322 section 3.5 allows it)."""


async def test_a_header_only_message_whose_top_adds_the_empty_line_is_still_deleted(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """TOP n 0 of a message without an empty line may end with one; the header section is the same: deleted.

    RFC 1939 section 7 words TOP as "the headers of the message, the blank line separating the
    headers from the body", and Dovecot's ``oe-ns-eoh`` workaround adds that line when the message
    lacks it. Before the fix the archived header section kept its last CRLF ("...>\\r\\n") while the
    TOP reply's lost it at the empty line ("...>"): never equal, so on a server whose LIST size is off
    such a message stayed on the server for ever with a warning (retention silently off for it).
    """
    messages = [ScriptedMessage(HEADER_ONLY, top="eoh")]
    with ScriptedPOP3(messages) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        messages[0].list_size = len(HEADER_ONLY) + 1  # listed off after it was archived
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert "TOP 1 0" in server.commands
        assert server.maildrop == []

    assert (result.deleted, result.warnings) == (1, [])
    assert await archived(store) == [HEADER_ONLY]


async def test_a_header_only_message_is_not_taken_for_one_with_another_header(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The relaxed comparison still tells header sections apart: another Subject under the UIDL is another message.

    Until session 14 it was left on the server with a warning; now it is archived, then deleted.
    """
    other = HEADER_ONLY.replace(b"no body at all", b"no body either")
    with ScriptedPOP3([ScriptedMessage(HEADER_ONLY)]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        message = server.maildrop[0]  # the server re-uses uidl-1 for another message
        message.raw, message.list_size, message.top = other, len(other) + 1, "eoh"
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []

    assert (result.new_links, result.deleted, result.warnings) == (1, 1, [])
    assert await archived(store) == [HEADER_ONLY, other]


async def test_candidates_past_the_header_check_limit_are_deleted_next_cycle_not_reported_as_other(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_POP3_HEADER_CHECKS (a server without PIPELINING), candidates wait for a later cycle;
    they are not said to differ.

    Steps: a server whose LIST sizes are all off by one (an LF-stored maildrop counts one octet less
    per line) holds three archived messages; with the limit at two, a "delete" cycle checks and
    deletes two and says the third waits; the next cycle checks and deletes it. Before the fix the
    third was counted in the warning that messages "differ from the archived message in size and
    header section" (a server re-using UIDLs?), which was false.
    """
    monkeypatch.setattr(pop3_uidls, "MAX_POP3_HEADER_CHECKS", 2)
    raws = [sample_message(n) for n in (1, 2, 3)]
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws], pipelining=False) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        for message in server.maildrop:  # listed off after they were archived
            message.list_size = len(message.raw) - 1
        first = await cycle(with_retention(keeping, "delete"), store, executor)
        assert [m.raw for m in server.maildrop] == raws[2:]
        second = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []

    assert first.deleted == 2
    assert not any("differ from the archived message" in w for w in first.warnings)
    assert any("1 messages" in w and "later cycle" in w for w in first.warnings)
    assert (second.deleted, second.warnings) == (1, [])


def big_header_message(n: int, header_octets: int) -> bytes:
    """A message whose header section is about ``header_octets`` long (many 998-octet lines)."""
    filler = b"X-Filler: " + b"f" * 986 + b"\r\n"
    lines = b"".join(filler for _ in range(header_octets // len(filler) + 1))
    return lines + sample_message(n)


async def test_a_header_section_past_the_check_cap_does_not_stop_every_other_deletion(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A TOP reply larger than MAX_HEADER_OCTETS leaves that message only; the cycle deletes the others.

    Steps: a server whose LIST sizes are off holds an archived message whose header section is
    300 KiB (spam with many Received lines, or a server answering TOP n 0 with the whole message)
    and an ordinary one; a "delete" cycle checks both. Before the fix the large TOP reply broke the
    session (ProtocolError past the 256 KiB cap) before any DELE, in every cycle: the account failed
    each cycle and deleted nothing at all, for ever. Now the header check reads TOP replies up to
    the session's message cap, so both are compared and deleted.
    """
    raws = [big_header_message(1, 300 * 1024), sample_message(2)]
    with ScriptedPOP3([ScriptedMessage(raw) for raw in raws], pipelining=False) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        for message in server.maildrop:  # listed off after they were archived
            message.list_size = len(message.raw) - 1
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert server.maildrop == []

    assert (result.deleted, result.warnings) == (2, [])


async def test_a_header_line_starting_with_a_dot_is_unstuffed_before_the_comparison(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """TOP's dot-stuffed lines (RFC 1939 section 3) compare with the archived octets un-stuffed: deleted.

    Held on main (recorded here as a guard): a header section with lines starting with "." and
    ".." (sent "..", "...") on a server whose sizes are off matches the archived copy.
    """
    raw = b".Odd: leading dot\r\n..Odder: two dots\r\n" + sample_message(1)
    with ScriptedPOP3([ScriptedMessage(raw)]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        server.maildrop[0].list_size = len(raw) + 2  # listed off after it was archived
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert "TOP 1 0" in server.commands
        assert server.maildrop == []

    assert (result.deleted, result.warnings) == (1, [])
    assert await archived(store) == [raw]


@pytest.mark.parametrize("offers_top", [True, False], ids=["top-refused", "capa-without-top"])
async def test_a_server_refusing_top_compares_by_retr_once_and_deletes_the_same_message(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor, offers_top: bool
) -> None:
    """TOP answered -ERR, or not in CAPA: the message is compared by RETR (SHA-256) once, then deleted.

    Session 13's review made this an "unchecked" warning: such a message was never deleted, warned
    every cycle (retention silently off on a TOP-less server whose sizes are off). Now one RETR
    shows it is the archived message; its server size is recorded. A later cycle (its QUIT refused
    here, so the deletion was not applied) compares it again before DELE, as every deletion
    candidate not retrieved in the session (review of session 14: a UIDL re-used at the same size
    was deleted unarchived), and deletes it.
    """
    raw = sample_message(1)
    message = ScriptedMessage(raw, top="-ERR TOP not supported")
    with ScriptedPOP3([message], capa=None if offers_top else ("UIDL", "USER")) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        message.list_size = len(raw) + 1  # listed off after it was archived
        server.quit_error = "-ERR [SYS/TEMP] update failed"
        mark = len(server.commands)
        first = await cycle(with_retention(keeping, "delete"), store, executor)
        checked = server.commands[mark:]
        server.quit_error = None
        mark = len(server.commands)
        second = await cycle(with_retention(keeping, "delete"), store, executor)
        later = server.commands[mark:]
        assert server.maildrop == []

    assert ("TOP 1 0" in checked) == offers_top
    assert "RETR 1" in checked
    assert "DELE 1" in checked  # not applied: QUIT refused
    assert first.new_links == 0
    assert not any("TOP" in w or "RETR" in w for w in first.warnings)
    assert [c for c in later if c.startswith(("TOP", "RETR"))] == (["TOP 1 0"] if offers_top else []) + ["RETR 1"]
    assert (second.deleted, second.warnings) == (1, [])
    assert await archived(store) == [raw]


async def test_a_greeting_in_pieces_within_twice_the_timeout_and_a_slow_steady_retr_are_read(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The one-line deadline cuts neither a greeting in pieces that ends in time nor a long multi-line reply.

    Held on main (a guard): timeout_s 1 s; a 30-octet greeting one octet per 30 ms (0.9 s, under
    the 2 s deadline) logs in; a 12,000-octet RETR in 100-octet pieces every 30 ms (3.6 s in all,
    past 2 x timeout_s, at about 3,300 octets/s, above the 1,024 octets/s floor) is archived:
    multi-line replies have the progress floor only.
    """
    raw = sample_message(1, [b"y" * 70 for _ in range(170)])
    assert len(raw) > 12_000
    with ScriptedPOP3(
        [ScriptedMessage(raw, retr_write_octets=100)],
        greeting="+OK " + "g" * 26,
        trickle_greeting=True,
        write_pause_s=0.03,
    ) as server:
        account = pop3_account(server.host, server.port, "alice", "secret", timeout_s=1.0)
        await prepare(store, account)
        result = await cycle(account, store, executor)

    assert (result.new_messages, result.failures) == (1, [])
    assert await archived(store) == [raw]


async def test_a_header_less_message_under_a_known_uidl_is_not_taken_for_a_header_less_archived_one(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """An empty header section proves nothing: another header-less message under the UIDL is archived, then deleted.

    Steps: a message that starts with the empty line (no header section) is archived under uidl-1;
    the server then lists another header-less message, of another size, under uidl-1; a "delete"
    cycle reads its TOP (an empty header section, like the archived one's). Before the fix the two
    empty sections were equal and the unarchived message was deleted; until session 14 it was left
    on the server, never archived.
    """
    first, second = b"\r\nthe first body\r\n", b"\r\nanother body, not archived\r\n"
    with ScriptedPOP3([ScriptedMessage(first)]) as server:
        keeping = pop3_account(server.host, server.port, "alice", "secret")
        await prepare(store, keeping)
        await cycle(keeping, store, executor)
        server.maildrop[0].raw = second  # the server re-uses uidl-1
        result = await cycle(with_retention(keeping, "delete"), store, executor)
        assert "TOP 1 0" in server.commands
        assert server.maildrop == []

    assert (result.new_links, result.deleted) == (1, 1)
    assert await archived(store) == [first, second]
