"""CPU of maild's IMAP receive path alone: the benchmark's 2,000 messages retrieved, nothing stored.

``python3 -m tests.bench.imap_receive [--dir /tmp/maild-bench] [--repeat 5]`` uses the Dovecot that
``python3 -m tests.bench.run`` seeded in ``DIR/full/dovecot`` (run that once first; it is started
here if it is not running, and stopped again afterwards). Each repeat opens a session, takes the
inventory and then times, in CPU seconds of this process (user + system), one streaming retrieval of
every message (``IMAPMailbox.retrieve``: the patched aioimaplib protocol, the FETCH framing, the
assembler, the hand-over to the consumer), the bodies dropped as they come. The archive, hashing and
start-up are left out: this is the part the IMAP adapter owns. Prints the median and every run.
Not collected by pytest; figures go to docs/performance.md (compare two trees by running this with
``PYTHONPATH`` pointing at each, one after the other).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from maild.model import ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox

try:
    from maild.secret import Secret
except ImportError:  # a tree before session 15 (PYTHONPATH at an older tree): Secret in maild.model
    from maild.model import Secret  # type: ignore[attr-defined,no-redef]
from tests.support.dovecot import Dovecot


async def measure(dovecot: Dovecot, repeat: int) -> tuple[list[float], int, int]:
    """Retrieve user ``one``'s mailbox ``repeat`` times; return CPU seconds per run, messages, octets."""
    settings = ServerSettings(
        "one", dovecot.host, dovecot.ports.imap, "none", None, "one", Secret(dovecot.users["one"]), 60.0
    )
    runs: list[float] = []
    count = octets = 0
    for _ in range(repeat):
        mailbox = IMAPMailbox(settings)
        await mailbox.open()
        entries = await mailbox.inventory()
        started = time.process_time()
        count = octets = 0
        async for item in mailbox.retrieve([entry.key for entry in entries]):
            count += 1
            octets += len(item.raw) if hasattr(item, "raw") else 0
        runs.append(time.process_time() - started)
        await mailbox.close()
    return runs, count, octets


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/maild-bench", help="the benchmark's work directory")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    dovecot = Dovecot.attach(Path(args.dir) / "full" / "dovecot")
    started_here = not dovecot.running
    if started_here:
        dovecot.start(daemonize=True)
    try:
        runs, count, octets = asyncio.run(measure(dovecot, args.repeat))
    finally:
        if started_here:
            dovecot.stop()
    listed = ", ".join(f"{run:.3f}" for run in runs)
    print(
        f"{count} messages, {octets / 1e6:.1f} MB: receive CPU {statistics.median(runs):.3f} s"
        f" (median of {len(runs)}: {listed})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
