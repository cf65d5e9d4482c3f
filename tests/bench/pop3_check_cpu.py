"""CPU of one POP3 "delete" cycle whose 200 deletion candidates are all listed one octet short (200 TOP checks).

Run from a maild checkout: ``PYTHONPATH=$PWD python3 -m tests.bench.pop3_check_cpu``; prints the cycle's
user and system seconds (``getrusage`` of the whole process, scripted server included). Alternate trees
for A/B pairs (session 13's review of the POP3 deletion check, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import tempfile
from pathlib import Path

from maild.archive.store import Store
from tests.support.fetching import cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message

CANDIDATES = 200
"""Messages, all deletion candidates listed one octet short (the check's per-cycle limit)."""


async def main() -> None:
    """Archive the messages with retention "keep", then time one "delete" cycle."""
    raws = [sample_message(n, [b"line %d" % i for i in range(40)]) for n in range(CANDIDATES)]
    with tempfile.TemporaryDirectory() as d, concurrent.futures.ThreadPoolExecutor(4) as ex:
        store = await Store.open(Path(d) / "maild.sqlite3")
        with ScriptedPOP3([ScriptedMessage(r, list_size=len(r) - 1) for r in raws]) as server:
            keeping = pop3_account(server.host, server.port, "alice", "secret")
            await prepare(store, keeping)
            await cycle(keeping, store, ex)
            before = resource.getrusage(resource.RUSAGE_SELF)
            result = await cycle(with_retention(keeping, "delete"), store, ex)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if result.deleted != CANDIDATES:
                raise SystemExit(f"deleted {result.deleted}, expected {CANDIDATES}")
        await store.close()
    print(f"{after.ru_utime - before.ru_utime:.4f} {after.ru_stime - before.ru_stime:.4f}")


if __name__ == "__main__":
    asyncio.run(main())
