"""Schema 14: ``raw`` is the last column of ``messages`` (SQLite keeps a zeroblob lazy only when nothing but
NULLs follows it), on a fresh archive and after the upgrade; the upgrade keeps every row, id, index entry,
document text and reference; a large archive, or one on a full disk, keeps the old order until
``maild compact``, which refuses with one line when it cannot run."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive import layout, opening
from maild.archive.document_worker import DocumentWorker
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.schema import MESSAGES_COLUMNS, SCHEMA_VERSION
from maild.archive.store import LARGE_BLOB_OCTETS, Store
from maild.cli.main import main
from maild.errors import StoreError
from maild.model import RetrievedMessage
from maild.service.archive_lock import acquire_archive_lock
from maild.service.compact import compact_archive
from tests.support import documents as docs
from tests.support.archive import T0, build_archive, imap, letter, pop

CC_LETTER = (
    b"From: anna@example.com\r\nTo: bernd@example.com\r\nCc: carla@example.org\r\n"
    b"Subject: Schluessel\r\nMessage-ID: <cc@example.org>\r\n\r\nDer Schluessel liegt bereit.\r\n"
)
SEARCHES = ("schluessel", "heizkostenabrechnung", "nachricht", "recipients:carla", "hallo")


def _large_with_cc(n: int) -> bytes:
    """A message above LARGE_BLOB_OCTETS (stored as zeroblob + blob I/O) with a Cc field."""
    body = b"".join(b"Zeile %d von Brief %d mit etwas Text\r\n" % (i, n) for i in range(40_000))
    assert len(body) > LARGE_BLOB_OCTETS
    return (
        b"From: dora@example.com\r\nTo: anna@example.com\r\nCc: carla@example.org\r\nSubject: Gross %d\r\n\r\n"
        % n
        + body
    )


def _items() -> list[tuple[str, object, bytes]]:
    invoice = docs.mail_with(
        50, [("Abrechnung.pdf", docs.PDF, docs.make_pdf(["Heizkostenabrechnung 2025"]))], subject="Rechnung"
    )
    items: list[tuple[str, object, bytes]] = [("anna-pop", pop(n), letter(n)) for n in range(12)]
    items += [("anna-pop", pop(40), CC_LETTER), ("anna-imap", imap("INBOX", 7), CC_LETTER)]
    items += [("anna-pop", pop(50), invoice), ("anna-imap", imap("Archiv", 3), _large_with_cc(1))]
    return items


async def _build_v13(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive made by the schema-13 code path: migrations 1-13 (``cc_header`` and ``has_documents``
    added after ``raw``), messages stored and their attachment text indexed by the real store."""
    with monkeypatch.context() as m:
        m.setattr(opening, "SCHEMA_VERSION", 13)
        await build_archive(db, _items())  # type: ignore[arg-type]
        worker = DocumentWorker()
        try:
            async with await Store.open(db) as store:
                await store.index_documents(worker)
        finally:
            await worker.close()
    assert _columns(db)[-3:] == ["raw", "cc_header", "has_documents"]
    assert _version(db) == 13


def _columns(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM pragma_table_info('messages') ORDER BY cid")]


def _version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _snapshot(db: Path) -> dict[str, object]:
    """Everything the upgrade must keep, independent of the column order: message rows by column name
    with their ids, locations, document text, index entries, search results, indexes and references."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        messages = [dict(r) for r in conn.execute("SELECT * FROM messages ORDER BY id")]
        locations = [tuple(r) for r in conn.execute("SELECT * FROM locations ORDER BY id")]
        documents = [tuple(r) for r in conn.execute("SELECT * FROM document_text ORDER BY message")]
        fts_rows = [tuple(r) for r in conn.execute("SELECT * FROM messages_fts_docsize ORDER BY id")]
        indexes = sorted(
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'"
            )
        )
        broken = list(conn.execute("PRAGMA foreign_key_check"))
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    with ArchiveReader(db) as reader:
        found = {q: sorted(h.message.sha256 for h in reader.search(q, MessageFilter())) for q in SEARCHES}
    return {
        "messages": messages,
        "locations": locations,
        "documents": documents,
        "fts": fts_rows,
        "found": found,
        "indexes": indexes,
        "broken": broken,
        "integrity": integrity,
    }


def _table_info(db: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(db) as conn:
        return [
            (r[1], r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(messages)")
        ]  # name, type, notnull, pk


async def test_a_fresh_archive_has_exactly_the_documented_columns_with_raw_last(tmp_path: Path) -> None:
    """A new archive's messages table is MESSAGES_COLUMNS in order, ending with raw: a later bare ADD COLUMN
    (a column after raw) or a column missing from MESSAGES_COLUMNS fails here."""
    db = tmp_path / "maild.sqlite3"
    async with await Store.open(db):
        pass

    names = [name for name, _type, _notnull, _pk in _table_info(db)]
    assert names == [name for name, _decl in MESSAGES_COLUMNS]
    assert names[-1] == "raw"
    assert _table_info(db)[-1] == ("raw", "BLOB", 1, 0)
    assert _table_info(db)[0] == ("id", "INTEGER", 0, 1)
    assert _version(db) == SCHEMA_VERSION


async def test_upgrading_from_13_keeps_all_data_and_puts_raw_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, documents_extra: None
) -> None:
    """Steps: a schema-13 archive (POP3 and IMAP locations, a Cc letter, a PDF with indexed text, a large
    message with a Cc); the store opens it: schema 14, raw last, every row by column name with its id,
    locations, document text, index entries, search results, the three indexes, no broken reference,
    integrity ok; foreign keys are on again; one archive.layout_rebuilt line."""
    db = tmp_path / "maild.sqlite3"
    await _build_v13(db, monkeypatch)
    before = _snapshot(db)
    assert before["found"]["heizkostenabrechnung"]  # type: ignore[index]
    assert len(before["documents"]) == 1  # type: ignore[arg-type]

    with capture_logs() as logs:
        async with await Store.open(db) as store:
            assert await store._scalar("PRAGMA foreign_keys") == 1

    assert _version(db) == SCHEMA_VERSION
    assert _columns(db) == [name for name, _decl in MESSAGES_COLUMNS]
    assert _snapshot(db) == before
    assert before["indexes"] == sorted(
        ["messages_message_id", "messages_date", "messages_documents", "sqlite_autoindex_messages_1"]
    )
    assert before["broken"] == [] and before["integrity"] == "ok"
    (rebuilt,) = [e for e in logs if e["event"] == "archive.layout_rebuilt"]
    assert rebuilt["messages"] == 15  # the Cc letter is held by both accounts, stored once
    assert not [e for e in logs if e["event"] == "archive.layout_kept"]


def test_the_decision_at_open_rebuilds_only_below_the_bound_and_with_the_room() -> None:
    """Rebuilt when the archive is at most the bound and the free space is its size plus the margin;
    kept (with the figures) when it is larger, or when the space is short by one octet."""
    mib = 1 << 20
    need = layout.space_needed(100 * mib)
    assert need == 100 * mib * 9 // 8 + layout.LAYOUT_SPACE_MARGIN_OCTETS

    assert layout.decide_at_open(100 * mib, need, 100 * mib).action == "rebuild"
    above = layout.decide_at_open(100 * mib + 1, 10**15, 100 * mib)
    assert above.action == "keep" and "above the 100 MiB" in above.reason
    short = layout.decide_at_open(100 * mib, need - 1, 1 << 40)
    assert short.action == "keep" and "MiB free" in short.reason and f"{need // mib} MiB" in short.reason


async def test_an_archive_above_the_bound_keeps_its_order_works_and_is_compacted_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, documents_extra: None
) -> None:
    """Steps: a schema-13 archive; opened with the bound at 0 octets: schema 14 but the old column order,
    one warning naming `maild compact`; a large message with a Cc is stored and read back, searches work;
    `maild compact --database` then rewrites it: raw last, every row and search kept, the new message too."""
    db = tmp_path / "maild.sqlite3"
    await _build_v13(db, monkeypatch)
    monkeypatch.setattr(layout, "LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS", 0)

    with capture_logs() as logs:
        async with await Store.open(db) as store:
            big = _large_with_cc(2)
            await store.store_batch("anna-pop", [RetrievedMessage(pop(99), big)], T0)
    (kept,) = [e for e in logs if e["event"] == "archive.layout_kept"]
    assert "above the 0 MiB" in kept["reason"] and "maild compact" in kept["action"]
    assert _version(db) == SCHEMA_VERSION
    assert _columns(db)[-3:] == ["raw", "cc_header", "has_documents"]
    with ArchiveReader(db) as reader:
        [stored] = reader.list_messages(MessageFilter(subject_text="Gross 2"))
        assert stored.cc_header == "carla@example.org"
        [with_raw] = list(reader.iter_raw([stored.id]))
        assert with_raw.raw == big
    before = _snapshot(db)

    assert await asyncio.to_thread(main, ["compact", "--database", str(db)]) == 0

    assert _columns(db)[-1] == "raw"
    assert _snapshot(db) == before
    assert (
        await asyncio.to_thread(main, ["compact", "--database", str(db)]) == 0
    )  # a second run has nothing to do


async def test_an_archive_on_a_full_disk_keeps_its_order_at_open_and_compact_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], documents_extra: None
) -> None:
    """With the file system's free space below what the rebuild needs: the upgrade keeps the old order
    (one warning with both figures), and `maild compact` exits 1 with one line naming the space and
    saying nothing changed; the archive is unchanged."""
    db = tmp_path / "maild.sqlite3"
    await _build_v13(db, monkeypatch)
    monkeypatch.setattr(layout, "free_octets", lambda path: 5 << 20)

    with capture_logs() as logs:
        async with await Store.open(db):
            pass
    (kept,) = [e for e in logs if e["event"] == "archive.layout_kept"]
    assert kept["reason"].startswith("5 MiB free on its file system, the rebuild needs")
    before = _snapshot(db)
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["compact", "--database", str(db)]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "5 MiB free on its file system, compacting needs" in err and "nothing changed" in err
    assert "9/8 of the archive's" in err and "plus 64 MiB" in err  # the figure explained
    assert _columns(db)[-3:] == ["raw", "cc_header", "has_documents"]
    assert _snapshot(db) == before


async def test_compact_refuses_while_a_fetcher_holds_the_archive_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the archive lock held (a running daemon or `maild fetch`), compact raises one line naming the
    lock's holder and asking to stop the daemon; the archive is not opened, nothing changes."""
    db = tmp_path / "maild.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(opening, "SCHEMA_VERSION", 13)
        await build_archive(db, [("anna-pop", pop(1), CC_LETTER)])
    lock = acquire_archive_lock(db)
    try:
        with pytest.raises(StoreError) as refused:
            await compact_archive(db)
    finally:
        lock.release()
    text = str(refused.value)
    assert "\n" not in text and "is locked (held by PID" in text and "systemctl stop maild" in text
    assert _version(db) == 13


async def test_compact_of_a_missing_archive_says_so(tmp_path: Path) -> None:
    """compact of a path where no archive exists raises one line and creates nothing."""
    db = tmp_path / "nothing.sqlite3"
    with pytest.raises(StoreError, match="does not exist"):
        await compact_archive(db)
    assert not db.exists()


async def test_a_column_this_maild_does_not_know_stops_the_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A messages column outside MESSAGES_COLUMNS (an archive from a newer maild, or edited by hand) would
    be lost by the copy: the upgrade fails with a line naming it and the archive stays at schema 13."""
    db = tmp_path / "maild.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(opening, "SCHEMA_VERSION", 13)
        await build_archive(db, [("anna-pop", pop(1), CC_LETTER)])
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN spam_score REAL")

    with pytest.raises(StoreError, match=r"columns this maild does not know \(spam_score\)"):
        await Store.open(db)

    assert _version(db) == 13
    assert "spam_score" in _columns(db)


async def test_compact_does_not_first_warn_that_the_layout_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, documents_extra: None
) -> None:
    """`maild compact` on a schema-13 archive above the bound: its own open keeps the old order
    without the warning to run `maild compact` (at debug), then it rewrites the layout; a daemon's
    open of such an archive still warns."""
    db = tmp_path / "maild.sqlite3"
    await _build_v13(db, monkeypatch)
    monkeypatch.setattr(layout, "LAYOUT_REBUILD_AT_OPEN_MAX_OCTETS", 0)

    with capture_logs() as logs:
        result = await compact_archive(db)

    assert result.rebuilt and _columns(db)[-1] == "raw"
    kept = [e for e in logs if e["event"] == "archive.layout_kept"]
    assert [e["log_level"] for e in kept] == ["debug"]
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]
    other = tmp_path / "other.sqlite3"
    await _build_v13(other, monkeypatch)
    with capture_logs() as logs:
        async with await Store.open(other):
            pass
    assert [e["log_level"] for e in logs if e["event"] == "archive.layout_kept"] == ["warning"]
