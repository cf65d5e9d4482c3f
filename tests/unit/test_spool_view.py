"""The spool is read once: what the store parses of a spooled message (header summary, MIME parts,
has_documents, index text) comes from octets kept while it was written (maild/spool_view.py), equal
by construction to the same parse of the octets in memory, and without reading the spool file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from maild.archive.document_kind import has_documents
from maild.archive.index_text import index_text
from maild.archive.parse import parse
from maild.spool import SPOOL_HEAD_OCTETS, Spool, SpooledBody
from maild.spool_view import SPOOL_MARK_OCTETS, SPOOL_MARKS_MAX_OCTETS, SpooledView
from tests.bench.run import bench_mix
from tests.support import corpus

#: Messages of at least 1 MiB in the benchmark's 2,000-message corpus (seed 1, its size mix): a
#: sample of the 64 (tests/bench/run.py seeds them; ``python3 -m tests.bench.spool_cpu parse`` checks
#: all 64 alike: equal, no file read).
BENCH_LARGE = (25, 56, 222, 305, 698, 883, 1029, 1383, 1568, 1981)


def spooled(spool: Spool, raw: bytes, cuts: list[int] | None = None, part: int = 300_000) -> SpooledBody:
    """``raw`` written in parts: split at ``cuts`` (offsets) or in irregular parts of up to ``part``."""
    writer = spool.writer()
    if cuts is None:
        rnd = random.Random(len(raw))
        cuts, pos = [], 0
        while pos < len(raw):
            pos += rnd.randint(1, part)
            cuts.append(pos)
    pos = 0
    for cut in [*cuts, len(raw)]:
        if cut > pos:
            writer.write(memoryview(raw)[pos:cut] if cut % 2 else raw[pos:cut])  # views as POP3 gives
            pos = cut
    return writer.finish()


def store_view(raw: bytes | SpooledView) -> tuple[object, ...]:
    """What the store path computes from a message (maild.archive.batches._prepare)."""
    parsed = parse(raw)  # type: ignore[arg-type]
    return (
        parsed.summary,
        parsed.cc_fields,
        parsed.leaves,
        has_documents(parsed.leaves),
        index_text(raw, parsed),
    )  # type: ignore[arg-type]


def assert_read_once(body: SpooledBody, raw: bytes) -> SpooledView:
    """The parse of ``body`` equals that of ``raw`` and needed no read of the spool file."""
    view = SpooledView(body)
    assert store_view(view) == store_view(raw)
    assert view.file_reads == 0
    return view


def document(name: str, octets: int) -> bytes:
    """A base64 attachment part of about ``octets``."""
    return (
        f'Content-Type: application/pdf; name="{name}"\r\nContent-Disposition: attachment;'
        f' filename="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'.encode()
        + b"JVBERi0xLjQKJcfsj6IK\r\n" * (octets // 22)
    )


def multipart(boundary: str, parts: list[bytes], subtype: str = "mixed") -> bytes:
    """A multipart body with its Content-Type header (as a part or a message's last header field)."""
    b = boundary.encode()
    body = b"".join(b"--" + b + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + b + b"--\r\n"
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode() + body


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHallo -- gleich kommt der Anhang.\r\n-- \r\nGruss\r\n"
HEADER = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Anhang\r\nMIME-Version: 1.0\r\n"


@pytest.mark.parametrize("index", BENCH_LARGE)
def test_benchmark_corpus_large_messages_parse_from_kept_octets(tmp_path: Path, index: int) -> None:
    """Each large message of the benchmark corpus parses alike from its kept octets, reading no file."""
    raw = corpus.corpus_message(index, seed=1, size_mix=bench_mix())
    assert len(raw) >= 2**20
    assert_read_once(spooled(Spool(tmp_path), raw), raw)


def test_document_part_after_the_head_is_seen(tmp_path: Path) -> None:
    """A document part that begins past the head (256 KiB) sets has_documents and lists its name."""
    raw = HEADER + multipart(
        "outer",
        [TEXT, document("bild.png", 400_000).replace(b"pdf", b"png"), document("vertrag.pdf", 300_000)],
    )
    assert raw.find(b"vertrag.pdf") > SPOOL_HEAD_OCTETS
    view = assert_read_once(spooled(Spool(tmp_path), raw), raw)
    assert store_view(view)[3] is True


def test_boundary_split_across_two_writes_at_every_offset(tmp_path: Path) -> None:
    """A delimiter line past the head split between two writes at every offset (the "--" itself too)
    is kept whole."""
    raw = HEADER + multipart("grenze", [TEXT, document("a.pdf", 600_000), document("b.pdf", 500_000)])
    delim = raw.find(b"\r\n--grenze", SPOOL_HEAD_OCTETS + 1)
    assert delim > SPOOL_HEAD_OCTETS
    spool = Spool(tmp_path)
    for cut in range(delim - 3, delim + 16):
        body = spooled(spool, raw, [SPOOL_HEAD_OCTETS // 2, cut, cut + 1, cut + 3])
        assert_read_once(body, raw)
        body.close()


def test_nested_multiparts_past_the_head(tmp_path: Path) -> None:
    """Nested multiparts whose inner boundaries and part headers all lie past the head."""
    inner = multipart(
        "inner-2",
        [b"Content-Type: text/plain\r\n\r\nplain\r\n", b"Content-Type: text/html\r\n\r\n<p>html</p>\r\n"],
        "alternative",
    )
    deeper = multipart("inner-3", [document("c.pdf", 200_000), inner], "mixed")
    raw = HEADER + multipart(
        "outer", [TEXT, document("a.pdf", 700_000), inner, deeper, document("d.pdf", 100)]
    )
    body = spooled(Spool(tmp_path), raw, part=65_537)
    view = assert_read_once(body, raw)
    leaves = store_view(view)[2]
    assert [leaf.part for leaf in leaves] == ["1", "2", "3.1", "3.2", "4.1", "4.2.1", "4.2.2", "5"]  # type: ignore[attr-defined]


def test_hyphens_and_dash_rules_in_text(tmp_path: Path) -> None:
    """Hyphens, signature separators and dash rules, also at a write's end, change nothing."""
    rules = (b"Ein Text-Teil mit Binde-Strichen\r\n" + b"-" * 75 + b"\r\n-- \r\n") * 2000
    raw = HEADER + multipart(
        "r", [TEXT, document("a.pdf", 300_000), b"Content-Type: text/plain\r\n\r\n" + rules]
    )
    spool = Spool(tmp_path)
    for part in (1_000, 4_096, 77_777):
        body = spooled(spool, raw, part=part)
        view = SpooledView(body)
        assert store_view(view) == store_view(raw)
        body.close()


def test_past_the_marks_bound_parses_alike_from_the_file(tmp_path: Path) -> None:
    """More dashes past the head than SPOOL_MARKS_MAX_OCTETS: the kept octets stop there and the rest
    is read from the file, still giving the same parse."""
    rules = (b"x\r\n--\r\n" + b"y" * (SPOOL_MARK_OCTETS + 10)) * (
        SPOOL_MARKS_MAX_OCTETS // SPOOL_MARK_OCTETS + 8
    )
    raw = HEADER + multipart(
        "m",
        [
            TEXT,
            document("a.pdf", 300_000),
            b"Content-Type: text/plain\r\n\r\n" + rules,
            document("z.pdf", 1000),
        ],
    )
    body = spooled(Spool(tmp_path), raw)
    assert body.kept.marks_to < body.size_octets
    assert body.kept.octets <= SPOOL_HEAD_OCTETS + SPOOL_MARKS_MAX_OCTETS + SPOOL_MARK_OCTETS
    view = SpooledView(body)
    assert store_view(view) == store_view(raw)
    assert view.file_reads > 0


def test_long_part_header_past_the_head_is_read_from_the_file(tmp_path: Path) -> None:
    """A part header section longer than SPOOL_MARK_OCTETS past the head is read from the file: same parse."""
    long_header = b"X-Padding: " + b"p" * (SPOOL_MARK_OCTETS + 100) + b"\r\n"
    raw = HEADER + multipart("h", [TEXT, document("a.pdf", 300_000), long_header + document("b.pdf", 1000)])
    view = SpooledView(spooled(Spool(tmp_path), raw))
    assert store_view(view) == store_view(raw)
    assert store_view(view)[3] is True
    assert view.file_reads > 0


def test_view_find_of_dash_strings_equals_bytes_find(tmp_path: Path) -> None:
    """find of any string beginning with "--" from any start to any end answers as bytes.find."""
    rnd = random.Random(5)
    pieces = [b"--b\r\n", b"---\r\n", b"a-b\r\n", b"--", b"-", b"\r\n--b--\r\n", b"x" * 50_000]
    raw = b"".join(rnd.choice(pieces) for _ in range(30))
    raw = b"H: v\r\n\r\n" + b"y" * SPOOL_HEAD_OCTETS + raw
    view = SpooledView(spooled(Spool(tmp_path), raw, part=40_000))
    subs = [b"--", b"--b", b"--b--", b"---", b"--b\r\n", b"--zz"]
    for _ in range(400):
        sub = rnd.choice(subs)
        start = rnd.randint(0, len(raw))
        end = rnd.randint(start, len(raw) + 5)
        assert view.find(sub, start, end) == raw.find(sub, start, end), (sub, start, end)
    assert view._marks_to == len(raw)
    assert view.file_reads == 0
