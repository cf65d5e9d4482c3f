"""``maild migrate --verify|--undo`` and ``maild unretire``: checking, undoing and reopening a move.

Handlers of :mod:`maild.cli.move` (which holds the parsers), kept apart so that module stays one job:
plan, upload and retire. See :mod:`maild.move.verify` for what is checked and removed.
"""

from __future__ import annotations

import argparse
import json

from maild.cli.common import reload_daemon, run_async
from maild.cli.move_lines import line, now, setup
from maild.errors import MigrationError

# The archive and maild.move are imported where used: `maild --help` imports this module (through
# maild.cli.move) to build the parser, and would pay their start-up time for nothing.


def verify_or_undo(args: argparse.Namespace) -> int:
    """``maild migrate --verify`` / ``--undo``: exit 0 when every upload verified (or was removed)."""
    from maild.archive.move_queries import MigrationStore
    from maild.move.report import ReportRow, write_report
    from maild.move.verify import VerifyReport, undo, verify

    config = setup(args)
    kind = "undo" if args.undo else "verify"

    async def run() -> VerifyReport:
        store = await MigrationStore.open(config.daemon.database)
        try:
            if args.undo:
                return await undo(config, store, args.source, args.target, clock=now)
            return await verify(config, store, args.source, args.target)
        finally:
            await store.close()

    if args.undo:
        from maild.move.lock import move_lock

        with move_lock(config.daemon.database, f"maild migrate {args.source} --to {args.target} --undo"):
            report = run_async(run())
    else:  # --verify changes nothing: no lock
        report = run_async(run())
    rows = [
        ReportRow(
            c.entry.message,
            c.entry.sha256,
            c.entry.message_id,
            c.entry.subject,
            c.record.mailbox,
            c.key.uidvalidity if c.key else c.record.uidvalidity,
            c.key.uid if c.key else c.record.uid,
            c.outcome,
        )
        for c in report.checks
    ]
    paths = write_report(config.daemon.state_dir, kind, args.source, args.target, rows, now())
    good = ("removed", "already gone") if args.undo else ("verified",)
    bad = [c for c in report.checks if c.outcome not in good]
    if args.json:
        print(
            json.dumps(
                {
                    "kind": kind,
                    "report": [str(p) for p in paths],
                    "messages": [{**{k: getattr(r, k) for k in ReportRow.__slots__}} for r in rows],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        if not report.checks:
            print(f"{args.source} -> {args.target}: no uploads recorded; nothing to undo")
        counts = ", ".join(f"{o} {report.count(o)}" for o in dict.fromkeys(c.outcome for c in report.checks))
        print(f"{args.source} -> {args.target}: {len(report.checks)} uploads checked by SHA-256: {counts}")
        for c in bad:
            where = f"{c.record.mailbox} UID {c.key.uid}" if c.key else c.record.mailbox
            print(line(c.entry, f"{where}: {c.outcome}" + (f" ({c.detail})" if c.detail else "")))
        if bad and args.undo:
            print(
                "left alone: not what was uploaded, or not locatable by APPENDUID; nothing else was touched"
            )
        elif bad:
            print(
                f"`maild migrate {args.source} --to {args.target}` uploads what is missing again;"
                " a changed message was altered on the server after the upload"
            )
        print(f"report: {paths[0]} and {paths[1]}")
    return 1 if bad else 0


def unretire(args: argparse.Namespace) -> int:
    """``maild unretire A``: A enabled again (its drop-in), no longer retired; the move unfinished again."""
    from maild.archive.move_queries import MigrationStore
    from maild.config.dropin import dropin_path, set_enabled

    config = setup(args)

    async def run() -> str | None:
        store = await MigrationStore.open(config.daemon.database)
        try:
            record = (await store.account_records()).get(args.source)
            if record is None and args.source not in config.accounts:
                raise MigrationError(
                    f"no account named {args.source!r} (neither configured nor in the archive)"
                )
            if record is None or record.retired_at is None:
                raise MigrationError(f"account {args.source} is not retired")
            account = config.accounts.get(args.source)
            if account is not None and not account.enabled:
                if account.source != dropin_path(config.path, args.source):
                    raise MigrationError(
                        f"account {args.source} is defined in {account.source}, which maild never rewrites:"
                        f" set enabled = true in [accounts.{args.source}] there, then run `maild unretire"
                        f" {args.source}` again"
                    )
                assert account.source is not None
                set_enabled(account.source, args.source, True)
            return await store.unretire(args.source)
        finally:
            await store.close()

    from maild.move.lock import move_lock

    with move_lock(config.daemon.database, f"maild unretire {args.source}"):
        into = run_async(run())
    account = config.accounts.get(args.source)
    how = "enabled again" if account is not None else "not configured (add it to fetch again)"
    print(f"{args.source}: no longer retired into {into}; {how}; the move into {into} is unfinished again")
    print(reload_daemon(config))
    return 0
