"""Schema 15's step: the kind of a retrieval failure, ``retrieval_failures.kind``.

``'message'`` (the server's reply or the message: counts towards setting it aside) or ``'local'``
(this machine's spool or disk: never sets it aside), :data:`maild.model.FailureKind`; read and
written by :mod:`maild.archive.failures`. Before the column existed, a spool failure was told by
its reason's text alone, so the step marks those records ``'local'``. No RFC applies here.
"""

from __future__ import annotations

import aiosqlite

from maild.archive.columns import add_column_unless_there

OLD_LOCAL_PREFIX = "local spool: "
"""How the reason of a failure recorded before schema 15 shows it was the spool's (then
``maild.spool.SPOOL_FAILURE_PREFIX``); read only by :func:`add_failure_kind`."""


async def add_failure_kind(conn: aiosqlite.Connection) -> None:
    """Add ``retrieval_failures.kind`` unless there (default ``'message'``); when added, the records whose
    reason starts ``local spool: `` become ``'local'``.

    Args:
        conn: the archive's connection, inside the migration's transaction.

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back: the archive stays at 14).
    """
    added = await add_column_unless_there(
        conn,
        "retrieval_failures",
        "kind",
        "TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'local'))",
    )
    if added:
        await conn.execute(
            "UPDATE retrieval_failures SET kind = 'local' WHERE substr(reason, 1, ?) = ?",
            (len(OLD_LOCAL_PREFIX), OLD_LOCAL_PREFIX),
        )
