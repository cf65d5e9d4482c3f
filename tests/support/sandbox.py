"""A persistent Dovecot sandbox with demo mail and a ready maild configuration.

Usage (from the repository root, as root)::

    python -m tests.support.sandbox up --dir /tmp/maild-demo --messages 200
    python -m tests.support.sandbox status --dir /tmp/maild-demo
    python -m tests.support.sandbox down --dir /tmp/maild-demo [--purge]

``up`` starts a detached Dovecot (it survives the command; PID in ``DIR/dovecot.pid``), creates the
users (default ``anna``) with random passwords in ``DIR/secrets/<user>`` (mode 0600, no trailing
newline), seeds each INBOX with corpus messages, copies the CA certificate to ``DIR/ca.pem`` and
writes ``DIR/config.toml`` with two maild accounts per user on the same mailbox: ``demo-pop``
(POP3S) and ``demo-imap`` (IMAPS) for the first user, ``<user>-pop``/``<user>-imap`` for others.
Running ``up`` again while the sandbox runs changes nothing; after ``down`` it restarts it with the
same ports, users and mail.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import tomli_w

from tests.support import corpus
from tests.support.dovecot import Dovecot, DovecotError

ORGANISATION = "Hausverwaltung Beispiel"
DEFAULT_USERS = ("anna",)
_MARKER = ".maild-sandbox"


def _employee(user: str) -> str:
    return f"{user.capitalize()} Beispiel"


def _account_prefix(index: int, user: str) -> str:
    return "demo" if index == 0 else user


def build_config(directory: Path, server: Dovecot, users: list[str]) -> dict[str, Any]:
    """maild's configuration for the sandbox, as a TOML-ready mapping."""
    accounts: dict[str, Any] = {}
    for index, user in enumerate(users):
        prefix = _account_prefix(index, user)
        common = {
            "organisation": ORGANISATION,
            "employee": _employee(user),
        }
        login = {
            "host": server.host,
            "tls": "implicit",
            "ca_file": str(directory / "ca.pem"),
            "username": user,
            "password_file": str(directory / "secrets" / user),
        }
        accounts[f"{prefix}-pop"] = {
            **common,
            "protocol": "pop3",
            **_with_port(login, server.ports.pop3s),
            "poll_interval": "1m",
        }
        accounts[f"{prefix}-imap"] = {
            **common,
            "protocol": "imap",
            **_with_port(login, server.ports.imaps),
            "mailboxes": ["INBOX"],
            "poll_interval": "1m",
        }
    return {
        "daemon": {
            "state_dir": str(directory / "state"),
            "control_socket": str(directory / "control.sock"),
            "max_concurrent_fetches": 8,
        },
        "accounts": accounts,
    }


def _with_port(login: dict[str, str], port: int) -> dict[str, Any]:
    # keep maild's documented key order: host, port, tls, ...
    ordered: dict[str, Any] = {"host": login["host"], "port": port}
    ordered.update((k, v) for k, v in login.items() if k != "host")
    return ordered


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    tmp.replace(path)


def up(directory: Path, *, messages: int, users: list[str], seed: int, stop_hint: str | None = None) -> int:
    """Start (or restart) the sandbox in ``directory``; print how to use it (``stop_hint``: the stop
    command to name instead of this module's ``down``). Returns an exit status."""
    directory.mkdir(parents=True, exist_ok=True)
    # Dovecot's unprivileged processes must traverse it (secrets/ stays 0700, config.toml 0600)
    directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o011)
    (directory / _MARKER).touch()
    dovecot_dir = directory / "dovecot"
    fresh = not (dovecot_dir / "instance.json").exists()
    if fresh:
        server = Dovecot(dovecot_dir)
        server.start(daemonize=True)
    else:
        server = Dovecot.attach(dovecot_dir)
        if server.running:
            print(f"sandbox already running in {directory} (Dovecot PID {server.pid})")
            _print_summary(directory, server, stop_hint)
            return 0
        server.start(daemonize=True)
        users = list(server.users)  # in creation order: the first one has the demo-* accounts

    (directory / "dovecot.pid").write_text(f"{server.pid}\n", encoding="ascii")
    shutil.copyfile(server.ca_file, directory / "ca.pem")
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    secrets_dir.chmod(0o700)

    if fresh:
        for user in users:
            password = secrets.token_urlsafe(18)
            server.add_user(user, password)
            _write_private(secrets_dir / user, password)
            if messages:
                server.deliver_many(user, corpus.generate(messages, seed=seed))
    config = tomli_w.dumps(build_config(directory, server, users))
    _write_private(directory / "config.toml", config)
    (directory / "state").mkdir(exist_ok=True)
    print(f"sandbox up in {directory} (Dovecot PID {server.pid})")
    _print_summary(directory, server, stop_hint)
    return 0


def _print_summary(directory: Path, server: Dovecot, stop_hint: str | None = None) -> None:
    p = server.ports
    print(f"  POP3 {server.host}:{p.pop3} (STLS)   POP3S {server.host}:{p.pop3s}")
    print(f"  IMAP {server.host}:{p.imap} (STARTTLS)   IMAPS {server.host}:{p.imaps}")
    print(f"  users: {', '.join(sorted(server.users))}; passwords in {directory / 'secrets'}/<user>")
    print(f"  CA certificate: {directory / 'ca.pem'}")
    print(f"  maild config:   {directory / 'config.toml'}")
    print(f"  Dovecot log:    {server.log_file}")
    print(f"  stop with:      {stop_hint or f'python -m tests.support.sandbox down --dir {directory}'}")


def down(directory: Path, *, purge: bool) -> int:
    """Stop the sandbox's Dovecot; with ``purge`` also delete ``directory``. Returns an exit status."""
    try:
        server = Dovecot.attach(directory / "dovecot")
    except DovecotError:
        print(f"no sandbox in {directory}")
    else:
        was_running = server.running
        server.stop()
        print(f"sandbox in {directory} stopped" if was_running else f"sandbox in {directory} was not running")
    (directory / "dovecot.pid").unlink(missing_ok=True)
    if purge and directory.exists():
        if not (directory / _MARKER).exists():
            print(f"not deleting {directory}: it is not a sandbox directory", file=sys.stderr)
            return 1
        shutil.rmtree(directory)
        print(f"deleted {directory}")
    return 0


def status(directory: Path) -> int:
    """Print whether the sandbox runs; exit status 0 if it does, 3 if not."""
    try:
        server = Dovecot.attach(directory / "dovecot")
    except DovecotError:
        print(f"no sandbox in {directory}")
        return 3
    if not server.running:
        print(f"sandbox in {directory} is stopped")
        return 3
    print(f"sandbox running in {directory} (Dovecot PID {server.pid})")
    _print_summary(directory, server)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.sandbox", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the sandbox (idempotent)")
    up_parser.add_argument("--dir", required=True, type=Path, help="sandbox directory (created)")
    up_parser.add_argument("--messages", type=int, default=200, help="corpus messages per user (default 200)")
    up_parser.add_argument(
        "--users", nargs="+", default=list(DEFAULT_USERS), help="user names (default anna)"
    )
    up_parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    up_parser.add_argument("--stop-hint", help="the stop command to print (default: this module's down)")
    down_parser = commands.add_parser("down", help="stop the sandbox")
    down_parser.add_argument("--dir", required=True, type=Path)
    down_parser.add_argument("--purge", action="store_true", help="also delete the directory")
    status_parser = commands.add_parser("status", help="tell whether the sandbox runs")
    status_parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    directory = args.dir.absolute()
    try:
        if args.command == "up":
            if args.messages < 0:
                parser.error("--messages must be 0 or more")
            return up(
                directory,
                messages=args.messages,
                users=list(dict.fromkeys(args.users)),
                seed=args.seed,
                stop_hint=args.stop_hint,
            )
        if args.command == "down":
            return down(directory, purge=args.purge)
        return status(directory)
    except (DovecotError, ValueError) as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
