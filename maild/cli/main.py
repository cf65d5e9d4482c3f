"""The ``maild`` command line: run the daemon, fetch once, ask the daemon for status, check the config.

Errors are one line on stderr and exit code 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from maild import __version__
from maild.cli import accounts, archive, backup, move
from maild.cli.common import daemon_client, load_args_config, warn
from maild.cli.table import lines_by_person
from maild.config.loader import Config
from maild.errors import MaildError
from maild.log import configure_logging, get_logger
from maild.service.control_client import ControlClient
from maild.service.status import AccountStatus, StatusReply, time_text

Handler = Callable[[argparse.Namespace], int]
EXIT_BROKEN_PIPE = 128 + 13
"""Exit status when stdout's reader closed the pipe: a process killed by SIGPIPE (13), as shells show it."""

#: Modules that add subcommand groups: each has ``add_parsers(subparsers)`` and sets ``handler`` (a
#: function taking the parsed arguments and returning the exit code) with ``set_defaults``.
COMMAND_GROUPS = (archive, backup, accounts, move)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maild", description="Fetch an office's mail by POP3 and IMAP into a safe archive."
    )
    p.add_argument("--version", action="version", version=f"maild {__version__}")
    p.add_argument("-c", "--config", help="config file (default: $MAILD_CONFIG or /etc/maild/config.toml)")
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override daemon.log_level"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon in the foreground (for systemd)").set_defaults(handler=_run)
    f = sub.add_parser("fetch", help="fetch once without a daemon; exit 1 if any account failed")
    f.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="accounts to fetch (default: all enabled)")
    f.set_defaults(handler=_fetch)
    s = sub.add_parser("status", help="show the running daemon's status")
    s.add_argument("account", nargs="?", help="only this account")
    s.add_argument("--json", action="store_true", help="print the raw JSON reply")
    s.set_defaults(handler=_status)
    n = sub.add_parser("fetch-now", help="ask the running daemon to fetch now")
    n.add_argument("account", nargs="?", default="all", help="account name or 'all' (default)")
    n.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the cycle")
    n.add_argument(
        "--retry-failed",
        action="store_true",
        help="also try the messages set aside after failing repeatedly (left on the server) again now",
    )
    n.set_defaults(handler=_fetch_now)
    for name, text, handler in (
        ("pause", "stop fetching an account until resumed or the daemon restarts", _pause),
        ("resume", "resume an account (also after an authentication lockout)", _resume),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("account", help="account name")
        sp.set_defaults(handler=handler)
    sub.add_parser("reload", help="make the running daemon re-read its configuration").set_defaults(
        handler=_reload
    )
    sub.add_parser("metrics", help="print the daemon's metrics (Prometheus text format)").set_defaults(
        handler=_metrics
    )
    sub.add_parser("check-config", help="validate the configuration; exit 0 if valid, 1 if not").set_defaults(
        handler=_check_config
    )
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    _add_common_options(sub)
    return p


def _add_common_options(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Let `maild run -c FILE` work as well as `maild -c FILE run`, also for nested subcommands."""
    for command in sub.choices.values():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _add_common_options(action)
            continue
        command.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``maild`` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return int(handler(args))
    except BrokenPipeError:
        # The reader of our output went away (`maild messages list | head`): stop quietly, as a process
        # killed by SIGPIPE would, and keep Python's final flush of stdout from complaining again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except (MaildError, OSError) as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- without a daemon -----------------------------------------------------------------------------------


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_args_config(args)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{cfg.path}: OK, {len(cfg.accounts)} accounts")
    return 0


def _run(args: argparse.Namespace) -> int:
    """``maild run``: the daemon in the foreground until SIGTERM."""
    cfg = load_args_config(args)
    configure_logging(args.log_level or cfg.daemon.log_level)
    for warning in cfg.warnings:
        get_logger().warning("config.warning", detail=warning)
    # Imported here, not at the top: the daemon's parts (scheduler, IDLE, metrics) are start-up time
    # that every other command would pay for nothing. Not a cycle: maild.service never imports maild.cli.
    from maild.service.daemon import Daemon

    asyncio.run(Daemon(cfg).run())
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """``maild fetch``: one cycle per account without a daemon (warns when a daemon runs too)."""
    cfg = load_args_config(args)
    configure_logging(args.log_level or "warning")
    if ControlClient(cfg.daemon.control_socket).daemon_answers():
        warn(
            f"a daemon is running on {cfg.daemon.control_socket} and fetches these"
            " accounts too; `maild fetch-now` asks it instead"
        )
    return asyncio.run(fetch_once(cfg, args.accounts))


async def fetch_once(cfg: Config, names: Sequence[str]) -> int:
    """Fetch ``names`` (default: every enabled account) once, print a line per account; the exit code.

    The one place ``maild fetch`` composes a store and fetch cycles without the daemon.

    Raises:
        ConfigError: a name is not a configured account.
        StoreError: the archive cannot be opened.
    """
    # Imported here, not at the top: the daemon's parts cost start-up time every other command saves.
    from maild.service.oneshot import fetch_once as fetch_accounts_once

    results = await fetch_accounts_once(cfg, names)
    for res in results:
        print(res.line())
    return 1 if any(res.failed for res in results) else 0


# -- asking the daemon ----------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    reply = daemon_client(args).status(args.account)
    if args.json:
        print(json.dumps({"ok": True, **reply.to_json()}, indent=2, ensure_ascii=False))
    else:
        print(render_status(reply))
    return 0


def _fetch_now(args: argparse.Namespace) -> int:
    client = daemon_client(args)
    if args.no_wait:
        print("queued: " + ", ".join(client.queue_fetch(args.account, retry_failed=args.retry_failed).queued))
        return 0
    failed = 0
    for res in client.fetch_now(args.account, retry_failed=args.retry_failed).results:
        if res.ok:
            print(f"{res.account}: {res.counts()} ({res.octets} octets, {res.seconds} s)")
        else:
            failed += 1
            print(f"{res.account}: FAILED: {res.error}")
    return 1 if failed else 0


def _pause(args: argparse.Namespace) -> int:
    reply = daemon_client(args).pause(args.account)
    print(f"{reply.account}: {reply.state}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    reply = daemon_client(args).resume(args.account)
    print(f"{reply.account}: {reply.state}")
    return 0


def _reload(args: argparse.Namespace) -> int:
    changes = daemon_client(args).reload().changes()
    print("reloaded" + (f" ({changes})" if changes else ", no account changed"))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    sys.stdout.write(daemon_client(args).metrics().text)
    return 0


def _imap_status_lines(a: AccountStatus) -> list[str]:
    """Extra status lines of an IMAP account: IDLE, mailboxes not fetched, UIDVALIDITY changes."""
    lines: list[str] = []
    if a.imap is not None and a.mode in ("idle", "reconnecting"):
        last_push = time_text(a.imap.last_push) or "never"
        lines.append(f"      {a.mode} on {a.imap.idle_mailbox!r}, last push {last_push}")
    for mailbox, reason in (a.last_cycle.mailbox_failures or ()) if a.last_cycle else ():
        lines.append(f"      mailbox {mailbox!r} not fetched: {reason}")
    for change in a.imap.uidvalidity_changes if a.imap is not None else ():
        lines.append(
            f"      UIDVALIDITY of {change.mailbox!r} changed at {time_text(change.at)}:"
            f" {change.relinked} recognised without download, {change.to_retrieve} retrieved"
        )
    return lines


def _failing_lines(a: AccountStatus) -> list[str]:
    """Status lines for messages that failed to arrive: set aside (left on the server) or not yet."""
    lines: list[str] = []
    for f in a.failing_messages:
        if f.set_aside:
            lines.append(
                f"      set aside after {f.failures} failures in a row, left on the server: {f.key}:"
                f" {f.reason} (next try {time_text(f.next_retry)},"
                f" or `maild fetch-now --retry-failed {a.name}`)"
            )
        else:
            lines.append(f"      failed {f.failures}x in a row (retried next cycle): {f.key}: {f.reason}")
    return lines


def _sign_in_line(a: AccountStatus) -> list[str]:
    """OAuth2 accounts: one line with the grant, the access token's and the refresh token's ends."""
    s = a.sign_in
    if s.auth != "oauth2":
        return []
    parts = [f"      sign-in: oauth2 ({s.grant or '?'})"]
    if s.token_expires_at is not None:
        parts.append(f"token until {time_text(s.token_expires_at)}")
    if s.refresh_token_obtained_at is not None:
        age_days = (datetime.now(UTC) - s.refresh_token_obtained_at).total_seconds() / 86400
        parts.append(f"refresh token {max(age_days, 0):.1f} days old")
    if s.refresh_token_expires_at is not None:
        parts.append(f"ends {time_text(s.refresh_token_expires_at)}")
    line = ", ".join(parts)
    return [line, f"      WARNING: {s.warning}"] if s.warning else [line]


def render_status(reply: StatusReply) -> str:
    """Render a status reply as a table grouped by organisation and employee."""

    def account_lines(a: AccountStatus) -> list[str]:
        when = time_text(a.last_success) or "never"
        lines = [
            f"    {a.name:<20} {a.protocol:<5} {a.state:<9} {a.messages:>7} messages"
            f"  last success {when}  next {time_text(a.next_run) or '-'}"
        ]
        if a.last_error:
            lines.append(f"      error: {a.last_error}")
        lines.extend(f"      warning: {w}" for w in a.warnings)
        lines.extend(_failing_lines(a))
        lines.extend(_sign_in_line(a))
        lines.extend(_imap_status_lines(a))
        return lines

    lines = lines_by_person(reply.accounts, account_lines)
    lines.append(f"archive: {reply.archive.messages} messages, {reply.archive.octets} octets")
    if reply.archive.replaced:
        lines.append(f"ARCHIVE PROBLEM: {reply.archive.replaced}")
    return "\n".join(lines)
