"""Subcommands that move a mailbox: ``maild compare``, ``maild migrate``, ``maild retire``.

They work with or without a running daemon: they open the archive themselves (SQLite in WAL mode
lets the daemon go on writing) and log in to B's server with B's configured credentials. ``retire``
asks a running daemon to reload afterwards. Exit codes: ``compare`` 0 when nothing of A is missing in
B, 1 otherwise; ``migrate`` 0 when afterwards nothing is missing and nothing was refused; ``retire``
0 when A was retired.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from maild.archive.move_queries import MigrationStore
from maild.cli.common import load_args_config, reload_daemon
from maild.config.loader import Config
from maild.log import configure_logging

if TYPE_CHECKING:  # maild.move.migrate is imported where used: start-up time other commands need not pay
    from maild.move.compare import ArchiveEntry, ServerEntry
    from maild.move.migrate import CompareOutcome, MigrationReport, Upload

#: Characters of From and Subject shown per line in text output.
FROM_CHARS = 32
SUBJECT_CHARS = 48


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
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(handler=_migrate)
    r = sub.add_parser("retire", help="retire A after checking that B holds all of A's mail")
    r.add_argument("source", metavar="A", help="account to retire")
    r.add_argument("--into", dest="target", metavar="B", required=True, help="IMAP account that replaces A")
    r.set_defaults(handler=_retire)


def _now() -> datetime:
    return datetime.now(UTC)


def _setup(args: argparse.Namespace) -> Config:
    config = load_args_config(args)
    configure_logging(args.log_level or "warning")
    return config


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
    from maild.move.migrate import compare_accounts, deleting_source, target_account

    config = _setup(args)
    target = target_account(config, args.source, args.target)
    mailboxes = (args.mailbox,) if args.mailbox else None

    async def run() -> CompareOutcome:
        store = await MigrationStore.open(config.daemon.database)
        try:
            return await compare_accounts(
                store, args.source, target, mailboxes, progress=_progress("reading the archive")
            )
        finally:
            await store.close()

    outcome = asyncio.run(run())
    warning = deleting_source(config, args.source, target)
    if args.json:
        print(json.dumps(comparison_json(outcome), indent=2, ensure_ascii=False))
    else:
        print(render_comparison(outcome, lists=not args.summary))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0 if outcome.comparison.complete else 1


def _date(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if moment else "(no date)       "


def _clip(text: str | None, width: int) -> str:
    value = text or "-"
    return value if len(value) <= width else value[: width - 1] + "…"


def _line(entry: ArchiveEntry | ServerEntry, tail: str) -> str:
    return (
        f"  {_date(entry.date)}  {_clip(entry.from_, FROM_CHARS):<{FROM_CHARS}}"
        f"  {_clip(entry.subject, SUBJECT_CHARS):<{SUBJECT_CHARS}}  {tail}"
    ).rstrip()


def _where(entry: ArchiveEntry, source: str) -> str:
    return f"still on {source}'s server" if entry.on_server else "archive only"


def render_comparison(outcome: CompareOutcome, *, lists: bool = True) -> str:
    """Render a comparison: counts, then the messages only in A, only in B and in both."""
    c = outcome.comparison
    a, b = outcome.source, outcome.target.name
    archive_only = sum(1 for e in c.only_a if not e.on_server)
    lines = [
        f"{a} (archive) compared with {b} ({outcome.target.host}, {', '.join(outcome.mailboxes)}):",
        f"  only in {a}: {len(c.only_a)} ({archive_only} archive only,"
        f" {len(c.only_a) - archive_only} still on {a}'s server)",
        f"  only in {b}: {len(c.only_b)}",
        f"  in both: {len(c.both)}",
    ]
    if outcome.bodies_downloaded:
        lines.append(f"  bodies downloaded to decide: {outcome.bodies_downloaded}")
    if c.unreadable:
        lines.append(f"  unreadable in {b}: {len(c.unreadable)} (presence unknown)")
    missing = f"{len(c.only_a)} messages of {a} are missing in {b}"
    lines.append(f"nothing of {a} is missing in {b}" if c.complete else missing)
    if not lists:
        return "\n".join(lines)
    if c.only_a:
        lines += ["", f"Only in {a} (missing in {b}):"]
        lines += [_line(e, _where(e, a)) for e in c.only_a]
    if c.only_b:
        lines += ["", f"Only in {b}:"]
        lines += [_line(s, f"{s.key.mailbox} UID {s.key.uid}") for s in c.only_b]
    if c.both:
        lines += ["", "In both:"]
        lines += [_line(m.entry, f"{m.key.mailbox} UID {m.key.uid} ({m.rule})") for m in c.both]
    if c.unreadable:
        lines += ["", f"Unreadable in {b}:"]
        lines += [f"  {k.mailbox} UID {k.uid}: {reason}" for k, reason in c.unreadable.items()]
    return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _archive_json(entry: ArchiveEntry, source: str) -> dict[str, Any]:
    return {
        "sha256": entry.sha256,
        "message_id": entry.message_id,
        "date": _iso(entry.date),
        "from": entry.from_,
        "subject": entry.subject,
        "size_octets": entry.size_octets,
        "where": _where(entry, source),
    }


def comparison_json(outcome: CompareOutcome) -> dict[str, Any]:
    """The comparison as a JSON-ready mapping (see docs/moving-a-mailbox.md)."""
    c = outcome.comparison
    a = outcome.source
    return {
        "source": a,
        "target": outcome.target.name,
        "mailboxes": list(outcome.mailboxes),
        "complete": c.complete,
        "counts": {
            "only_in_source": len(c.only_a),
            "archive_only": sum(1 for e in c.only_a if not e.on_server),
            "only_in_target": len(c.only_b),
            "in_both": len(c.both),
            "unreadable": len(c.unreadable),
            "bodies_downloaded": outcome.bodies_downloaded,
        },
        "only_in_source": [_archive_json(e, a) for e in c.only_a],
        "only_in_target": [
            {
                "mailbox": s.key.mailbox,
                "uidvalidity": s.key.uidvalidity,
                "uid": s.key.uid,
                "message_id": s.message_id,
                "date": _iso(s.date),
                "from": s.from_,
                "subject": s.subject,
                "size_octets": s.size_octets,
            }
            for s in c.only_b
        ],
        "in_both": [
            {**_archive_json(m.entry, a), "mailbox": m.key.mailbox, "uid": m.key.uid, "rule": m.rule}
            for m in c.both
        ],
        "unreadable": [
            {"mailbox": k.mailbox, "uid": k.uid, "reason": reason} for k, reason in c.unreadable.items()
        ],
    }


# -- migrate ------------------------------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    from maild.move.migrate import deleting_source, migrate

    config = _setup(args)

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
                clock=_now,
                progress=_progress("uploading"),
            )
        finally:
            await store.close()

    report = asyncio.run(run())
    if args.json:
        print(json.dumps(migration_json(report, dry_run=args.dry_run), indent=2, ensure_ascii=False))
    else:
        print(render_migration(report, dry_run=args.dry_run))
    warning = deleting_source(config, args.source, report.before.target)
    if warning:  # only a dry run gets here with one
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        return 0
    ok = report.stopped is None and not report.refused and report.after is not None
    return 0 if ok and report.after is not None and report.after.comparison.complete else 1


def _refusal(upload: Upload) -> str:
    return _line(upload.entry, f"refused: {upload.result.status}")


def render_migration(report: MigrationReport, *, dry_run: bool) -> str:
    """Render what a migration did (or, dry, would do), ending with the comparison's counts."""
    a, b = report.before.source, report.before.target.name
    lines = [
        f"{a} -> {b}, mailbox {report.target_mailbox}: {len(report.before.comparison.only_a)} messages"
        f" of {a} missing in {b}, {len(report.planned)} to upload"
    ]
    if report.copies:
        lines.append(f"  {len(report.copies)} left out: copies of a message that is uploaded")
    if report.recorded_missing:
        lines.append(
            f"  {len(report.recorded_missing)} left out: uploaded earlier but no longer in {b}"
            " (deleted there?)"
        )
        lines += [_line(e, "uploaded earlier") for e in report.recorded_missing]
    if dry_run:
        lines += ["", "Would upload:"] if report.planned else []
        lines += [_line(e, _where(e, a)) for e in report.planned]
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
        return {**_archive_json(u.entry, a), "reply": u.result.status, "uid": u.result.uid}

    return {
        "source": a,
        "target": report.before.target.name,
        "mailbox": report.target_mailbox,
        "dry_run": dry_run,
        "planned": [_archive_json(e, a) for e in report.planned],
        "copies": [_archive_json(e, a) for e in report.copies],
        "uploaded_earlier_missing": [_archive_json(e, a) for e in report.recorded_missing],
        "appended": [upload(u) for u in report.appended],
        "refused": [upload(u) for u in report.refused],
        "stopped": report.stopped,
        "after_error": report.after_error,
        "after": comparison_json(report.after)["counts"] if report.after else None,
        "complete": report.after.comparison.complete if report.after else None,
    }


# -- retire -------------------------------------------------------------------------------------------


def _retire(args: argparse.Namespace) -> int:
    from maild.move.migrate import RetireOutcome, retire

    config = _setup(args)

    async def run() -> tuple[RetireOutcome, int]:
        store = await MigrationStore.open(config.daemon.database)
        try:
            outcome = await retire(config, store, args.source, args.target, clock=_now)
            kept = (await store.message_counts()).get(args.source, 0)
            return outcome, kept
        finally:
            await store.close()

    outcome, kept = asyncio.run(run())
    c = outcome.comparison.comparison
    print(f"{args.source}: all {len(c.both)} messages are in {args.target}; retired into {args.target}")
    if outcome.disabled == "drop-in":
        how = f"enabled = false written to {config.accounts[args.source].source}"
    elif outcome.disabled == "already disabled":
        how = "already disabled (enabled = false)"
    else:
        how = "not configured"
    print(f"{args.source}: {how}; its archive keeps {kept} messages")
    print(reload_daemon(config))
    return 0
