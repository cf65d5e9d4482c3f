"""Export of an account's archive to mboxrd and to Maildir, read back with Python's mailbox module."""

from __future__ import annotations

import mailbox
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.export import export_maildir, export_mbox, from_line, mboxrd_quote
from maild.archive.reader import ArchiveReader
from maild.archive.store import Store
from maild.errors import QueryError
from tests.support.archive import build_archive, imap, letter, pop

FROM_BODY = (
    b"From the desk of Anna\r\n"
    b">From an earlier quote\r\n"
    b">>From two levels\r\n"
    b"Not From at the start\r\n"
    b"From\r\n"
    b"From \r\n"
)


def mboxrd_unquote(data: bytes) -> bytes:
    """Undo mboxrd quoting: one ">" less on every line matching >+From ."""
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "maild.sqlite3"


async def test_mbox_export_round_trips_from_lines(db: Path, tmp_path: Path) -> None:
    """Messages whose lines start with "From " come back from mailbox.mbox whole and, un-quoted, unchanged."""
    raws = [
        letter(1, body=FROM_BODY),
        letter(2, body=b"From the first body line\r\n\r\nFrom after a blank line\r\n"),
        letter(3),
        letter(4, body=b"no final newline"),
    ]
    await build_archive(db, [("anna-pop", pop(n), raw) for n, raw in enumerate(raws, 1)])
    target = tmp_path / "anna.mbox"

    with ArchiveReader(db) as reader:
        result = export_mbox(reader, "anna-pop", target)

    assert (result.total, result.written) == (4, 4)
    box = mailbox.mbox(target, create=False)
    try:
        back = [mboxrd_unquote(box.get_bytes(k)) for k in box.iterkeys()]
        first_from = box.get_message(box.keys()[0]).get_from()
    finally:
        box.close()
    expected = [r.replace(b"\r\n", b"\n") for r in raws]
    expected[3] += b"\n"  # a message without a final newline gets one
    assert back == expected
    assert first_from.startswith("MAILER-DAEMON ")
    assert list(target.parent.glob(".anna.mbox.*")) == []


def test_mboxrd_quote_adds_one_level() -> None:
    """Every line matching >*From gets exactly one more ">"; other lines are untouched."""
    assert mboxrd_quote(b"From a\r\n>From b\r\n>>From c\r\nx From d\r\nFromage\r\n") == (
        b">From a\n>>From b\n>>>From c\nx From d\nFromage\n"
    )


async def test_from_line_uses_return_path_and_date(db: Path) -> None:
    """The separator names the Return-Path sender and the Date field in asctime form (UTC, day padded)."""
    raw = b"Return-Path: <bounce@example.org>\r\n" + letter(1, date="Mon, 02 Nov 2026 10:00:00 +0100")
    await build_archive(db, [("anna-pop", pop(1), raw)])
    with ArchiveReader(db) as reader:
        [(message_id, _mailbox)] = reader.account_messages("anna-pop")
        [message] = list(reader.iter_raw([message_id]))
    assert from_line(message) == b"From bounce@example.org Mon Nov  2 09:00:00 2026"


async def test_maildir_export_is_byte_identical_and_idempotent(db: Path, tmp_path: Path) -> None:
    """A Maildir export holds the exact octets in Maildir++ folders; re-running adds only what is missing."""
    items = [
        ("anna-imap", imap("INBOX", 1), letter(1, body=FROM_BODY)),
        ("anna-imap", imap("Archiv/2026", 1), letter(2)),
        ("anna-imap", imap("INBOX", 2), letter(3)),
    ]
    await build_archive(db, items)
    target = tmp_path / "export"

    with ArchiveReader(db) as reader:
        first = export_maildir(reader, "anna-imap", target)
        second = export_maildir(reader, "anna-imap", target)

    assert (first.total, first.written, first.already_present) == (3, 3, 0)
    assert (second.total, second.written, second.already_present) == (3, 0, 3)
    box = mailbox.Maildir(target, factory=None, create=False)
    assert sorted(box.get_bytes(k) for k in box.iterkeys()) == sorted([letter(1, body=FROM_BODY), letter(3)])
    archiv = box.get_folder("Archiv.2026")
    assert [archiv.get_bytes(k) for k in archiv.iterkeys()] == [letter(2)]

    await build_archive(db, [("anna-imap", imap("INBOX", 3), letter(4))])
    with ArchiveReader(db) as reader:
        third = export_maildir(reader, "anna-imap", target)
    assert (third.written, third.already_present) == (1, 3)
    assert len(box) == 3


async def test_export_includes_archive_only_mail(db: Path, tmp_path: Path) -> None:
    """Messages deleted from or gone from the server are exported like the others."""
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in (1, 2, 3)])
    store = await Store.open(db)
    try:
        now = datetime(2026, 3, 3, tzinfo=UTC)
        await store.mark_deleted("anna-pop", [pop(1)], now)
        await store.update_presence("anna-pop", [pop(2)], [], now)
    finally:
        await store.close()

    with ArchiveReader(db) as reader:
        result = export_mbox(reader, "anna-pop", tmp_path / "all.mbox")
    assert result.written == 3


async def test_export_selects_only_the_account_and_since(db: Path, tmp_path: Path) -> None:
    """Only the named account's messages are exported, and --since keeps those dated at or after it."""
    await build_archive(
        db,
        [
            ("anna-pop", pop(1), letter(1, date="Mon, 05 Jan 2026 10:00:00 +0000")),
            ("anna-pop", pop(2), letter(2, date="Mon, 02 Mar 2026 10:00:00 +0000")),
            ("bert-pop", pop(3), letter(3, date="Mon, 02 Mar 2026 10:00:00 +0000")),
        ],
    )
    target = tmp_path / "anna.mbox"
    with ArchiveReader(db) as reader:
        result = export_mbox(reader, "anna-pop", target, since=datetime(2026, 2, 1, tzinfo=UTC))
    assert result.written == 1
    box = mailbox.mbox(target, create=False)
    try:
        assert [box.get_bytes(k) for k in box.iterkeys()] == [
            letter(2, date="Mon, 02 Mar 2026 10:00:00 +0000").replace(b"\r\n", b"\n")
        ]
    finally:
        box.close()


async def test_export_of_unknown_account_is_an_error(db: Path, tmp_path: Path) -> None:
    """Exporting an account the archive never had raises QueryError and writes nothing."""
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    with ArchiveReader(db) as reader, pytest.raises(QueryError, match="no account named 'nobody'"):
        export_mbox(reader, "nobody", tmp_path / "x.mbox")
    assert not (tmp_path / "x.mbox").exists()


async def test_mbox_export_replaces_an_existing_file(db: Path, tmp_path: Path) -> None:
    """An existing mbox is replaced as a whole by the new export."""
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    target = tmp_path / "anna.mbox"
    target.write_bytes(b"From old Mon Jan  1 00:00:00 2024\nold\n\n" * 3)
    with ArchiveReader(db) as reader:
        export_mbox(reader, "anna-pop", target)
    box = mailbox.mbox(target, create=False)
    try:
        assert len(box) == 1
    finally:
        box.close()
