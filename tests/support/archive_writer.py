"""A stand-in for the daemon's archive writer, run as a subprocess: ``python -m tests.support.archive_writer DB``.

It opens the archive with the real :class:`maild.archive.store.Store` under ``umask 0077`` (as the
shipped unit does), stores one small message per transaction, prints ``stored N`` after each commit,
and stops when the file ``DB.stop`` appears: then it closes the store as the daemon does and prints
``closed``. A test may instead SIGKILL it at any moment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage
from tests.support.archive import letter


async def write(db: Path) -> None:
    """Store messages one transaction at a time until ``DB.stop`` exists, then close."""
    stop = db.with_name(db.name + ".stop")
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store = await Store.open(db)
    try:
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", now)
        n = 0
        while not stop.exists():
            n += 1
            raw = letter(n, subject=f"Heizkostenabrechnung {n}", body=b"Zeile\r\n" * 200)
            await store.store_batch("anna-pop", [RetrievedMessage(POP3Key(f"u{n}"), raw)], now)
            print(f"stored {n}", flush=True)
    finally:
        await store.close()
    print("closed", flush=True)


if __name__ == "__main__":
    os.umask(0o077)
    asyncio.run(write(Path(sys.argv[1])))
