"""``maild compact``: the offline rebuild of the archive's ``messages`` with ``raw`` last (schema 14).

An archive upgraded to schema 14 keeps the old column order when it is above the bound rebuilt at open
or its disk lacks the room (:mod:`maild.archive.layout`); this command rewrites it, with the daemon
stopped: it takes the archive lock (:mod:`maild.service.archive_lock`), so it refuses beside a running
daemon or a one-shot fetch, and neither can start while it runs. No RFC applies here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from maild.archive.layout import CompactResult, Progress, compact_follows
from maild.archive.store import Store
from maild.errors import StoreError
from maild.service.archive_lock import COMPACT_ROLE, acquire_archive_lock

COMPACT_ADVICE = "compacting needs the daemon stopped (systemctl stop maild), then run it again"
"""The end of the refusal's line when a daemon or a fetch holds the archive lock."""


async def compact_archive(database: Path, progress: Progress | None = None) -> CompactResult:
    """Open the archive ``database`` under its lock (migrating it) and rebuild ``messages`` with ``raw`` last.

    Args:
        database: the archive file.
        progress: called with (octets copied, octets of all messages) after each step of the rebuild.

    Returns:
        What was done (``rebuilt`` False when ``raw`` was already the last column).

    Raises:
        StoreError: the archive does not exist; a daemon or a fetch holds its lock (one line naming
            the holder); not enough free space; SQLite failed (the old layout stays).
    """
    if not await asyncio.to_thread(database.is_file):
        raise StoreError(f"archive {database} does not exist (is daemon.state_dir right?)")
    lock = await asyncio.to_thread(acquire_archive_lock, database, COMPACT_ADVICE, COMPACT_ROLE)
    try:
        with compact_follows():  # the upgrade's "run maild compact" warning: this is it
            store = await Store.open(database)
        try:
            return await store.compact_layout(progress)
        finally:
            await store.close()
    finally:
        lock.release()
