"""What the text of PDF and Office attachments costs (issue 18 stretch; docs/performance.md, Session 5).

    python3 -m tests.bench.documents                 # per-document costs, then the corpus indexer run
    python3 -m tests.bench.documents --messages 500  # a smaller corpus

Part 1, per document, each in a fresh worker process (:class:`maild.archive.document_worker.DocumentWorker`)
so that the worker's own start-up is measured apart: the CPU (user + system) of the worker process
(``RUSAGE_CHILDREN`` after it is reaped) and its peak RSS, medians of ``--repeat``; a PDF of 1, 10 and
50 pages (hand-written, Helvetica, ~60 words a page: tests/support/documents.py) and a DOCX.

Part 2, the indexer over the benchmark's corpus (tests/support/corpus.py, seed 0, default mix: its
"PDF" and "XLSX" attachments are random octets, so every one is a damaged document): the corpus is
stored first, then :meth:`maild.archive.store.Store.index_documents` runs to the end; the CPU of this
process (reading, MIME walk, transactions) and of the workers are reported apart, per message.

Speed and memory are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORDS = [
    "Heizkostenabrechnung",
    "Verbrauch",
    "Zählerstand",
    "Grundgebühr",
    "Abrechnungszeitraum",
    "Vorauszahlung",
    "Betrag",
    "Nachzahlung",
    "Wohnung",
    "Lindenstraße",
    "Eigentümer",
    "Verwaltung",
    "Wasser",
    "Heizung",
    "Warmwasser",
    "Kosten",
]


def _page(n: int) -> str:
    lines = []
    for line in range(40):
        lines.append(" ".join(WORDS[(n + line + k) % len(WORDS)] for k in range(6)) + f" {n}.{line}")
    return "\n".join(lines)


def _children() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one_document(kind: str, data: bytes | None) -> float:
    """CPU seconds of a fresh worker that extracts ``data`` (None: start-up only)."""
    from maild.archive.document_worker import DocumentWorker

    before, _ = _children()
    worker = DocumentWorker()
    try:
        await worker.extract("docx" if data is None else kind, data or _tiny_docx())  # type: ignore[arg-type]
    finally:
        await worker.close()
    after, _ = _children()
    return after - before


def _tiny_docx() -> bytes:
    from tests.support.documents import make_docx

    return make_docx(["x"])


async def per_document(repeat: int) -> None:
    from maild.archive.document_text import extract
    from tests.support.documents import make_docx, make_odt, make_pdf

    starts = [await _one_document("docx", None) for _ in range(repeat)]
    print(f"worker start-up (Python, pypdf import, one tiny DOCX): {statistics.median(starts):.3f} s CPU")
    print(f"peak RSS of a worker: {_children()[1]:.0f} MiB")
    cases: list[tuple[str, str, bytes, int]] = []
    for pages in (1, 4, 8, 50):
        cases.append((f"PDF, {pages} pages", "pdf", make_pdf([_page(n) for n in range(pages)]), pages))
    cases.append(("DOCX, 400 paragraphs", "docx", make_docx([_page(n) for n in range(10)]), 0))
    cases.append(("ODT, 400 paragraphs", "odf", make_odt([_page(n) for n in range(10)]), 0))
    extract("pdf", cases[0][2])  # import pypdf outside the measurement
    print(
        f"{'in the worker (same code, this process)':40} {'octets':>9} {'chars':>7} {'CPU ms':>8} {'ms/page':>8}"
    )
    for name, kind, data, pages in cases:
        times = []
        for _ in range(max(repeat, 5)):
            before = _self_cpu()
            text = extract(kind, data)  # type: ignore[arg-type]
            times.append(_self_cpu() - before)
        ms = statistics.median(times) * 1000
        per_page = f"{ms / min(pages, 8):8.2f}" if pages else f"{'':8}"
        print(f"{name:40} {len(data):>9} {len(text):>7} {ms:>8.2f} {per_page}")


async def corpus_run(count: int) -> None:
    from maild.archive.document_worker import DocumentWorker
    from maild.archive.store import Store
    from maild.model import POP3Key, RetrievedMessage
    from tests.support import corpus

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "archive.sqlite3"
        store = await Store.open(db)
        try:
            await store.ensure_account("bench", "Bench", "Anna", "pop3", NOW)
            batch: list[RetrievedMessage] = []
            for n, raw in enumerate(corpus.generate(count, seed=0)):
                batch.append(RetrievedMessage(POP3Key(f"u{n}"), raw))
                if len(batch) == 100:
                    await store.store_batch("bench", batch, NOW)
                    batch = []
            if batch:
                await store.store_batch("bench", batch, NOW)
            self_before, (children_before, _) = _self_cpu(), _children()
            worker = DocumentWorker()
            try:
                run, _ = await store.index_documents(worker)
            finally:
                await worker.close()
            self_cpu, children_cpu = _self_cpu() - self_before, _children()[0] - children_before
        finally:
            await store.close()
    print(
        f"corpus of {count} messages: {run.documents} PDF/XLSX attachments in {run.messages} messages"
        f" ({run.failures} unreadable), {worker.started} worker processes"
    )
    print(
        f"indexer CPU: this process {self_cpu:.2f} s ({self_cpu / count * 1000:.2f} ms per message),"
        f" workers {children_cpu:.2f} s ({children_cpu / max(run.documents, 1) * 1000:.1f} ms per attachment)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(per_document(args.repeat))
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)
    )  # no failure lines
    asyncio.run(corpus_run(args.messages))


if __name__ == "__main__":
    main()
