"""The alerts sent and still open, kept in the archive (schema v7, table ``alert_memory``).

The daemon's alerting (:mod:`maild.service.alerts`) remembers, per account and kind, when a
condition started, when its alert was last sent and with which message; kept here, a restart
neither sends an open alert again before its ``repeat`` time nor forgets to send its recovery
notice. The daemon-wide kinds (the daemon itself, its disk) use the account ``''``.

Each function is one short transaction on the daemon's :class:`~maild.archive.store.Store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from maild.archive.schema import parse_utc, utc_text
from maild.archive.store import Store

#: Longest ``message`` and ``next_step`` text kept per alert, in characters (longer texts are cut).
MAX_ALERT_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One open alert as the archive remembers it.

    Attributes:
        account: the account, or None for the daemon and its disk.
        kind: the alert kind (``failing``, ``locked_out``, ...).
        since: when the condition started (UTC).
        sent_at: when its alert was last sent (UTC).
        message: the text last sent (never a secret).
        next_step: what the administrator was told to do.
    """

    account: str | None
    kind: str
    since: datetime
    sent_at: datetime
    message: str
    next_step: str


async def load_alerts(store: Store) -> list[AlertRecord]:
    """Every remembered open alert, ordered by account and kind.

    Raises:
        StoreError: SQLite failed.
    """
    rows = await store._all(
        "SELECT account, kind, since, sent_at, message, next_step FROM alert_memory ORDER BY account, kind"
    )
    return [AlertRecord(r[0] or None, r[1], parse_utc(r[2]), parse_utc(r[3]), r[4], r[5]) for r in rows]


async def save_alerts(
    store: Store, sent: Sequence[AlertRecord], cleared: Sequence[tuple[str | None, str]]
) -> None:
    """Remember the alerts just sent (replacing earlier rows of the same account and kind) and forget
    the cleared ones, in one durable transaction.

    Args:
        store: the open archive.
        sent: alerts sent now (firing).
        cleared: (account or None, kind) of conditions that cleared or whose account is gone.

    Raises:
        StoreError: SQLite failed (for example the disk is full); nothing changed.
    """
    if not sent and not cleared:
        return
    rows = [
        (
            r.account or "",
            r.kind,
            utc_text(r.since),
            utc_text(r.sent_at),
            r.message[:MAX_ALERT_TEXT_CHARS],
            r.next_step[:MAX_ALERT_TEXT_CHARS],
        )
        for r in sent
    ]
    statements: list[tuple[str, list[Sequence[object]], bool]] = []
    if cleared:
        statements.append(
            (
                "DELETE FROM alert_memory WHERE account = ? AND kind = ?",
                [(account or "", kind) for account, kind in cleared],
                True,
            )
        )
    if rows:
        statements.append(
            (
                "INSERT OR REPLACE INTO alert_memory (account, kind, since, sent_at, message, next_step)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                list(rows),
                True,
            )
        )
    await store._write(statements)
