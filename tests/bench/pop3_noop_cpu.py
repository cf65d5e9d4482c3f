"""CPU and commands of POP3 polls with nothing new: 2,000 archived messages, retention "keep".

Session 14 compares every known UIDL's LIST size with the archive's in every POP3 cycle
(``maild/fetch/pop3_listed.py``). This measures what a poll with nothing new costs: ``CYCLES`` no-op
cycles after a warm-up one, on one open archive (as the daemon keeps it), user and system seconds of
the whole process (``getrusage``: the scripted server's thread included, the same in both trees), and
the commands each poll sent. Run from any maild checkout, pointing ``PYTHONPATH`` at the tree to
measure, and alternate trees for A/B pairs::

    PYTHONPATH=/tmp/keep14-base python3 tests/bench/pop3_noop_cpu.py
    PYTHONPATH=$PWD python3 tests/bench/pop3_noop_cpu.py

Prints user and system seconds of the fetch of the 2,000 messages, of the first poll after it (which
reads the account's locations: the commits emptied their cache), of the ``CYCLES`` polls after that,
and the commands each of those polls sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import tempfile
from pathlib import Path

from maild.archive.store import Store
from tests.support.fetching import cycle, pop3_account, prepare
from tests.support.scripted_pop3 import ScriptedPOP3, sample_message

MESSAGES = 2000
"""Messages on the server, all archived before the measured polls."""
CYCLES = 20
"""No-op polls measured (after one warm-up poll)."""


async def main() -> None:
    """Archive the messages, then time ``CYCLES`` polls that find nothing new."""
    raws = [sample_message(n, [b"line %d" % i for i in range(20)]) for n in range(MESSAGES)]
    with tempfile.TemporaryDirectory() as d, concurrent.futures.ThreadPoolExecutor(4) as ex:
        store = await Store.open(Path(d) / "maild.sqlite3")
        with ScriptedPOP3(raws, write_pause_s=0) as server:
            account = pop3_account(server.host, server.port, "alice", "secret")
            await prepare(store, account)
            start = resource.getrusage(resource.RUSAGE_SELF)
            first = await cycle(account, store, ex)
            fetched = resource.getrusage(resource.RUSAGE_SELF)
            if first.new_links != MESSAGES:
                raise SystemExit(f"archived {first.new_links}, expected {MESSAGES}")
            await cycle(account, store, ex)  # the first poll after the commits reads the locations
            before = resource.getrusage(resource.RUSAGE_SELF)
            mark = len(server.commands)
            for _ in range(CYCLES):
                result = await cycle(account, store, ex)
                if result.new_links or result.warnings:
                    raise SystemExit(f"not a no-op poll: {result.new_links} new, {result.warnings}")
            after = resource.getrusage(resource.RUSAGE_SELF)
            commands = (len(server.commands) - mark) / CYCLES
        await store.close()
    print(
        f"fetch {fetched.ru_utime - start.ru_utime:.4f} {fetched.ru_stime - start.ru_stime:.4f}"
        f" first-poll {before.ru_utime - fetched.ru_utime:.4f} {before.ru_stime - fetched.ru_stime:.4f}"
        f" polls {after.ru_utime - before.ru_utime:.4f} {after.ru_stime - before.ru_stime:.4f}"
        f" commands/poll {commands:g}"
    )


if __name__ == "__main__":
    asyncio.run(main())
