"""Cc in the archive (schema version 12): stored, shown, searched, and filled in by the upgrade."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import Store
from maild.cli.main import main
from tests.support.archive import build_archive, pop

CC_LETTER = (
    b"From: anna@example.com\r\nTo: bernd@example.com\r\n"
    b"Cc: =?utf-8?q?J=C3=BCrgen_Hausmeister?= <hausmeister@example.de>,\r\n carla@example.org\r\n"
    b"Subject: Schluessel\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nDer Schluessel liegt bereit.\r\n"
)
PLAIN_LETTER = b"From: dora@example.com\r\nTo: anna@example.com\r\nSubject: Ohne Kopie\r\n\r\nHallo\r\n"


def _rows(db: Path) -> list[dict[str, object]]:
    """Every message row as column name to value (schema 14 moved raw to the last column)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM messages ORDER BY id")]


async def test_the_store_keeps_cc_and_the_reader_shows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stored message's decoded Cc is in messages.cc_header, in ArchivedMessage and in show --json."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), CC_LETTER), ("anna-pop", pop(2), PLAIN_LETTER)])

    with sqlite3.connect(db) as conn:
        ccs = [r[0] for r in conn.execute("SELECT cc_header FROM messages ORDER BY id")]
    assert ccs == ["Jürgen Hausmeister <hausmeister@example.de>, carla@example.org", None]
    with ArchiveReader(db) as reader:
        [message] = reader.list_messages(MessageFilter(subject_text="Schluessel"))
    assert message.cc_header == ccs[0]

    assert main(["messages", "show", "--database", str(db), "--json", message.sha256[:12]]) == 0
    assert json.loads(capsys.readouterr().out)["cc"] == ccs[0]


async def test_search_finds_a_message_by_a_cc_address_and_name(tmp_path: Path) -> None:
    """A word of the Cc field finds the message, in the recipients column and anywhere."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), CC_LETTER), ("anna-pop", pop(2), PLAIN_LETTER)])

    with ArchiveReader(db) as reader:
        for query in ("hausmeister", "recipients:carla", "jurgen"):
            hits = reader.search(query, MessageFilter())
            assert [h.message.subject for h in hits] == ["Schluessel"], query
        assert "[carla]" in reader.search("carla", MessageFilter())[0].snippet.lower()


async def test_upgrading_a_schema_11_archive_keeps_everything_and_fills_cc(tmp_path: Path) -> None:
    """Steps: an archive made at schema 11 (no cc_header column); the store opens it: schema 12, every
    earlier column of every row unchanged, Cc read from the stored messages, the index still complete."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), CC_LETTER), ("anna-pop", pop(2), PLAIN_LETTER)])
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN cc_header")
        conn.execute("PRAGMA user_version = 11")
        locations = list(conn.execute("SELECT * FROM locations ORDER BY id"))
    before = _rows(db)
    with ArchiveReader(db) as reader:  # a schema-11 archive is still readable, Cc unknown
        assert [m.cc_header for m in reader.list_messages(MessageFilter())] == [None, None]

    async with await Store.open(db):
        pass

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert list(conn.execute("SELECT * FROM locations ORDER BY id")) == locations
    after = _rows(db)
    assert [{k: v for k, v in row.items() if k != "cc_header"} for row in after] == before
    assert [row["cc_header"] for row in after] == [
        "Jürgen Hausmeister <hausmeister@example.de>, carla@example.org",
        None,
    ]
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (2, 2)
        assert [h.message.subject for h in reader.search("hausmeister", MessageFilter())] == ["Schluessel"]


async def test_the_cc_fill_reads_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upgrade's Cc fill goes through the archive in chunks and misses no message."""
    from maild.archive import cc_fill

    monkeypatch.setattr(cc_fill, "CC_FILL_CHUNK", 2)
    db = tmp_path / "maild.sqlite3"
    items = [("anna-pop", pop(n), CC_LETTER.replace(b"carla", b"carla%d" % n)) for n in range(5)]
    await build_archive(db, items)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE messages SET cc_header = NULL")
        conn.execute("PRAGMA user_version = 11")
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        ccs = [r[0] for r in conn.execute("SELECT cc_header FROM messages ORDER BY id")]
    assert ccs == [f"Jürgen Hausmeister <hausmeister@example.de>, carla{n}@example.org" for n in range(5)]
