"""Where each archived message is on the servers: location rows, presence, and the check before deleting.

A location links one server identity of an account (POP3 UIDL, RFC 1939 section 7; IMAP mailbox,
UIDVALIDITY and UID, RFC 9051 section 2.3.1.1) to an archived message, with when it was first
fetched, seen gone and deleted by maild. :meth:`LocationRecords.archived` is the check made
immediately before any server-side deletion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive.in_list import padded_in
from maild.archive.schema import QUERY_CHUNK, parse_utc, utc_text
from maild.errors import StoreError
from maild.model import IMAPKey, Location, MessageKey, POP3Key

if TYPE_CHECKING:
    from maild.archive.connection import ArchiveConnection


class LocationRecords:
    """Location rows of each account over one archive connection; held by
    :class:`maild.archive.store.Store`."""

    def __init__(self, db: ArchiveConnection) -> None:
        self._db = db
        self._locations_cache: dict[str, tuple[tuple[int, int], dict[MessageKey, Location]]] = {}
        """Per account: ((locations generation, ``PRAGMA data_version``) when read, its locations)."""
        self._unrecorded: dict[str, dict[MessageKey, datetime]] = {}
        """Per account: deletions done on the server whose record failed (:meth:`mark_deleted`), with
        when they were done; written by :meth:`write_pending` (QA of session 13)."""
        self._unlinks: dict[str, set[IMAPKey]] = {}
        """Per account: IMAP locations found wrong whose removal failed (:meth:`unlink`); removed by
        :meth:`write_pending` (QA of session 13)."""

    async def locations(self, account: str) -> dict[MessageKey, Location]:
        """Return every server identity recorded for ``account``: POP3Key or IMAPKey to its Location.

        The result is cached per account and reused (as a fresh dict) while nothing changed: no
        transaction of this connection that may change locations began or ended since (its
        ``locations_generation``: the account histories written after every cycle do not count) and no
        other connection committed (SQLite's ``PRAGMA data_version``). A no-op cycle so costs one
        PRAGMA instead of reading and parsing every row.
        """
        generation = self._db.locations_generation
        version = (generation, int(await self._db._scalar("PRAGMA data_version")))
        cached = self._locations_cache.get(account)
        if cached is not None and cached[0] == version and self._db.locations_generation == generation:
            return dict(cached[1])
        out = await self._read_locations(account)
        if self._db.locations_generation == generation:  # no such transaction began or ended meanwhile
            self._locations_cache[account] = (version, out)
            return dict(out)
        self._locations_cache.pop(account, None)
        return out

    async def _read_locations(self, account: str) -> dict[MessageKey, Location]:
        return locations_from_rows(await self._db._all(LOCATIONS_SQL, (account,)))

    def remember(
        self, account: str, generation: int, data_version: int, known: dict[MessageKey, Location]
    ) -> None:
        """Keep ``known``, read in one read transaction (:mod:`maild.archive.cycle_reads`) when
        ``PRAGMA data_version`` was ``data_version`` and the connection's locations generation
        ``generation`` (taken before the read), as the cache :meth:`locations` answers from; not
        kept when a transaction that may change locations began or ended since."""
        if self._db.locations_generation == generation:
            self._locations_cache[account] = ((generation, data_version), known)
        else:
            self._locations_cache.pop(account, None)

    async def update_presence(
        self, account: str, gone: Sequence[MessageKey], back: Sequence[MessageKey], now: datetime
    ) -> None:
        """Record that ``gone`` keys are no longer on the server and ``back`` keys are there again."""
        if not gone and not back:
            return
        stamp = utc_text(now)
        await self._db._write(
            [
                *(_key_update(account, "gone_at = ?", (stamp,), gone)),
                *(_key_update(account, "gone_at = NULL", (), back)),
            ]
        )

    async def archived_sizes(
        self, account: str, keys: Sequence[MessageKey]
    ) -> dict[MessageKey, tuple[int, int]]:
        """Return, for each POP3 key of ``keys`` recorded for ``account``, the archived message's row
        id and the size in octets its server should list: the size recorded from the server when it
        differed (``locations.server_size``), else the archived octets'. IMAP keys are left out
        (:mod:`maild.fetch.resync` checks their UIDs)."""
        out: dict[MessageKey, tuple[int, int]] = {}
        pop = [k for k in keys if isinstance(k, POP3Key)]
        for i in range(0, len(pop), QUERY_CHUNK):
            marks, params = padded_in([k.uidl for k in pop[i : i + QUERY_CHUNK]])
            rows = await self._db._all(
                "SELECT l.uidl, l.message, coalesce(l.server_size, m.size_octets) FROM locations l"  # noqa: S608
                f" JOIN messages m ON m.id = l.message WHERE l.account = ? AND l.uidl IN ({marks})",
                (account, *params),
            )
            out.update((POP3Key(uidl), (int(message), int(size))) for uidl, message, size in rows)
        return out

    async def pop3_server_sizes(self, account: str) -> dict[MessageKey, int]:
        """Return the LIST size in octets recorded for ``account``'s POP3 keys that have one
        (``locations.server_size``: set by :meth:`record_pop3_server_sizes`, after a header check
        of the fetch or when retire's check stored the message): the server's own figure for the
        archived message, so another LIST size means another message under the UIDL."""
        rows = await self._db._all(
            "SELECT uidl, server_size FROM locations"
            " WHERE account = ? AND uidl IS NOT NULL AND server_size IS NOT NULL",
            (account,),
        )
        return {POP3Key(str(uidl)): int(size) for uidl, size in rows}

    async def record_pop3_server_sizes(self, account: str, sizes: Mapping[MessageKey, int]) -> None:
        """Record the LIST size (octets) of POP3 keys whose header section matched the archived
        message's while their size did not (a server whose sizes are off), so that later cycles
        compare with it."""
        rows: list[Sequence[Any]] = [
            (size, account, k.uidl) for k, size in sizes.items() if isinstance(k, POP3Key)
        ]
        if rows:
            await self._db._write(
                [("UPDATE locations SET server_size = ? WHERE account = ? AND uidl = ?", rows, True)]
            )

    async def release_pop3_keys(self, account: str, keys: Sequence[MessageKey], now: datetime) -> None:
        """Free the UIDLs of ``keys`` for the other messages their server now lists under them, in one
        transaction (:mod:`maild.fetch.pop3_listed`): each location row keeps its message, its times
        and the account's link to it, is recorded gone (``gone_at`` = ``now`` unless already set) and
        takes the identity ``"<uidl> re-used <row id>"``, which no server lists (a UIDL has no space,
        RFC 1939 section 7) and no other row holds. The UIDL is then unknown to the account, so the
        cycle retrieves and archives the message listed under it as a new one.

        Raises:
            StoreError: SQLite failed (``ArchiveFull``: the disk is full); nothing was changed.
        """
        rows: list[Sequence[Any]] = [(utc_text(now), account, k.uidl) for k in keys if isinstance(k, POP3Key)]
        if rows:
            await self._db._write(
                [
                    (
                        "UPDATE locations SET uidl = uidl || ' re-used ' || id,"
                        " gone_at = coalesce(gone_at, ?) WHERE account = ? AND uidl = ?",
                        rows,
                        True,
                    )
                ]
            )

    async def mark_deleted(self, account: str, keys: Sequence[MessageKey], now: datetime) -> None:
        """Record that maild deleted ``keys`` on the server (POP3: after ``+OK`` to QUIT).

        When the write fails (the archive's disk full, :class:`~maild.archive.store.ArchiveFull`, or
        another :class:`StoreError`, which is raised), the deletions are remembered in this process
        and :meth:`write_pending` writes them before the account's next cycle decides anything: a
        POP3 server re-using a deleted message's UIDL for a new message would otherwise have that
        message taken for the archived one and deleted unarchived (QA of session 13; ``deleted_at``
        is what :func:`maild.policy.reappeared` checks).
        """
        try:
            await self._db._write(_deleted_updates(account, dict.fromkeys(keys, now)))
        except StoreError:
            pending = self._unrecorded.setdefault(account, {})
            for key in keys:
                pending.setdefault(key, now)
            raise

    async def unlink(self, account: str, keys: Sequence[IMAPKey]) -> None:
        """Remove the location rows of ``keys`` (the messages stay archived), in one transaction: a
        UID map found wrong (:func:`maild.fetch.resync.verify_uid_map`).

        When the write fails, the keys are remembered in this process and :meth:`write_pending`
        removes them before the account's next cycle decides anything: the check that found the map
        wrong may be a random header sample, which the next cycle could miss, and would then delete
        by a UID naming a message never archived (QA of session 13).

        Raises:
            StoreError: SQLite failed (``ArchiveFull``: the disk is full); nothing was removed.
        """
        try:
            await self._db._write(_unlink_statements(account, keys))
        except StoreError:
            self._unlinks.setdefault(account, set()).update(keys)
            raise

    def unrecorded_deletions(self, account: str) -> int:
        """How many deletions done on the server for ``account`` are not recorded yet (see
        :meth:`mark_deleted`)."""
        return len(self._unrecorded.get(account, {}))

    async def write_pending(self, account: str) -> int:
        """Write what earlier cycles of ``account`` found and could not write, in one transaction:
        the deletions :meth:`mark_deleted` could not record (each with the time it was done), the
        locations :meth:`unlink` could not remove; nothing when there are none.

        Returns:
            How many keys were written.

        Raises:
            StoreError: the write failed (``ArchiveFull`` when the disk is still full); they stay
                remembered, and the caller must decide nothing on the server until they are written.
        """
        deleted, unlinks = self._unrecorded.get(account), self._unlinks.get(account)
        if not deleted and not unlinks:
            return 0
        await self._db._write(
            [*_unlink_statements(account, unlinks or ()), *_deleted_updates(account, deleted or {})]
        )
        self._unrecorded.pop(account, None)
        self._unlinks.pop(account, None)
        return len(deleted or ()) + len(unlinks or ())

    async def archived(
        self, account: str, keys: Sequence[MessageKey], *, require_delivery: bool = False
    ) -> set[MessageKey]:
        """Return the subset of ``keys`` whose message is in the archive for ``account`` right now.

        Checked immediately before any server-side deletion: a key qualifies only if its location row
        exists and the linked message row holds raw octets of the recorded size, and, with
        ``require_delivery`` (the account has ``deliver_maildir``), a delivery row records that the
        message's Maildir file is durable too.
        """
        found: set[MessageKey] = set()
        delivered = (
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.account = l.account AND d.message = l.message)"
            if require_delivery
            else ""
        )
        pop = [k for k in keys if isinstance(k, POP3Key)]
        for i in range(0, len(pop), QUERY_CHUNK):
            marks, params = padded_in([k.uidl for k in pop[i : i + QUERY_CHUNK]])
            rows = await self._db._all(
                "SELECT l.uidl FROM locations l JOIN messages m ON m.id = l.message"  # noqa: S608
                f" WHERE l.account = ? AND l.uidl IN ({marks}) AND length(m.raw) = m.size_octets{delivered}",
                (account, *params),
            )
            found.update(POP3Key(r[0]) for r in rows)
        imap = [k for k in keys if isinstance(k, IMAPKey)]
        for k in imap:
            rows = await self._db._all(
                "SELECT 1 FROM locations l JOIN messages m ON m.id = l.message WHERE l.account = ?"  # noqa: S608
                " AND l.mailbox = ? AND l.uidvalidity = ? AND l.uid = ? AND length(m.raw) = m.size_octets"
                + delivered,
                (account, k.mailbox, k.uidvalidity, k.uid),
            )
            if rows:
                found.add(k)
        return found


LOCATIONS_SQL = (
    "SELECT uidl, mailbox, uidvalidity, uid, message, first_fetched_at, gone_at, deleted_at,"
    # POP3 rows carry the size their server should list (Location.listed_size), compared with LIST
    # in every cycle (maild.fetch.pop3_listed); IMAP rows skip the lookup (CASE is lazy)
    " CASE WHEN uidl IS NOT NULL THEN coalesce(server_size,"
    " (SELECT m.size_octets FROM messages m WHERE m.id = message)) END"
    " FROM locations WHERE account = ?"
)
"""Every location row of one account (the parameter); :func:`locations_from_rows` reads its rows."""


def locations_from_rows(rows: Iterable[Sequence[Any]]) -> dict[MessageKey, Location]:
    """Rows of :data:`LOCATIONS_SQL` as POP3Key or IMAPKey to its :class:`Location` (times UTC)."""
    out: dict[MessageKey, Location] = {}
    # A batch's rows share one timestamp: parse each distinct text once (a no-op cycle reads every row).
    moments: dict[str, datetime] = {}

    def moment(text: str) -> datetime:
        parsed = moments.get(text)
        if parsed is None:
            parsed = moments[text] = parse_utc(text)
        return parsed

    for uidl, mailbox, uidvalidity, uid, message, first, gone, deleted, listed in rows:
        key: MessageKey = POP3Key(uidl) if uidl is not None else IMAPKey(mailbox, uidvalidity, uid)
        out[key] = Location(
            message=message,
            first_fetched_at=moment(first),
            gone_at=moment(gone) if gone else None,
            deleted_at=moment(deleted) if deleted else None,
            listed_size=listed,
        )
    return out


def _unlink_statements(account: str, keys: Iterable[IMAPKey]) -> list[tuple[str, list[Sequence[Any]], bool]]:
    """The statement removing the location rows of ``keys``."""
    rows: list[Sequence[Any]] = [(account, k.mailbox, k.uidvalidity, k.uid) for k in keys]
    if not rows:
        return []
    return [
        (
            "DELETE FROM locations WHERE account = ? AND mailbox = ? AND uidvalidity = ? AND uid = ?",
            rows,
            True,
        )
    ]


def _deleted_updates(
    account: str, deleted: dict[MessageKey, datetime]
) -> list[tuple[str, list[Sequence[Any]], bool]]:
    """The statements recording ``deleted`` (key: when maild deleted it on the server) as deleted."""
    by_stamp: dict[str, list[MessageKey]] = {}
    for key, when in deleted.items():
        by_stamp.setdefault(utc_text(when), []).append(key)
    out: list[tuple[str, list[Sequence[Any]], bool]] = []
    for stamp, keys in by_stamp.items():
        out += _key_update(account, "deleted_at = ?, gone_at = coalesce(gone_at, ?)", (stamp, stamp), keys)
    return out


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
