"""A spooled message is stored exactly as the same message in memory: the same row (hash, size,
header summary, has_documents), the same index text, the same octets, the same search results."""

from __future__ import annotations

import dataclasses
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive import batches
from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import POP3Key, RetrievedMessage
from maild.spool import Spool, SpooledBody
from tests.support import corpus

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
MIX = corpus.SizeMix(text=0.3, html=0.1, attachment=0.4, large=0.2)


def messages() -> list[bytes]:
    """A generated set rich in large messages, a few odd ones, one with a document attachment."""
    raws = list(corpus.generate(30, seed=19, size_mix=MIX))
    raws.append(corpus.large_message(1_500_000, seed=3))
    pdf = (
        b"From: a@example.com\r\nSubject: Vertrag\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        + b"Anbei der Vertrag.\r\n"
        * 10
        + b'--b\r\nContent-Type: application/pdf; name="vertrag.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"JVBERi0xLjQK" * 120_000 + b"\r\n--b--\r\n"
    )
    raws.append(pdf)
    raws.append(b"Subject: ohne Leerzeile\r\n" + b"X-Long: " + b"y" * 1_100_000 + b"\r\n")
    return raws


def spooled(spool: Spool, raw: bytes) -> SpooledBody:
    """``raw`` written to a spool file in irregular parts."""
    writer = spool.writer()
    rnd = random.Random(len(raw))
    pos = 0
    while pos < len(raw):
        step = rnd.randint(1, 300_000)
        writer.write(raw[pos : pos + step])
        pos += step
    return writer.finish()


def test_prepare_gives_the_same_rows_for_spooled_messages(tmp_path: Path) -> None:
    """Row and index text of each spooled message equal those of the same octets in memory."""
    raws = messages()
    assert sum(len(r) >= 2**20 for r in raws) >= 5
    spool = Spool(tmp_path)
    memory = [RetrievedMessage(POP3Key(f"u{n}"), raw) for n, raw in enumerate(raws)]
    on_disk = [RetrievedMessage(POP3Key(f"u{n}"), spooled(spool, raw)) for n, raw in enumerate(raws)]
    a = batches._prepare(memory, "t")
    b = batches._prepare(on_disk, "t")
    for x, y in zip(a, b, strict=True):
        assert x.sha256 == y.sha256
        assert x.row[:-1] == y.row[:-1]
        assert x.index == y.index
    assert any(p.row[9] for p in b)  # has_documents seen through the view too


def test_prepare_reads_no_spool_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preparing spooled messages (summary, MIME parts, has_documents, index text) reads none of
    their files: the kept octets answer (maild/spool_view.py); only the blob copy reads them."""
    reads: list[tuple[int, int]] = []
    original = SpooledBody.read_at

    def counted(self: SpooledBody, offset: int, octets: int) -> bytes:
        reads.append((offset, octets))
        return original(self, offset, octets)

    monkeypatch.setattr(SpooledBody, "read_at", counted)
    spool = Spool(tmp_path)
    on_disk = [RetrievedMessage(POP3Key(f"u{n}"), spooled(spool, raw)) for n, raw in enumerate(messages())]
    prepared = batches._prepare(on_disk, "t")
    assert len(prepared) == len(on_disk)
    assert reads == []


async def test_archives_answer_searches_alike(tmp_path: Path) -> None:
    """Two archives, one fed from memory and one from spool files, hold the same octets and give
    the same search results (headers, body text, attachment names)."""
    raws = messages()
    results = []
    for name, spool_it in (("memory", False), ("spool", True)):
        directory = tmp_path / name
        directory.mkdir()
        store = await Store.open(directory / "maild.sqlite3")
        try:
            await store.ensure_account("acct", "org", "emp", "pop3", NOW)
            batch = [
                RetrievedMessage(POP3Key(f"u{n}"), spooled(store.spool, raw) if spool_it else raw)
                for n, raw in enumerate(raws)
            ]
            outcome = await store.store_batch("acct", batch, NOW)
            for message in batch:
                message.release()
            assert store.spool.open_files == 0
            ids = [int(r[0]) for r in await store._all("SELECT id FROM messages ORDER BY id")]
            stored = await store.raw_messages(ids)
            digest = {int(r[0]): r[1] for r in await store._all("SELECT id, sha256 FROM messages")}
            hits = {}
            for query in ("Wasserschaden", '"vertrag.pdf"', "Vertrag", "Grüße", "Fotos", "ohne", "fotos"):
                rows = await store._all("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (query,))
                hits[query] = sorted(digest[int(r[0])] for r in rows)
            assert all(hits.values())
            results.append((dataclasses.asdict(outcome), sorted(stored[i] for i in ids), hits))
        finally:
            await store.close()
    assert results[0] == results[1]
    assert results[0][1] == sorted(raws)


async def test_unreadable_spool_file_fails_the_batch_as_a_store_error(tmp_path: Path) -> None:
    """A spooled message whose file cannot be read (closed here) fails its batch with StoreError
    naming the cause; nothing of the batch is stored."""
    store = await Store.open(tmp_path / "maild.sqlite3")
    try:
        await store.ensure_account("acct", "org", "emp", "pop3", NOW)
        body = spooled(store.spool, corpus.large_message(1_500_000, seed=4))
        body.close()
        batch = [
            RetrievedMessage(POP3Key("a"), b"Subject: x\r\n\r\nsmall\r\n"),
            RetrievedMessage(POP3Key("b"), body),
        ]
        with pytest.raises(StoreError, match="reading a spooled message: the spooled body is closed"):
            await store.store_batch("acct", batch, NOW)
        assert await store._all("SELECT id FROM messages") == []
    finally:
        await store.close()


async def test_spool_file_shortened_under_the_store_fails_the_batch_and_stores_nothing(
    tmp_path: Path,
) -> None:
    """A spool file shortened after it was written (here to half its message) fails its batch at the
    copy into the blob with StoreError naming the cause, and nothing of the batch is stored: the
    message is never archived with missing octets (and its server copy is never deleted)."""
    store = await Store.open(tmp_path / "maild.sqlite3")
    try:
        await store.ensure_account("acct", "org", "emp", "pop3", NOW)
        raw = corpus.large_message(3_500_000, seed=5)
        body = spooled(store.spool, raw)
        os.ftruncate(body._fd, len(raw) // 2)
        batch = [
            RetrievedMessage(POP3Key("a"), b"Subject: x\r\n\r\nsmall\r\n"),
            RetrievedMessage(POP3Key("b"), body),
        ]
        with pytest.raises(
            StoreError, match=r"reading a spooled message: .*spool file shorter than its message"
        ):
            await store.store_batch("acct", batch, NOW)
        assert await store._all("SELECT id FROM messages") == []
        assert await store._all("SELECT id FROM locations") == []
    finally:
        await store.close()
