"""Check a move's uploads by content, and undo them: ``maild migrate --verify`` and ``--undo``.

Every upload ``maild migrate`` recorded (``appends``) names the message's archive row and, from the
server's ``[APPENDUID]`` (RFC 4315 section 3), its UID in the target mailbox. ``--verify`` fetches
each such UID back (``UID FETCH BODY.PEEK[]``, which leaves ``\\Seen`` alone) and compares the
SHA-256 of what comes back with the archived octets (also in CRLF form, as a server may store bare
LFs as CRLF). A record without a UID (a server without UIDPLUS) is looked up by content: the
comparison of :func:`maild.move.target.compare_accounts` names the message of B that is the same
message, and that one is fetched and hashed the same way.

``--undo`` removes exactly this move's uploads: only UIDs recorded for it, each fetched and
verified by content first; a message that is not what was uploaded (changed, or its UID reused) is
never touched, and records without a UID are refused (nothing is deleted by guesswork). Deletion is
``UID STORE \\Deleted`` then ``UID EXPUNGE`` of exactly those UIDs (see
:meth:`IMAPMailbox.delete <maild.protocols.imap.mailbox.IMAPMailbox.delete>`); the records are
forgotten afterwards. Killed in between: the next ``--undo`` finds those UIDs gone ("already
gone") and forgets their records; nothing else is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from maild.archive.move_queries import AppendRecord, MigrationStore
from maild.config.loader import Config
from maild.errors import MigrationError
from maild.model import IMAPKey, RetrievalFailure
from maild.move.compare import ArchiveEntry, body_digest
from maild.move.target import compare_accounts, open_session, target_account
from maild.protocols.imap.mailbox import IMAPMailbox

Outcome = Literal["verified", "changed", "missing", "no-uid", "removed", "already gone"]
"""What became of one upload: its content checked (``verified``), different from what was uploaded
(``changed``), not in B (``missing``), unlocatable (``no-uid``: no APPENDUID and no message of B with
the same content), removed by ``--undo`` (``removed``), or already gone when ``--undo`` looked."""


@dataclass(frozen=True, slots=True)
class UploadCheck:
    """One recorded upload and what checking it found.

    Attributes:
        entry: the archived message.
        record: its upload record.
        key: where in B it was looked for (from APPENDUID or by content), or None.
        outcome: see :data:`Outcome`.
        found_sha256: SHA-256 (hex) of what B returned, or None when nothing came back.
        detail: the server's reason when the message could not be fetched, else None.
    """

    entry: ArchiveEntry
    record: AppendRecord
    key: IMAPKey | None
    outcome: Outcome
    found_sha256: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class VerifyReport:
    """What ``--verify`` or ``--undo`` found, one :class:`UploadCheck` per upload of the move."""

    source: str
    target: str
    checks: list[UploadCheck] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many uploads ended with ``outcome``."""
        return sum(1 for c in self.checks if c.outcome == outcome)


def _matches(entry: ArchiveEntry, raw: bytes) -> tuple[bool, str]:
    digest = body_digest(raw)
    same = digest.sha256 in (entry.sha256, entry.sha256_crlf) or digest.sha256_crlf == entry.sha256_crlf
    return same, digest.sha256


async def _move_records(
    store: MigrationStore, source: str, target: str
) -> tuple[dict[int, ArchiveEntry], list[AppendRecord]]:
    """The source's archive entries and the records of uploads of its messages into ``target``."""
    entries = {e.message: e for e in await store.archive_entries(source)}
    records = [
        r for r in await store.append_records(target) if r.message in entries and r.accepted_at is None
    ]
    return entries, records


async def _fetch_checks(
    session: IMAPMailbox,
    entries: dict[int, ArchiveEntry],
    located: Sequence[tuple[AppendRecord, IMAPKey]],
) -> list[UploadCheck]:
    """Fetch each located upload and compare its SHA-256 with the archive's."""
    by_key = {key: record for record, key in located}
    checks: list[UploadCheck] = []
    if not by_key:
        return checks
    async for item in session.retrieve(list(by_key)):
        assert isinstance(item.key, IMAPKey)
        record = by_key.pop(item.key)
        entry = entries[record.message]
        if isinstance(item, RetrievalFailure):
            checks.append(UploadCheck(entry, record, item.key, "missing", detail=item.reason))
            continue
        same, found = _matches(entry, item.whole())
        checks.append(UploadCheck(entry, record, item.key, "verified" if same else "changed", found))
    for key, record in by_key.items():  # not returned at all
        checks.append(UploadCheck(entries[record.message], record, key, "missing", detail="not returned"))
    return checks


async def verify(config: Config, store: MigrationStore, source: str, target_name: str) -> VerifyReport:
    """Fetch every upload of the move of ``source`` into ``target_name`` back and check its SHA-256.

    Returns:
        One check per recorded upload (accepted deletions left out), in upload order.

    Raises:
        MigrationError: nothing was ever uploaded for this move.
        ConfigError, StoreError, and B's server errors (AuthError, ConnectError, NetworkTimeout,
        ProtocolError): nothing is changed anywhere, so re-running is always safe.

    Standard: RFC 4315 section 3 (APPENDUID); RFC 9051 section 6.4.5 (FETCH ``BODY.PEEK[]``).
    """
    target = target_account(config, source, target_name)
    entries, records = await _move_records(store, source, target_name)
    if not records:
        raise MigrationError(f"nothing of {source} was uploaded into {target_name} by `maild migrate`")
    with_uid = [
        (r, IMAPKey(r.mailbox, r.uidvalidity, r.uid)) for r in records if r.uid is not None and r.uidvalidity
    ]
    without = [r for r in records if r.uid is None or not r.uidvalidity]
    report = VerifyReport(source, target_name)
    located = list(with_uid)
    if without:  # a server without UIDPLUS: find the same message by content
        outcome = await compare_accounts(
            store, source, target, tuple(dict.fromkeys(r.mailbox for r in without))
        )
        found = {m.entry.message: m.key for m in outcome.comparison.both}
        for record in without:
            key = found.get(record.message)
            if key is None:
                report.checks.append(UploadCheck(entries[record.message], record, None, "no-uid"))
            else:
                located.append((record, key))
    session = open_session(target)
    try:
        await session.open()
        report.checks += await _fetch_checks(session, entries, located)
        await session.close()
    except BaseException:
        await session.abort()
        raise
    order = {id(r): i for i, r in enumerate(records)}
    report.checks.sort(key=lambda c: order[id(c.record)])
    return report


async def undo(
    config: Config,
    store: MigrationStore,
    source: str,
    target_name: str,
    *,
    clock: Callable[[], datetime],
) -> VerifyReport:
    """Remove from B exactly the uploads of the move of ``source`` into ``target_name``.

    Each recorded UID is fetched and compared by SHA-256 first; only verified ones are deleted
    (``UID STORE \\Deleted``, ``UID EXPUNGE`` of those UIDs), and their records forgotten. Records
    whose UID is no longer there are forgotten ("already gone"). Changed messages and records
    without a UID are left alone and reported. When nothing is left, the move is forgotten too,
    so POP3 deletions are no longer suspended by it; with nothing (left) to undo, that is all.

    Raises:
        MigrationError: ``source`` was retired into ``target_name`` (``maild unretire`` it first).
        ConfigError, StoreError, and B's server errors.

    Cancellation or a kill at any await: messages are deleted only after their check, and records
    forgotten only after the deletion; a re-run finds deleted ones gone and forgets them.
    """
    del clock  # the records are removed, not stamped; kept for a uniform signature
    target_account(config, source, target_name)
    account = (await store.account_records()).get(source)
    if account is not None and account.retired_into == target_name:
        raise MigrationError(
            f"{source} was retired into {target_name}: run `maild unretire {source}` first, then"
            f" `maild migrate {source} --to {target_name} --undo`"
        )
    if not (await _move_records(store, source, target_name))[1]:  # nothing (left) to undo
        await store.end_move(source, target_name)
        return VerifyReport(source, target_name)
    report = await verify(config, store, source, target_name)
    # only by recorded UID: a message found by content without one is never deleted (guesswork)
    deletable = [
        c for c in report.checks if c.outcome == "verified" and c.key is not None and c.record.uid is not None
    ]
    gone = [c for c in report.checks if c.outcome == "missing" and c.record.uid is not None]
    removed: list[UploadCheck] = []
    if deletable:
        session = open_session(target_account(config, source, target_name))
        try:
            await session.open()
            sent = set(await session.delete([c.key for c in deletable if c.key is not None]))
            await session.close()
        except BaseException:
            await session.abort()
            raise
        removed = [c for c in deletable if c.key in sent]
    forget = [(c.record.message, c.record.mailbox) for c in (*removed, *gone)]
    if forget:
        await store.forget_appends(target_name, forget)
    done: dict[int, Outcome] = {id(c): "removed" for c in removed}
    done.update({id(c): "already gone" for c in gone})
    report.checks = [
        UploadCheck(c.entry, c.record, c.key, done[id(c)], c.found_sha256) if id(c) in done else c
        for c in report.checks
    ]
    if all(c.outcome in ("removed", "already gone") for c in report.checks):
        await store.end_move(source, target_name)
    return report
