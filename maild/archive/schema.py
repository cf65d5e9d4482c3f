"""The archive's schema: migration scripts (``PRAGMA user_version``), page size and the UTC text format.

Layout (schema version 15; docs/archive.md documents it for readers such as the CRM):

- ``accounts``: one row per account ever configured; the protocol is fixed at creation.
- ``messages``: each distinct message once, keyed by the SHA-256 of its raw octets, with the raw
  octets exactly as the server sent them (after protocol un-stuffing) and parsed header fields.
- ``locations``: where an account's server holds or held a message: POP3 UIDL, or IMAP
  (mailbox, UIDVALIDITY, UID); when it was first fetched, when it was no longer seen, when maild
  deleted it.
- ``mailboxes`` (v2): per IMAP account and mailbox, the UIDVALIDITY last seen.
- ``deliveries`` (v2): which archived messages were written to an account's local Maildir, and where.
- ``appends`` (v2): which archived messages ``maild migrate`` uploaded to which IMAP account and mailbox;
  ``accepted_at`` (v5): when ``maild retire --accept-deleted`` accepted that the upload is no longer
  there (deleted in the IMAP mailbox; the archive keeps the message).
- ``moves`` (v5): each move (``maild migrate`` of account ``source`` into ``target``), when it started
  and when ``maild retire`` finished it. While a move is unfinished, POP3 accounts whose server
  holds what the target holds delete nothing (:mod:`maild.archive.move_guard`).
- ``messages_fts`` (v3; contentless since v9): the FTS5 full-text index, one row per message
  (``rowid`` = ``messages.id``), written in the transaction that stores the message
  (:mod:`maild.archive.index_text` says what it holds, :mod:`maild.archive.fts` how it is kept).
- ``retrieval_failures`` (v4): per account and server identity, how often in a row a message failed
  to arrive, the last reason, and whether a retry was asked for; ``locations.missing_items`` (v4):
  the IMAP items the server left out of the FETCH reply (space-separated, e.g. ``INTERNALDATE``);
  ``locations.server_size`` (v4): the RFC822.SIZE an IMAP server reports for the message when it
  differs from the archived octets' size while its header section matches (a server quirk, so that
  the UID check of :mod:`maild.fetch.resync` does not raise the alarm again).
- ``mailbox_sync`` (v10): per IMAP account and mailbox, its status (UIDVALIDITY, UIDNEXT, MESSAGES,
  HIGHESTMODSEQ) when a cycle last listed it in full and archived all it held, so that later polls
  leave it unselected while its status stays the same (:mod:`maild.archive.sync_state`).
- ``document_text`` (v11): per message looked at by the attachment-text indexer (the optional
  ``documents`` extra, :mod:`maild.archive.document_index`), the text of its PDF and Office
  attachments that the index holds in its ``attachments`` column ('' when none), how many
  attachments were read and how many failed; messages without a row are still pending.
- ``account_history`` (v6): per account, what ``maild status`` shows about the past (last success,
  last IDLE push, last error and since when it fails, cycle and message counts), so that a reload or
  a restart does not reset it.
- ``retrieval_failures.subject``, ``from_field``, ``date_field``, ``header_attempts`` (v7): the Subject,
  From and Date of a message that failed to arrive, read by a separate, best-effort header fetch
  (:mod:`maild.fetch.failed_headers`), decoded (RFC 2047); NULL while unknown; how often that fetch was
  tried.
- ``alert_memory`` (v8): the alerts sent and still open (per account and kind; ``account`` is ``''``
  for the daemon and its disk), when each started and was last sent, so that a restart neither sends
  them again nor forgets to send the recovery notice; ``account_history.auth_failures`` (v8): the
  refused logins in a row, so that a restart does not give a locked-out account fresh tries.
  ``account_history.fetched_messages``/``fetched_octets`` are counted in each batch's transaction.
- ``messages.cc_header`` (v12): the Cc field, decoded like ``from_header`` and ``to_header``; filled
  for the messages archived before by the migration.
- ``messages.has_documents`` (v13): whether the message has a PDF or Office part
  (:func:`maild.archive.document_kind.has_documents`), recorded when it is stored: 1 yes, 0 no, NULL
  unknown (archived before v13; the attachment-text indexer looks at such a message once and records
  what it found). The indexer reads only messages where it is not 0 (the partial index
  ``messages_documents``).
- ``messages`` rebuilt (v14) with ``raw`` as its last column (:data:`MESSAGES_COLUMNS`,
  :mod:`maild.archive.layout`); an archive above a bound keeps the old order until ``maild compact``.
- ``retrieval_failures.kind`` (v15): which side the last failure was on, ``'message'`` (the server's
  reply or the message: counts towards setting it aside) or ``'local'`` (this machine's spool or
  disk: never sets it aside); the migration marks the records whose reason starts ``local spool: ``
  as local, the rest as message (:data:`maild.model.FailureKind`).

The layout rule of ``messages``: ``raw`` is its LAST column. SQLite keeps ``zeroblob(n)`` lazy (no
n zero octets built in memory and copied) only when nothing but NULLs follows it in the record, and
:mod:`maild.archive.batches` inserts every large message as ``zeroblob`` then writes it through
incremental blob I/O; schema 12's ``ALTER TABLE ... ADD COLUMN cc_header`` put a column after ``raw``
and cost 10 MB of SQLite memory per 5 MB message with a Cc (docs/performance.md, "Session 7: raw
last"). So a new column of ``messages`` is never a bare ``ADD COLUMN``: either add it to
:data:`MESSAGES_COLUMNS` (before ``raw``) and give its version the rebuild of
:mod:`maild.archive.layout` (``upgrade_layout``: at open below a bound, else ``maild compact``), or
put it in a side table keyed by ``messages.id``. tests/unit/test_layout.py checks that a fresh
archive's ``messages`` is exactly :data:`MESSAGES_COLUMNS`, ending with ``raw``.

Shared by :mod:`maild.archive.store` (which applies the migrations) and :mod:`maild.archive.reader`; the
``store_*`` modules are the only ones that contain SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from maild.model import IMAPKey, MessageKey, POP3Key

SCHEMA_VERSION = 16
PAGE_SIZE = 32768
"""Page size of new archives, in octets; set before the first table, so older archives keep theirs.

Messages are blobs of 2 KB to many MB: larger pages mean fewer overflow pages and WAL frames per
message. Storing 2,000 mixed messages (273 MB) took 1.17 s with 8 KiB pages and 0.83 s with 32 KiB
(WAL, ``synchronous=FULL``, batches of 200; see docs/performance.md)."""
#: Keys per ``IN (...)`` query, below SQLite's variable limit.
QUERY_CHUNK = 500
FTS_TABLE = "messages_fts"
FTS_COLUMNS = ("sender", "recipients", "subject", "body", "attachments")
"""Columns of ``messages_fts`` (v3), in order: the fields of :class:`maild.archive.index_text.IndexText`."""
FTS_TOKENIZER = "unicode61 remove_diacritics 2"
"""Words are runs of Unicode letters and digits, case-folded, diacritics removed (``ü`` matches ``u``)."""
DOCUMENTS_PENDING_SQL = (
    "SELECT id FROM messages WHERE id > ? AND has_documents IS NOT 0"
    " AND id NOT IN (SELECT message FROM document_text)"
)
"""Messages (above an id) with a PDF or Office part, or not known to have none (v13), whose attachments
the attachment-text indexer has not looked at yet (v11). Found through the partial index
``messages_documents``."""


MESSAGES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "INTEGER PRIMARY KEY"),
    ("sha256", "TEXT NOT NULL UNIQUE"),
    ("size_octets", "INTEGER NOT NULL"),
    ("message_id", "TEXT"),
    ("date", "TEXT"),
    ("from_header", "TEXT"),
    ("to_header", "TEXT"),
    ("subject", "TEXT"),
    ("stored_at", "TEXT NOT NULL"),
    ("cc_header", "TEXT"),
    ("has_documents", "INTEGER"),
    ("raw", "BLOB NOT NULL"),
)
"""The columns of ``messages`` since schema 14, in order, with their declarations: ``raw`` LAST (the
layout rule in this module's docstring). ``id`` is the rowid, the key of ``messages_fts`` and of every
table that references a message."""


def messages_create_sql(table: str = "messages") -> str:
    """The ``CREATE TABLE`` statement of ``messages`` in the schema 14 layout (:data:`MESSAGES_COLUMNS`)."""
    return f"CREATE TABLE {table} ({', '.join(f'{name} {decl}' for name, decl in MESSAGES_COLUMNS)})"


def fts_create_sql(table: str = FTS_TABLE) -> str:
    """The ``CREATE VIRTUAL TABLE`` statement of the full-text index since schema version 9, named ``table``.

    Contentless (``content=''``): positions and column sizes, no copy of the text (:mod:`maild.archive.fts`).
    """
    return (
        f"CREATE VIRTUAL TABLE {table} USING fts5 ({', '.join(FTS_COLUMNS)},"
        f" content = '', tokenize = '{FTS_TOKENIZER}')"
    )


_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE accounts (
        name          TEXT PRIMARY KEY,
        organisation  TEXT NOT NULL,
        employee      TEXT NOT NULL,
        protocol      TEXT NOT NULL CHECK (protocol IN ('pop3', 'imap')),
        created_at    TEXT NOT NULL,
        retired_at    TEXT,
        retired_into  TEXT
    );
    CREATE TABLE messages (
        id            INTEGER PRIMARY KEY,
        sha256        TEXT NOT NULL UNIQUE,
        size_octets   INTEGER NOT NULL,
        message_id    TEXT,
        date          TEXT,
        from_header   TEXT,
        to_header     TEXT,
        subject       TEXT,
        stored_at     TEXT NOT NULL,
        raw           BLOB NOT NULL
    );
    CREATE INDEX messages_message_id ON messages (message_id);
    CREATE INDEX messages_date ON messages (date);
    CREATE TABLE locations (
        id                INTEGER PRIMARY KEY,
        account           TEXT NOT NULL REFERENCES accounts (name),
        message           INTEGER NOT NULL REFERENCES messages (id),
        uidl              TEXT,
        mailbox           TEXT,
        uidvalidity       INTEGER,
        uid               INTEGER,
        internaldate      TEXT,
        flags             TEXT,
        first_fetched_at  TEXT NOT NULL,
        gone_at           TEXT,
        deleted_at        TEXT,
        CHECK ((uidl IS NOT NULL) <> (uid IS NOT NULL))
    );
    CREATE UNIQUE INDEX locations_pop3 ON locations (account, uidl) WHERE uidl IS NOT NULL;
    CREATE UNIQUE INDEX locations_imap ON locations (account, mailbox, uidvalidity, uid)
        WHERE uid IS NOT NULL;
    CREATE INDEX locations_message ON locations (message);
    """,
    2: """
    CREATE TABLE mailboxes (
        account       TEXT NOT NULL REFERENCES accounts (name),
        mailbox       TEXT NOT NULL,
        uidvalidity   INTEGER NOT NULL,
        uidnext       INTEGER,
        changed_at    TEXT NOT NULL,
        PRIMARY KEY (account, mailbox)
    );
    CREATE TABLE deliveries (
        account       TEXT NOT NULL REFERENCES accounts (name),
        message       INTEGER NOT NULL REFERENCES messages (id),
        path          TEXT NOT NULL,
        delivered_at  TEXT NOT NULL,
        PRIMARY KEY (account, message)
    );
    CREATE TABLE appends (
        message       INTEGER NOT NULL REFERENCES messages (id),
        account       TEXT NOT NULL REFERENCES accounts (name),
        mailbox       TEXT NOT NULL,
        uidvalidity   INTEGER,
        uid           INTEGER,
        appended_at   TEXT NOT NULL,
        PRIMARY KEY (message, account, mailbox)
    );
    """,
    3: f"""
    CREATE VIRTUAL TABLE messages_fts USING fts5 ({", ".join(FTS_COLUMNS)},
        tokenize = 'unicode61 remove_diacritics 2');
    """,
    4: """
    CREATE TABLE retrieval_failures (
        account          TEXT NOT NULL REFERENCES accounts (name),
        key              TEXT NOT NULL,
        failures         INTEGER NOT NULL,
        reason           TEXT NOT NULL,
        first_failed_at  TEXT NOT NULL,
        last_failed_at   TEXT NOT NULL,
        retry_requested  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, key)
    );
    ALTER TABLE locations ADD COLUMN missing_items TEXT;
    ALTER TABLE locations ADD COLUMN server_size INTEGER;
    """,
    5: """
    ALTER TABLE appends ADD COLUMN accepted_at TEXT;
    CREATE TABLE moves (
        source        TEXT NOT NULL REFERENCES accounts (name),
        target        TEXT NOT NULL REFERENCES accounts (name),
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        PRIMARY KEY (source, target)
    );
    INSERT OR IGNORE INTO moves (source, target, started_at, finished_at)
        SELECT l.account, a.account, min(a.appended_at), max(r.retired_at)
        FROM appends a JOIN locations l ON l.message = a.message AND l.account <> a.account
        LEFT JOIN accounts r ON r.name = l.account AND r.retired_into = a.account
        GROUP BY l.account, a.account;
    """,
    6: """
    CREATE TABLE account_history (
        account               TEXT PRIMARY KEY REFERENCES accounts (name),
        last_success          TEXT,
        last_push             TEXT,
        last_error            TEXT,
        last_error_at         TEXT,
        failing_since         TEXT,
        consecutive_failures  INTEGER NOT NULL DEFAULT 0,
        cycles_ok             INTEGER NOT NULL DEFAULT 0,
        cycles_failed         INTEGER NOT NULL DEFAULT 0,
        fetched_messages      INTEGER NOT NULL DEFAULT 0,
        fetched_octets        INTEGER NOT NULL DEFAULT 0
    );
    """,
    7: """
    ALTER TABLE retrieval_failures ADD COLUMN subject TEXT;
    ALTER TABLE retrieval_failures ADD COLUMN from_field TEXT;
    ALTER TABLE retrieval_failures ADD COLUMN date_field TEXT;
    ALTER TABLE retrieval_failures ADD COLUMN header_attempts INTEGER NOT NULL DEFAULT 0;
    """,
    8: """
    CREATE TABLE alert_memory (
        account     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        since       TEXT NOT NULL,
        sent_at     TEXT NOT NULL,
        message     TEXT NOT NULL,
        next_step   TEXT NOT NULL,
        PRIMARY KEY (account, kind)
    );
    ALTER TABLE account_history ADD COLUMN auth_failures INTEGER NOT NULL DEFAULT 0;
    """,
    # The index becomes contentless; maild.archive.fts.migrate_to_contentless then fills it in the
    # same transaction (maild.archive.opening.set_up runs the Python step of a version after its SQL).
    9: f"""
    DROP TABLE messages_fts;
    {fts_create_sql()};
    """,
    10: """
    CREATE TABLE IF NOT EXISTS mailbox_sync (
        account        TEXT NOT NULL REFERENCES accounts (name),
        mailbox        TEXT NOT NULL,
        uidvalidity    INTEGER NOT NULL,
        uidnext        INTEGER NOT NULL,
        messages       INTEGER NOT NULL,
        highestmodseq  INTEGER,
        synced_at      TEXT NOT NULL,
        PRIMARY KEY (account, mailbox)
    );
    """,
    # Attachment text (the optional ``documents`` extra): what maild.archive.document_index added to
    # a message's ``attachments`` index column, kept so that the contentless index row can be removed
    # and rebuilt with the very same text (maild.archive.fts). A row per message looked at; ``text``
    # is '' when it has no readable document.
    11: """
    CREATE TABLE IF NOT EXISTS document_text (
        message     INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        text        TEXT NOT NULL,
        documents   INTEGER NOT NULL,
        failures    INTEGER NOT NULL,
        indexed_at  TEXT NOT NULL
    );
    """,
    # messages.cc_header: the Cc field beside From and To. Added by the Python step,
    # maild.archive.cc_fill.fill_cc_headers (ALTER TABLE ... ADD COLUMN has no IF NOT EXISTS), which then
    # reads it from the header section of every archived message, in the same transaction.
    12: "",
    # messages.has_documents: whether a message has a PDF or Office part, recorded at store time
    # (maild.archive.batches), so that the attachment-text indexer reads only those. Added by the Python
    # step, maild.archive.document_flag.add_document_flag (with its partial index); NULL for the messages
    # archived before: unknown, looked at once by the indexer, which then records what it found.
    13: "",
    # messages rebuilt with raw as its last column (the layout rule above): the Python step,
    # maild.archive.layout.upgrade_layout, run with foreign keys off (the 12-step ALTER procedure of
    # SQLite), copies every row with its id unless the archive is above a bound or the disk lacks the
    # room; then the old order stays (all queries name their columns) until `maild compact`.
    14: "",
    # retrieval_failures.kind: a failure on this machine's side (the spool) is told from one of the
    # message's or server's by a column, not by its reason's text. Added by the Python step,
    # maild.archive.failure_kind.add_failure_kind (ADD COLUMN unless there), which marks the records made
    # before as 'local' when their reason is the spool's (maild.spool.SPOOL_FAILURE_PREFIX).
    15: "",
    # `maild retire A --into B --accept-unfetched`: the admin's decision that messages still on A's
    # server which A never archived (or A's whole server, when it could not be reached: key NULL) may
    # be left behind, one row per message, as appends.accepted_at records `--accept-deleted`'s
    # (maild.move.source_check). `into` is the account A was retired into.
    16: """
    CREATE TABLE IF NOT EXISTS unfetched_accepted (
        account       TEXT NOT NULL,
        into_account  TEXT NOT NULL,
        key           TEXT,
        size_octets   INTEGER,
        reason        TEXT NOT NULL,
        accepted_at   TEXT NOT NULL
    );
    """,
}


def utc_text(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-11-30T09:00:00Z``.

    Made from ``isoformat`` (half the time of ``strftime``; once per message stored and per IMAP
    location); a year before 1000 as ``strftime`` writes it (without leading zeros), as before.
    """
    moment = moment.astimezone(UTC)
    if moment.year < 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat(timespec="seconds")[:19] + "Z"


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`utc_text`.

    A no-op cycle parses one of these per archived location, so the exact ``YYYY-MM-DDTHH:MM:SSZ`` form
    is read field by field (about 40 times faster than ``strptime``); anything else goes to ``strptime``,
    which raises ValueError as before.
    """
    if len(text) == 20 and text[4] == "-" and text[7] == "-" and text[10] == "T" and text[19] == "Z":
        try:
            return datetime(
                int(text[0:4]), int(text[5:7]), int(text[8:10]),
                int(text[11:13]), int(text[14:16]), int(text[17:19]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError:
            pass
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts contain no ';' inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def failure_key_text(key: MessageKey) -> str:
    """The ``retrieval_failures.key`` text of ``key``: ``"pop3 " + uidl`` or
    ``"imap <uidvalidity> <uid> <mailbox>"``."""
    if isinstance(key, POP3Key):
        return f"pop3 {key.uidl}"
    return f"imap {key.uidvalidity} {key.uid} {key.mailbox}"


def parse_failure_key(text: str) -> MessageKey:
    """Inverse of :func:`failure_key_text`.

    Raises:
        ValueError: not in either form.
    """
    kind, _, rest = text.partition(" ")
    if kind == "pop3" and rest:
        return POP3Key(rest)
    if kind == "imap":
        uidvalidity, uid, mailbox = rest.split(" ", 2)
        return IMAPKey(mailbox, int(uidvalidity), int(uid))
    raise ValueError(f"not a retrieval failure key: {text[:80]!r}")
