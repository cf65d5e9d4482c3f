"""Full-text search: what is indexed, that it is written with the message, reindex, ranking, filters, the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.fts import index_row
from maild.archive.index_text import MAX_BODY_CHARS, html_text, index_text
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.store import Store
from maild.cli.main import main
from maild.errors import StoreError
from maild.model import POP3Key, RetrievedMessage
from tests.support.archive import build_archive, letter, pop

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def unindex(db: Path, ids_sql: str) -> None:
    """Remove the index rows of the messages ``ids_sql`` selects, as a partial index would lack them."""
    with sqlite3.connect(db) as conn:
        rows = [index_row(n, bytes(raw)) for n, raw in conn.execute(f"SELECT id, raw FROM messages WHERE id IN ({ids_sql})")]
        conn.executemany(
            "INSERT INTO messages_fts (messages_fts, rowid, sender, recipients, subject, body, attachments)"
            " VALUES ('delete', ?, ?, ?, ?, ?, ?)",
            rows,
        )


MIXED = (
    b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\r\nTo: anna@example.com\r\n"
    b"Cc: buchhaltung@example.com\r\nSubject: =?iso-8859-1?q?Abrechnung_f=FCr_M=E4rz?=\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Anbei die Heizkostenabrechnung 2025 f=FCr die Wohnung in M=FCnchen.\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Anbei die <b>Heizkostenabrechnung</b></p>\r\n"
    b"--b2--\r\n"
    b'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="Zaehlerstand-Keller.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nSGVpemtvc3RlbmFicmVjaG51bmc=\r\n"
    b"--b1--\r\n"
)
HTML_ONLY = (
    b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=windows-1252\r\n\r\n"
    b"<html><head><style>.x {color: red}</style><script>var geheim = 1;</script></head>"
    b"<body><p>Sehr geehrte&nbsp;Frau Berger,</p><!-- versteckt --><p>Miete &amp; Nebenkosten<br>f\xe4llig.</p>"
    b"</body></html>\r\n"
)


def test_index_text_holds_decoded_headers_plain_text_and_file_names() -> None:
    """From/To/Cc/Subject decoded, the plain part in its charset (its HTML twin not twice), file names."""
    text = index_text(MIXED)

    assert text.sender == "Jürgen Müller <j@example.org>"
    assert text.recipients == "anna@example.com\nbuchhaltung@example.com"
    assert text.subject == "Abrechnung für März"
    assert text.body == "Anbei die Heizkostenabrechnung 2025 für die Wohnung in München."
    assert text.attachments == "Zaehlerstand-Keller.pdf"


def test_html_only_mail_is_reduced_to_text_without_scripts_styles_or_comments() -> None:
    """HTML-only mail is indexed as its text: entities decoded, script/style/comments dropped."""
    body = index_text(HTML_ONLY).body

    assert "Sehr geehrte\xa0Frau Berger," in body
    assert "Miete & Nebenkosten\nfällig." in body
    assert "geheim" not in body and "color" not in body and "versteckt" not in body
    assert html_text("<p>a</p><p>b</p>") == "a\nb"


def test_body_text_is_capped() -> None:
    """A huge text body is indexed up to MAX_BODY_CHARS characters."""
    raw = b"Subject: long\r\n\r\n" + b"wort " * (MAX_BODY_CHARS // 2)

    assert len(index_text(raw).body) == MAX_BODY_CHARS


def test_malformed_messages_still_give_index_text() -> None:
    """Unknown charsets, broken base64 and an unterminated multipart do not raise."""
    raw = (
        b"Subject: kaputt\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"SGFs!!bG8=\r\n--x\r\nContent-Type: text/plain; charset=rot13\r\n\r\nnoch da"
    )
    text = index_text(raw)

    assert text.subject == "kaputt"
    assert "noch da" in text.body


async def test_a_stored_message_is_searchable_at_once(tmp_path: Path) -> None:
    """store_batch writes the index row in the message's own transaction: search finds it right after."""
    db = tmp_path / "maild.sqlite3"
    async with await Store.open(db) as store:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", T0)
        await store.store_batch("anna-pop", [RetrievedMessage(POP3Key("u1"), MIXED)], T0)
        with ArchiveReader(db) as reader:
            hits = reader.search("heizkostenabrechnung", MessageFilter())
            assert reader.index_coverage() == (1, 1)

    assert len(hits) == 1
    assert "[Heizkostenabrechnung]" in hits[0].snippet


async def test_search_ranks_subject_matches_first_and_filters(tmp_path: Path) -> None:
    """A word in the Subject outranks the same word in a body; --account and --since filter."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(
        db,
        [
            ("anna-pop", pop(1), letter(1, subject="Hallo", body=b"die Nebenkosten sind da\r\n")),
            ("anna-pop", pop(2), letter(2, subject="Nebenkosten", date="Mon, 02 Mar 2026 10:00:00 +0000")),
            ("bob-pop", pop(3), letter(3, subject="Nebenkosten Bob")),
        ],
    )
    with ArchiveReader(db) as reader:
        ranked = [h.message.subject for h in reader.search("nebenkosten", MessageFilter())]
        only_anna = reader.search("nebenkosten", MessageFilter(account="anna-pop"))
        since = reader.search("nebenkosten", MessageFilter(since=datetime(2026, 3, 1, tzinfo=UTC)))
        phrase = reader.search('"sind da"', MessageFilter())
        prefix = reader.search("nebenkost*", MessageFilter(limit=1))

    assert ranked[-1] == "Hallo"
    assert {h.message.subject for h in only_anna} == {"Hallo", "Nebenkosten"}
    assert [h.message.subject for h in since] == ["Nebenkosten"]
    assert [h.message.subject for h in phrase] == ["Hallo"]
    assert len(prefix) == 1


async def test_text_that_is_not_fts5_syntax_is_searched_word_by_word(tmp_path: Path) -> None:
    """e-mail or 1.500,00 are not valid FTS5 queries: each word is searched as a quoted string instead."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1, body=b"Bitte 1.500,00 EUR per E-Mail\r\n"))])
    with ArchiveReader(db) as reader:
        assert len(reader.search("e-mail 1.500,00", MessageFilter())) == 1
        assert reader.search('"unclosed', MessageFilter()) == []


async def test_reindex_rebuilds_a_lost_or_partial_index(tmp_path: Path) -> None:
    """After the index rows are gone (as after an upgrade from schema 2), reindex restores every row."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n, subject=f"Vertrag {n}")) for n in range(1, 8)])
    unindex(db, "SELECT id FROM messages WHERE id > 2")
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (2, 7)

    async with await Store.open(db) as store:
        assert await store.reindex() == 7

    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (7, 7)
        assert len(reader.search("vertrag", MessageFilter())) == 7


async def test_search_on_an_archive_without_index_says_what_to_do(tmp_path: Path) -> None:
    """A schema-2 archive (no index yet) gets one line naming the migration and `maild reindex`."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE messages_fts")
        conn.execute("PRAGMA user_version = 2")
    with ArchiveReader(db) as reader, pytest.raises(StoreError, match="maild reindex"):
        reader.search("x", MessageFilter())


async def test_cli_search_json_and_partial_index_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """messages search --json prints objects with snippet and score; an incomplete index is warned about."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), MIXED), ("anna-pop", pop(2), letter(2))])
    unindex(db, "SELECT 2")

    assert main(["messages", "search", "--database", str(db), "--json", "Zaehlerstand"]) == 0
    captured = capsys.readouterr()
    (hit,) = json.loads(captured.out)
    assert hit["subject"] == "Abrechnung für März"
    assert "[Zaehlerstand]" in hit["snippet"]
    assert "only 1 of 2 messages are in the full-text index" in captured.err


async def test_only_the_newest_matches_are_ranked_when_there_are_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond RANK_WINDOW matches only the most recently stored are ranked; filters apply before the window."""
    from maild.archive import reader as reader_module

    db = tmp_path / "maild.sqlite3"
    await build_archive(
        db,
        [("bob-pop", pop(1), letter(1, subject="Mahnung Mahnung Mahnung"))]
        + [("anna-pop", pop(n), letter(n, body=b"eine Mahnung\r\n")) for n in range(2, 8)],
    )
    monkeypatch.setattr(reader_module, "RANK_WINDOW", 3)
    with ArchiveReader(db) as reader:
        everyone = reader.search("mahnung", MessageFilter())
        bob = reader.search("mahnung", MessageFilter(account="bob-pop"))

    assert len(everyone) == 3
    assert "Mahnung Mahnung Mahnung" not in {h.message.subject for h in everyone}
    assert [h.message.subject for h in bob] == ["Mahnung Mahnung Mahnung"]


def test_cli_reindex_fills_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`maild reindex` indexes every message of the configured archive and says how many."""
    import asyncio

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "c.sock"}"\n')
    db = tmp_path / "state" / "maild.sqlite3"
    asyncio.run(build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 5)]))
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('delete-all')")

    assert main(["-c", str(cfg), "reindex"]) == 0

    assert "4 messages indexed" in capsys.readouterr().out
    with ArchiveReader(db) as reader:
        assert reader.index_coverage() == (4, 4)


async def test_cli_search_exits_like_grep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`maild messages search`: 0 when a message matches, 1 when none does (with and without --json,
    which then prints an empty array), 2 when the search cannot run (no archive there), as grep's exit
    codes; the other archive commands keep 1 for an error."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1, subject="Vertrag"))])
    search = ["messages", "search", "--database", str(db)]

    assert main([*search, "Vertrag"]) == 0
    assert main([*search, "Gibtesnicht"]) == 1
    assert "no message matches" in capsys.readouterr().err
    assert main([*search, "--json", "Gibtesnicht"]) == 1
    assert json.loads(capsys.readouterr().out) == []
    assert main(["messages", "search", "--database", str(tmp_path / "missing.sqlite3"), "x"]) == 2
    assert main(["messages", "list", "--database", str(tmp_path / "missing.sqlite3")]) == 1  # others: 1
