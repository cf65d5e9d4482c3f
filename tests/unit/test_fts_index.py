"""The contentless full-text index: the schema-9 migration, purges, rebuilds, and snippets made in Python."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive import fts
from maild.archive.index_text import MAX_BODY_CHARS
from maild.archive.move_queries import MigrationStore
from maild.archive.query import render_list, score_value
from maild.archive.reader import ArchivedMessage, ArchiveReader, LocationState, MessageFilter
from maild.archive.schema import FTS_COLUMNS
from maild.archive.snippet import make_snippet, query_terms
from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import POP3Key, RetrievedMessage
from tests.support.archive import build_archive, letter, pop

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
V3_TABLE = (
    f"CREATE VIRTUAL TABLE messages_fts USING fts5 ({', '.join(FTS_COLUMNS)},"
    " tokenize = 'unicode61 remove_diacritics 2')"
)


def tables(db: Path) -> set[str]:
    """Names of the tables in the archive at ``db``."""
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def subjects(db: Path, query: str) -> list[str | None]:
    """Subjects of the messages ``query`` finds, best first."""
    with ArchiveReader(db) as reader:
        return [h.message.subject for h in reader.search(query, MessageFilter())]


async def test_upgrading_a_schema_8_archive_makes_the_index_contentless_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps: an archive with the version-3 index (a copy of the text, two of three messages indexed)
    at schema 8; the store opens it: schema 9, no text copy, every message found; a reindex right
    after does not rebuild it a second time."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n, subject=f"Vertrag {n}")) for n in (1, 2, 3)])
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE messages_fts")
        conn.execute(V3_TABLE)
        conn.execute(
            "INSERT INTO messages_fts (rowid, subject) SELECT id, subject FROM messages WHERE id < 3"
        )
        conn.execute("PRAGMA user_version = 8")
    assert "messages_fts_content" in tables(db)

    async with await Store.open(db) as store:
        rebuilt = store.reindex  # `maild reindex` right after: the migration rebuilt it already

        async def not_again(*args: object) -> int:
            raise AssertionError("rebuilt twice")

        monkeypatch.setattr(fts, "rebuild", not_again)
        assert await rebuilt() == 3

    assert "messages_fts_content" not in tables(db)
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (3, 3)
    assert sorted(subjects(db, "vertrag")) == ["Vertrag 1", "Vertrag 2", "Vertrag 3"]


async def test_a_purged_message_leaves_nothing_in_the_index(tmp_path: Path) -> None:
    """Steps: purge an account whose message has the highest id; store a new message, which SQLite gives
    that id again; the purged message's words find nothing (the index forgot them, it did not just
    lose the link)."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(
        db,
        [
            ("keep", pop(1), letter(1, subject="Bleibt", body=b"Hausordnung\r\n")),
            ("gone", pop(2), letter(2, subject="Geht", body=b"Wasserschaden Dachboden\r\n")),
        ],
    )
    store = await MigrationStore.open(db)
    try:
        assert await store.purge_account("gone") == 1
        await store.ensure_account("late", "Kanzlei", "Anna", "pop3", T0)
        await store.store_batch("late", [RetrievedMessage(POP3Key("n1"), letter(3, subject="Neu"))], T0)
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(id) FROM messages").fetchone() == (2,)  # the id came back
    assert subjects(db, "wasserschaden") == []
    assert subjects(db, "geht") == []
    assert subjects(db, "neu") == ["Neu"]
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (2, 2)


async def test_reindex_replaces_the_index_and_keeps_messages_stored_meanwhile(tmp_path: Path) -> None:
    """Steps: reindex fills a new table beside the old one; the daemon stores a message just before
    the swap (into the old table); after the swap that message is found too, the rebuild table is gone."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n, subject=f"Vertrag {n}")) for n in (1, 2)])
    store = await Store.open(db)
    progress: list[tuple[int, int]] = []
    try:
        original = store._atomic

        async def atomic(work, what):  # type: ignore[no-untyped-def]
            if what == "replacing the index":  # between the last chunk and the swap
                late = RetrievedMessage(POP3Key("u3"), letter(3, subject="Vertrag 3"))
                await store.store_batch("anna-pop", [late], T0)
            return await original(work, what)

        store._atomic = atomic  # type: ignore[method-assign]
        assert await store.reindex(lambda done, total: progress.append((done, total))) == 3
    finally:
        await store.close()

    assert progress == [(2, 2)]
    assert "messages_fts_rebuild" not in tables(db)
    assert sorted(subjects(db, "vertrag")) == ["Vertrag 1", "Vertrag 2", "Vertrag 3"]
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (3, 3)


async def test_reindex_refuses_an_index_with_rows_of_messages_purged_meanwhile(tmp_path: Path) -> None:
    """Steps: reindex fills the new table; an account is purged before the swap; reindex fails with one
    line saying to run it again, the old index stays in use and without the purged message's words."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(
        db,
        [
            ("keep", pop(1), letter(1, subject="Vertrag 1")),
            ("gone", pop(2), letter(2, subject="Vertrag 2", body=b"Wasserschaden\r\n")),
        ],
    )
    store = await MigrationStore.open(db)
    try:
        original = store._atomic

        async def atomic(work, what):  # type: ignore[no-untyped-def]
            if what == "replacing the index":
                assert await store.purge_account("gone") == 1
            return await original(work, what)

        store._atomic = atomic  # type: ignore[method-assign]
        with pytest.raises(StoreError, match=r"1 messages were deleted during the rebuild; run `maild reindex` again"):
            await store.reindex()
        store._atomic = original  # type: ignore[method-assign]
        assert await store.reindex() == 1  # the next run starts afresh
    finally:
        await store.close()

    assert subjects(db, "vertrag") == ["Vertrag 1"]
    assert subjects(db, "wasserschaden") == []


def test_query_terms_keep_words_phrases_and_prefixes_but_not_operators_or_negated_words() -> None:
    """Keywords, column filters and the term after NOT are not highlighted; ``word*`` is a prefix."""
    terms = query_terms('subject:Heizung "Mit freundlichen" Wasser* NOT Keller OR (Grüße AND x)')
    assert [(t.word, t.prefix) for t in terms] == [
        ("heizung", False), ("mit", False), ("freundlichen", False), ("wasser", True), ("gruße", False),
        ("x", False),
    ]  # fmt: skip


def test_snippet_marks_matches_folded_like_the_index() -> None:
    """Case and diacritics are folded as the tokenizer folds them; prefixes match longer words."""
    raw = letter(1, subject="Hallo", body=b"Der Z\xc3\xa4hlerstand im Keller und der Wasserschaden im Hof.\r\n")
    snippet = make_snippet(raw, "zahlerstand wasser*")
    assert snippet == "Der [Zählerstand] im Keller und der [Wasserschaden] im Hof."


def test_snippet_quotes_a_window_around_the_best_spot_with_ellipses() -> None:
    """A long body is quoted around the matches, about a dozen words, with … where text is left out."""
    body = b" ".join(b"wort%d" % n for n in range(200)) + b" Mahnung " + b" ".join(b"rest%d" % n for n in range(50))
    snippet = make_snippet(letter(1, body=body), "mahnung")
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert "[Mahnung]" in snippet
    assert len(snippet.split()) <= 14


def test_snippet_prefers_the_column_with_more_of_the_query() -> None:
    """The subject is quoted when it holds the words; the body's start when nothing matches."""
    raw = letter(1, subject="Nebenkosten Abrechnung 2025", body=b"Anbei die Nebenkosten.\r\n")
    assert make_snippet(raw, "nebenkosten abrechnung") == "[Nebenkosten] [Abrechnung] 2025"
    assert make_snippet(raw, "nichts") == "Anbei die Nebenkosten."


def test_text_beyond_the_body_limit_is_not_searchable(tmp_path: Path) -> None:
    """Words after MAX_BODY_CHARS characters of body text are not in the index (the documented limit)."""
    import asyncio

    db = tmp_path / "maild.sqlite3"
    body = b"fuell " * (MAX_BODY_CHARS // 5) + b"Spaetwort\r\n"
    asyncio.run(build_archive(db, [("anna-pop", pop(1), letter(1, body=b"Fruehwort " + body))]))
    assert subjects(db, "fruehwort") == ["Nachricht 1"]
    assert subjects(db, "spaetwort") == []


def test_snippets_survive_queries_full_of_syntax_and_expression_characters() -> None:
    """Query text is never an expression: brackets, backslashes, quotes and stars only mark words or nothing."""
    raw = letter(1, subject="Preis (netto)", body=b"Summe 1.500,00 EUR [brutto] a\\b*c\r\n")
    for query in ('(.*)+', '"unclosed', "\\", "a\\b*", "[brutto]", "NOT", '""', "*", "sender:", "x" * 5000, "ä " * 100):
        assert isinstance(make_snippet(raw, query), str)
    assert make_snippet(raw, '"1.500,00"') == "Summe [1].[500],[00] EUR [brutto] a\\b*c"
    assert make_snippet(raw, "(netto)") == "Preis ([netto])"


def _message(subject: str, accounts: list[str]) -> ArchivedMessage:
    return ArchivedMessage(
        id=1, sha256="ab" * 32, size_octets=1234, message_id=None, date="2026-03-02T09:00:00Z",
        from_header="Jürgen <j@example.org>", to_header=None, subject=subject, stored_at="2026-03-02T09:00:00Z",
        locations=[LocationState(a, None, "on-server") for a in accounts],
    )  # fmt: skip


def test_list_columns_line_up_with_wide_characters_and_long_account_names() -> None:
    """Each column starts at the same terminal column on every line: CJK and emoji count two, accents none."""
    import unicodedata

    rows = render_list(
        [
            _message("Abrechnung", ["anna-pop"]),
            _message("請求書 🧾 " * 8, ["buchhaltung-imap", "anna-pop"]),
            _message("Zäh\u0308ler", ["x"]),
        ]
    ).split("\n")

    def column_of(line: str, text: str) -> int:
        before = line[: line.index(text)]
        return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in before)

    assert len({column_of(line, "  1234  ") for line in rows[1:]}) == 1
    assert len({column_of(line, "on-server") for line in rows[1:]}) == 1
    assert column_of(rows[0], "STATE") == column_of(rows[1], "on-server")


def test_scores_are_never_minus_zero() -> None:
    """A tiny BM25 score (a word in most messages) keeps 4 significant digits; zero is 0.0."""
    assert score_value(-2.41357e-06) == -2.414e-06
    assert str(score_value(-0.0)) == "0.0"
    assert score_value(-3.14159) == -3.142
