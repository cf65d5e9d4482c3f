"""Per-message retrieval failures in the archive (schema v4, table ``retrieval_failures``).

A message that failed to arrive (refused by the server, or the connection broke while it was being
received) gets a row per account and server identity counting the failures in a row; the row goes
when the message is archived (:meth:`maild.archive.store.Store.store_batch` removes it in the same
transaction). :func:`maild.policy.set_aside` decides from these records which messages a cycle skips.

Keys are stored as one text (:func:`maild.archive.schema.failure_key_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from maild.archive.schema import failure_key_text, parse_failure_key, parse_utc, utc_text
from maild.model import FailureRecord, MessageKey, RetrievalFailure

if TYPE_CHECKING:
    from maild.archive.store import Store

#: Longest failure reason kept, in characters (the server's words are cut, not dropped).
MAX_REASON_CHARS = 500


async def failure_records(store: Store, account: str) -> dict[MessageKey, FailureRecord]:
    """Every failure record of ``account``, by server identity.

    Raises:
        StoreError: SQLite failed.
    """
    rows = await store._all(
        "SELECT key, failures, reason, first_failed_at, last_failed_at, retry_requested"
        " FROM retrieval_failures WHERE account = ?",
        (account,),
    )
    out: dict[MessageKey, FailureRecord] = {}
    for key, failures, reason, first, last, retry in rows:
        parsed = parse_failure_key(key)
        out[parsed] = FailureRecord(parsed, failures, reason, parse_utc(first), parse_utc(last), bool(retry))
    return out


async def record_failures(
    store: Store, account: str, failures: Sequence[RetrievalFailure], now: datetime
) -> None:
    """Count one more failure in a row for each of ``failures`` (a retry request is used up).

    Raises:
        StoreError: SQLite failed; nothing was recorded.
    """
    if not failures:
        return
    stamp = utc_text(now)
    rows = [
        (account, failure_key_text(f.key), f.reason[:MAX_REASON_CHARS], stamp, stamp)
        for f in {f.key: f for f in failures}.values()
    ]
    await store._write(
        [
            (
                "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at,"
                " last_failed_at) VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (account, key) DO UPDATE SET"
                " failures = failures + 1, reason = excluded.reason,"
                " last_failed_at = excluded.last_failed_at, retry_requested = 0",
                rows,
                True,
            )
        ]
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
