"""CPU, wall time and cycles of draining a POP3 deletion backlog on Dovecot (session 15).

An account switched from ``retention = "keep"`` to ``"delete"`` with ``MESSAGES`` archived messages on
its server: every one is a deletion candidate whose header section is compared (``TOP n 0``) before
``DELE`` (review of session 14). Until session 15 a cycle checked 200 (``MAX_POP3_HEADER_CHECKS``), so
2,000 took 10 cycles; with PIPELINING a cycle now checks up to ``DELETION_CHECKS_PER_CYCLE`` (2,000).

One run: a private Dovecot (``tests.support.dovecot``), a user with ``MESSAGES`` messages, one "keep"
cycle to archive them (not measured), then "delete" cycles until the server is empty. Printed: the
cycles it took, the first "delete" cycle's user/system CPU seconds and wall seconds (this process:
the fetch, its POP3 threads and SQLite; Dovecot is another process), and the same summed over every
cycle of the drain. Run from any checkout, ``PYTHONPATH`` at the tree to measure, alternating trees::

    PYTHONPATH=/tmp/safe15-base python3 tests/bench/pop3_backlog_cpu.py
    PYTHONPATH=$PWD python3 tests/bench/pop3_backlog_cpu.py

Not collected by pytest; speed is never asserted in tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from maild.archive.store import Store
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot
from tests.support.fetching import cycle, prepare, with_retention
from tests.support.scripted_pop3 import sample_message

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
"""Messages on the server, all archived before the first measured cycle (first argument; 2,000)."""
MAX_CYCLES = 60
"""Give up after this many "delete" cycles (a drain that does not progress)."""


async def main() -> None:
    """Archive, then drain; print ``cycles N first U S W all U S W``."""
    raws = [sample_message(n, [b"line %d of the body" % i for i in range(40)]) for n in range(MESSAGES)]
    work = Path(tempfile.mkdtemp(prefix="maild-backlog-", dir="/tmp"))
    work.chmod(0o711)  # Dovecot's unprivileged processes pass through it
    dovecot = Dovecot(work / "dovecot")
    dovecot.start()
    try:
        user = dovecot.add_user("backlog")
        dovecot.deliver_many(user.name, raws)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            store = await Store.open(work / "maild.sqlite3")
            try:
                account = await prepare(store, dovecot_account(dovecot, user, "pop3"))
                await cycle(account, store, ex)
                deleting = with_retention(account, "delete")
                figures: list[tuple[float, float, float]] = []
                deleted = 0
                while deleted < MESSAGES and len(figures) < MAX_CYCLES:
                    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                    result = await cycle(deleting, store, ex)
                    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
                    figures.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall))
                    deleted += result.deleted
            finally:
                await store.close()
    finally:
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)
    if deleted != MESSAGES:
        raise SystemExit(f"deleted {deleted} of {MESSAGES} in {len(figures)} cycles")
    first = figures[0]
    total = [sum(f[i] for f in figures) for i in range(3)]
    print(
        f"cycles {len(figures)} first {first[0]:.3f} {first[1]:.3f} {first[2]:.3f}"
        f" all {total[0]:.3f} {total[1]:.3f} {total[2]:.3f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
