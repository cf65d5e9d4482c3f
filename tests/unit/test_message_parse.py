"""The one-pass parse of the store path gives what the separate scanners gave before it, and Cc."""

from __future__ import annotations

import email.utils
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
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


def _stdlib_date(value: str) -> datetime | None:
    """parse_date as it was: the stdlib parser for every form."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


_DATES = [
    "Mon, 2 Mar 2026 09:00:00 +0100",
    "Mon,  2 Mar 2026 09:00:00 +0100",
    "2 Mar 2026 09:00 -0530",
    "Sun, 29 Feb 2032 23:59:59 -0000",
    "Tue, 31 Dec 9999 23:59:59 -1200",
    "Sat, 1 Jan 1000 00:00:00 +1400",
    "Mon, 30 Feb 2026 09:00:00 +0100",
    "Mon, 2 Mar 2026 24:00:00 +0100",
    "Mon, 2 Mar 2026 09:00:60 +0100",
    "Mon, 2 Mar 2026 09:00:00 +2400",
    "Mon, 2 Mar 2026 09:00:00 +0199",
    "Mon, 2 MAR 2026 09:00:00 +0100",
    "Mon, 2 Foo 2026 09:00:00 +0100",
    "Mon, 2 Mar 0099 09:00:00 +0100",
    "Mon, 2 Mar 26 09:00:00 +0100",
    "Mon, 2 Mar 2026 09:00:00 GMT",
    "Mon, 2 Mar 2026 09:00:00 +0100 (CET)",
    "Mon 2 Mar 2026 09:00:00 +0100",
    "2026-03-02T09:00:00Z",
    "",
    "gestern",
]


def test_the_common_date_form_parses_as_the_stdlib_does() -> None:
    """parse_date's own reading of the common form gives the stdlib's result (or its None) for edge cases
    and for every Date field of 500 corpus messages."""
    from maild.message import _parse_common_date, parse_date, scan_header

    values = list(_DATES)
    for raw in corpus.generate(500, seed=2):
        for _name, body in scan_header(raw, (b"date",)).fields:
            values.append(" ".join(body.decode("utf-8", "replace").split()))
    assert sum(_parse_common_date(v) is not None for v in values) > 400  # the fast path is taken
    for value in values:
        assert parse_date(value) == _stdlib_date(value), value


def test_utc_text_is_the_strftime_text() -> None:
    """utc_text formats by hand exactly what strftime gave, padding and all, in and out of UTC."""
    from maild.archive.schema import parse_utc, utc_text

    moments = [
        datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1000, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(999, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    for moment in moments:
        assert utc_text(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_utc(utc_text(moments[1])) == moments[1].replace(microsecond=0)
