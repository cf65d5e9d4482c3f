"""Fetch cycles of one IMAP account, for the folders benchmark (``tests/bench/folders.py``).

Run as a script with ``PYTHONPATH`` pointing at the maild tree to measure (the current one, or an
older one extracted with ``git archive`` for the "before" figures), so it imports nothing from
``tests``::

    python3 tests/bench/folders_poll.py CONFIG ACCOUNT MODE CYCLES

MODE ``fresh``: each cycle logs in, polls and logs out. MODE ``kept``: one cycle logs in and keeps
its session; each further cycle takes it back (NOOP) as the daemon does. Before each cycle it prints
``@@ {"mark": n}`` and waits for a line on stdin (the benchmark reads the proxy's counters meanwhile);
after it, ``@@ {"cycle": n, "seconds": s, "new": k}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from maild.archive.store import Store
from maild.config.loader import load_config
from maild.fetch.cycle import fetch_cycle, make_maildrop


def say(item: dict[str, object]) -> None:
    """One JSON line on stdout, marked ``@@ `` (log lines go there too)."""
    print("@@ " + json.dumps(item), flush=True)


async def main(config: Path, name: str, mode: str, cycles: int) -> None:
    """Run ``cycles`` measured cycles (after a mark each)."""
    loaded = load_config(config)
    account = await loaded.accounts[name].resolved()
    executor = ThreadPoolExecutor(max_workers=1)
    store = await Store.open(loaded.daemon.state_dir / "maild.sqlite3")
    await store.ensure_account(
        account.name, account.organisation, account.employee, "imap", datetime.now(UTC)
    )
    kept = None
    try:
        for n in range(cycles):
            say({"mark": n})
            sys.stdin.readline()
            started = time.perf_counter()
            if mode == "kept" and kept is not None and await kept.resume(max_age_s=600, probe_timeout_s=30):
                result = await fetch_cycle(account, store, kept, opened=True, keep_open=True)
            else:
                kept = make_maildrop(account, executor)
                result = await fetch_cycle(account, store, kept, keep_open=mode == "kept")
            say({"cycle": n, "seconds": time.perf_counter() - started, "new": result.new_messages})
    finally:
        if kept is not None:
            await kept.abort()
        await store.close()
        executor.shutdown(wait=False)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])))
