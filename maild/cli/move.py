"""Subcommands that move a mailbox: ``maild compare``, ``maild migrate``, ``maild retire``, ``unretire``.

They work with or without a running daemon: they open the archive themselves (SQLite in WAL mode
lets the daemon go on writing) and log in to B's server with B's configured credentials. ``retire``
and ``unretire`` ask a running daemon to reload afterwards. Exit codes: ``compare`` 0 when nothing of
A is missing in B (accepted deletions aside), 1 otherwise; ``migrate`` 0 when afterwards nothing is
missing and nothing was refused; ``migrate --verify`` 0 when every upload verified, ``--undo`` 0 when
every upload was removed; ``retire``/``unretire`` 0 when done. ``migrate`` prints its plan, progress
(:class:`UploadMeter`) and where its report is (:mod:`maild.move.report`); ``--verify``, ``--undo``
and ``unretire`` are handled in :mod:`maild.cli.move_verify`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from maild.cli.common import reload_daemon, run_async
from maild.cli.move_compare import archive_json, comparison_json, render_comparison, where
from maild.cli.move_lines import (
    line,
    now,
    render_source_check,
    render_unfetched_accepted,
    setup,
    source_check_json,
)
from maild.cli.move_verify import unretire, verify_or_undo
from maild.cli.units import count, human_size

# The archive and maild.move are imported where used: start-up time other commands need not pay
# (`maild --help` imports this module to build the parser).
if TYPE_CHECKING:
    from maild.move.compare import ArchiveEntry
    from maild.move.migrate import CompareOutcome, MigrationReport, Upload
    from maild.move.report import ReportRow
    from maild.move.source_check import SourceCheck

#: Seconds between progress lines of ``maild migrate`` when stderr is not a terminal.
PROGRESS_EVERY_S = 10.0


def add_parsers(sub: Any) -> None:
    """Add ``compare``, ``migrate`` and ``retire`` to the ``maild`` subcommand parsers ``sub``."""
    c = sub.add_parser("compare", help="compare account A's archive with account B's IMAP server")
    c.add_argument("source", metavar="A", help="account whose archive is compared (e.g. the POP3 one)")
    c.add_argument("target", metavar="B", help="IMAP account whose server is compared")
    c.add_argument("--mailbox", help="only this mailbox of B (default: B's configured mailboxes)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--summary", action="store_true", help="counts only, no lists")
    c.set_defaults(handler=_compare)
    m = sub.add_parser("migrate", help="upload every message of A that B lacks (IMAP APPEND)")
    m.add_argument("source", metavar="A", help="account whose archive is uploaded (POP3 or IMAP)")
    m.add_argument("--to", dest="target", metavar="B", required=True, help="IMAP account to upload to")
    m.add_argument("--mailbox", default="INBOX", help="B's mailbox to upload into (default INBOX)")
    m.add_argument("--dry-run", action="store_true", help="compare and list what would be uploaded")
    m.add_argument(
        "--reupload",
        action="store_true",
        help="also upload again what was uploaded earlier and is no longer in B (deleted there)",
    )
    m.add_argument(
        "--unseen", action="store_true", help="upload without flags: employees see the moved mail as unread"
    )
    m.add_argument(
        "--create",
        action="store_true",
        help="create the mailbox named by --mailbox in B if it does not exist",
    )
    what = m.add_mutually_exclusive_group()
    what.add_argument(
        "--verify",
        action="store_true",
        help="fetch every upload back by its APPENDUID and check its SHA-256 against the archive",
    )
    what.add_argument(
        "--undo",
        action="store_true",
        help="remove exactly this move's uploads from B (each verified by content first)",
    )
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(handler=_migrate)
    u = sub.add_parser("unretire", help="re-enable an account that `maild retire` retired")
    u.add_argument("source", metavar="A", help="the retired account")
    u.set_defaults(handler=_unretire)
    r = sub.add_parser("retire", help="retire A after checking that B holds all of A's mail")
    r.add_argument("source", metavar="A", help="account to retire")
    r.add_argument("--into", dest="target", metavar="B", required=True, help="IMAP account that replaces A")
    r.add_argument(
        "--accept-deleted",
        action="store_true",
        help="accept that messages uploaded earlier were deleted in B since (listed; the archive keeps them)",
    )
    r.add_argument(
        "--accept-unfetched",
        action="store_true",
        help="retire although A's server holds mail A never archived and B lacks, or cannot be reached"
        " (listed and recorded in the archive)",
    )
    r.set_defaults(handler=_retire)


def _progress(what: str) -> Callable[[int, int], None] | None:
    """A counter on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{what} {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


# -- compare ------------------------------------------------------------------------------------------


def _compare(args: argparse.Namespace) -> int:
    from maild.archive.move_queries import MigrationStore
    from maild.move.migrate import compare_accounts, deleting_source, target_account

    config = setup(args)
    target = target_account(config, args.source, args.target)
    mailboxes = (args.mailbox,) if args.mailbox else None

    async def run() -> tuple[CompareOutcome, SourceCheck]:
        from maild.move.source_check import check_source
        from maild.move.target import target_digests

        store = await MigrationStore.open(config.daemon.database)
        try:
            outcome = await compare_accounts(
                store, args.source, target, mailboxes, progress=_progress("reading the archive")
            )
            c = outcome.comparison
            archive = [m.entry for m in c.both] + c.only_a
            check = await check_source(
                config,
                store,
                args.source,
                archive=archive,
                target_entries=outcome.scan.entries,
                clock=now,
                target_bodies=lambda keys: target_digests(target, keys),
            )
            return outcome, check
        finally:
            await store.close()

    outcome, check = run_async(run())
    warning = deleting_source(config, args.source, target)
    if args.json:
        print(
            json.dumps({**comparison_json(outcome), **source_check_json(check)}, indent=2, ensure_ascii=False)
        )
    else:
        print(render_comparison(outcome, lists=not args.summary))
        print(render_source_check(check, args.target))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0 if outcome.complete and not check.unarchived else 1


# -- migrate ------------------------------------------------------------------------------------------


class UploadMeter:
    """Progress of the uploads on stderr: a live line on a terminal, else a plain line every
    :data:`PROGRESS_EVERY_S` seconds (so a log or ``systemd-run`` shows it), with size and time left."""

    def __init__(self, *, live: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.live = live
        self.clock = clock
        self.started = clock()
        self.last = self.started

    def __call__(self, done: int, total: int, octets: int, octets_total: int) -> None:
        """Show (done of total messages, octets of octets_total)."""
        now = self.clock()
        if not self.live and now - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = now
        elapsed = now - self.started
        left = elapsed * (octets_total - octets) / octets if octets else 0.0
        sizes = f"{human_size(octets)} of {human_size(octets_total)}"
        line = f"uploaded {count(done)}/{count(total)} ({sizes})" + (
            f", about {_duration(left)} left" if done < total else f" in {_duration(elapsed)}"
        )
        if self.live:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def render_plan(report: MigrationReport) -> str:
    """The plan printed before the first upload: how many, how big, into which mailbox."""
    octets = sum(e.size_octets for e in report.planned)
    b = report.before.target.name
    planned = f"{count(len(report.planned))} messages ({human_size(octets)})"
    return f"plan: {planned} into {b}, mailbox {report.target_mailbox}"


def _print_plan(report: MigrationReport) -> None:
    if report.planned:
        print(render_plan(report), flush=True)


def _report_rows(report: MigrationReport) -> list[ReportRow]:
    from maild.move.report import ReportRow

    def row(e: ArchiveEntry, uidvalidity: int | None, uid: int | None, outcome: str) -> ReportRow:
        return ReportRow(
            e.message, e.sha256, e.message_id, e.subject, report.target_mailbox, uidvalidity, uid, outcome
        )

    rows = []
    for upload in report.appended + report.refused:
        r = upload.result
        rows.append(row(upload.entry, r.uidvalidity, r.uid, "uploaded" if r.ok else f"refused: {r.status}"))
    for e in report.recorded_missing:
        rows.append(row(e, None, None, "left out: uploaded earlier, deleted in the target since"))
    return rows


def _migrate(args: argparse.Namespace) -> int:
    from maild.archive.move_queries import MigrationStore
    from maild.move.migrate import deleting_source, migrate
    from maild.move.report import write_report

    if args.verify or args.undo:
        return verify_or_undo(args)
    config = setup(args)

    async def run() -> MigrationReport:
        store = await MigrationStore.open(config.daemon.database)
        try:
            return await migrate(
                config,
                store,
                args.source,
                args.target,
                args.mailbox,
                dry_run=args.dry_run,
                reupload=args.reupload,
                unseen=args.unseen,
                create=args.create,
                clock=now,
                progress=None if args.json or args.dry_run else UploadMeter(live=sys.stderr.isatty()),
                on_plan=None if args.json or args.dry_run else _print_plan,
            )
        finally:
            await store.close()

    if args.dry_run:  # changes nothing: no lock
        report = run_async(run())
    else:
        from maild.move.lock import move_lock

        with move_lock(config.daemon.database, f"maild migrate {args.source} --to {args.target}"):
            report = run_async(run())
    if args.json:
        print(json.dumps(migration_json(report, dry_run=args.dry_run), indent=2, ensure_ascii=False))
    else:
        print(render_migration(report, dry_run=args.dry_run))
    warning = deleting_source(config, args.source, report.before.target)
    if warning:  # only a dry run gets here with one
        print(f"warning: {warning}", file=sys.stderr)
    for text in report.warnings:
        print(f"warning: {text}", file=sys.stderr)
    if args.dry_run:
        return 0
    if report.appended or report.refused or report.recorded_missing:
        paths = write_report(
            config.daemon.state_dir, "migrate", args.source, args.target, _report_rows(report), now()
        )
        print(f"report: {paths[0]} and {paths[1]}", file=sys.stderr if args.json else sys.stdout)
    ok = report.stopped is None and not report.refused and report.after is not None
    return 0 if ok and report.after is not None and report.after.complete else 1


def _refusal(upload: Upload) -> str:
    return line(upload.entry, f"refused: {upload.result.status}")


def render_migration(report: MigrationReport, *, dry_run: bool) -> str:
    """Render what a migration did (or, dry, would do), ending with the comparison's counts."""
    a, b = report.before.source, report.before.target.name
    lines = [
        f"{a} -> {b}, mailbox {report.target_mailbox}: {count(len(report.before.comparison.only_a))} messages"
        f" of {a} missing in {b}, {len(report.planned)} to upload"
    ]
    if report.copies:
        lines.append(f"  {len(report.copies)} left out: copies of a message that is uploaded")
    if report.recorded_missing:
        lines.append(
            f"  {len(report.recorded_missing)} left out: uploaded earlier but no longer in {b}"
            f" (deleted there?); `maild migrate {a} --to {b} --reupload` uploads them again,"
            f" `maild retire {a} --into {b} --accept-deleted` accepts that they are gone"
        )
        lines += [line(e, "uploaded earlier") for e in report.recorded_missing]
    if dry_run:
        lines += ["", "Would upload:"] if report.planned else []
        lines += [line(e, where(e, a)) for e in report.planned]
        return "\n".join(lines)
    lines.append(f"uploaded {len(report.appended)}, refused {len(report.refused)}")
    lines += [_refusal(u) for u in report.refused]
    if report.stopped:
        lines.append(f"stopped early: {report.stopped}")
        lines.append(f"run `maild migrate {a} --to {b}` again to upload the rest")
    if report.after is not None:
        lines += ["", "after:", render_comparison(report.after, lists=False)]
    if report.after_error:
        lines.append(f"could not compare afterwards ({report.after_error}): run `maild compare {a} {b}`")
    return "\n".join(lines)


def migration_json(report: MigrationReport, *, dry_run: bool) -> dict[str, Any]:
    """What a migration did as a JSON-ready mapping."""
    a = report.before.source

    def upload(u: Upload) -> dict[str, Any]:
        return {**archive_json(u.entry, a), "reply": u.result.status, "uid": u.result.uid}

    return {
        "source": a,
        "target": report.before.target.name,
        "mailbox": report.target_mailbox,
        "dry_run": dry_run,
        "planned": [archive_json(e, a) for e in report.planned],
        "copies": [archive_json(e, a) for e in report.copies],
        "uploaded_earlier_missing": [archive_json(e, a) for e in report.recorded_missing],
        "appended": [upload(u) for u in report.appended],
        "refused": [upload(u) for u in report.refused],
        "stopped": report.stopped,
        "after_error": report.after_error,
        "after": comparison_json(report.after)["counts"] if report.after else None,
        "complete": report.after.comparison.complete if report.after else None,
    }


def _unretire(args: argparse.Namespace) -> int:
    return unretire(args)


# -- retire -------------------------------------------------------------------------------------------


def _retire(args: argparse.Namespace) -> int:
    from maild.archive.move_queries import MigrationStore
    from maild.move.retire import AlreadyRetired, RetireOutcome, retire

    config = setup(args)

    async def run() -> tuple[RetireOutcome, int]:
        store = await MigrationStore.open(config.daemon.database)
        try:
            outcome = await retire(
                config,
                store,
                args.source,
                args.target,
                accept_deleted=args.accept_deleted,
                accept_unfetched=args.accept_unfetched,
                clock=now,
            )
            kept = (await store.message_counts()).get(args.source, 0)
            return outcome, kept
        finally:
            await store.close()

    from maild.move.lock import move_lock

    try:
        with move_lock(config.daemon.database, f"maild retire {args.source} --into {args.target}"):
            outcome, kept = run_async(run())
    except AlreadyRetired as done:
        if done.retired_into != args.target:  # not what was asked: say how to get there
            print(
                f"maild: {done}, not into {args.target}; nothing changed (`maild unretire {args.source}`"
                f" first to retire it into {args.target})",
                file=sys.stderr,
            )
            return 1
        print(f"{done}; nothing changed (`maild unretire {args.source}` undoes it)")
        return 0
    c = outcome.comparison.comparison
    if outcome.accepted:
        print(
            f"{args.source}: {count(len(outcome.accepted))} messages uploaded earlier are no longer in"
            f" {args.target}; accepted as deleted there (the archive keeps them):"
        )
        for entry in outcome.accepted:
            print(line(entry, "accepted as deleted"))
    if outcome.accepted_unfetched and outcome.source_check is not None:
        print(render_unfetched_accepted(outcome.source_check))
    both = count(len(c.both))
    print(f"{args.source}: all {both} messages are in {args.target}; retired into {args.target}")
    if outcome.disabled == "drop-in":
        how = f"enabled = false written to {config.accounts[args.source].source}"
    elif outcome.disabled == "already disabled":
        how = "already disabled (enabled = false)"
    else:
        how = "not configured"
    print(f"{args.source}: {how}; its archive keeps {count(kept)} messages")
    print(reload_daemon(config))
    return 0
