"""CPU and commands of the POP3 "delete-after" cycle that deletes the messages that became due.

Review of session 14: every POP3 deletion candidate not retrieved in the session has its header
section compared (``TOP n 0``, pipelined) before ``DELE`` (``maild/fetch/pop3_listed.py``,
``maild/pop3_uidls.py``). This measures what that costs the daily deletion of a "delete-after" account:
``MESSAGES`` archived messages on the server, ``DUE`` of them first fetched ``DAYS`` days ago, the
others a day later; one "delete-after" cycle on the due day, on one open archive, after a warm-up poll
the day before (which deletes nothing). User and system seconds of the whole process (``getrusage``: the
scripted server's thread included, the same in both trees) and the commands that cycle sent. Run
from any maild checkout, ``PYTHONPATH`` at the tree to measure, alternating trees for A/B pairs::

    PYTHONPATH=/tmp/keep14b-base python3 tests/bench/pop3_due_cpu.py
    PYTHONPATH=$PWD python3 tests/bench/pop3_due_cpu.py
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import resource
import tempfile
from datetime import timedelta
from pathlib import Path

from maild.archive.store import Store
from tests.support.fetching import T0, Clock, cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedPOP3, sample_message

MESSAGES = 2000
"""Messages on the server, all archived before the measured cycle."""
DUE = 200
"""Of them, due for deletion in the measured cycle (one cycle's bound of header checks)."""
DAYS = 3
"""The account's ``retention_days``."""


async def main() -> None:
    """Archive the messages over two days, then time the cycle of the day the first ``DUE`` are due."""
    raws = [sample_message(n, [b"line %d" % i for i in range(20)]) for n in range(MESSAGES)]
    clock = Clock(T0)
    with tempfile.TemporaryDirectory() as d, concurrent.futures.ThreadPoolExecutor(4) as ex:
        store = await Store.open(Path(d) / "maild.sqlite3")
        with ScriptedPOP3(raws[:DUE], write_pause_s=0) as server:
            account = pop3_account(server.host, server.port, "alice", "secret")
            account = with_retention(account, "delete-after", DAYS)
            await prepare(store, account)
            await cycle(account, store, ex, clock=clock)
            clock.advance(days=1)
            for raw in raws[DUE:]:
                server.add(raw)
            await cycle(account, store, ex, clock=clock)
            clock.advance(days=DAYS - 1)
            await cycle(account, store, ex, clock=Clock(clock.now - timedelta(seconds=1)))  # nothing due yet
            mark = len(server.commands)
            before = resource.getrusage(resource.RUSAGE_SELF)
            result = await cycle(account, store, ex, clock=clock)
            after = resource.getrusage(resource.RUSAGE_SELF)
            verbs = collections.Counter(c.split(" ")[0] for c in server.commands[mark:])
        await store.close()
    if result.deleted != DUE or result.warnings:
        raise SystemExit(f"deleted {result.deleted}, expected {DUE}: {result.warnings}")
    print(
        f"due-cycle {after.ru_utime - before.ru_utime:.4f} {after.ru_stime - before.ru_stime:.4f}"
        f" commands {dict(sorted(verbs.items()))}"
    )


if __name__ == "__main__":
    asyncio.run(main())
