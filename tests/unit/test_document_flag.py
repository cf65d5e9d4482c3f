"""messages.has_documents (schema 13): recorded at store time, so that the attachment-text indexer reads
only messages with a PDF or Office part; an archive upgraded from schema 12 has its old messages looked
at once."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from pathlib import Path

import pytest

from maild.archive import document_index
from maild.archive.document_worker import DocumentWorker
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import Store
from tests.support import corpus
from tests.support import documents as docs
from tests.support.archive import build_archive, letter, pop

_DOCUMENT_TYPES = {"application/pdf", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _has_document_by_stdlib(raw: bytes) -> bool:
    """An oracle independent of maild's MIME walk: the stdlib parser's view of the parts."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        if part.is_multipart():
            continue
        name = (part.get_filename() or "").lower()
        if part.get_content_type() in _DOCUMENT_TYPES or name.endswith((".pdf", ".xlsx")):
            return True
    return False


def _invoice(n: int) -> bytes:
    return docs.mail_with(
        n, [("Abrechnung.pdf", docs.PDF, docs.make_pdf(["Heizkostenabrechnung 2025"]))], subject="Rechnung"
    )


def _flags(db: Path) -> list[int | None]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT has_documents FROM messages ORDER BY id")]


async def test_the_store_records_which_corpus_messages_have_documents(tmp_path: Path) -> None:
    """Of 120 corpus messages (text, HTML, PDF and XLSX attachments), exactly those the stdlib parser sees
    a PDF or Office part in are stored with has_documents = 1, all others with 0, none unknown."""
    raws = list(corpus.generate(120, seed=3))
    expected = [int(_has_document_by_stdlib(raw)) for raw in raws]
    assert 0 < sum(expected) < len(expected)  # the corpus holds both kinds
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), raw) for n, raw in enumerate(raws)])
    assert _flags(db) == expected


async def test_the_indexer_reads_only_messages_with_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, documents_extra: None
) -> None:
    """Steps: archive 30 letters and 2 messages with a PDF; count the messages the indexer reads from the
    archive: only the 2 (before schema 13 it read all 32); their PDF text is then found; nothing pending."""
    read: list[int] = []
    original = document_index._read

    async def counting(conn: object, ids: list[int]) -> object:
        read.extend(ids)
        return await original(conn, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(document_index, "_read", counting)
    db = tmp_path / "maild.sqlite3"
    items = [("anna-pop", pop(n), letter(n)) for n in range(30)]
    items += [("anna-pop", pop(100), _invoice(100)), ("anna-pop", pop(101), _invoice(101))]
    await build_archive(db, items)
    worker = DocumentWorker()
    try:
        async with await Store.open(db) as store:
            assert await store.documents_pending() == 2
            run, _ = await store.index_documents(worker)
            assert await store.documents_pending() == 0
    finally:
        await worker.close()
    assert sorted(read) == [31, 32]
    assert (run.messages, run.documents, run.failures) == (2, 2, 0)
    with ArchiveReader(db) as reader:
        assert len(reader.search("heizkostenabrechnung", MessageFilter())) == 2


async def test_upgrading_a_schema_12_archive_keeps_its_messages_and_indexes_the_old_documents(
    tmp_path: Path, documents_extra: None
) -> None:
    """Steps: an archive made at schema 12 (no has_documents column, no document_text rows) with a letter
    and a message with a PDF; the store opens it: schema 13, every row unchanged, both messages unknown
    (NULL) and pending; the indexer reads both once, records 0 and 1, and the PDF's words are found."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1)), ("anna-pop", pop(2), _invoice(2))])
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX messages_documents")
        conn.execute("ALTER TABLE messages DROP COLUMN has_documents")
        conn.execute("PRAGMA user_version = 12")
        conn.row_factory = sqlite3.Row
        before = [dict(row) for row in conn.execute("SELECT * FROM messages ORDER BY id")]
        locations = list(conn.execute("SELECT * FROM locations ORDER BY id"))

    worker = DocumentWorker()
    try:
        async with await Store.open(db) as store:
            assert await store.documents_pending() == 2
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
                conn.row_factory = sqlite3.Row
                after = [dict(row) for row in conn.execute("SELECT * FROM messages ORDER BY id")]
                assert [{k: v for k, v in row.items() if k != "has_documents"} for row in after] == before
                assert list(conn.execute("SELECT * FROM locations ORDER BY id")) == locations
            assert _flags(db) == [None, None]
            run, _ = await store.index_documents(worker)
            assert await store.documents_pending() == 0
    finally:
        await worker.close()
    assert (run.messages, run.documents) == (2, 1)
    assert _flags(db) == [0, 1]
    with ArchiveReader(db) as reader:
        assert [h.message.subject for h in reader.search("heizkostenabrechnung", MessageFilter())] == [
            "Rechnung"
        ]
        assert reader.index_coverage() == (2, 2)


async def test_the_one_shot_bound_counts_messages_with_documents_not_all_messages(
    tmp_path: Path, documents_extra: None
) -> None:
    """Steps: archive 5 letters and 1 message with a PDF; the one-shot's indexing step with a bound of 1
    indexes the PDF (6 new messages, but only 1 with documents), nothing deferred or pending."""
    from structlog.testing import capture_logs

    from maild.service.oneshot import _index_documents

    db = tmp_path / "maild.sqlite3"
    items = [("anna-pop", pop(n), letter(n)) for n in range(5)] + [("anna-pop", pop(9), _invoice(9))]
    await build_archive(db, items)
    async with await Store.open(db) as store:
        with capture_logs() as logs:
            await _index_documents(store, bound=1)
        assert await store.documents_pending() == 0
    assert not [e for e in logs if e["event"] == "documents.deferred"]
    (indexed,) = [e for e in logs if e["event"] == "documents.indexed"]
    assert (indexed["messages"], indexed["documents"]) == (1, 1)
