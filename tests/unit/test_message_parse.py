"""The one-pass parse of the store path gives what the separate scanners gave before it, and Cc."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from maild.archive.index_text import index_text
from maild.archive.mime import walk
from maild.archive.parse import parse
from maild.message import summarise
from tests.support import corpus
from tests.support.hostile_mime import hostile_messages

GOLDEN = Path(__file__).parent / "golden" / "parse_digests.json"
"""Digests of (summary, MIME leaves, index row) per message, made by the code before the one-pass parse
(three scanners: ``maild.message.summarise``, ``maild.archive.mime.walk``, ``index_text``'s own)."""


def _digest(raw: bytes) -> str:
    parsed = parse(raw)
    s = parsed.summary
    leaves = [
        (leaf.part, leaf.content_type, leaf.charset, leaf.filename, leaf.disposition, leaf.encoding, leaf.start, leaf.end)
        for leaf in parsed.leaves
    ]
    row = index_text(raw, parsed).row()
    value = (s.message_id, s.date.isoformat() if s.date else None, s.from_, s.to, s.subject, leaves, row)
    return hashlib.sha256(repr(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _check(name: str, messages: list[bytes]) -> None:
    expected = json.loads(GOLDEN.read_text())[name]
    assert len(messages) == len(expected)
    differing = [n for n, raw in enumerate(messages) if _digest(raw) != expected[n]]
    assert differing == [], f"{name}: messages {differing[:10]} parse differently from before"


def test_the_shared_parse_gives_the_old_results_on_the_corpus() -> None:
    """Summary, MIME parts and index row of 300 default-mix and 200 small-mix corpus messages are unchanged."""
    _check("corpus", list(corpus.generate(300, seed=0)))
    _check("small", list(corpus.generate(200, seed=5, size_mix=corpus.SMALL_MIX)))


def test_the_shared_parse_gives_the_old_results_on_hostile_and_broken_mime() -> None:
    """Hand-written broken messages and 150 seeded mutations parse exactly as before (and never raise)."""
    _check("hostile", list(hostile_messages()))


def test_the_shared_parse_agrees_with_the_separate_functions() -> None:
    """parse() gives summarise()'s summary and walk()'s parts, also for headers longer than a part's window."""
    long_header = b"From: a@example.org\r\n" + b"X-Pad: " + b"p" * 100_000 + b"\r\nCc: c@x\r\n\r\nbody\r\n"
    for raw in [*hostile_messages(), long_header]:
        parsed = parse(raw)
        assert parsed.summary == summarise(raw)
        assert parsed.leaves == walk(raw)


def test_cc_is_in_the_summary_first_field_unfolded_and_decoded() -> None:
    """The summary's Cc is the first Cc field, unfolded (RFC 5322 section 2.2.3) and RFC 2047-decoded."""
    raw = (
        b"From: a@example.org\r\ncc: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>,\r\n"
        b"\tk@example.de\r\nCc: second@example.org\r\n\r\nbody"
    )
    assert summarise(raw).cc == "Jürgen Müller <j@example.de>, k@example.de"
    assert summarise(b"From: a@example.org\r\n\r\nCc: in the body\r\n").cc is None


def test_the_index_holds_every_cc_field() -> None:
    """The index's recipients column holds To and every Cc field, one per line, as before."""
    raw = b"To: t@example.org\r\nCc: one@example.org\r\nCc: two@example.org\r\n\r\nx"
    assert index_text(raw).recipients == "t@example.org\none@example.org\ntwo@example.org"


def test_the_decode_cache_is_bounded_and_gives_what_decoding_gives() -> None:
    """decode_field remembers at most DECODE_CACHE_ENTRIES short bodies, and a remembered answer equals a fresh one."""
    from maild import message

    word = b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= <a@example.org>"
    assert message.decode_field(word) == message.decode_field(word) == message._decode_field(word)
    for n in range(message.DECODE_CACHE_ENTRIES + 10):
        message.decode_field(b"x%d@example.org" % n)
    assert len(message._decoded) <= message.DECODE_CACHE_ENTRIES
    long = b"y" * (message.DECODE_CACHE_MAX_OCTETS + 1)
    assert message.decode_field(long) == "y" * len(long)
    assert long not in message._decoded


def test_message_id_and_date_are_decoded_without_filling_the_cache() -> None:
    """Message-ID and Date, which differ from message to message, never enter the decode cache (they
    would only push out the From and To that repeat); From and To do; the summary is the same."""
    from maild import message

    message._decoded.clear()
    raw = (
        b"Message-ID: <unique-1@example.org>\r\nDate: Mon, 08 Jan 2024 08:56:00 +0200\r\n"
        b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nTo: a@example.org\r\n\r\nbody"
    )
    summary = summarise(raw)
    assert summary.message_id == "<unique-1@example.org>"
    assert summary.from_ == "Jörg <j@example.org>"
    assert set(message._decoded) == {b"=?utf-8?q?J=C3=B6rg?= <j@example.org>", b"a@example.org"}


def test_remembered_mime_parameters_equal_a_fresh_split_and_are_the_callers_own() -> None:
    """The MIME parameter split remembered for a field body equals a fresh split, is a new dict each
    time (a caller changing it changes nothing remembered), and the memory stays bounded."""
    from maild.archive import mime

    value = 'text/plain; charset="utf-8"; name*=utf-8\'\'%C3%A4.txt'
    first = mime._params(value)
    first[1]["charset"] = "changed"
    assert mime._params(value) == mime._split_params(value)
    assert mime._params(value)[1]["charset"] == "utf-8"
    for n in range(mime.PARAMS_CACHE_ENTRIES + 5):
        mime._params(f"multipart/mixed; boundary=b{n}")
    assert len(mime._params_seen) <= mime.PARAMS_CACHE_ENTRIES
