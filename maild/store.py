"""The archive: an SQLite database, and the only module that contains SQL.

Layout (schema version 2, ``PRAGMA user_version``; the README documents it for readers such as the CRM):

- ``accounts``: one row per account ever configured; the protocol is fixed at creation.
- ``messages``: each distinct message once, keyed by the SHA-256 of its raw octets, with the raw
  octets exactly as the server sent them (after protocol un-stuffing) and parsed header fields.
- ``locations``: where an account's server holds or held a message: POP3 UIDL, or IMAP
  (mailbox, UIDVALIDITY, UID); when it was first fetched, when it was no longer seen, when maild
  deleted it.
- ``mailboxes`` (v2): per IMAP account and mailbox, the UIDVALIDITY last seen.
- ``deliveries`` (v2): which archived messages were written to an account's local Maildir, and where.
- ``appends`` (v2): which archived messages ``maild migrate`` uploaded to which IMAP account and mailbox.

Durability: WAL with ``synchronous=FULL``, so every commit is fsync'ed before it returns; a message
is deleted on a server only after the commit that stores it has returned (see ``fetch.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from maild.errors import StoreError
from maild.message import sha256_hex, summarise
from maild.model import IMAPKey, Location, MessageKey, POP3Key, Protocol, RetrievedMessage, StoreOutcome

T = TypeVar("T")

SCHEMA_VERSION = 2
PAGE_SIZE = 8192  # large blobs read faster with bigger pages; must be set before the first table
_CHUNK = 500  # keys per IN (...) query, below SQLite's variable limit

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
}


def utc_text(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-11-30T09:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`utc_text`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Prepared:
    key: MessageKey
    msg: RetrievedMessage
    sha256: str
    row: tuple[Any, ...]


def _prepare(batch: Sequence[RetrievedMessage], stored_at: str) -> list[_Prepared]:
    """Hash and summarise a batch (CPU work; runs in a worker thread, hashlib releases the GIL)."""
    out = []
    for msg in batch:
        digest = sha256_hex(msg.raw)
        h = summarise(msg.raw)
        row = (
            digest,
            len(msg.raw),
            h.message_id,
            utc_text(h.date) if h.date else None,
            h.from_,
            h.to,
            h.subject,
            stored_at,
            msg.raw,
        )
        out.append(_Prepared(msg.key, msg, digest, row))
    return out


class Store:
    """The archive database. Use :meth:`open`; close with :meth:`close` or ``async with``.

    All methods raise :class:`StoreError` when SQLite fails. Each write method is one transaction:
    if cancelled before its commit returns, nothing of it is stored; the SQL already running in
    aiosqlite's thread completes or rolls back on its own.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) the archive at ``path`` and migrate it to :data:`SCHEMA_VERSION`.

        Raises:
            StoreError: the file cannot be opened, is not a maild archive, or is newer than this maild.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open archive {path}: {exc}") from None
        store = cls(conn, path)
        try:
            await store._setup()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _setup(self) -> None:
        try:
            version = await self._scalar("PRAGMA user_version")
            if version == 0:
                await self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"archive {self.path}: cannot enable WAL journal mode (got {mode})")
            await self._conn.execute("PRAGMA synchronous = FULL")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            await self._conn.execute("PRAGMA busy_timeout = 10000")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"archive {self.path} has schema version {version}, newer than this maild "
                    f"({SCHEMA_VERSION}); upgrade maild"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(_MIGRATIONS[target]):
                        await self._conn.execute(statement)
                    await self._conn.execute(f"PRAGMA user_version = {target}")
                    await self._conn.execute("COMMIT")
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {exc}") from None

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL). Idempotent."""
        await self._conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        try:
            async with self._conn.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"archive {self.path}: {exc}") from None

    async def _write(
        self, statements: Iterable[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]]
    ) -> None:
        """Run statements in one IMMEDIATE transaction; ``many`` selects executemany."""
        todo = list(statements)

        async def work() -> None:
            for sql, params, many in todo:
                if many:
                    await self._conn.executemany(sql, params)
                else:
                    await self._conn.execute(sql, params)

        await self._atomic(work, "writing")

    async def _atomic(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``work`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, atomically.

        The transaction runs in a task of its own, shielded from cancellation: if the caller is
        cancelled, the transaction still ends (committed, or rolled back on error) before the
        cancellation propagates, so the connection never stays inside a half-done transaction.

        Raises:
            StoreError: SQLite failed; the transaction was rolled back.
        """
        task = asyncio.ensure_future(self._transaction(work, what))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it; the cancellation wins
            raise

    async def _transaction(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        async with self._write_lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = await work()
                    await self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"archive {self.path}: {what}: {exc}") from None
        return result

    # -- accounts ---------------------------------------------------------------------------------

    async def ensure_account(
        self, name: str, organisation: str, employee: str, protocol: Protocol, now: datetime
    ) -> None:
        """Record the account, or update its organisation and employee.

        Raises:
            StoreError: the account exists with another protocol (the protocol is fixed for an
                account's life; add the mailbox again under a new name instead).
        """
        rows = await self._all("SELECT protocol FROM accounts WHERE name = ?", (name,))
        if rows and rows[0][0] != protocol:
            raise StoreError(
                f"account {name} was created as {rows[0][0]} and cannot become {protocol}; "
                "add the mailbox again as a new account (see 'Moving a mailbox from POP3 to IMAP')"
            )
        await self._write(
            [
                (
                    "INSERT INTO accounts (name, organisation, employee, protocol, created_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET organisation = excluded.organisation,"
                    " employee = excluded.employee",
                    (name, organisation, employee, protocol, utc_text(now)),
                    False,
                )
            ]
        )

    # -- locations --------------------------------------------------------------------------------

    async def locations(self, account: str) -> dict[MessageKey, Location]:
        """Return every server identity recorded for ``account``: POP3Key or IMAPKey to its Location."""
        rows = await self._all(
            "SELECT uidl, mailbox, uidvalidity, uid, message, first_fetched_at, gone_at, deleted_at"
            " FROM locations WHERE account = ?",
            (account,),
        )
        out: dict[MessageKey, Location] = {}
        for uidl, mailbox, uidvalidity, uid, message, first, gone, deleted in rows:
            key: MessageKey = POP3Key(uidl) if uidl is not None else IMAPKey(mailbox, uidvalidity, uid)
            out[key] = Location(
                message=message,
                first_fetched_at=parse_utc(first),
                gone_at=parse_utc(gone) if gone else None,
                deleted_at=parse_utc(deleted) if deleted else None,
            )
        return out

    async def store_batch(
        self, account: str, batch: Sequence[RetrievedMessage], now: datetime
    ) -> StoreOutcome:
        """Store a batch of retrieved messages for ``account`` in one durable transaction.

        Each distinct message (by SHA-256 of its raw octets) is stored once; each server identity is
        linked to it once. Storing the same batch twice changes nothing the second time.

        Returns:
            Counts of what was new (see :class:`StoreOutcome`).

        Raises:
            StoreError: SQLite failed; nothing of the batch is stored.

        When this returns, the batch is on disk (WAL fsync'ed, ``synchronous=FULL``). If cancelled
        before that, nothing of it is stored.
        """
        if not batch:
            return StoreOutcome()
        stamp = utc_text(now)
        prepared = await asyncio.to_thread(_prepare, batch, stamp)
        return await self._atomic(
            lambda: self._insert_batch(account, prepared, stamp), f"storing for account {account}"
        )

    async def _insert_batch(self, account: str, prepared: list[_Prepared], stamp: str) -> StoreOutcome:
        digests = list(dict.fromkeys(p.sha256 for p in prepared))
        existing: dict[str, int] = {}
        await self._lookup_ids(digests, existing)
        new_rows = {p.sha256: p.row for p in prepared if p.sha256 not in existing}
        new_messages = len(new_rows)
        if new_rows:
            await self._conn.executemany(
                "INSERT INTO messages (sha256, size_octets, message_id, date, from_header, to_header,"
                " subject, stored_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                list(new_rows.values()),
            )
            await self._lookup_ids(list(new_rows), existing)
        links = 0
        octets = 0
        for p in prepared:
            key = p.key
            internaldate = utc_text(p.msg.internaldate) if p.msg.internaldate else None
            flags = " ".join(sorted(p.msg.flags)) if p.msg.flags else None
            if isinstance(key, POP3Key):
                cur = await self._conn.execute(
                    "INSERT INTO locations (account, message, uidl, first_fetched_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (account, uidl) WHERE uidl IS NOT NULL DO NOTHING",
                    (account, existing[p.sha256], key.uidl, stamp),
                )
            else:
                cur = await self._conn.execute(
                    "INSERT INTO locations (account, message, mailbox, uidvalidity, uid, internaldate, flags,"
                    " first_fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, mailbox, uidvalidity, uid) WHERE uid IS NOT NULL DO NOTHING",
                    (
                        account,
                        existing[p.sha256],
                        key.mailbox,
                        key.uidvalidity,
                        key.uid,
                        internaldate,
                        flags,
                        stamp,
                    ),
                )
            if cur.rowcount:
                links += 1
                octets += len(p.msg.raw)
            await cur.close()
        return StoreOutcome(new_messages=new_messages, new_links=links, octets=octets)

    async def _lookup_ids(self, digests: Sequence[str], into: dict[str, int]) -> None:
        """Add SHA-256 hex digest -> message row id for each of ``digests`` present in the archive."""
        for i in range(0, len(digests), _CHUNK):
            chunk = digests[i : i + _CHUNK]
            sql = f"SELECT sha256, id FROM messages WHERE sha256 IN ({','.join('?' * len(chunk))})"  # noqa: S608
            async with self._conn.execute(sql, chunk) as cur:
                into.update({row[0]: row[1] for row in await cur.fetchall()})

    async def update_presence(
        self, account: str, gone: Sequence[MessageKey], back: Sequence[MessageKey], now: datetime
    ) -> None:
        """Record that ``gone`` keys are no longer on the server and ``back`` keys are there again."""
        if not gone and not back:
            return
        stamp = utc_text(now)
        await self._write(
            [
                *(_key_update(account, "gone_at = ?", (stamp,), gone)),
                *(_key_update(account, "gone_at = NULL", (), back)),
            ]
        )

    async def mark_deleted(self, account: str, keys: Sequence[MessageKey], now: datetime) -> None:
        """Record that maild deleted ``keys`` on the server (POP3: after ``+OK`` to QUIT)."""
        stamp = utc_text(now)
        await self._write(
            _key_update(account, "deleted_at = ?, gone_at = coalesce(gone_at, ?)", (stamp, stamp), keys)
        )

    async def archived(self, account: str, keys: Sequence[MessageKey]) -> set[MessageKey]:
        """Return the subset of ``keys`` whose message is in the archive for ``account`` right now.

        Checked immediately before any server-side deletion: a key qualifies only if its location row
        exists and the linked message row holds raw octets of the recorded size.
        """
        found: set[MessageKey] = set()
        pop = [k for k in keys if isinstance(k, POP3Key)]
        for i in range(0, len(pop), _CHUNK):
            chunk = pop[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self._all(
                "SELECT l.uidl FROM locations l JOIN messages m ON m.id = l.message"  # noqa: S608
                f" WHERE l.account = ? AND l.uidl IN ({marks}) AND length(m.raw) = m.size_octets",
                (account, *(k.uidl for k in chunk)),
            )
            found.update(POP3Key(r[0]) for r in rows)
        imap = [k for k in keys if isinstance(k, IMAPKey)]
        for k in imap:
            rows = await self._all(
                "SELECT 1 FROM locations l JOIN messages m ON m.id = l.message WHERE l.account = ?"
                " AND l.mailbox = ? AND l.uidvalidity = ? AND l.uid = ? AND length(m.raw) = m.size_octets",
                (account, k.mailbox, k.uidvalidity, k.uid),
            )
            if rows:
                found.add(k)
        return found

    # -- status -----------------------------------------------------------------------------------

    async def message_counts(self) -> dict[str, int]:
        """Return account name to the number of distinct archived messages linked to it."""
        rows = await self._all("SELECT account, count(DISTINCT message) FROM locations GROUP BY account")
        return {r[0]: r[1] for r in rows}

    async def on_server_summary(self) -> dict[str, tuple[int, datetime | None]]:
        """Per account: (archived messages still on its server, earliest first-fetch time among them, UTC).

        "Still on the server" means not recorded as gone or deleted at the last cycle.
        """
        rows = await self._all(
            "SELECT account, count(*), min(first_fetched_at) FROM locations"
            " WHERE gone_at IS NULL AND deleted_at IS NULL GROUP BY account"
        )
        return {r[0]: (int(r[1]), parse_utc(r[2]) if r[2] else None) for r in rows}

    async def totals(self) -> tuple[int, int]:
        """Return (distinct messages, total octets) in the archive."""
        rows = await self._all("SELECT count(*), coalesce(sum(size_octets), 0) FROM messages")
        return int(rows[0][0]), int(rows[0][1])

    async def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when healthy)."""
        rows = await self._all("PRAGMA integrity_check")
        return str(rows[0][0])


def _key_update(
    account: str, assignment: str, values: tuple[Any, ...], keys: Iterable[MessageKey]
) -> list[tuple[str, list[Sequence[Any]], bool]]:
    pop: list[Sequence[Any]] = [(*values, account, k.uidl) for k in keys if isinstance(k, POP3Key)]
    imap: list[Sequence[Any]] = [
        (*values, account, k.mailbox, k.uidvalidity, k.uid) for k in keys if isinstance(k, IMAPKey)
    ]
    out: list[tuple[str, list[Sequence[Any]], bool]] = []
    if pop:
        out.append((f"UPDATE locations SET {assignment} WHERE account = ? AND uidl = ?", pop, True))  # noqa: S608
    if imap:
        out.append(
            (
                f"UPDATE locations SET {assignment} WHERE account = ? AND mailbox = ? AND uidvalidity = ?"  # noqa: S608
                " AND uid = ?",
                imap,
                True,
            )
        )
    return out


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts contain no ';' inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
