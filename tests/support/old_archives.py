"""Archives at every older schema version, with rows in every table that version has.

An archive at version ``V`` is made as maild made it: version 1's tables, then each later version's
SQL and Python step (:data:`maild.archive.schema._MIGRATIONS`, ``_MIGRATION_STEPS`` of :mod:`maild.archive.opening`)
up to ``V``, each in its own transaction, the rows of a table written as soon as its version exists:
accounts (one retired into another), messages (a 0-octet one, one without a header section, binary
octets, Cc fields), POP3 and IMAP locations (on the server, gone, deleted), mailboxes, deliveries,
appends, retrieval failures (one of the spool's), account history, alerts, mailbox status and
attachment text. :func:`logical_rows` reads back what each table means, by column name, so that an
upgraded archive can be compared with the one it came from.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import aiosqlite

from maild.archive import opening
from maild.archive.schema import _MIGRATIONS, PAGE_SIZE, _split_sql

T0 = "2026-01-01T00:00:00Z"
RETIRED_AT = "2026-02-01T00:00:00Z"
MESSAGES: tuple[bytes, ...] = (
    *(
        b"From: Anna <a@x.example>\r\nTo: b@y.example\r\nCc: Carl <c@z.example>\r\n"
        b"Subject: Hallo Welt %d\r\nMessage-ID: <m%d@x>\r\nDate: Mon, 30 Nov 2026 09:00:00 +0100\r\n\r\n"
        b"Body text number %d\r\n" % (i, i, i)
        for i in range(12)
    ),
    b"",
    b"no header at all",
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n\xff\xfe\x00 binary\r\n",
)
"""The archived messages (ids 1, 2, ...): twelve letters with a Cc, a 0-octet message (a POP3 server
may hold one), one with no header section, one with an encoded Subject and binary octets."""

LOGICAL_QUERIES: dict[str, tuple[int, str]] = {
    "accounts": (1, "SELECT name, organisation, employee, protocol, created_at, retired_at, retired_into"
                    " FROM accounts ORDER BY name"),
    "messages": (1, "SELECT id, sha256, size_octets, message_id, date, from_header, to_header, subject,"
                    " stored_at, raw FROM messages ORDER BY id"),
    "locations": (1, "SELECT id, account, message, uidl, mailbox, uidvalidity, uid, internaldate, flags,"
                     " first_fetched_at, gone_at, deleted_at FROM locations ORDER BY id"),
    "mailboxes": (2, "SELECT account, mailbox, uidvalidity, uidnext, changed_at FROM mailboxes ORDER BY 1, 2"),
    "deliveries": (2, "SELECT account, message, path, delivered_at FROM deliveries ORDER BY 1, 2"),
    "appends": (2, "SELECT message, account, mailbox, uidvalidity, uid, appended_at FROM appends ORDER BY 1, 2, 3"),
    "location_extras": (4, "SELECT id, missing_items, server_size FROM locations ORDER BY id"),
    "failures": (4, "SELECT account, key, failures, reason, first_failed_at, last_failed_at, retry_requested"
                    " FROM retrieval_failures ORDER BY 1, 2"),
    "moves": (5, "SELECT source, target, started_at, finished_at FROM moves ORDER BY 1, 2"),
    "history": (6, "SELECT account, last_success, cycles_ok, fetched_messages, fetched_octets"
                   " FROM account_history ORDER BY 1"),
    "alerts": (8, "SELECT account, kind, since, sent_at, message, next_step FROM alert_memory ORDER BY 1, 2"),
    "mailbox_sync": (10, "SELECT account, mailbox, uidvalidity, uidnext, messages, highestmodseq, synced_at"
                         " FROM mailbox_sync ORDER BY 1, 2"),
    "document_text": (11, "SELECT message, text, documents, failures, indexed_at FROM document_text ORDER BY 1"),
}  # fmt: skip
"""Per table: the version that made it, and the query of what its rows mean (columns by name)."""


async def _migrate(conn: aiosqlite.Connection, start: int, end: int) -> None:
    """Apply versions ``start + 1`` to ``end`` as :func:`maild.archive.opening.set_up` does."""
    for target in range(start + 1, end + 1):
        keys_off = target in opening._FOREIGN_KEYS_OFF
        if keys_off:
            await conn.execute("PRAGMA foreign_keys = OFF")
        await conn.execute("BEGIN IMMEDIATE")
        for statement in _split_sql(_MIGRATIONS[target]):
            await conn.execute(statement)
        if target in opening._MIGRATION_STEPS:
            await opening._MIGRATION_STEPS[target](conn)
        await conn.execute(f"PRAGMA user_version = {target}")
        await conn.execute("COMMIT")
        if keys_off:
            await conn.execute("PRAGMA foreign_keys = ON")


async def _fill_version_1(conn: aiosqlite.Connection) -> None:
    await conn.execute("BEGIN")
    await conn.execute("INSERT INTO accounts VALUES ('pop', 'Org', 'Eva', 'pop3', ?, NULL, NULL)", (T0,))
    await conn.execute("INSERT INTO accounts VALUES ('imap', 'Org', 'Eva', 'imap', ?, NULL, NULL)", (T0,))
    await conn.execute(
        "INSERT INTO accounts VALUES ('old', 'Org2', 'Max', 'pop3', ?, ?, 'imap')", (T0, RETIRED_AT)
    )
    for i, raw in enumerate(MESSAGES, 1):
        await conn.execute(
            "INSERT INTO messages (id, sha256, size_octets, message_id, date, from_header, to_header, subject,"
            " stored_at, raw) VALUES (?, ?, ?, ?, ?, 'Anna <a@x.example>', 'b@y.example', ?, ?, ?)",
            (i, hashlib.sha256(raw).hexdigest(), len(raw), f"<m{i}@x>", T0, f"Hallo Welt {i}", T0, raw),
        )
        gone = T0 if i % 3 == 0 else None
        await conn.execute(
            "INSERT INTO locations (account, message, uidl, first_fetched_at, gone_at, deleted_at)"
            " VALUES ('pop', ?, ?, ?, ?, ?)",
            (i, f"U{i}", T0, gone, gone),
        )
        await conn.execute(
            "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
            " first_fetched_at) VALUES ('imap', ?, 'INBOX', 7, ?, ?, '\\Seen', ?)",
            (i, i, T0, T0),
        )
        if i % 2:
            await conn.execute(
                "INSERT INTO locations (account, message, uidl, first_fetched_at, gone_at, deleted_at)"
                " VALUES ('old', ?, ?, ?, ?, ?)",
                (i, f"O{i}", T0, T0, T0),
            )
    await conn.execute("COMMIT")


_FILLS: dict[int, tuple[tuple[str, tuple[object, ...]], ...]] = {
    2: (
        ("INSERT INTO mailboxes VALUES ('imap', 'INBOX', 7, 40, ?)", (T0,)),
        ("INSERT INTO deliveries VALUES ('pop', 1, '/var/mail/eva/new/1', ?)", (T0,)),
        (
            "INSERT INTO appends (message, account, mailbox, uidvalidity, uid, appended_at)"
            " SELECT id, 'imap', 'INBOX', 7, id + 100, ? FROM messages WHERE id % 2 = 1",
            (T0,),
        ),
    ),
    4: (
        (
            "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at, last_failed_at)"
            " VALUES ('pop', 'pop3 U99', 3, 'local spool: no room', ?, ?)",
            (T0, T0),
        ),
        (
            "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at, last_failed_at,"
            " retry_requested) VALUES ('imap', 'imap 7 99 INBOX', 2, 'server said NO', ?, ?, 1)",
            (T0, T0),
        ),
        ("UPDATE locations SET missing_items = 'INTERNALDATE', server_size = 999 WHERE uid = 2", ()),
    ),
    6: (
        (
            "INSERT INTO account_history (account, last_success, cycles_ok, fetched_messages, fetched_octets)"
            " VALUES ('pop', ?, 5, 15, 12345)",
            (T0,),
        ),
    ),
    8: (("INSERT INTO alert_memory VALUES ('pop', 'auth', ?, ?, 'refused', 'resume')", (T0, T0)),),
    10: (("INSERT INTO mailbox_sync VALUES ('imap', 'INBOX', 7, 40, 15, NULL, ?)", (T0,)),),
    11: (("INSERT INTO document_text VALUES (1, '', 0, 0, ?)", (T0,)),),
}
"""Rows written right after the version that made their table."""


async def build_at_version(path: Path, version: int) -> None:
    """Create the archive at ``path`` at schema ``version`` (1 to the current), holding rows in every
    table of that version, in WAL mode, checkpointed, with 32 KiB pages as maild makes them."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await _migrate(conn, 0, 1)
        await _fill_version_1(conn)
        reached = 1
        for made, statements in _FILLS.items():
            if made > version:
                break
            await _migrate(conn, reached, made)
            reached = made
            for sql, params in statements:
                await conn.execute(sql, params)
        await _migrate(conn, reached, version)
        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await conn.close()


def logical_rows(path: Path, version: int) -> dict[str, list[tuple[object, ...]]]:
    """Per table that exists at ``version``: its rows as :data:`LOGICAL_QUERIES` reads them (read only)."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        rows = {
            table: list(conn.execute(sql))
            for table, (made, sql) in LOGICAL_QUERIES.items()
            if made <= version
        }
    conn.close()
    return rows
