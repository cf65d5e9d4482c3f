"""Cost of the IMAP UID re-verification (``maild.fetch.resync.verify_uid_map``) at several mailbox sizes.

``python3 -m tests.bench.uid_check [COUNT ...]`` (default 2000 50000): for each count, a throwaway
Dovecot gets a mailbox of that many small messages (about 600 octets each), one fetch cycle archives
them, and then, on a session that took its inventory, the check runs ``--repeat`` times (the median
is printed), as do whole no-op cycles (fresh login, inventory, check, LOGOUT), for comparison.
Not collected by pytest; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from maild.archive.store import Store
from maild.fetch import resync
from maild.fetch.cycle import fetch_cycle
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support.accounts import imap_account
from tests.support.dovecot import Dovecot, MailUser


def letter(n: int) -> bytes:
    """A small distinct message."""
    return (
        b"From: Kanzlei Berger <post@kanzlei-berger.example>\r\nTo: Anna <anna@example.com>\r\n"
        b"Subject: Schreiben %d\r\nMessage-ID: <uidcheck-%d@kanzlei-berger.example>\r\n\r\n"
        % (n, n)
        + b"Sehr geehrte Frau Beispiel, anbei das Schreiben.\r\n" * 8
    )


async def measure(
    dovecot: Dovecot, user: MailUser, count: int, repeat: int, workdir: Path
) -> dict[str, float]:
    """Archive ``count`` messages, then time the check and whole no-op cycles (medians, seconds)."""
    account = imap_account(
        "bench-imap",
        host=dovecot.host,
        port=dovecot.ports.imap,
        username=user.name,
        password=user.password,
        timeout_s=120.0,
        idle=False,
    )
    async with await Store.open(workdir / "maild.sqlite3") as store:
        await store.ensure_account(account.name, account.organisation, account.employee, "imap", resync_now())
        started = time.perf_counter()
        first = await fetch_cycle(account, store, IMAPMailbox(account.server_settings(), account.mailboxes))
        fill_s = time.perf_counter() - started
        assert first.new_links == count, first

        checks: list[float] = []
        for _ in range(repeat):
            session = IMAPMailbox(account.server_settings(), account.mailboxes)
            await session.open()
            inventory = await session.inventory()
            info = await resync.reconcile(account, store, session, inventory, resync_now())
            started = time.perf_counter()
            verified = await resync.verify_uid_map(account, store, session, inventory, info, resync_now())
            checks.append(time.perf_counter() - started)
            assert verified is not None and len(verified) == count
            await session.close()

        cycles: list[float] = []
        for _ in range(repeat):
            started = time.perf_counter()
            result = await fetch_cycle(
                account, store, IMAPMailbox(account.server_settings(), account.mailboxes)
            )
            cycles.append(time.perf_counter() - started)
            assert result.new_links == 0
    return {"fill_s": fill_s, "check_s": statistics.median(checks), "noop_cycle_s": statistics.median(cycles)}


def resync_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement for each count given; print one line per count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[2000, 50000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    dovecot = Dovecot(tempfile.mkdtemp(prefix="maild-uidcheck-", dir="/tmp"))
    dovecot.start()
    try:
        for count in args.counts:
            user = dovecot.add_user(f"uidcheck{count}")
            dovecot.deliver_many(user.name, (letter(n) for n in range(count)))
            workdir = Path(tempfile.mkdtemp(prefix="maild-uidcheck-archive-"))
            try:
                figures = asyncio.run(measure(dovecot, user, count, args.repeat, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(
                f"{count} messages: UID check {figures['check_s']:.3f} s (median of {args.repeat}),"
                f" whole no-op cycle {figures['noop_cycle_s']:.3f} s, first fetch {figures['fill_s']:.1f} s",
                flush=True,
            )
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
