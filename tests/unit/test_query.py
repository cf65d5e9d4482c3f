"""Read-only queries of the archive: message IDs, filters, JSON, text rendering, and the CLI on top."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.query import body_text, html_to_text, message_json, parse_since, render_show, resolve_id
from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.store import Store
from maild.cli.main import main
from maild.errors import QueryError, StoreError
from tests.support.archive import build_archive, imap, letter, pop

MULTIPART = (
    b"From: a@example.org\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n"
    b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe aus M=FCnchen\r\n"
    b"--b2--\r\n"
    b'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="rechnung.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    b"--b1--\r\n"
)
HTML_ONLY = (
    b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p {color: red}</style><script>alert(1)</script></head>"
    b"<body><p>Sehr geehrte&nbsp;Frau Berger,</p><p>Miete &amp; Nebenkosten<br>f\xc3\xa4llig.</p></body></html>\r\n"
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "maild.sqlite3"


async def sample_archive(db: Path) -> None:
    await build_archive(
        db,
        [
            (
                "anna-pop",
                pop(1),
                letter(
                    1,
                    sender="=?utf-8?q?J=C3=9CRGEN?= <j@example.org>",
                    date="Mon, 05 Jan 2026 10:00:00 +0000",
                ),
            ),
            (
                "anna-pop",
                pop(2),
                letter(2, subject="Nebenkosten 2025", date="Mon, 02 Feb 2026 10:00:00 +0000"),
            ),
            (
                "anna-imap",
                imap("INBOX", 1),
                letter(2, subject="Nebenkosten 2025", date="Mon, 02 Feb 2026 10:00:00 +0000"),
            ),
            ("bert-pop", pop(3), letter(3, date="Mon, 02 Mar 2026 10:00:00 +0000")),
        ],
        organisations={"bert-pop": "Praxis Weber"},
    )


def insert_fake_digests(db: Path, digests: list[str]) -> None:
    """Add message rows with chosen SHA-256 values (the archive does not re-hash on read)."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for i, digest in enumerate(digests):
            conn.execute(
                "INSERT INTO messages (sha256, size_octets, stored_at, raw) VALUES (?, 1, '2026-01-01T00:00:00Z', ?)",
                (digest, b"x%d" % i),
            )


async def test_ids_resolve_from_full_digest_or_unique_prefix(db: Path) -> None:
    """A full SHA-256 or a unique prefix of at least 8 hex digits (any case) names the message."""
    await sample_archive(db)
    with ArchiveReader(db) as reader:
        digest = reader.list_messages(MessageFilter(limit=1))[0].sha256
        assert resolve_id(reader, digest) == digest
        assert resolve_id(reader, digest[:8].upper()) == digest


@pytest.mark.parametrize(
    ("text", "error"),
    [("abc1234", "8 to 64 hex digits"), ("xyz12345678", "8 to 64 hex digits"), ("0" * 65, "8 to 64")],
)
async def test_malformed_ids_are_refused(db: Path, text: str, error: str) -> None:
    """IDs shorter than 8 digits, longer than 64, or not hex are refused with the expected form."""
    await sample_archive(db)
    with ArchiveReader(db) as reader, pytest.raises(QueryError, match=error):
        resolve_id(reader, text)


async def test_ambiguous_prefix_is_a_clear_error(db: Path) -> None:
    """A prefix shared by two messages is refused, naming both candidates."""
    await sample_archive(db)
    insert_fake_digests(db, ["deadbeef01" + "0" * 54, "deadbeef02" + "0" * 54])
    with ArchiveReader(db) as reader:
        with pytest.raises(QueryError, match=r"ambiguous.*2 messages.*deadbeef01.*deadbeef02"):
            resolve_id(reader, "deadbeef")
        assert resolve_id(reader, "deadbeef01") == "deadbeef01" + "0" * 54
        with pytest.raises(QueryError, match="no message with ID cafebabe"):
            resolve_id(reader, "cafebabe")


async def test_list_filters_and_orders_newest_first(db: Path) -> None:
    """Filters by account, organisation, date, From and Subject (case-insensitive, also umlauts) combine."""
    await sample_archive(db)

    def subjects(**kwargs: object) -> list[str | None]:
        with ArchiveReader(db) as reader:
            return [m.subject for m in reader.list_messages(MessageFilter(**kwargs))]  # type: ignore[arg-type]

    assert subjects() == ["Nachricht 3", "Nebenkosten 2025", "Nachricht 1"]
    assert subjects(account="anna-pop") == ["Nebenkosten 2025", "Nachricht 1"]
    assert subjects(account="anna-imap") == ["Nebenkosten 2025"]
    assert subjects(organisation="Praxis Weber") == ["Nachricht 3"]
    assert subjects(since=datetime(2026, 2, 2, 10, tzinfo=UTC)) == ["Nachricht 3", "Nebenkosten 2025"]
    assert subjects(from_text="jürgen") == ["Nachricht 1"]
    assert subjects(subject_text="NEBENKOSTEN") == ["Nebenkosten 2025"]
    assert subjects(limit=1) == ["Nachricht 3"]
    assert subjects(account="nobody") == []


async def test_json_reports_accounts_and_on_server_state(db: Path) -> None:
    """Each JSON object names its accounts and says whether any server still holds the message."""
    await sample_archive(db)
    store = await Store.open(db)
    try:
        await store.mark_deleted("anna-pop", [pop(1)], datetime(2026, 3, 3, tzinfo=UTC))
    finally:
        await store.close()
    with ArchiveReader(db) as reader:
        by_subject = {m.subject: message_json(m) for m in reader.list_messages(MessageFilter())}
    shared = by_subject["Nebenkosten 2025"]
    assert shared["accounts"] == ["anna-imap", "anna-pop"]
    assert shared["on_server"] is True
    assert {(loc["account"], loc["mailbox"]) for loc in shared["locations"]} == {
        ("anna-imap", "INBOX"),
        ("anna-pop", None),
    }
    deleted = by_subject["Nachricht 1"]
    assert deleted["on_server"] is False
    assert deleted["locations"] == [{"account": "anna-pop", "mailbox": None, "state": "deleted"}]
    assert deleted["from"] == "JÜRGEN <j@example.org>"
    assert deleted["date"] == "2026-01-05T10:00:00Z"
    assert len(deleted["id"]) == 64


def test_body_text_prefers_plain_and_decodes_it() -> None:
    """In multipart/alternative the text/plain part is shown, transfer encoding and charset decoded."""
    assert body_text(MULTIPART) == "Grüße aus München\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.org\r\nSubject: s\r\n\r\nline one\r\nline two\r\n",
        b"From: a@example.org\r\nSubject: s\r\nContent-Transfer-Encoding: base64\r\n\r\nbGluZSBvbmUNCmxpbmUgdHdvDQo=\r\n",
        b"From: a@example.org\r\nSubject: s\r\n\r\nline one\rline two\r\n",
    ],
    ids=["crlf", "crlf-in-base64", "stray-cr"],
)
def test_body_text_has_lf_line_ends(raw: bytes) -> None:
    """The body text (``messages show``, ``show --json`` body_text) ends lines with LF, not the wire's CRLF."""
    assert body_text(raw) == "line one\nline two\n"


def test_html_only_body_is_stripped_crudely() -> None:
    """An HTML-only message is shown without tags, scripts or styles, with entities decoded."""
    text = body_text(HTML_ONLY)
    assert "Sehr geehrte\xa0Frau Berger," in text or "Sehr geehrte Frau Berger," in text
    assert "Miete & Nebenkosten\nfällig." in text
    assert "alert" not in text
    assert "color" not in text
    assert "<" not in html_to_text("<b>x</b>")


async def test_show_lists_headers_locations_and_attachments(db: Path) -> None:
    """The show rendering has the ID, decoded headers, where the message is, attachments and the body."""
    await build_archive(db, [("anna-imap", imap("Archiv/2026", 4), MULTIPART)])
    with ArchiveReader(db) as reader:
        [summary] = reader.list_messages(MessageFilter())
        message = reader.message(summary.sha256, raw=True)
    assert message is not None
    text = render_show(message)
    assert text.startswith(f"ID: {summary.sha256}\n")
    assert "Subject: mixed\n" in text
    assert "Account: anna-imap Archiv/2026 (on-server)\n" in text
    assert "Attachment: rechnung.pdf (application/pdf, 5 octets)\n" in text
    assert text.endswith("\n\nGrüße aus München\n")


async def test_reader_cannot_write(db: Path) -> None:
    """The reader's connection is read-only: a write through it fails and changes nothing."""
    await sample_archive(db)
    with ArchiveReader(db) as reader:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("DELETE FROM messages")
        assert len(reader.list_messages(MessageFilter())) == 3


def test_reader_refuses_missing_archive(tmp_path: Path) -> None:
    """Opening an archive that does not exist is a StoreError (and creates no file)."""
    with pytest.raises(StoreError, match="does not exist"):
        ArchiveReader(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()


async def test_reader_sees_commits_while_store_is_open(db: Path) -> None:
    """A reader works while the daemon's Store holds the archive open and sees each new commit."""
    await sample_archive(db)
    store = await Store.open(db)
    try:
        with ArchiveReader(db) as reader:
            before = len(reader.list_messages(MessageFilter()))
            await build_archive_with(store, "anna-pop", 9)
            after = len(reader.list_messages(MessageFilter()))
    finally:
        await store.close()
    assert (before, after) == (3, 4)


async def build_archive_with(store: Store, account: str, n: int) -> None:
    from maild.model import RetrievedMessage

    await store.store_batch(account, [RetrievedMessage(pop(n), letter(n))], datetime(2026, 3, 4, tzinfo=UTC))


def test_since_accepts_dates_and_date_times() -> None:
    """--since takes a date (midnight UTC) or an ISO date-time, converted to UTC."""
    assert parse_since("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_since("2026-11-30T09:00+01:00") == datetime(2026, 11, 30, 8, tzinfo=UTC)
    with pytest.raises(QueryError, match="expected a date"):
        parse_since("yesterday")


# -- the CLI on top -------------------------------------------------------------------------------


async def test_cli_list_json_show_and_raw(db: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """`messages list --json`, `show` and `raw` work with --database; raw prints the exact stored octets."""
    raw = letter(7, body=b"\x00\xff exact\r\nFrom here\r\n")
    await build_archive(db, [("anna-pop", pop(7), raw)])

    assert main(["messages", "list", "--database", str(db), "--json"]) == 0
    [item] = json.loads(capfdbinary.readouterr().out)
    assert item["subject"] == "Nachricht 7"

    assert main(["messages", "show", "--database", str(db), item["id"][:10]]) == 0
    assert b"Subject: Nachricht 7" in capfdbinary.readouterr().out

    assert main(["messages", "raw", "--database", str(db), item["id"]]) == 0
    assert capfdbinary.readouterr().out == raw


async def test_cli_ambiguous_id_is_one_line_and_exit_1(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ambiguous prefix on the command line exits 1 with one clear line on stderr."""
    await sample_archive(db)
    insert_fake_digests(db, ["abcdef0001" + "0" * 54, "abcdef0002" + "0" * 54])
    assert main(["messages", "raw", "--database", str(db), "abcdef00"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ambiguous" in err


async def test_cli_export_reports_counts(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild export --maildir` prints what it wrote; a second run writes nothing, without progress off a TTY."""
    await sample_archive(db)
    target = tmp_path / "out"
    assert main(["export", "--database", str(db), "--account", "anna-pop", "--maildir", str(target)]) == 0
    assert main(["export", "--database", str(db), "--account", "anna-pop", "--maildir", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"anna-pop: 2 messages written to {target}, 0 already there (2 selected)",
        f"anna-pop: 0 messages written to {target}, 2 already there (2 selected)",
    ]
    assert captured.err == ""
