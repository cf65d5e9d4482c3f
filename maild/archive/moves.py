"""Move bookkeeping in the archive: what moving a mailbox and administering accounts read and record.

:class:`MoveRecords` holds the SQL that ``maild compare``, ``migrate``, ``retire`` and ``accounts``
need: reading one account's archive for comparison, recording uploads in the ``appends`` table
(schema v2) and moves in ``moves``, recording retirement (``accounts.retired_at``/``retired_into``)
and purging one account's archive. It is one of the collaborators over the archive's connection
(see :mod:`maild.archive.store`); :class:`maild.archive.move_queries.MigrationStore` is the
:class:`~maild.archive.store.Store` that holds it, for the administrative commands only. Every write
goes through the connection's durable transaction (``synchronous=FULL``: on disk when it returns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive import fts
from maild.archive.in_list import padded_in
from maild.archive.schema import QUERY_CHUNK, parse_utc, utc_text
from maild.model import IMAPKey
from maild.move.compare import ArchiveEntry, archive_entry

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection
    from maild.archive.deliveries import DeliveryRecords

_READ_OCTETS = 32 * 2**20  # raw octets read per round when digesting an archive


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as the archive knows it (configured now or ever).

    Attributes:
        name, organisation, employee, protocol: as recorded when it was last configured.
        created_at: when it was first recorded (UTC).
        retired_at: when ``maild retire`` retired it (UTC), or None.
        retired_into: the account it was migrated into, or None.
    """

    name: str
    organisation: str
    employee: str
    protocol: str
    created_at: datetime
    retired_at: datetime | None
    retired_into: str | None


@dataclass(frozen=True, slots=True)
class UploadSource:
    """What ``maild migrate`` needs to upload one archived message.

    Attributes:
        message: the ``messages.id`` row id.
        raw: its octets exactly as archived.
        internaldate: the earliest IMAP INTERNALDATE recorded for the source account (UTC), or None
            (POP3, or not recorded).
        flags: the union of the IMAP flags recorded for the source account (empty for POP3).
        date: the Date field (UTC), or None.
        first_fetched_at: when the source account first fetched it (UTC).
    """

    message: int
    raw: bytes
    internaldate: datetime | None
    flags: frozenset[str]
    date: datetime | None
    first_fetched_at: datetime


@dataclass(frozen=True, slots=True)
class AppendRecord:
    """One row of ``appends``: message uploaded by ``maild migrate`` into an account's mailbox.

    Attributes:
        message: the ``messages.id`` row id.
        mailbox: the target mailbox (readable name).
        uidvalidity, uid: from the server's ``[APPENDUID]`` (RFC 4315), else None (``uidvalidity``
            then holds the mailbox's UIDVALIDITY at the upload, when known).
        appended_at: when the server confirmed it (UTC).
        accepted_at: when ``maild retire --accept-deleted`` accepted that it is no longer in the
            mailbox (UTC; schema v5), or None.
    """

    message: int
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    appended_at: datetime
    accepted_at: datetime | None = None


class MoveRecords:
    """The move and account queries over one archive connection; held by
    :class:`~maild.archive.move_queries.MigrationStore`.

    All methods raise :class:`~maild.errors.StoreError` when SQLite fails.

    Args:
        db: the archive's connection.
        deliveries: the delivery rows over the same connection (raw octets and sizes by message id).
    """

    def __init__(self, db: ArchiveConnection, deliveries: DeliveryRecords) -> None:
        self._db = db
        self._deliveries = deliveries

    # -- reading an account's archive -------------------------------------------------------------

    async def linked_messages(self, account: str) -> dict[int, bool]:
        """Return each archived message linked to ``account``: row id -> still on its server.

        "Still on its server" means some location of the account is neither gone nor deleted.
        """
        rows = await self._db._all(
            "SELECT message, max(gone_at IS NULL AND deleted_at IS NULL) FROM locations"
            " WHERE account = ? GROUP BY message ORDER BY min(first_fetched_at), message",
            (account,),
        )
        return {int(r[0]): bool(r[1]) for r in rows}

    async def archive_entries(
        self, account: str, progress: Callable[[int, int], None] | None = None
    ) -> list[ArchiveEntry]:
        """Digest every message linked to ``account`` for :func:`maild.move.compare.compare`.

        Octets are read about 32 MiB at a time and hashed in a worker thread, so the whole archive
        never sits in memory.

        Args:
            account: the account name.
            progress: called with (messages done, messages in all) after each round.
        """
        linked = await self.linked_messages(account)
        ids = list(linked)
        sizes = await self._sizes(ids)
        entries: list[ArchiveEntry] = []
        start = 0
        while start < len(ids):
            take: list[int] = []
            octets = 0
            while start + len(take) < len(ids) and (not take or octets < _READ_OCTETS):
                message = ids[start + len(take)]
                take.append(message)
                octets += sizes.get(message, 0)
            start += len(take)
            raws = await self.message_octets(take)
            entries += await asyncio.to_thread(_digest_chunk, raws, linked)
            if progress is not None:
                progress(start, len(ids))
        return entries

    async def _sizes(self, ids: Sequence[int]) -> dict[int, int]:
        sizes = await self._deliveries.message_column("size_octets", ids)
        return {message: int(size) for message, size in sizes.items()}

    async def message_octets(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Return row id -> raw octets for each of ``ids`` in the archive, in the order given."""
        found = await self._deliveries.raw_messages(ids)
        return {message: found[message] for message in ids if message in found}

    async def upload_sources(self, account: str, ids: Sequence[int]) -> dict[int, UploadSource]:
        """Return what uploading each of ``ids`` needs, from ``account``'s locations and the message."""
        raws = await self.message_octets(ids)
        out: dict[int, UploadSource] = {}
        for i in range(0, len(ids), QUERY_CHUNK):
            marks, params = padded_in(ids[i : i + QUERY_CHUNK])
            rows = await self._db._all(
                "SELECT l.message, min(l.internaldate), group_concat(l.flags, ' '),"  # noqa: S608
                " min(l.first_fetched_at), m.date FROM locations l JOIN messages m ON m.id = l.message"
                f" WHERE l.account = ? AND l.message IN ({marks}) GROUP BY l.message",
                (account, *params),
            )
            for message, internaldate, flags, first, date in rows:
                if message not in raws:
                    continue
                out[message] = UploadSource(
                    message=message,
                    raw=raws[message],
                    internaldate=parse_utc(internaldate) if internaldate else None,
                    flags=frozenset((flags or "").split()),
                    date=parse_utc(date) if date else None,
                    first_fetched_at=parse_utc(first),
                )
        return out

    # -- uploads ----------------------------------------------------------------------------------

    async def append_records(self, account: str) -> list[AppendRecord]:
        """Return every upload ``maild migrate`` recorded into ``account`` (any mailbox)."""
        rows = await self._db._all(
            "SELECT message, mailbox, uidvalidity, uid, appended_at, accepted_at FROM appends"
            " WHERE account = ? ORDER BY appended_at, message",
            (account,),
        )
        return [
            AppendRecord(r[0], r[1], r[2], r[3], parse_utc(r[4]), parse_utc(r[5]) if r[5] else None)
            for r in rows
        ]

    async def accept_missing(self, account: str, messages: Sequence[int], now: datetime) -> None:
        """Record, durably, that the uploads of ``messages`` into ``account`` are gone for good.

        ``maild retire --accept-deleted``: someone deleted them in the IMAP mailbox; the archive keeps
        the messages, and comparisons no longer count them as missing. ``maild migrate --reupload``
        clears the mark by uploading them again (:meth:`record_append`).
        """
        await self._db._write(
            [
                (
                    "UPDATE appends SET accepted_at = ? WHERE account = ? AND message = ?",
                    [(utc_text(now), account, message) for message in messages],
                    True,
                )
            ]
        )

    async def accept_unfetched(
        self,
        account: str,
        into: str,
        rows: Sequence[tuple[str | None, int | None, str]],
        now: datetime,
    ) -> None:
        """Record, durably, that what ``account``'s server still holds unarchived may be left behind.

        ``maild retire --accept-unfetched`` (table ``unfetched_accepted``, schema v16): one row per
        message, ``rows`` being (server identity as :func:`maild.archive.schema.failure_key_text` or
        None when the server could not be reached, size in octets or None, why it was not archived
        or the server's error).
        """
        await self._db._write([_unfetched_insert(account, into, rows, utc_text(now))])

    async def forget_appends(self, account: str, uploads: Sequence[tuple[int, str]]) -> None:
        """Forget, durably, the upload records (message, mailbox) into ``account`` (``--undo``)."""
        await self._db._write(
            [
                (
                    "DELETE FROM appends WHERE account = ? AND message = ? AND mailbox = ?",
                    [(account, message, mailbox) for message, mailbox in uploads],
                    True,
                )
            ]
        )

    async def end_move(self, source: str, target: str) -> None:
        """Forget, durably, the move of ``source`` into ``target`` (undone: none of it is left)."""
        statement = ("DELETE FROM moves WHERE source = ? AND target = ?", (source, target), False)
        await self._db._write([statement])

    async def start_move(self, source: str, target: str, now: datetime) -> None:
        """Record, durably, that a move of ``source`` into ``target`` is under way (schema v5).

        From then on, POP3 accounts whose server holds what ``target`` holds delete nothing until
        :meth:`retire` finishes the move (:mod:`maild.archive.move_guard`). A finished move that is
        started again (``migrate`` after ``retire``) is unfinished again.
        """
        await self._db._write(
            [
                (
                    "INSERT INTO moves (source, target, started_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (source, target) DO UPDATE SET finished_at = NULL",
                    (source, target, utc_text(now)),
                    False,
                )
            ]
        )

    async def record_append(
        self,
        message: int,
        account: str,
        mailbox: str,
        uidvalidity: int | None,
        uid: int | None,
        now: datetime,
    ) -> None:
        """Record, durably, that the server of ``account`` stored ``message`` in ``mailbox``.

        Called right after the server's OK. A record for the same (message, account, mailbox) is
        replaced (a re-upload after the mailbox was recreated).

        Cancelled before the commit returns: nothing is recorded (the next run finds the message by
        comparing and does not upload it again).
        """
        await self._db._write(
            [
                (
                    "INSERT INTO appends (message, account, mailbox, uidvalidity, uid, appended_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message, account, mailbox) DO UPDATE SET"
                    " uidvalidity = excluded.uidvalidity, uid = excluded.uid,"
                    " appended_at = excluded.appended_at, accepted_at = NULL",
                    (message, account, mailbox, uidvalidity, uid, utc_text(now)),
                    False,
                )
            ]
        )

    # -- accounts ---------------------------------------------------------------------------------

    async def account_records(self) -> dict[str, AccountRecord]:
        """Return every account the archive knows, by name."""
        rows = await self._db._all(
            "SELECT name, organisation, employee, protocol, created_at, retired_at, retired_into"
            " FROM accounts ORDER BY name"
        )
        return {
            r[0]: AccountRecord(
                r[0], r[1], r[2], r[3], parse_utc(r[4]), parse_utc(r[5]) if r[5] else None, r[6]
            )
            for r in rows
        }

    async def retire(
        self,
        account: str,
        into: str,
        now: datetime,
        *,
        accepted_missing: Sequence[int] = (),
        unfetched: Sequence[tuple[str | None, int | None, str]] = (),
    ) -> None:
        """Record, durably, that ``account`` was migrated into ``into`` and retired at ``now``.

        In the same transaction the move of ``account`` into ``into`` is finished (``moves``), and
        the decisions ``maild retire`` was told to take are recorded: ``accepted_missing`` (uploads
        into ``into`` gone for good, as :meth:`accept_missing`) and ``unfetched`` (what ``account``'s
        server still holds unarchived, rows as :meth:`accept_unfetched`). One transaction, so a kill
        at any moment leaves either all of it or none of it: never an acceptance recorded for a
        retirement that did not happen (before session 14 a kill between the two left an
        ``unfetched_accepted`` row, and the next ``retire --accept-unfetched`` added a second).
        """
        stamp = utc_text(now)
        statements: list[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]] = []
        if accepted_missing:
            statements.append(
                (
                    "UPDATE appends SET accepted_at = ? WHERE account = ? AND message = ?",
                    [(stamp, into, message) for message in accepted_missing],
                    True,
                )
            )
        if unfetched:
            statements.append(_unfetched_insert(account, into, unfetched, stamp))
        statements += [
            (
                "UPDATE accounts SET retired_at = ?, retired_into = ? WHERE name = ?",
                (stamp, into, account),
                False,
            ),
            (
                "INSERT INTO moves (source, target, started_at, finished_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (source, target) DO UPDATE SET finished_at = excluded.finished_at",
                (account, into, stamp, stamp),
                False,
            ),
        ]
        await self._db._write(statements)

    async def unretire(self, account: str) -> str | None:
        """Record, durably, that ``account`` is no longer retired; return what it was retired into.

        The move into that account is unfinished again (``moves.finished_at`` cleared), so POP3
        deletions overlapping it are suspended again until the next ``retire``.
        """
        into = await self._db._scalar("SELECT retired_into FROM accounts WHERE name = ?", (account,))
        await self._db._write(
            [
                (
                    "UPDATE accounts SET retired_at = NULL, retired_into = NULL WHERE name = ?",
                    (account,),
                    False,
                ),
                (
                    "UPDATE moves SET finished_at = NULL WHERE source = ? AND target = ?",
                    (account, into),
                    False,
                ),
            ]
        )
        return str(into) if into is not None else None

    async def exclusive_messages(self, account: str) -> list[int]:
        """Return the messages linked to ``account`` and to no other account: what a purge would drop."""
        rows = await self._db._all(
            "SELECT DISTINCT l.message FROM locations l WHERE l.account = ? AND NOT EXISTS"
            " (SELECT 1 FROM locations o WHERE o.message = l.message AND o.account <> l.account)"
            " ORDER BY l.message",
            (account,),
        )
        return [int(r[0]) for r in rows]

    async def purge_account(self, account: str) -> int:
        """Delete ``account`` from the archive: its locations, mailboxes, deliveries, uploads into it,
        its row, and every message no other account links to any more.

        One durable transaction: cancelled or failed, nothing is deleted. The caller has checked
        that no message is lost (each is linked elsewhere or on another account's server).

        Returns:
            The number of messages deleted from the archive.
        """

        async def work() -> int:
            conn = self._db._conn
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS purge_ids (id INTEGER PRIMARY KEY)")
            await conn.execute("DELETE FROM purge_ids")
            await conn.execute(
                "INSERT OR IGNORE INTO purge_ids SELECT l.message FROM locations l WHERE l.account = ?"
                " AND NOT EXISTS (SELECT 1 FROM locations o WHERE o.message = l.message"
                " AND o.account <> l.account)",
                (account,),
            )
            statements: list[tuple[str, tuple[Any, ...]]] = [
                ("DELETE FROM locations WHERE account = ?", (account,)),
                ("DELETE FROM mailboxes WHERE account = ?", (account,)),
                ("DELETE FROM mailbox_sync WHERE account = ?", (account,)),
                ("DELETE FROM deliveries WHERE account = ?", (account,)),
                ("DELETE FROM appends WHERE account = ?", (account,)),
                ("DELETE FROM moves WHERE source = ? OR target = ?", (account, account)),
                ("DELETE FROM account_history WHERE account = ?", (account,)),
                ("DELETE FROM alert_memory WHERE account = ?", (account,)),
                ("DELETE FROM retrieval_failures WHERE account = ?", (account,)),
                ("DELETE FROM appends WHERE message IN (SELECT id FROM purge_ids)", ()),
                ("DELETE FROM deliveries WHERE message IN (SELECT id FROM purge_ids)", ()),
                ("UPDATE accounts SET retired_into = NULL WHERE retired_into = ?", (account,)),
                ("DELETE FROM accounts WHERE name = ?", (account,)),
            ]
            for sql, params in statements:
                await conn.execute(sql, params)
            await fts.unindex(conn, "SELECT id FROM purge_ids")  # the index forgets only what it is told
            cur = await conn.execute("DELETE FROM messages WHERE id IN (SELECT id FROM purge_ids)")
            deleted = cur.rowcount
            await cur.close()
            await conn.execute("DELETE FROM purge_ids")
            return int(deleted)

        return await self._db._atomic(work, f"purging account {account}")


def _digest_chunk(raws: dict[int, bytes], on_server: dict[int, bool]) -> list[ArchiveEntry]:
    """Digest a chunk of archived messages (CPU work; runs in a worker thread)."""
    return [archive_entry(message, raw, on_server=on_server[message]) for message, raw in raws.items()]


def as_keys(records: Sequence[AppendRecord]) -> dict[int, set[IMAPKey]]:
    """Map archive row id -> the uploads recorded for it that name a UID, as keys."""
    out: dict[int, set[IMAPKey]] = {}
    for record in records:
        if record.uidvalidity is not None and record.uid is not None:
            out.setdefault(record.message, set()).add(IMAPKey(record.mailbox, record.uidvalidity, record.uid))
    return out


def _unfetched_insert(
    account: str, into: str, rows: Sequence[tuple[str | None, int | None, str]], stamp: str
) -> tuple[str, list[Sequence[Any]], bool]:
    """The statement recording ``rows`` in ``unfetched_accepted`` (as
    :meth:`MoveRecords.accept_unfetched` describes them)."""
    return (
        "INSERT INTO unfetched_accepted (account, into_account, key, size_octets, reason, accepted_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(account, into, key, size, reason, stamp) for key, size, reason in rows],
        True,
    )
