"""CPU of the archive connection's own paths: importing the Store, one open, and N one-statement write
transactions each followed by a one-call read (``_write``: shield, lock, WAL bound, ``BEGIN IMMEDIATE`` ...
``COMMIT`` in one call of aiosqlite's thread; ``_scalar``: one call).

    PYTHONPATH=/tmp/base python3 tests/bench/archive_calls.py 3000   # one JSON line per run, that tree's maild
    PYTHONPATH=$PWD      python3 tests/bench/archive_calls.py 3000   # alternate the two trees

Each figure is ``getrusage(RUSAGE_SELF)`` user and system seconds of that part (every thread of the
process). Used for session 15's split of ``maild/archive/connection.py`` (docs/performance.md); a tree
is compared with another in alternating runs. Not collected by pytest; speed is never asserted in tests.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

R_START = resource.getrusage(resource.RUSAGE_SELF)
from maild.archive.store import Store  # noqa: E402 -- the import is measured

R_IMPORTED = resource.getrusage(resource.RUSAGE_SELF)

#: Write transactions (and reads) of one run when no count is given.
DEFAULT_TRANSACTIONS = 3000


async def measure(transactions: int) -> dict[str, float]:
    """The user and system seconds of the import, the open and the transactions of one run."""
    directory = Path(tempfile.mkdtemp(prefix="archive-calls-"))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    store = await Store.open(directory / "a.sqlite3")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    await store.ensure_account("anna", "Kanzlei Berger", "Anna Berger", "pop3", now)
    db = store.db
    for i in range(transactions):
        await db._write([("UPDATE accounts SET employee = ? WHERE name = 'anna'", (f"e{i}",), False)])
        await db._scalar("SELECT employee FROM accounts WHERE name = 'anna'")
    r2 = resource.getrusage(resource.RUSAGE_SELF)
    await store.close()
    return {
        "import_user": R_IMPORTED.ru_utime - R_START.ru_utime,
        "import_sys": R_IMPORTED.ru_stime - R_START.ru_stime,
        "open_user": r1.ru_utime - r0.ru_utime,
        "open_sys": r1.ru_stime - r0.ru_stime,
        "tx_user": r2.ru_utime - r1.ru_utime,
        "tx_sys": r2.ru_stime - r1.ru_stime,
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TRANSACTIONS
    print(json.dumps(asyncio.run(measure(count))))
