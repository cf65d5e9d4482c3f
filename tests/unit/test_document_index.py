"""The attachment-text indexer (maild/archive/document_index.py) on a real archive: text found after it
runs, kept through `maild reindex`, forgotten with the message; failures never touch the message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive.document_worker import DocumentWorker
from maild.archive.move_queries import MigrationStore
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage
from tests.support import documents as docs
from tests.support.archive import T0, build_archive, letter, pop

pytestmark = pytest.mark.usefixtures("documents_extra")


def subjects(db: Path, query: str) -> list[str | None]:
    """Subjects of the messages ``query`` finds."""
    with ArchiveReader(db) as reader:
        return sorted(h.message.subject or "" for h in reader.search(query, MessageFilter()))


def pending(db: Path) -> int:
    with ArchiveReader(db) as reader:
        return reader.documents_pending()


async def index(db: Path, worker: DocumentWorker | None = None) -> tuple[int, int, int]:
    """Run the indexer to the end; (messages, documents, failures)."""
    own = worker or DocumentWorker()
    try:
        async with await Store.open(db) as store:
            run, _ = await store.index_documents(own)
    finally:
        await own.close()
    return run.messages, run.documents, run.failures


def invoice(n: int = 1) -> bytes:
    return docs.mail_with(
        n,
        [
            (
                "Abrechnung.pdf",
                docs.PDF,
                docs.make_pdf(["Heizkostenabrechnung 2025", "Verbrauch Zählerstände"]),
            ),
            ("Mietvertrag.docx", docs.DOCX, docs.make_docx(["Mietvertrag Lindenstraße"])),
            ("Kündigung.odt", docs.ODT, docs.make_odt(["Kündigungsfrist drei Monate"])),
            ("Zähler.xlsx", docs.XLSX, docs.make_xlsx(["Wasseruhr"])),
        ],
        subject="Unterlagen Wohnung",
    )


async def test_attachment_text_is_searchable_once_the_indexer_ran(tmp_path: Path) -> None:
    """Steps: archive a message with a PDF, a DOCX, an ODT and an XLSX; their words are not found and the
    message is pending; the indexer reads the four; every document's words find it, pending is 0; the
    body and file names are still found."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(
        db, [("anna-pop", pop(1), invoice()), ("anna-pop", pop(2), letter(2, subject="Ohne"))]
    )
    assert subjects(db, "heizkostenabrechnung") == []
    assert pending(db) == 1  # the letter has no document (schema 13): never read again

    assert await index(db) == (1, 4, 0)

    for word in (
        "heizkostenabrechnung 2025",
        "zählerstände",
        "lindenstraße",
        "kündigungsfrist",
        "wasseruhr",
    ):
        assert subjects(db, word) == ["Unterlagen Wohnung"], word
    assert subjects(db, "unterlagen") == ["Unterlagen Wohnung"]
    assert subjects(db, "abrechnung.pdf") == ["Unterlagen Wohnung"]
    with ArchiveReader(db) as reader:  # the snippet shows the PDF's words
        (hit,) = reader.search("heizkostenabrechnung", MessageFilter())
    assert "[Heizkostenabrechnung] 2025" in hit.snippet
    assert pending(db) == 0
    assert await index(db) == (0, 0, 0)  # nothing twice


async def test_reindex_keeps_the_attachment_text_and_forget_documents_reads_it_again(tmp_path: Path) -> None:
    """The rebuilt index holds the stored text (no extraction needed); forget_documents removes it and
    makes the message pending; indexing again finds it again."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), invoice())])
    await index(db)
    async with await Store.open(db) as store:
        assert await store.reindex() == 1
    assert subjects(db, "heizkostenabrechnung") == ["Unterlagen Wohnung"]

    async with await Store.open(db) as store:
        assert await store.forget_documents() == 1
        assert await store.documents_pending() == 1
    assert subjects(db, "heizkostenabrechnung") == []
    assert subjects(db, "unterlagen") == ["Unterlagen Wohnung"]
    await index(db)
    assert subjects(db, "heizkostenabrechnung") == ["Unterlagen Wohnung"]


async def test_a_purged_message_takes_its_attachment_text_out_of_the_index(tmp_path: Path) -> None:
    """Steps: index a message's PDF text; purge its account; a new message with documents gets the freed
    id; the PDF's words find nothing and the new message is pending (its document_text row went with
    the old one)."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("keep", pop(1), letter(1)), ("gone", pop(2), invoice(2))])
    await index(db)
    store = await MigrationStore.open(db)
    try:
        assert await store.purge_account("gone") == 1
        await store.ensure_account("late", "Kanzlei", "Anna", "pop3", T0)
        await store.store_batch("late", [RetrievedMessage(POP3Key("n1"), invoice(3))], T0)
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(id) FROM messages").fetchone() == (2,)
    assert subjects(db, "heizkostenabrechnung") == []
    assert subjects(db, "lindenstraße") == []
    assert pending(db) == 1
    assert await index(db) == (1, 4, 0)


async def test_unreadable_attachments_never_fail_the_message(tmp_path: Path) -> None:
    """Steps: archive messages carrying a ZIP bomb, an encrypted, a cyclic and a truncated PDF, beside a
    good PDF; each bad one is logged once (documents.failed, naming message and attachment; at info:
    a damaged attachment is the sender's problem, not the administrator's) and counted; the message is
    still found by its body, subject and the good PDF's words."""
    db = tmp_path / "maild.sqlite3"
    hostile = docs.mail_with(
        1,
        [
            ("bombe.docx", docs.DOCX, docs.make_docx_bomb()),
            ("geheim.pdf", docs.PDF, docs.make_pdf_encrypted("Geheim")),
            ("schleife.pdf", docs.PDF, docs.make_pdf_cyclic()),
            ("kaputt.pdf", docs.PDF, docs.make_pdf(["Abgeschnitten"])[:250]),
            ("gut.pdf", docs.PDF, docs.make_pdf(["Nebenkostenvorauszahlung"])),
        ],
        subject="Feindliche Anhänge",
        body="Sehr geehrte Frau Berger",
    )
    await build_archive(db, [("anna-pop", pop(1), hostile)])
    with capture_logs() as logs:
        assert await index(db) == (1, 5, 4)
    failed = [e for e in logs if e["event"] == "documents.failed"]
    assert sorted(e["filename"] for e in failed) == ["bombe.docx", "geheim.pdf", "kaputt.pdf", "schleife.pdf"]
    assert all(e["message"] and e["part"] and e["reason"] for e in failed)
    assert {e["log_level"] for e in failed} == {"info"}
    assert subjects(db, "nebenkostenvorauszahlung") == ["Feindliche Anhänge"]
    assert subjects(db, "berger") == ["Feindliche Anhänge"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT documents, failures FROM document_text").fetchall() == [(5, 4)]


async def test_a_document_out_of_time_is_given_up_and_the_message_stays_indexed(tmp_path: Path) -> None:
    """With a timeout no extraction can meet, every document fails as "took longer" (a warning: the
    administrator can act on it), the message is recorded (not pending) and found by its subject."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), invoice())])
    with capture_logs() as logs:
        assert await index(db, DocumentWorker(timeout_s=0.001)) == (1, 4, 4)
    failed = [e for e in logs if e["event"] == "documents.failed"]
    assert failed and all("took longer" in e["reason"] for e in failed)
    assert {e["log_level"] for e in failed} == {"warning"}
    assert subjects(db, "wohnung") == ["Unterlagen Wohnung"]
    assert pending(db) == 0


def test_search_says_how_many_messages_attachment_text_is_pending_and_reindex_reads_it(
    tmp_path: Path,
) -> None:
    """Steps: an archive whose two messages the indexer has not looked at; `maild messages search`
    (the CLI, --database) finds nothing by the PDF's words (exit 1, grep's "no match") and says on
    stderr that the attachment text of 2 messages is not indexed yet; `maild reindex` reads it (8 attachments, none unreadable); search
    then finds the PDF's words without the note."""
    import asyncio
    import subprocess
    import sys

    db = tmp_path / "state" / "maild.sqlite3"
    asyncio.run(build_archive(db, [("anna-pop", pop(1), invoice()), ("anna-pop", pop(2), invoice(2))]))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{db.parent}"\ncontrol_socket = "{tmp_path}/c.sock"\n')

    def maild(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "maild", *args], capture_output=True, text=True, check=False
        )

    before = maild("messages", "search", "--database", str(db), "Heizkostenabrechnung")
    assert before.returncode == 1, before.stderr
    assert "the attachment text (PDF, Office) of 2 messages is not indexed yet" in before.stderr
    rebuilt = maild("-c", str(cfg), "reindex")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "attachment text: 2 messages read, 8 PDF/Office attachments, 0 unreadable" in rebuilt.stdout
    after = maild("messages", "search", "--database", str(db), "Heizkostenabrechnung")
    assert after.returncode == 0, after.stderr
    assert "Unterlagen Wohnung" in after.stdout
    assert "not indexed yet" not in after.stderr


async def test_a_one_shot_fetch_leaves_a_large_backlog_to_the_daemon_and_says_so(tmp_path: Path) -> None:
    """Steps: archive two messages with documents; the one-shot's indexing step with a bound of 1 reads
    nothing (both stay pending) and logs ``documents.deferred`` naming the backlog; with a bound of 2 it
    indexes both (the PDF's words are found, nothing pending)."""
    from maild.service.oneshot import ONESHOT_DOCUMENT_MESSAGES, _index_documents

    assert ONESHOT_DOCUMENT_MESSAGES >= 1
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), invoice(1)), ("anna-pop", pop(2), invoice(2))])

    async with await Store.open(db) as store:
        with capture_logs() as logs:
            await _index_documents(store, bound=1)
    assert pending(db) == 2
    assert subjects(db, "heizkostenabrechnung") == []
    (deferred,) = [e for e in logs if e["event"] == "documents.deferred"]
    assert (deferred["pending"], deferred["limit"]) == (2, 1)

    async with await Store.open(db) as store:
        await _index_documents(store, bound=2)
    assert pending(db) == 0
    assert subjects(db, "heizkostenabrechnung") == ["Unterlagen Wohnung", "Unterlagen Wohnung"]


async def test_a_one_shot_fetch_with_nothing_to_index_starts_no_indexer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: archive two letters without documents and one invoice, index the invoice; the one-shot's
    indexing step then finds nothing pending (the count agrees with the reader's) and neither makes a
    worker nor runs the indexer, nor logs anything (the fetch's start-up: docs/performance.md
    "Session 12"); with a second invoice archived it indexes that one as before."""
    from maild.service import oneshot

    db = tmp_path / "maild.sqlite3"
    items = [
        ("anna-pop", pop(1), letter(1)),
        ("anna-pop", pop(2), letter(2)),
        ("anna-pop", pop(3), invoice(3)),
    ]
    await build_archive(db, items)
    await index(db)
    assert pending(db) == 0

    def no_worker(*_args: object, **_kwargs: object) -> DocumentWorker:
        raise AssertionError("a worker made with nothing to index")

    async def no_indexer(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("the indexer run with nothing to index")

    with monkeypatch.context() as patched:
        patched.setattr("maild.archive.document_worker.DocumentWorker", no_worker)
        patched.setattr(Store, "index_documents", no_indexer)
        async with await Store.open(db) as store:
            assert await store.documents_pending() == 0
            with capture_logs() as logs:
                await oneshot._index_documents(store, bound=5)
    assert [e for e in logs if str(e["event"]).startswith("documents.")] == []

    await build_archive(db, [("anna-pop", pop(4), invoice(4))])
    async with await Store.open(db) as store:
        assert await store.documents_pending() == 1
        await oneshot._index_documents(store, bound=5)
    assert pending(db) == 0
    assert subjects(db, "heizkostenabrechnung") == ["Unterlagen Wohnung", "Unterlagen Wohnung"]


async def test_the_indexer_reads_at_most_a_chunk_of_mail_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: archive five messages with documents and a larger one; with the chunk bound at two and a
    half messages, the indexer reads them in chunks of at most that many octets (the large one alone),
    and every one is indexed; the bound itself stays within the fetch's memory budget."""
    from maild import limits
    from maild.archive import document_index

    assert document_index.DOCUMENT_CHUNK_OCTETS <= limits.MEMORY_BUDGET_OCTETS
    db = tmp_path / "maild.sqlite3"
    small = [invoice(n) for n in range(1, 6)]
    large = invoice(6) + b"\r\n" + b"Anhang folgt.\r\n" * 20_000  # text after the end: counted, not read
    await build_archive(db, [("anna-pop", pop(n), raw) for n, raw in enumerate([*small, large], start=1)])
    bound = len(small[0]) * 5 // 2
    monkeypatch.setattr(document_index, "DOCUMENT_CHUNK_OCTETS", bound)
    sizes = {len(raw) for raw in small}
    chunks: list[int] = []
    real_read = document_index._read

    async def reading(conn: object, ids: list[int]) -> list[document_index._Found]:
        found = await real_read(conn, ids)  # type: ignore[arg-type]
        chunks.append(sum(len(f[2]) for f in found))
        assert sum(len(f[2]) for f in found) <= bound or len(found) == 1
        return found

    monkeypatch.setattr(document_index, "_read", reading)
    assert await index(db) == (6, 24, 0)
    assert len(chunks) >= 3
    assert max(sizes) * 2 <= bound
    assert chunks[-1] == len(large)
    assert pending(db) == 0


def test_reindex_logs_unreadable_attachments_on_stderr_and_prints_only_its_result_on_stdout(
    tmp_path: Path,
) -> None:
    """QA of session 12 (the README's quick start): `maild reindex` printed its ``documents.failed``
    log lines on stdout (structlog unconfigured prints there), mixed into its result, which scripts
    read. Steps: an archive with a damaged PDF; `maild reindex`: stdout is the two result lines, the
    log line naming the file is on stderr."""
    import asyncio
    import subprocess
    import sys

    db = tmp_path / "state" / "maild.sqlite3"
    broken = docs.mail_with(1, [("Kaputt.pdf", docs.PDF, b"%PDF-1.4\n1 0 obj\n<<")], subject="Kaputt")
    asyncio.run(build_archive(db, [("anna-pop", pop(1), broken)]))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{db.parent}"\ncontrol_socket = "{tmp_path}/c.sock"\n')
    rebuilt = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), "reindex"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.splitlines() == [
        "1 messages indexed",
        "attachment text: 1 messages read, 1 PDF/Office attachments, 1 unreadable (logged as documents.failed)",
    ]
    assert "documents.failed" in rebuilt.stderr
    assert "Kaputt.pdf" in rebuilt.stderr
