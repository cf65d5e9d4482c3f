"""Read-only queries of the archive for ``maild messages`` and ``maild export`` (:class:`ArchiveReader`).

A synchronous ``sqlite3`` connection opened with ``mode=ro``, separate from the daemon's writer in
:mod:`maild.archive.store`; one of the ``store_*`` modules, the only ones that contain SQL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from maild.archive.schema import DOCUMENTS_PENDING_SQL, QUERY_CHUNK, SCHEMA_VERSION, utc_text
from maild.archive.snippet import SNIPPET_SOURCE_OCTETS, make_snippet
from maild.archive.wal_guard import unrecovered_log_refusal
from maild.errors import StoreError
from maild.model import HeaderSummary


@dataclass(frozen=True, slots=True)
class LocationState:
    """Where one account holds or held a message, for queries.

    Attributes:
        account: the account name.
        mailbox: the IMAP mailbox (readable name), or None for POP3.
        state: ``"on-server"``, ``"gone"`` (no longer seen on the server) or ``"deleted"`` (by maild).
    """

    account: str
    mailbox: str | None
    state: str


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One archived message as queries see it; ``raw`` is only filled when asked for.

    Attributes:
        id: the ``messages.id`` row id (internal; the stable identity is ``sha256``).
        sha256: SHA-256 of the raw octets, hex: the ID shown by ``maild messages``.
        size_octets: size in octets.
        message_id, date, from_header, to_header, subject: parsed header fields (``date`` in UTC,
            ISO 8601 text), each None when absent.
        cc_header: the decoded Cc field (schema version 12), None when absent.
        stored_at: when it entered the archive (UTC, ISO 8601 text).
        locations: where accounts hold or held it.
        raw: the exact stored octets, or None.
    """

    id: int
    sha256: str
    size_octets: int
    message_id: str | None
    date: str | None
    from_header: str | None
    to_header: str | None
    subject: str | None
    stored_at: str
    locations: tuple[LocationState, ...] = ()
    raw: bytes | None = None
    cc_header: str | None = None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What ``maild messages list`` selects; every criterion is optional.

    Attributes:
        account: only messages linked to this account.
        organisation: only messages linked to an account of this organisation.
        since: only messages dated at or after this moment (aware; the Date field, or when it was
            stored for messages without a usable Date).
        from_text, subject_text: case-insensitive substring of the From / Subject field.
        limit: at most this many, newest first; None for all.
    """

    account: str | None = None
    organisation: str | None = None
    since: datetime | None = None
    from_text: str | None = None
    subject_text: str | None = None
    limit: int | None = None


_SUMMARY_COLUMNS = (
    "m.id, m.sha256, m.size_octets, m.message_id, m.date, m.from_header, m.to_header, m.subject, m.stored_at,"
    " m.cc_header"
)
_SUMMARY_WIDTH = 10
"""Columns of :data:`_SUMMARY_COLUMNS`; what a query selects after them starts at this index."""
_SINCE = "(m.date >= ? OR (m.date IS NULL AND m.stored_at >= ?))"
_EXPORT_CHUNK_OCTETS = 32 * 2**20


_DOCUMENTS_PENDING_BEFORE_13_SQL = (
    "SELECT id FROM messages WHERE id > ? AND id NOT IN (SELECT message FROM document_text)"
)
""":data:`~maild.archive.schema.DOCUMENTS_PENDING_SQL` for schema versions 11 and 12, which have
``document_text`` but not ``messages.has_documents`` (a search of such an archive stopped at "no such
column: has_documents": QA of session 14)."""

_FTS5_QUERY_ERRORS = ("fts5: syntax error", "no such column", "unterminated string", "unknown special query")
RANK_WINDOW = 2000
"""Matches ranked per search, at most: when a query matches more messages (after the filters), only the
most recently stored this many are ranked (BM25 reads every match's positions: a word in all of
100,000 messages took 1.1 s to rank, see docs/performance.md); the rest are not shown."""
BM25_WEIGHTS = (3.0, 1.5, 4.0, 1.0, 2.0)
"""BM25 weight of each ``messages_fts`` column (sender, recipients, subject, body, attachments)."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result.

    Attributes:
        message: the message, with its locations.
        snippet: matching text with the matches in ``[`` ``]``, from the best-matching column.
        score: BM25 rank; lower is better (FTS5 convention).
    """

    message: ArchivedMessage
    snippet: str
    score: float


def _filter_sql(flt: MessageFilter) -> tuple[list[str], list[Any]]:
    """WHERE conditions (over ``messages m``) and their parameters for ``flt``, without its limit."""
    where: list[str] = []
    params: list[Any] = []
    if flt.account is not None or flt.organisation is not None:
        where.append(
            "m.id IN (SELECT l.message FROM locations l JOIN accounts a ON a.name = l.account"
            " WHERE (? IS NULL OR l.account = ?) AND (? IS NULL OR a.organisation = ?))"
        )
        params += [flt.account, flt.account, flt.organisation, flt.organisation]
    if flt.since is not None:
        where.append(_SINCE)
        params += [utc_text(flt.since)] * 2
    if flt.from_text:
        where.append("maild_contains(m.from_header, ?)")
        params.append(flt.from_text)
    if flt.subject_text:
        where.append("maild_contains(m.subject, ?)")
        params.append(flt.subject_text)
    return where, params


def _summary(message: ArchivedMessage) -> HeaderSummary:
    """The decoded header fields the archive keeps, for :func:`maild.archive.snippet.make_snippet`."""
    m = message
    return HeaderSummary(None, None, m.from_header, m.to_header, m.subject, m.cc_header)


_SQLITE_HEADER_OCTETS = 20
"""Octets of the SQLite file header read by :func:`_open_problem`: bytes 18 and 19 are the file format's
write and read versions, 2 in WAL mode (https://www.sqlite.org/fileformat2.html#database_header)."""


def _open_problem(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's words for a failed first read of the archive at ``path``, named plainly when the cause is
    the missing side files: the archive is in WAL mode, its ``-shm`` is missing, and a read-only reader
    may not create it (a directory it may not write: "attempt to write a readonly database"; a
    read-only file system: "unable to open database file"). An older maild's clean stop, a copy of
    the main file alone or a restore by hand leaves the archive so (docs/archive.md, "Reading while
    the daemon is stopped")."""
    shm = path.with_name(path.name + "-shm")
    try:
        with path.open("rb") as fh:
            header = fh.read(_SQLITE_HEADER_OCTETS)
        missing = not shm.exists()
        read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return str(exc)
    if not missing or header[18:20] != b"\x02\x02":
        return str(exc)
    where = f"the read-only file system holding {path.parent}" if read_only else str(path.parent)
    return (
        f"cannot be read without its side files {shm.name} and {path.name}-wal, which are missing and"
        f" which this reader may not create in {where} ({exc}); start the daemon once or run"
        ' `maild reindex` as its user, which leave them for readers (docs/archive.md, "Reading while'
        ' the daemon is stopped")'
    )


def _contains(haystack: str | None, needle: str) -> bool:
    return haystack is not None and needle.casefold() in haystack.casefold()


class ArchiveReader:
    """Synchronous, read-only access to the archive for ``maild messages`` and ``maild export``.

    The file is opened with SQLite's ``mode=ro``: nothing can be written through this connection,
    and it works while the daemon runs (in WAL mode readers and the writer do not block each other;
    each query sees the last commit before it started). Close with :meth:`close` or ``with``.

    Raises:
        StoreError: (from every method) the file is missing, not a maild archive, or SQLite fails.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise StoreError(f"archive {path} does not exist (is daemon.state_dir right?)")
        lost = unrecovered_log_refusal(path)  # it would read a state without those commits
        if lost is not None:
            raise StoreError(lost)
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open archive {path} read-only: {exc}") from None
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.create_function("maild_contains", 2, _contains, deterministic=True)
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"archive {path}: {_open_problem(exc, path)}") from None
        if not 2 <= version <= SCHEMA_VERSION:
            self._db.close()
            # Say what to do (QA of session 15): an old archive is upgraded by the writers at their
            # start, a newer one needs a newer maild (docs/backup.md, "Upgrading").
            remedy = (
                "`maild run` (or `maild fetch`) upgrades it at its start; back it up first (maild backup)"
                if version < 2
                else "it is newer than this maild: upgrade maild"
            )
            raise StoreError(
                f"archive {path} has schema version {version}; this maild reads versions 2 to"
                f" {SCHEMA_VERSION}: {remedy}"
            )
        self._version = version
        self._columns = _SUMMARY_COLUMNS if version >= 12 else _SUMMARY_COLUMNS.replace("m.cc_header", "NULL")
        """The summary columns; archives before schema version 12 have no ``cc_header``: NULL then."""

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._db.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {exc}") from None

    def account_exists(self, name: str) -> bool:
        """Tell whether the archive knows an account called ``name`` (configured now or ever)."""
        return bool(self._rows("SELECT 1 FROM accounts WHERE name = ?", (name,)))

    def account_protocols(self) -> dict[str, str]:
        """Every account the archive knows (configured now or ever), mapped to the protocol it was
        created with (``"pop3"`` or ``"imap"``; fixed for the account's life)."""
        rows = self._rows("SELECT name, protocol FROM accounts")
        return {str(name): str(protocol) for name, protocol in rows}

    def sha256_with_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        """Return up to ``limit`` SHA-256 digests (hex) starting with ``prefix`` (lower-case hex)."""
        rows = self._rows(
            "SELECT sha256 FROM messages WHERE sha256 >= ? AND sha256 < ? ORDER BY sha256 LIMIT ?",
            (prefix, prefix + "g", limit),  # 'g' sorts after every hex digit
        )
        return [r[0] for r in rows]

    def message(self, sha256: str, *, raw: bool = False) -> ArchivedMessage | None:
        """Return the message with this SHA-256 (hex), with its locations and optionally its octets."""
        extra = ", m.raw" if raw else ""
        rows = self._rows(f"SELECT {self._columns}{extra} FROM messages m WHERE m.sha256 = ?", (sha256,))  # noqa: S608
        if not rows:
            return None
        return self._with_locations(rows)[0]

    def list_messages(self, flt: MessageFilter) -> list[ArchivedMessage]:
        """Return the messages ``flt`` selects, newest (by Date) first, with their locations."""
        where, params = _filter_sql(flt)
        sql = f"SELECT {self._columns} FROM messages m"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY m.date DESC, m.id DESC"
        if flt.limit is not None:
            sql += " LIMIT ?"
            params.append(flt.limit)
        return self._with_locations(self._rows(sql, params))

    def count_messages(self, flt: MessageFilter) -> int:
        """The number of messages ``flt`` selects, ignoring its ``limit``."""
        where, params = _filter_sql(flt)
        sql = "SELECT count(*) FROM messages m" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        return int(self._rows(sql, params)[0][0])

    def index_coverage(self) -> tuple[int, int]:
        """Return (messages in the full-text index, messages in the archive).

        Raises:
            StoreError: the archive predates the index (schema version 2); ``maild`` opens and migrates it
                on its next start, ``maild reindex`` fills the index.
        """
        if self._version < 3:
            raise StoreError(
                f"archive {self.path} has no full-text index yet (schema version {self._version});"
                " start the daemon once (it migrates the archive), then run `maild reindex`"
            )
        # The shadow table has one row per indexed message; count(*) on the FTS5 table itself reads
        # every document (7 ms at 3,000 messages, linear).
        rows = self._rows(
            "SELECT (SELECT count(*) FROM messages_fts_docsize), (SELECT count(*) FROM messages)"
        )
        return int(rows[0][0]), int(rows[0][1])

    def documents_pending(self) -> int:
        """Messages whose PDF/Office attachment text is not in the index yet (schema version 11;
        :mod:`maild.archive.document_index`): 0 for older archives. Before version 13 (no
        ``messages.has_documents``: an upgrade pending, or a backup read as it is) every message not
        looked at counts, as the upgrade leaves them unknown (NULL) and the indexer looks at them."""
        if self._version < 11:
            return 0
        pending = DOCUMENTS_PENDING_SQL if self._version >= 13 else _DOCUMENTS_PENDING_BEFORE_13_SQL
        return int(self._rows(f"SELECT count(*) FROM ({pending})", (0,))[0][0])  # noqa: S608

    def search(self, query: str, flt: MessageFilter) -> list[SearchHit]:
        """Return the messages matching the FTS5 ``query`` that ``flt`` selects, best match first.

        Args:
            query: an FTS5 query (words, "phrases", prefix*, AND/OR/NOT, column filters such as
                ``subject:rechnung``). If it is not valid FTS5 syntax, each blank-separated word is
                searched as a quoted string instead, so ``e-mail`` or ``1.500,00`` still work.
            flt: further criteria; ``from_text``/``subject_text`` are ignored, ``limit`` applies.

        Returns:
            Hits ranked by BM25 (subject and sender weigh more than body text), each with a snippet;
            of more than :data:`RANK_WINDOW` matches, only the most recently stored are ranked.

        Raises:
            StoreError: no index (see :meth:`index_coverage`) or SQLite failed.
        """
        self.index_coverage()
        try:
            return self._search(query, flt)
        except StoreError as exc:
            if not any(sign in str(exc) for sign in _FTS5_QUERY_ERRORS):
                raise
        quoted = " ".join('"' + word.replace('"', '""') + '"' for word in query.split())
        return self._search(quoted, flt) if quoted else []

    def _search(self, query: str, flt: MessageFilter) -> list[SearchHit]:
        # One MATCH, streamed newest first (FTS5 hands out rowids in order, so only RANK_WINDOW
        # matches are read and scored), ranked, cut to the limit; then snippets for the hits kept,
        # made from the messages (the index is contentless).
        where, params = _filter_sql(replace(flt, from_text=None, subject_text=None))
        restrict = (
            " AND messages_fts.rowid IN (SELECT m.id FROM messages m WHERE " + " AND ".join(where) + ")"  # noqa: S608
            if where
            else ""
        )
        limit = " LIMIT ?" if flt.limit is not None else ""
        sql = (
            "WITH recent (id, score) AS ("  # noqa: S608
            f" SELECT messages_fts.rowid, bm25(messages_fts, {', '.join(str(w) for w in BM25_WEIGHTS)})"
            f" FROM messages_fts WHERE messages_fts MATCH ?{restrict}"
            f" ORDER BY messages_fts.rowid DESC LIMIT {int(RANK_WINDOW)}),"
            f" top (id, score) AS (SELECT id, score FROM recent ORDER BY score, id{limit})"
            # CROSS JOIN keeps ``top`` outside: the ranking runs once, before the join.
            f" SELECT {self._columns}, top.score FROM top CROSS JOIN messages m ON m.id = top.id"
            " ORDER BY top.score, m.id"
        )
        all_params: list[Any] = [query, *params]
        if flt.limit is not None:
            all_params.append(flt.limit)
        rows = self._rows(sql, all_params)
        sources = self._snippet_sources([int(r[0]) for r in rows])
        documents = self._document_texts([int(r[0]) for r in rows])
        messages = self._with_locations([r[:_SUMMARY_WIDTH] for r in rows])
        return [
            SearchHit(
                m,
                make_snippet(sources.get(m.id, b""), query, _summary(m), documents.get(m.id, "")),
                float(r[_SUMMARY_WIDTH]),
            )
            for m, r in zip(messages, rows, strict=True)
        ]

    def _document_texts(self, ids: list[int]) -> dict[int, str]:
        """Message id -> the attachment text the index holds for it (v11 ``document_text``; none before)."""
        found: dict[int, str] = {}
        if self._version < 11:
            return found
        for i in range(0, len(ids), QUERY_CHUNK):
            chunk = ids[i : i + QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT message, text FROM document_text WHERE text <> '' AND message IN ({marks})"  # noqa: S608
            for message, text in self._rows(sql, chunk):
                found[int(message)] = str(text)
        return found

    def _snippet_sources(self, ids: list[int]) -> dict[int, bytes]:
        """Message id -> its first :data:`SNIPPET_SOURCE_OCTETS` octets."""
        found: dict[int, bytes] = {}
        for i in range(0, len(ids), QUERY_CHUNK):
            chunk = ids[i : i + QUERY_CHUNK]
            for message, head in self._rows(
                f"SELECT id, substr(raw, 1, ?) FROM messages WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608
                [SNIPPET_SOURCE_OCTETS, *chunk],
            ):
                found[int(message)] = bytes(head or b"")  # substr() of a 0-octet blob is NULL
        return found

    def _with_locations(self, rows: list[tuple[Any, ...]]) -> list[ArchivedMessage]:
        ids = [r[0] for r in rows]
        found: dict[int, list[LocationState]] = {}
        for i in range(0, len(ids), QUERY_CHUNK):
            chunk = ids[i : i + QUERY_CHUNK]
            for message, account, mailbox, gone, deleted in self._rows(
                "SELECT message, account, mailbox, gone_at, deleted_at FROM locations"  # noqa: S608
                f" WHERE message IN ({','.join('?' * len(chunk))}) ORDER BY account, mailbox, id",
                chunk,
            ):
                state = "deleted" if deleted else "gone" if gone else "on-server"
                found.setdefault(message, []).append(LocationState(account, mailbox, state))
        return [
            ArchivedMessage(
                id=r[0],
                sha256=r[1],
                size_octets=r[2],
                message_id=r[3],
                date=r[4],
                from_header=r[5],
                to_header=r[6],
                subject=r[7],
                stored_at=r[8],
                cc_header=r[9],
                locations=tuple(found.get(r[0], ())),
                raw=bytes(r[_SUMMARY_WIDTH]) if len(r) > _SUMMARY_WIDTH else None,
            )
            for r in rows
        ]

    def account_messages(self, account: str, since: datetime | None = None) -> list[tuple[int, str | None]]:
        """Every message linked to ``account``, on its server or not: (row id, first mailbox).

        Oldest link first; ``since`` selects as in :class:`MessageFilter`; the mailbox is None for POP3.
        """
        sql = (
            "SELECT l.message, l.mailbox FROM locations l JOIN messages m ON m.id = l.message"
            " WHERE l.account = ?"
        )
        params: list[Any] = [account]
        if since is not None:
            sql += " AND " + _SINCE
            params += [utc_text(since)] * 2
        out: dict[int, str | None] = {}
        for message, mailbox in self._rows(sql + " ORDER BY l.first_fetched_at, l.id", params):
            out.setdefault(message, mailbox)
        return list(out.items())

    def iter_raw(self, ids: Sequence[int]) -> Iterator[ArchivedMessage]:
        """Yield each of ``ids`` with its octets, in the given order, reading about 32 MiB at a time."""
        start = 0
        while start < len(ids):
            chunk = list(ids[start : start + QUERY_CHUNK])
            size_of: dict[int, int] = {
                r[0]: r[1]
                for r in self._rows(
                    f"SELECT id, size_octets FROM messages WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            }
            take: list[int] = []
            octets = 0
            for message in chunk:
                take.append(message)
                octets += size_of.get(message, 0)
                if octets >= _EXPORT_CHUNK_OCTETS:
                    break
            start += len(take)
            rows = self._rows(
                f"SELECT {self._columns}, m.raw FROM messages m"  # noqa: S608
                f" WHERE m.id IN ({','.join('?' * len(take))})",
                take,
            )
            by_id = {m.id: m for m in self._with_locations(rows)}
            for message in take:
                if message in by_id:
                    yield by_id[message]
