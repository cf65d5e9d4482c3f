"""Subcommands that copy or rebuild the archive: ``maild backup``, ``restore``, ``reindex`` and ``compact``.

``backup`` reads the archive read-only (it works while the daemon runs, also for a member of the
archive's group); ``restore`` refuses while the daemon answers on its control socket; ``reindex``
writes the full-text index through the archive's writer, in short transactions, so it may run
while the daemon runs; ``compact`` rewrites the messages with ``raw`` last (schema 14's layout, for an
archive too large to be rebuilt at its upgrade) under the archive lock, so the daemon must be stopped.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maild.cli.common import load_args_config, run_async
from maild.cli.units import count, human_size
from maild.errors import QueryError, StoreError

if TYPE_CHECKING:
    from maild.archive.document_index import DocumentRun


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of backups >= 1, got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    """Add ``backup``, ``restore``, ``reindex`` and ``compact`` to the subcommand parsers ``sub``."""
    b = sub.add_parser(
        "backup", help="a consistent, checked copy of the archive (works while the daemon runs)"
    )
    b.add_argument(
        "dest", type=Path, metavar="DEST", help="file to create, or a directory for maild-TIME.sqlite3"
    )
    b.add_argument("--compress", action="store_true", help="gzip the copy (also when DEST ends in .gz)")
    b.add_argument(
        "--keep",
        type=_keep,
        metavar="N",
        help="DEST is a directory: then delete all but the N newest backups",
    )
    b.add_argument(
        "--database", type=Path, metavar="PATH", help="archive file (default: from the configuration)"
    )
    b.set_defaults(handler=_backup)
    r = sub.add_parser("restore", help="replace the archive with a backup (the daemon must be stopped)")
    r.add_argument(
        "backup", type=Path, metavar="BACKUP", help="a file written by `maild backup` (.gz or not)"
    )
    r.set_defaults(handler=_restore)
    x = sub.add_parser("reindex", help="rebuild the full-text index of the archive")
    x.add_argument(
        "--documents",
        action="store_true",
        help="read the text of every PDF and Office attachment again (needs maild[documents])",
    )
    x.set_defaults(handler=_reindex)
    c = sub.add_parser(
        "compact",
        help="rewrite every message with the raw octets last (schema 14 layout; the daemon must be stopped)",
    )
    c.add_argument(
        "--database", type=Path, metavar="PATH", help="archive file (default: from the configuration)"
    )
    c.set_defaults(handler=_compact)


def _now() -> datetime:
    return datetime.now(UTC)


def _log_to_stderr(args: argparse.Namespace, level: str) -> None:
    """Send the log lines of a command that opens the archive to stderr (``--log-level``, else
    ``level``): structlog left unconfigured prints them on stdout, among the command's result (QA
    of session 12: ``maild reindex`` printed its ``documents.failed`` lines there)."""
    from maild.log import configure_logging

    configure_logging(args.log_level or level)


def _backup(args: argparse.Namespace) -> int:
    from maild.archive.backup import backup, destination_lock, prune

    database = Path(args.database) if args.database is not None else load_args_config(args).daemon.database
    if args.keep is not None and not args.dest.is_dir():
        raise QueryError(f"--keep needs DEST to be a directory; {args.dest} is not one")
    try:
        # one backup at a time per directory, the copy and the pruning alike (BackupBusy: one line)
        with destination_lock(args.dest):
            path, check = backup(database, args.dest, compress=args.compress, now=_now())
            # a damaged message: the older backups may hold it as it arrived, so none is pruned
            prune_now = args.keep is not None and not check.damaged_count
            pruned = prune(args.dest, args.keep) if prune_now else []
    except FileExistsError:
        raise  # its own words: "DEST exists already; a backup never overwrites one"
    except OSError as exc:  # before: "[Errno 2] No such file or directory: '/x/.b.partial'"
        raise QueryError(f"cannot write a backup to {args.dest}: {exc.strerror or exc}") from None
    print(
        f"{path}: {count(check.messages)} messages, schema version {check.schema_version},"
        f" integrity ok{', octets DAMAGED' if check.damaged_count else ''}, {human_size(path.stat().st_size)}"
    )
    for old in pruned:
        print(f"deleted old backup {old}")
    if check.damaged_count:
        print(f"maild: {_damaged_line(check.damaged, check.damaged_count)}", file=sys.stderr)
        return BACKUP_DAMAGED
    return 0


BACKUP_DAMAGED = 1
"""``maild backup``'s exit code when messages of the archive no longer match their SHA-256 (the backup
is written, nothing pruned); :mod:`maild.cli.exit_codes` documents it."""


def _damaged_line(damaged: tuple[str, ...], total: int) -> str:
    """One line naming the messages whose octets no longer match their SHA-256, and what to do."""
    shown = ", ".join(d[:12] for d in damaged[:3]) + (f" and {total - 3} more" if total > 3 else "")
    return (
        f"{count(total)} archived message{'s' if total != 1 else ''} no longer match"
        f"{'es' if total == 1 else ''} {'its' if total == 1 else 'their'} SHA-256 (damaged on disk: {shown});"
        " the backup holds the damaged octets as they are now and no older backup was deleted:"
        " `maild messages raw --database OLDER_BACKUP ID` prints the octets as they arrived (docs/backup.md)"
    )


def _restore(args: argparse.Namespace) -> int:
    from maild.archive.backup import restore
    from maild.archive.store import Store
    from maild.service.control_client import ControlClient

    cfg = load_args_config(args)
    _log_to_stderr(args, "warning")
    if ControlClient(cfg.daemon.control_socket).daemon_answers():
        raise StoreError(
            f"the daemon is running (it answers on {cfg.daemon.control_socket}); stop it first"
            " (systemctl stop maild), then restore"
        )
    database = cfg.daemon.database
    check, kept = restore(args.backup, database, now=_now())

    async def migrate() -> None:
        store = await Store.open(database)  # migrates an older schema; keeps the side files for readers
        await store.close()

    run_async(migrate())
    print(
        f"restored {args.backup} into {database}: {count(check.messages)} messages,"
        f" schema version {check.schema_version}"
    )
    if kept is not None:
        print(f"the previous archive is kept as {kept}")
    if check.damaged_count:
        print(f"maild: warning: {_damaged_line(check.damaged, check.damaged_count)}", file=sys.stderr)
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from maild.archive.store import Store

    database = load_args_config(args).daemon.database
    if not database.is_file():
        raise StoreError(f"archive {database} does not exist (is daemon.state_dir right?)")
    _log_to_stderr(args, "info")  # the result names the documents.failed lines: they are shown

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rindexed {done}/{total}" + ("\n" if done == total else ""))
            sys.stderr.flush()

    from maild.archive.document_text import available

    documents = available()
    if args.documents and not documents:
        raise StoreError("--documents needs the documents extra: pip install 'maild[documents]'")

    async def rebuild() -> tuple[int, DocumentRun | None]:
        from maild.archive.document_worker import DocumentWorker

        store = await Store.open(database)
        try:
            indexed = await store.reindex(progress)
            if not documents:
                return indexed, None
            if args.documents:
                await store.forget_documents()
            worker = DocumentWorker()
            try:
                done, _ = await store.index_documents(worker)
            finally:
                await worker.close()
            return indexed, done
        finally:
            await store.close()

    indexed, run = run_async(rebuild())
    print(f"{count(indexed)} messages indexed")
    if run is None:
        print(
            "attachment text (PDF, Office) is not indexed: the documents extra is not installed"
            " (pip install 'maild[documents]'); their file names are"
            " indexed"
        )
    else:
        print(
            f"attachment text: {count(run.messages)} messages read, {count(run.documents)} PDF/Office"
            f" attachments, {count(run.failures)} unreadable (logged as documents.failed)"
        )
    return 0


def _compact(args: argparse.Namespace) -> int:
    from maild.service.compact import compact_archive

    _log_to_stderr(args, "warning")

    database = Path(args.database) if args.database is not None else load_args_config(args).daemon.database
    tty = sys.stderr.isatty()
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 if total <= 0 else done * 100 // total
        if tty:
            sys.stderr.write(f"\rcompacting {percent}%" + ("\n" if done >= total else ""))
        elif percent // 10 > shown[0]:  # a line per tenth in a log
            shown[0] = percent // 10
            sys.stderr.write(f"compacting {percent}%\n")
        sys.stderr.flush()

    result = run_async(compact_archive(database, progress))
    if not result.rebuilt:
        print(f"{database}: messages are in schema 14's column order (raw last); nothing to rewrite")
    else:
        print(
            f"{database}: {count(result.messages)} messages ({human_size(result.octets)}) rewritten"
            f" with raw last in {result.seconds:.1f} s"
        )
    return 0
