"""The ``maild`` command line: run the daemon, fetch once, ask the daemon for status, check the config.

Errors are one line on stderr and exit code 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maild import __version__
from maild.cli.table import lines_by_person
from maild.config.loader import Config, DaemonConfig, config_path, load_config
from maild.errors import ConfigError, ControlError, MaildError

# Modules that add subcommands: each has ``add_parsers(subparsers)`` and sets ``handler`` (a function
# taking the parsed arguments and returning the exit code) with ``set_defaults``.
EXTENSIONS: tuple[str, ...] = ("maild.cli.archive", "maild.cli.accounts", "maild.cli.move")


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
    sub.add_parser("run", help="run the daemon in the foreground (for systemd)")
    f = sub.add_parser("fetch", help="fetch once without a daemon; exit 1 if any account failed")
    f.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="accounts to fetch (default: all enabled)")
    s = sub.add_parser("status", help="show the running daemon's status")
    s.add_argument("account", nargs="?", help="only this account")
    s.add_argument("--json", action="store_true", help="print the raw JSON reply")
    n = sub.add_parser("fetch-now", help="ask the running daemon to fetch now")
    n.add_argument("account", nargs="?", default="all", help="account name or 'all' (default)")
    n.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the cycle")
    for name, text in (
        ("pause", "stop fetching an account until resumed or the daemon restarts"),
        ("resume", "resume an account (also after an authentication lockout)"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("account", help="account name")
    sub.add_parser("reload", help="make the running daemon re-read its configuration")
    sub.add_parser("metrics", help="print the daemon's metrics (Prometheus text format)")
    sub.add_parser("check-config", help="validate the configuration; exit 0 if valid, 1 if not")
    for module in EXTENSIONS:
        importlib.import_module(module).add_parsers(sub)
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
    try:
        return _dispatch(args)
    except (MaildError, OSError) as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def control_socket_path(args: argparse.Namespace) -> Path:
    """The daemon's control socket, even when the config file on disk has errors.

    Client commands (status, fetch-now, pause, resume, reload, metrics) only need the socket path;
    a config edited into an invalid state must not leave the admin blind while the daemon still
    runs with its last good configuration. The error is printed as a warning.
    """
    path = config_path(args.config)
    try:
        return load_config(path).daemon.control_socket
    except ConfigError as exc:
        print(f"maild: warning: {exc}; asking the daemon anyway", file=sys.stderr)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh).get("daemon", {}).get("control_socket")
    except (OSError, ValueError, RecursionError, AttributeError):
        raw = None
    return path.parent / raw if isinstance(raw, str) else DaemonConfig().control_socket


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def load_args_config(args: argparse.Namespace) -> Config:
    """Load the configuration named by ``-c``/``$MAILD_CONFIG``/the default (for extension handlers)."""
    return _load(args)


def _dispatch(args: argparse.Namespace) -> int:
    from maild.log import configure_logging

    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    if args.command == "check-config":
        cfg = _load(args)
        for warning in cfg.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{cfg.path}: OK, {len(cfg.accounts)} accounts")
        return 0
    if args.command == "run":
        cfg = _load(args)
        configure_logging(args.log_level or cfg.daemon.log_level)
        for warning in cfg.warnings:
            from maild.log import get_logger

            get_logger().warning("config.warning", detail=warning)
        from maild.service.daemon import Daemon

        asyncio.run(Daemon(cfg).run())
        return 0
    if args.command == "fetch":
        cfg = _load(args)
        configure_logging(args.log_level or "warning")
        from maild.service.control import daemon_answers

        if daemon_answers(cfg.daemon.control_socket):
            print(
                f"maild: warning: a daemon is running on {cfg.daemon.control_socket} and fetches these"
                " accounts too; `maild fetch-now` asks it instead",
                file=sys.stderr,
            )
        return asyncio.run(_fetch_once(cfg, args.accounts))
    if args.command == "status":
        sock = control_socket_path(args)
        from maild.service.control import request

        payload: dict[str, Any] = {"command": "status"}
        if args.account:
            payload["account"] = args.account
        reply = _checked(request(sock, payload))
        if args.json:
            print(json.dumps(reply, indent=2, ensure_ascii=False))
        else:
            print(render_status(reply))
        return 0
    if args.command == "fetch-now":
        sock = control_socket_path(args)
        from maild.service.control import request

        reply = _checked(
            request(
                sock,
                {"command": "fetch-now", "account": args.account, "wait": not args.no_wait},
                timeout_s=3600,
            )
        )
        if args.no_wait:
            print("queued: " + ", ".join(reply["queued"]))
            return 0
        failed = 0
        for name, res in reply["results"].items():
            if res["ok"]:
                print(
                    f"{name}: {res['new_messages']} new messages ({res['octets']} octets, {res['seconds']} s)"
                )
            else:
                failed += 1
                print(f"{name}: FAILED: {res['error']}")
        return 1 if failed else 0
    if args.command in ("pause", "resume"):
        sock = control_socket_path(args)
        from maild.service.control import request

        reply = _checked(request(sock, {"command": args.command, "account": args.account}))
        print(f"{reply['account']}: {reply['state']}")
        return 0
    if args.command == "reload":
        sock = control_socket_path(args)
        from maild.service.control import request

        reply = _checked(request(sock, {"command": "reload"}))
        parts = [
            f"{k}: {', '.join(v)}" for k, v in reply.items() if k in ("added", "removed", "changed") and v
        ]
        print("reloaded" + (" (" + "; ".join(parts) + ")" if parts else ", no account changed"))
        return 0
    if args.command == "metrics":
        sock = control_socket_path(args)
        from maild.service.control import request

        sys.stdout.write(_checked(request(sock, {"command": "metrics"}))["text"])
        return 0
    raise AssertionError(args.command)


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise ControlError(str(err.get("code", "error")), str(err.get("message", "request failed")))
    return reply


async def _fetch_once(cfg: Config, names: Sequence[str]) -> int:
    from maild.service.oneshot import fetch_once

    results = await fetch_once(cfg, names)
    for res in results:
        print(res.line())
    return 1 if any(res.failed for res in results) else 0


def _imap_status_lines(a: dict[str, Any]) -> list[str]:
    """Extra status lines of an IMAP account: IDLE, mailboxes not fetched, UIDVALIDITY changes."""
    lines: list[str] = []
    if a.get("mode") in ("idle", "reconnecting"):
        last_push = a.get("last_push") or "never"
        lines.append(f"      {a['mode']} on {a.get('idle_mailbox')!r}, last push {last_push}")
    for mailbox, reason in ((a.get("last_cycle") or {}).get("mailbox_failures") or {}).items():
        lines.append(f"      mailbox {mailbox!r} not fetched: {reason}")
    for change in a.get("uidvalidity_changes") or []:
        lines.append(
            f"      UIDVALIDITY of {change['mailbox']!r} changed at {change['at']}:"
            f" {change['relinked']} recognised without download, {change['to_retrieve']} retrieved"
        )
    return lines


def render_status(reply: dict[str, Any]) -> str:
    """Render a status reply as a table grouped by organisation and employee."""

    def account_lines(a: dict[str, Any]) -> list[str]:
        when = a["last_success"] or "never"
        lines = [
            f"    {a['name']:<20} {a['protocol']:<5} {a['state']:<9} {a['messages']:>7} messages"
            f"  last success {when}  next {a['next_run'] or '-'}"
        ]
        if a["last_error"]:
            lines.append(f"      error: {a['last_error']}")
        lines.extend(_imap_status_lines(a))
        return lines

    lines = lines_by_person(reply["accounts"], account_lines)
    arch = reply["archive"]
    lines.append(f"archive: {arch['messages']} messages, {arch['octets']} octets")
    return "\n".join(lines)
