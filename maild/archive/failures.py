"""Per-message retrieval failures in the archive (schema v4 and v7, table ``retrieval_failures``).

A message that failed to arrive (refused by the server, or the connection broke while it was being
received) gets a row per account and server identity counting the failures in a row; the row goes
when the message is archived (:meth:`maild.archive.store.Store.store_batch` removes it in the same
transaction). :func:`maild.policy.set_aside` decides from these records which messages a cycle skips.

The Subject, From and Date of such a message (schema v7) come from a separate, best-effort header
fetch (:mod:`maild.fetch.failed_headers`) and are written by :func:`record_headers`.

Each record keeps the kind of its last failure (schema v15, :data:`maild.model.FailureKind`):
``'message'`` (the server's reply or the message) or ``'local'`` (this machine's spool or disk).
``failures`` and ``first_failed_at`` count the run of failures of that kind: a failure of the other
kind starts a new run at 1, so local failures never add up towards setting a message aside, and a
message failure after them starts counting afresh. The column is added by schema 15's step
(:mod:`maild.archive.failure_kind`).

Keys are stored as one text (:func:`maild.archive.schema.failure_key_text`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.archive.schema import failure_key_text, parse_failure_key, parse_utc, utc_text
from maild.model import FailureRecord, HeaderSummary, MessageKey, RetrievalFailure

if TYPE_CHECKING:
    from maild.archive.store import Store

#: Longest failure reason kept, in characters (the server's words are cut, not dropped).
MAX_REASON_CHARS = 500
#: Longest Subject or From field kept for a failed message, in characters (cut, not dropped).
MAX_FIELD_CHARS = 300


async def failure_records(store: Store, account: str) -> dict[MessageKey, FailureRecord]:
    """Every failure record of ``account``, by server identity.

    Raises:
        StoreError: SQLite failed.
    """
    return failures_from_rows(await store._all(RECORDS_SQL, (account,)))


RECORDS_SQL = (
    "SELECT key, failures, reason, first_failed_at, last_failed_at, retry_requested,"
    " subject, from_field, date_field, header_attempts, kind"
    " FROM retrieval_failures WHERE account = ?"
)
"""Every failure record of one account (the parameter); :func:`failures_from_rows` reads them."""


def failures_from_rows(rows: Iterable[Sequence[Any]]) -> dict[MessageKey, FailureRecord]:
    """Rows of :data:`RECORDS_SQL` as server identity to its :class:`FailureRecord` (times UTC)."""
    out: dict[MessageKey, FailureRecord] = {}
    for key, failures, reason, first, last, retry, subject, from_, date, attempts, kind in rows:
        parsed = parse_failure_key(key)
        out[parsed] = FailureRecord(
            parsed,
            failures,
            reason,
            parse_utc(first),
            parse_utc(last),
            bool(retry),
            subject,
            from_,
            parse_utc(date) if date else None,
            attempts,
            "local" if kind == "local" else "message",
        )
    return out


async def record_failures(
    store: Store, account: str, failures: Sequence[RetrievalFailure], now: datetime
) -> None:
    """Count one more failure in a row for each of ``failures`` (a retry request is used up).

    A failure of the same kind as the record's last one adds to its run; one of the other kind
    (``RetrievalFailure.kind``) starts a new run: ``failures`` 1, ``first_failed_at`` now.

    Raises:
        StoreError: SQLite failed; nothing was recorded.
    """
    if not failures:
        return
    stamp = utc_text(now)
    rows = [
        (account, failure_key_text(f.key), f.reason[:MAX_REASON_CHARS], stamp, stamp, f.kind)
        for f in {f.key: f for f in failures}.values()
    ]
    await store._write(
        [
            (
                "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at,"
                " last_failed_at, kind) VALUES (?, ?, 1, ?, ?, ?, ?) ON CONFLICT (account, key) DO UPDATE"
                " SET failures = CASE WHEN kind = excluded.kind THEN failures + 1 ELSE 1 END,"
                " first_failed_at = CASE WHEN kind = excluded.kind THEN first_failed_at"
                " ELSE excluded.first_failed_at END,"
                " reason = excluded.reason, kind = excluded.kind,"
                " last_failed_at = excluded.last_failed_at, retry_requested = 0",
                rows,
                True,
            )
        ]
    )


async def clear_failures(store: Store, account: str, keys: Sequence[MessageKey]) -> None:
    """Remove the failure records of ``keys`` (each message arrived, or was shown by other means to
    be the archived one: :func:`maild.fetch.pop3_listed.check_contents`); no write when none has one.

    Raises:
        StoreError: SQLite failed; nothing was removed.
    """
    texts = [failure_key_text(key) for key in keys]
    if not texts or not await store._scalar(
        "SELECT 1 FROM retrieval_failures WHERE account = ? LIMIT 1", (account,)
    ):
        return
    await store._write(
        [
            (
                "DELETE FROM retrieval_failures WHERE account = ? AND key = ?",
                [(account, t) for t in texts],
                True,
            )
        ],
        keeps_locations=True,
    )


async def request_retry(store: Store, account: str) -> int:
    """Mark every failure record of ``account`` for one more attempt in the next cycle.

    Returns:
        How many records were marked.

    Raises:
        StoreError: SQLite failed.
    """
    count = int(await store._scalar("SELECT count(*) FROM retrieval_failures WHERE account = ?", (account,)))
    if count:
        await store._write(
            [("UPDATE retrieval_failures SET retry_requested = 1 WHERE account = ?", (account,), False)]
        )
    return count


async def record_headers(
    store: Store, account: str, tried: Sequence[MessageKey], found: Mapping[MessageKey, HeaderSummary]
) -> None:
    """Record one header fetch attempt for each of ``tried`` and the fields read for those in ``found``.

    Keys without a failure record (the message arrived meanwhile) are ignored. A field the header
    fetch did not find leaves the value recorded before (if any) in place.

    Args:
        store: the open archive.
        account: the account's name.
        tried: the keys the header fetch asked for (each counts one attempt).
        found: key to the Subject, From and Date read (decoded; each may be None).

    Raises:
        StoreError: SQLite failed; nothing was recorded.
    """
    if not tried:
        return
    rows = []
    for key in dict.fromkeys(tried):
        summary = found.get(key)
        subject = summary.subject[:MAX_FIELD_CHARS] if summary and summary.subject else None
        from_ = summary.from_[:MAX_FIELD_CHARS] if summary and summary.from_ else None
        date = utc_text(summary.date) if summary and summary.date else None
        rows.append((subject, from_, date, account, failure_key_text(key)))
    await store._write(
        [
            (
                "UPDATE retrieval_failures SET header_attempts = header_attempts + 1,"
                " subject = coalesce(?, subject), from_field = coalesce(?, from_field),"
                " date_field = coalesce(?, date_field) WHERE account = ? AND key = ?",
                rows,
                True,
            )
        ]
    )
