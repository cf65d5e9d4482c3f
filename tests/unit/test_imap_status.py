"""STATUS responses (RFC 9051 section 7.3.2, LIST-STATUS RFC 5819) and the unchanged-mailbox rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.errors import ProtocolError
from maild.protocols.imap.listing import MailboxStatus, parse_list, parse_status, unchanged


def test_list_status_lines_give_names_and_numbers() -> None:
    """LIST and STATUS lines of one LIST-STATUS reply: LIST parses the names, STATUS the numbers."""
    lines = [
        b'LIST (\\HasNoChildren) "/" "Entw&APw-rfe"',
        b'STATUS "Entw&APw-rfe" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1796574451 HIGHESTMODSEQ 9)',
        b'* LIST () "/" inbox',
        b"* STATUS inbox (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 7)",
    ]
    assert [m.name for m in parse_list(lines)] == ["Entwürfe", "INBOX"]
    assert parse_status(lines) == {
        "Entwürfe": MailboxStatus("Entwürfe", 2, 3, 1796574451, 9),
        "INBOX": MailboxStatus("INBOX", 0, 1, 7, None),
    }


def test_status_with_a_literal_name_and_a_notify_event() -> None:
    """A name sent as a literal is read; a NOTIFY event without UIDVALIDITY leaves it None."""
    lines = [b"STATUS {5}", bytearray(b"a b c"), b" (MESSAGES 3 UIDNEXT 9)"]
    assert parse_status(lines) == {"a b c": MailboxStatus("a b c", 3, 9, None, None)}


@pytest.mark.parametrize(
    "line",
    [
        b"STATUS x (MESSAGES)",
        b"STATUS x (MESSAGES 4294967296)",
        b"STATUS x (MESSAGES -1)",
        b"STATUS x MESSAGES 1",
        b"STATUS (MESSAGES 1)",
        b"STATUS x (HIGHESTMODSEQ 9223372036854775808)",
    ],
)
def test_broken_status_lines_raise_protocol_error(line: bytes) -> None:
    """A STATUS line breaking the grammar is one ProtocolError naming RFC 9051 section 7.3.2."""
    with pytest.raises(ProtocolError) as caught:
        parse_status([line])
    assert "7.3.2" in caught.value.standard


def test_a_name_that_is_not_modified_utf7_raises() -> None:
    """A STATUS name with an unterminated ``&`` run is a ProtocolError (RFC 3501 section 5.1.3)."""
    with pytest.raises(ProtocolError, match="&"):
        parse_status([b"STATUS &Jjo (MESSAGES 1)"])


BEFORE = MailboxStatus("INBOX", 5, 12, 100, 40)


@pytest.mark.parametrize(
    ("now", "same"),
    [
        (BEFORE, True),
        (MailboxStatus("INBOX", 5, 13, 100, 41), False),  # a message added (and one expunged)
        (MailboxStatus("INBOX", 4, 12, 100, 41), False),  # one expunged
        (MailboxStatus("INBOX", 5, 12, 101, 40), False),  # new UIDVALIDITY
        (MailboxStatus("INBOX", 5, 12, 100, 44), False),  # flags changed or renumbered
        (MailboxStatus("INBOX", 5, 12, 100, None), False),  # CONDSTORE no longer offered
        (MailboxStatus("INBOX", 5, None, 100, 40), False),  # UIDNEXT not sent
    ],
)
def test_unchanged_needs_every_number_equal(now: MailboxStatus, same: bool) -> None:
    """Only equal UIDVALIDITY, UIDNEXT, MESSAGES and HIGHESTMODSEQ (or none on both sides) is unchanged."""
    assert unchanged(BEFORE, now) is same


def test_unchanged_without_condstore_compares_the_rest() -> None:
    """Without HIGHESTMODSEQ on either side, UIDVALIDITY, UIDNEXT and MESSAGES decide."""
    plain = MailboxStatus("A", 5, 12, 100)
    assert unchanged(plain, MailboxStatus("A", 5, 12, 100))
    assert not unchanged(MailboxStatus("A", None, 12, 100), MailboxStatus("A", None, 12, 100))


def test_a_notify_status_push_counts_as_a_change() -> None:
    """A ``* STATUS`` pushed under NOTIFY (RFC 5465 section 5.2) makes the IDLE events worth a cycle."""
    from maild.protocols.imap.wire import parse_mailbox_events

    events = parse_mailbox_events([b"* STATUS Projekte (MESSAGES 2 UIDNEXT 3 UNSEEN 2 HIGHESTMODSEQ 3)"])
    assert (events.notified, events.other, events.changed) == (1, 0, True)
    assert not parse_mailbox_events([b"* OK Still here"]).changed
    assert events.merge(parse_mailbox_events([b"* 3 EXISTS"])).notified == 1


def test_vanished_earlier_gives_ranges_unexpanded() -> None:
    """``VANISHED (EARLIER)`` lines give (low, high) ranges; other lines, and VANISHED without
    EARLIER (a live expunge), are ignored; a huge range stays one pair."""
    from maild.protocols.imap.listing import parse_vanished

    lines = [
        b"OK [UIDVALIDITY 7] UIDs valid",
        b"VANISHED (EARLIER) 3,5:7,9:8",
        b"* VANISHED (EARLIER) 1:4294967295",
        b"VANISHED 12",
        b"3 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (20))",
    ]
    assert parse_vanished(lines) == [(3, 3), (5, 7), (8, 9), (1, 4294967295)]
    with pytest.raises(ProtocolError, match="VANISHED"):
        parse_vanished([b"VANISHED (EARLIER) 3,,5"])


uid_ranges = st.lists(
    st.tuples(st.integers(1, 60), st.one_of(st.none(), st.integers(1, 60))), min_size=1, max_size=12
)


@given(st.frozensets(st.integers(1, 60), max_size=40), st.lists(uid_ranges, max_size=3))
def test_vanished_among_equals_testing_each_uid_against_each_range(
    known: frozenset[int], lines: list[list[tuple[int, int | None]]]
) -> None:
    """vanished_among() names exactly the known UIDs inside some range of some VANISHED (EARLIER)
    line (reversed ranges such as ``9:8`` included), as the plain double loop does."""
    from maild.protocols.imap.listing import vanished_among

    parts: list[bytes] = [b"OK [UIDVALIDITY 7] UIDs valid"]
    pairs: list[tuple[int, int]] = []
    for items in lines:
        texts = []
        for low, high in items:
            texts.append(str(low) if high is None else f"{low}:{high}")
            pairs.append((low, low) if high is None else (min(low, high), max(low, high)))
        parts.append(b"VANISHED (EARLIER) " + ",".join(texts).encode())
    expected = {uid for uid in known if any(low <= uid <= high for low, high in pairs)}
    assert vanished_among(parts, known) == expected


@pytest.mark.parametrize("uid_set", [b"3,,5", b"3,", b",3", b"3:", b":3", b"12345678901", b"1:2:3"])
def test_vanished_among_refuses_a_broken_uid_set(uid_set: bytes) -> None:
    """A broken UID set is a ProtocolError, never a partial answer (RFC 7162 section 3.2.10)."""
    from maild.protocols.imap.listing import parse_vanished, vanished_among

    with pytest.raises(ProtocolError, match="VANISHED"):
        vanished_among([b"VANISHED (EARLIER) " + uid_set], {3, 5})
    with pytest.raises(ProtocolError, match="VANISHED"):
        parse_vanished([b"VANISHED (EARLIER) " + uid_set])


def test_vanished_among_holds_no_list_of_the_ranges() -> None:
    """A VANISHED (EARLIER) line of 2 MiB (about 300,000 ranges, a hostile or a long-fragmented
    mailbox) is read with a few hundred KiB besides the line and the known UIDs: the ranges are
    never held as a list (as one, they took about 40 MB here and were each tested against every
    known UID, 300,000 x 2,000 steps)."""
    import tracemalloc

    from maild.protocols.imap.listing import vanished_among

    line = b"VANISHED (EARLIER) " + b",".join(b"%d" % uid for uid in range(1, 620_000, 2))
    assert len(line) > 2 * 2**20
    known = frozenset(range(1, 4_001))
    tracemalloc.start()
    try:
        gone = vanished_among([line], known)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert gone == set(range(1, 4_001, 2))
    assert peak < 1 * 2**20, peak


def test_skip_broken_names_leaves_out_only_names_that_are_not_modified_utf7() -> None:
    """With ``skip_broken_names`` (a ``"*"`` listing of which only maild's own names are wanted) an
    entry whose name is not modified UTF-7 is left out and the rest kept; a line that breaks the
    grammar still raises; without it the broken name raises as before (RFC 9051 section 5.1.3)."""
    lines = [
        b'* LIST (\\HasNoChildren) "/" "Alt&Post"',
        b'* STATUS "Alt&Post" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7)',
        b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"',
        b'* STATUS "Entw&APw-rfe" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 7)',
    ]
    assert [m.name for m in parse_list(lines, skip_broken_names=True)] == ["Entwürfe"]
    assert parse_status(lines, skip_broken_names=True) == {"Entwürfe": MailboxStatus("Entwürfe", 3, 4, 7)}
    with pytest.raises(ProtocolError):
        parse_list(lines)
    with pytest.raises(ProtocolError):
        parse_status(lines)
    with pytest.raises(ProtocolError):
        parse_status([b'* STATUS "Entw&APw-rfe" (MESSAGES)'], skip_broken_names=True)


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_name_list_is_sent_up_to_max_list_patterns_octets(extra: int) -> None:
    """The configured names go out as patterns up to MAX_LIST_PATTERNS_OCTETS octets of list, one
    octet more lists "*" (None here)."""
    from maild.protocols.imap.status import MAX_LIST_PATTERNS_OCTETS, _name_list

    # "(" + '"name"' + ")": 4 octets around one name
    name = "x" * (MAX_LIST_PATTERNS_OCTETS - 4 + extra)
    listed = _name_list([name])
    if extra <= 0:
        assert listed is not None and len(listed.encode()) == MAX_LIST_PATTERNS_OCTETS + extra
    else:
        assert listed is None
