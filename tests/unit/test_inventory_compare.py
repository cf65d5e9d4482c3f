"""The sans-I/O comparison of an account's archive with another account's server."""

from __future__ import annotations

from maild.model import IMAPKey
from maild.move.compare import (
    ArchiveEntry,
    ServerEntry,
    archive_entry,
    bodies_needed,
    body_digest,
    compare,
    header_digest,
    identity,
    server_entry,
    to_crlf,
    upload_order,
)


def msg(
    n: int, *, mid: bool = True, body: bytes | None = None, date: str = "Mon, 2 Mar 2026 10:00:00 +0100"
) -> bytes:
    """A small CRLF message; ``n`` goes into the Subject and, with ``mid``, the Message-ID."""
    head = b"From: Anna <anna@example.org>\r\nSubject: Nachricht %d\r\nDate: %s\r\n" % (n, date.encode())
    if mid:
        head += b"Message-ID: <m%d@example.org>\r\n" % n
    return head + b"\r\n" + (body if body is not None else b"Text %d\r\n" % n)


def header_of(raw: bytes) -> bytes:
    """What ``BODY[HEADER]`` returns: the header section with its empty line."""
    return raw[: raw.index(b"\r\n\r\n") + 4]


def key(uid: int, mailbox: str = "INBOX", uidvalidity: int = 7) -> IMAPKey:
    return IMAPKey(mailbox, uidvalidity, uid)


def on_server(uid: int, raw: bytes, size: int | None = None) -> ServerEntry:
    """B's scan entry of ``raw`` (RFC822.SIZE counted in CRLF form, as Dovecot does)."""
    return server_entry(key(uid), size if size is not None else len(to_crlf(raw)), header_of(to_crlf(raw)))


def archived(n: int, raw: bytes, *, still: bool = False) -> ArchiveEntry:
    return archive_entry(n, raw, on_server=still)


def test_to_crlf_turns_only_bare_lf() -> None:
    """Bare LF becomes CRLF; existing CRLF and bare CR stay; CRLF input is returned as is."""
    assert to_crlf(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
    data = b"x\r\n"
    assert to_crlf(data) is data


def test_header_digest_equal_for_message_and_its_body_header() -> None:
    """The header digest of a whole message equals that of its BODY[HEADER], in LF or CRLF form."""
    raw = msg(1)
    assert header_digest(raw) == header_digest(header_of(raw))
    assert header_digest(raw.replace(b"\r\n", b"\n")) == header_digest(raw)


def test_archive_entry_fields() -> None:
    """An archive entry carries both digests and sizes, the parsed fields and where it is."""
    raw = msg(3).replace(b"\r\n", b"\n")
    entry = archived(5, raw, still=True)
    assert entry.message == 5
    assert entry.size_octets == len(raw)
    assert entry.size_crlf == len(raw) + raw.count(b"\n")
    assert entry.sha256 != entry.sha256_crlf
    assert entry.message_id == "<m3@example.org>"
    assert entry.subject == "Nachricht 3"
    assert entry.date is not None
    assert entry.date.utcoffset() is not None
    assert entry.where == "still on A's server"
    assert archived(6, msg(3)).where == "archive only"


def test_message_id_size_and_date_identify_without_bodies() -> None:
    """Messages with Message-ID are matched on Message-ID, size and Date; no body is needed."""
    a = [archived(i, msg(i)) for i in range(1, 4)]
    b = [on_server(10 + i, msg(i)) for i in (2, 3, 4)]
    assert bodies_needed(a, b) == []
    result = compare(a, b)
    assert [e.message for e in result.only_a] == [1]
    assert [s.key.uid for s in result.only_b] == [14]
    assert [(m.entry.message, m.key.uid, m.rule) for m in result.both] == [
        (2, 12, "message-id"),
        (3, 13, "message-id"),
    ]
    assert not result.complete


def test_bare_lf_archive_matches_crlf_server_size() -> None:
    """A message archived with bare LFs matches the server's CRLF copy (RFC822.SIZE counts CRLF)."""
    raw = msg(1).replace(b"\r\n", b"\n")
    result = compare([archived(1, raw)], [on_server(1, raw)])
    assert result.complete
    assert result.both[0].rule == "message-id"


def test_same_message_id_other_size_is_another_message_unless_octets_equal() -> None:
    """Equal Message-ID with another size or Date asks for the body; it matches only if the octets do."""
    original = msg(1)
    edited = msg(1, body=b"ganz anderer Text, laenger\r\n")
    a = [archived(1, original)]
    b = [on_server(1, edited)]
    assert bodies_needed(a, b) == [key(1)]
    result = compare(a, b, bodies={key(1): body_digest(edited)})
    assert [e.message for e in result.only_a] == [1]
    assert [s.key for s in result.only_b] == [key(1)]
    # a server that reports a wrong RFC822.SIZE: the octets decide
    wrong_size = [on_server(1, original, size=len(original) + 3)]
    assert bodies_needed(a, wrong_size) == [key(1)]
    result = compare(a, wrong_size, bodies={key(1): body_digest(original)})
    assert result.complete
    assert result.both[0].rule == "sha256"


def test_other_date_is_another_message() -> None:
    """Equal Message-ID and size but another Date: not the same message."""
    a = [archived(1, msg(1))]
    b = [on_server(1, msg(1, date="Mon, 2 Mar 2026 11:00:00 +0100"))]
    assert compare(a, b, bodies={}).only_a


def test_without_message_id_equal_headers_different_bodies_are_two_messages() -> None:
    """Two messages without Message-ID with equal headers are told apart by their bodies."""
    first = msg(1, mid=False, body=b"erste\r\n")
    second = msg(1, mid=False, body=b"zweite\r\n")
    a = [archived(1, first), archived(2, second)]
    b = [on_server(1, first)]
    assert bodies_needed(a, b) == [key(1)]
    result = compare(a, b, bodies={key(1): body_digest(first)})
    assert [e.message for e in result.only_a] == [2]
    assert [(m.entry.message, m.rule) for m in result.both] == [(1, "sha256")]
    # without the body nothing without Message-ID can match: correctness over speed
    assert len(compare(a, b).only_a) == 2


def test_without_message_id_unrelated_headers_need_no_body() -> None:
    """A server message without Message-ID whose header matches nothing archived is not downloaded."""
    a = [archived(1, msg(1, mid=False))]
    b = [on_server(1, msg(2, mid=False))]
    assert bodies_needed(a, b) == []
    result = compare(a, b)
    assert len(result.only_a) == 1
    assert len(result.only_b) == 1


def test_recorded_upload_matches_even_when_the_server_changed_the_octets() -> None:
    """An APPENDUID record whose UID is still listed matches, though the server altered the message."""
    raw = msg(1, mid=False, body=b"mit \x00 NUL\r\n")
    stored = raw.replace(b"\x00", b"\x80")  # what Dovecot hands out
    a = [archived(1, raw)]
    b = [on_server(5, stored)]
    appended = {1: {key(5)}}
    assert bodies_needed(a, b, appended) == []
    result = compare(a, b, appended=appended)
    assert result.complete
    assert result.both[0].rule == "appended"
    # a record for another UIDVALIDITY (mailbox recreated) does not count
    stale = {1: {key(5, uidvalidity=6)}}
    assert not compare(a, b, bodies={key(5): body_digest(stored)}, appended=stale).complete


def test_server_copies_of_one_message_are_all_in_both() -> None:
    """Two copies of an archived message on the server are both matched, neither is "only in B"."""
    a = [archived(1, msg(1))]
    b = [on_server(1, msg(1)), on_server(2, msg(1))]
    result = compare(a, b)
    assert result.complete
    assert result.only_b == []


def test_unreadable_messages_are_passed_through() -> None:
    """Messages B could not read are reported as such and match nothing."""
    result = compare([archived(1, msg(1))], [], unreadable={key(9): "BODY[HEADER] is NIL"})
    assert result.unreadable == {key(9): "BODY[HEADER] is NIL"}
    assert len(result.only_a) == 1


def test_only_a_is_ordered_by_date_undated_last() -> None:
    """Messages only in A come oldest first; messages without a usable Date come last."""
    a = [
        archived(1, msg(1, date="Tue, 3 Mar 2026 10:00:00 +0000")),
        archived(2, msg(2, date="kaputt")),
        archived(3, msg(3, date="Mon, 2 Mar 2026 10:00:00 +0000")),
    ]
    assert [e.message for e in compare(a, []).only_a] == [3, 1, 2]


def test_upload_order_keeps_one_per_identity() -> None:
    """Archived messages with the same identity (same Message-ID, size, Date) are uploaded once."""
    one = msg(1)
    copy = one.replace(b"Anna", b"Anne")  # same length, same Message-ID and Date: same identity
    other = msg(2)
    entries = [archived(1, one), archived(2, copy), archived(3, other), archived(4, msg(5, mid=False))]
    assert identity(entries[0]) == identity(entries[1])
    planned, copies = upload_order(entries)
    assert [e.message for e in planned] == [1, 3, 4]
    assert [e.message for e in copies] == [2]
    # and after uploading the first, the copy counts as present
    assert compare(entries[:2], [on_server(1, one)]).complete
