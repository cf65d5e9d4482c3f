"""Subcommands that read the archive: ``maild messages list|show|raw|search|attachment`` and ``maild export``.

They open the database read-only (see :class:`maild.archive.reader.ArchiveReader`), so they work while the
daemon runs and need no control socket. The database is ``daemon.state_dir``/``maild.sqlite3`` of the
configuration, or ``--database PATH`` for programs that may read the archive but not the
configuration (which names password files).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild.cli.common import load_args_config
from maild.cli.units import count, human_size
from maild.errors import QueryError

DEFAULT_LIST_LIMIT = 100
DEFAULT_SEARCH_LIMIT = 20
SEARCH_NO_MATCH = 1
"""Exit code of ``maild messages search`` when no message matches (grep's convention: a script can
write ``if maild messages search ...``); an error (no archive, no permission) is
:data:`SEARCH_ERROR`, as grep's 2 (``main`` returns it, read from the parser's ``error_exit``)."""
SEARCH_ERROR = 2


def _since(text: str) -> Any:
    try:
        from maild.archive.query import parse_since  # email parsing: only for archive commands

        return parse_since(text)
    except QueryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The largest ``--limit`` passed on: SQLite's largest INTEGER (a larger one stopped ``maild messages
#: list`` with an OverflowError traceback; QA of session 11). No archive holds that many messages.
_MAX_LIMIT = 2**63 - 1


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0: no limit), got {text!r}")
    return min(value, _MAX_LIMIT)


def _add_limit(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """Add ``--limit N`` (at most N ``what``; 0: all) with ``default`` to ``parser``."""
    help_text = f"at most N {what} (default {default}; 0: all)"
    parser.add_argument("--limit", type=_limit, default=default, metavar="N", help=help_text)


def add_parsers(sub: Any) -> None:
    """Add ``messages`` and ``export`` to the ``maild`` subcommand parsers ``sub``."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--database", type=Path, metavar="PATH", help="archive file (default: from the configuration)"
    )
    selection = argparse.ArgumentParser(add_help=False)
    selection.add_argument("--account", help="only messages of this account")
    selection.add_argument("--organisation", help="only messages of this organisation's accounts")
    selection.add_argument(
        "--since", type=_since, metavar="DATE", help="dated at or after DATE (UTC unless given)"
    )
    m = sub.add_parser("messages", help="query the archive (read-only; works while the daemon runs)")
    actions = m.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[db, selection], help="list messages, newest first")
    ls.add_argument("--from", dest="from_text", metavar="TEXT", help="From contains TEXT (any case)")
    ls.add_argument("--subject", metavar="TEXT", help="Subject contains TEXT (any case)")
    _add_limit(ls, DEFAULT_LIST_LIMIT, "messages")
    ls.add_argument("--json", action="store_true", help="a JSON array of objects (see docs/archive.md)")
    ls.set_defaults(handler=_list)
    show = actions.add_parser("show", parents=[db], help="headers and body text of one message")
    show.add_argument("id", metavar="ID", help="SHA-256 or a unique prefix of at least 8 hex digits")
    show.add_argument("--json", action="store_true", help="one JSON object with headers and body text")
    show.set_defaults(handler=_show)
    raw = actions.add_parser("raw", parents=[db], help="the exact stored octets of one message, to stdout")
    raw.add_argument("id", metavar="ID", help="SHA-256 or a unique prefix of at least 8 hex digits")
    raw.set_defaults(handler=_raw)
    se = actions.add_parser(
        "search", parents=[db, selection], help="full-text search: headers, body text, file names"
    )
    se.add_argument(
        "query", nargs="+", metavar="QUERY",
        help='words (all must match), "a phrase", prefix*, OR, NOT, subject:word (SQLite FTS5 syntax)',
    )  # fmt: skip
    _add_limit(se, DEFAULT_SEARCH_LIMIT, "best matches")
    se.add_argument("--json", action="store_true", help="a JSON array: list's objects plus snippet and score")
    se.set_defaults(handler=_search, error_exit=SEARCH_ERROR)
    at = actions.add_parser(
        "attachment", parents=[db], help="write a part (decoded) to stdout or a file, or all attachments"
    )
    at.add_argument("id", metavar="ID", help="SHA-256 or a unique prefix of at least 8 hex digits")
    at.add_argument("part", nargs="?", metavar="PART", help="part number as `messages show --json` lists it")
    at.add_argument("-o", "--output", type=Path, metavar="FILE", help="write PART to FILE instead of stdout")
    at.add_argument(
        "--all", type=Path, metavar="DIR", help="write every attachment into DIR under its own (cleaned) name"
    )
    at.set_defaults(handler=_attachment)

    e = sub.add_parser(
        "export", parents=[db], help="export an account's whole archive to a Maildir or an mbox file"
    )
    e.add_argument("--account", required=True, help="account name")
    target = e.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--maildir", type=Path, metavar="DIR", help="Maildir (a re-run adds only what is missing)"
    )
    target.add_argument("--mbox", type=Path, metavar="FILE", help="mboxrd file (replaced when complete)")
    e.add_argument("--since", type=_since, metavar="DATE", help="only messages dated at or after DATE")
    e.set_defaults(handler=_export)


def _database(args: argparse.Namespace) -> Path:
    if args.database is not None:
        return Path(args.database)
    return load_args_config(args).daemon.database


def _list(args: argparse.Namespace) -> int:
    from maild.archive.query import message_json, render_list
    from maild.archive.reader import ArchiveReader, MessageFilter

    flt = MessageFilter(
        account=args.account,
        organisation=args.organisation,
        since=args.since,
        from_text=args.from_text,
        subject_text=args.subject,
        limit=args.limit or None,
    )
    with ArchiveReader(_database(args)) as reader:
        if args.account is not None and not reader.account_exists(args.account):
            raise QueryError(f"the archive has no account named {args.account!r}")
        messages = reader.list_messages(flt)
        total = reader.count_messages(flt) if flt.limit is not None and len(messages) == flt.limit else None
    if args.json:
        print(json.dumps([message_json(m) for m in messages], indent=2, ensure_ascii=False))
    else:
        print(render_list(messages, human_size))
    if total is not None and total > len(messages):
        shown = f"{count(len(messages))} of {count(total)}"
        print(f"maild: {shown} messages shown; --limit 0 shows all", file=sys.stderr)
    return 0


def _search(args: argparse.Namespace) -> int:
    from maild.archive.query import render_search, search_json
    from maild.archive.reader import ArchiveReader, MessageFilter

    flt = MessageFilter(
        account=args.account, organisation=args.organisation, since=args.since, limit=args.limit or None
    )
    with ArchiveReader(_database(args)) as reader:
        if args.account is not None and not reader.account_exists(args.account):
            raise QueryError(f"the archive has no account named {args.account!r}")
        indexed, total = reader.index_coverage()
        hits = reader.search(" ".join(args.query), flt)
        pending = reader.documents_pending() if _documents_indexed() else 0
    if args.json:
        print(json.dumps([search_json(h) for h in hits], indent=2, ensure_ascii=False))
    elif hits:
        print(render_search(hits, human_size))
    if indexed < total:
        print(
            f"maild: warning: only {count(indexed)} of {count(total)} messages are in the full-text index;"
            " `maild reindex` adds the rest",
            file=sys.stderr,
        )
    if pending:
        print(
            f"maild: note: the attachment text (PDF, Office) of {count(pending)} messages is not indexed yet;"
            " the daemon adds it shortly, `maild reindex` at once",
            file=sys.stderr,
        )
    if not hits:
        if not args.json:
            print("maild: no message matches", file=sys.stderr)
        return SEARCH_NO_MATCH
    if flt.limit is not None and len(hits) == flt.limit:
        print(f"maild: the best {len(hits)} matches shown; --limit 0 shows all", file=sys.stderr)
    return 0


def _documents_indexed() -> bool:
    from maild.archive.document_text import available

    return available()


def _attachment(args: argparse.Namespace) -> int:
    from maild.archive.attachments import write_all
    from maild.archive.mime import find_part
    from maild.archive.query import resolve_id
    from maild.archive.reader import ArchiveReader

    if (args.part is None) == (args.all is None):
        raise QueryError("give either PART (see `maild messages show --json ID`) or --all DIR")
    if args.all is not None and args.output is not None:
        raise QueryError("-o/--output writes one PART; --all writes into its directory")
    with ArchiveReader(_database(args)) as reader:
        message = reader.message(resolve_id(reader, args.id), raw=True)
    if message is None or message.raw is None:
        raise QueryError(f"message {args.id} disappeared from the archive")
    if args.all is not None:
        written = write_all(message.raw, args.all)
        for item in written:
            print(f"{item.part}\t{item.size_octets}\t{item.path}")
        if not written:
            print(f"maild: message {message.sha256[:12]} has no attachments", file=sys.stderr)
        return 0
    leaf = find_part(message.raw, args.part)
    if leaf is None:
        raise QueryError(
            f"message {message.sha256[:12]} has no part {args.part!r};"
            " `maild messages show --json ID` lists its parts"
        )
    data = leaf.decoded(message.raw)
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        from maild.fsutil import write_atomic

        write_atomic(args.output, data)
    return 0


def _show(args: argparse.Namespace) -> int:
    from maild.archive.query import render_show, resolve_id, show_json
    from maild.archive.reader import ArchiveReader

    with ArchiveReader(_database(args)) as reader:
        message = reader.message(resolve_id(reader, args.id), raw=True)
    if message is None:
        raise QueryError(f"message {args.id} disappeared from the archive")
    if args.json:
        print(json.dumps(show_json(message), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_show(message, human_size))
    return 0


def _raw(args: argparse.Namespace) -> int:
    from maild.archive.query import resolve_id
    from maild.archive.reader import ArchiveReader

    with ArchiveReader(_database(args)) as reader:
        message = reader.message(resolve_id(reader, args.id), raw=True)
    if message is None or message.raw is None:
        raise QueryError(f"message {args.id} disappeared from the archive")
    sys.stdout.buffer.write(message.raw)
    sys.stdout.buffer.flush()
    return 0


def _progress() -> Callable[[int, int], None] | None:
    """A counter on stderr when it is a terminal, else None (nothing printed)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\rexported {count(done)}/{count(total)}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _export(args: argparse.Namespace) -> int:
    from maild.archive.export import export_maildir, export_mbox
    from maild.archive.reader import ArchiveReader

    with ArchiveReader(_database(args)) as reader:
        if args.maildir is not None:
            res = export_maildir(reader, args.account, args.maildir, since=args.since, progress=_progress())
            print(
                f"{args.account}: {count(res.written)} messages written to {args.maildir},"
                f" {count(res.already_present)} already there ({count(res.total)} selected)"
            )
        else:
            res = export_mbox(reader, args.account, args.mbox, since=args.since, progress=_progress())
            print(f"{args.account}: {count(res.written)} messages written to {args.mbox}")
    return 0
