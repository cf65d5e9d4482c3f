"""The ``maild`` command line: run the daemon, fetch once, ask the daemon for status, check the config.

Errors are one line on stderr, never a traceback. Exit codes: the one table of
:mod:`maild.cli.exit_codes` (each subcommand's ``--help``, the man page, docs/operations.md); in
short 0 success, 1 failure, 2 usage error, 3 ``status`` without a daemon, 78 ``run`` with an invalid
configuration, and ``maild check`` the monitoring-plugin states. Each subcommand's help gets its
description, the global options and its exit codes from :mod:`maild.cli.helptext`. Log lines go to
stderr (:mod:`maild.log`), results to stdout.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from maild import __version__
from maild.cli.common import daemon_client, load_args_config
from maild.cli.dispatch import (
    BUILT_IN_COMMANDS,
    COMMAND_GROUPS,
    LOG_LEVELS,
    asks_version,
    command_of,
    stray_options,
)
from maild.cli.helptext import CONFIG_HELP, LOG_LEVEL_HELP, HelpFormatter, finish_subcommands
from maild.cli.units import human_size
from maild.errors import (
    ArchiveNeedsAdmin,
    ArchiveNeedsRestart,
    ConfigError,
    ControlError,
    MaildError,
    ProtocolChanged,
)

if TYPE_CHECKING:
    from maild.config.loader import Config

# Start-up time (docs/performance.md, session 5): building the parser and dispatching import only
# argparse, the CLI's own modules and maild.errors. Every handler imports what it needs itself
# (asyncio, json, the config loader, logging, the control client, the archive, the status view,
# the man page), so `maild --help` and `maild status` do not pay for the one-shot fetch's parts, nor
# it for theirs. The CLI modules' own top-level imports follow the same rule;
# tests/integration/test_cli_startup.py holds them to it.

#: Exit code of ``maild run`` with an invalid configuration: ``EX_CONFIG`` of sysexits.h. The unit
#: file's ``RestartPreventExitStatus=`` names it.
EXIT_CONFIG = 78

#: Exit code of ``maild run`` refused by an archive only the admin can mend (newer schema, lost
#: write-ahead log: :class:`~maild.errors.ArchiveNeedsAdmin`): ``EX_DATAERR`` of sysexits.h. The unit
#: file's ``RestartPreventExitStatus=`` names it too: a restart every ``RestartSec`` cannot help.
EXIT_ARCHIVE_NEEDS_ADMIN = 65

#: Exit code of ``maild run`` stopped because a transaction on the archive could not be rolled back
#: (:class:`~maild.errors.ArchiveNeedsRestart`): ``EX_TEMPFAIL`` of sysexits.h. The unit's
#: ``Restart=on-failure`` starts it again on a fresh connection (session 15).
EXIT_ARCHIVE_RESTART = 75

#: Exit code of the same stop repeated within an hour of the last one
#: (:data:`maild.service.restart_record.REPEAT_WINDOW_S`): ``EX_IOERR`` of sysexits.h, named by the
#: unit's ``RestartPreventExitStatus=`` (a failing disk: restarting cannot help).
EXIT_ARCHIVE_FAILING = 74

#: Exit code of a usage error: argparse's own, and an account name that is not configured.
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
EXIT_BROKEN_PIPE = 128 + 13
"""Exit status when stdout's reader closed the pipe: a process killed by SIGPIPE (13), as shells show it."""


def _add_parsers(group: str) -> Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]:
    """``add_parsers`` of the command-group module ``group`` (a key of :data:`COMMAND_GROUPS`),
    imported now: the dispatch imports a subcommand's module only when that subcommand runs (or
    when the whole parser is built, for help, the man page and usage errors)."""
    if group == "archive":
        from maild.cli import archive

        return archive.add_parsers
    if group == "backup":
        from maild.cli import backup

        return backup.add_parsers
    if group == "accounts":
        from maild.cli import accounts

        return accounts.add_parsers
    from maild.cli import move

    return move.add_parsers


FETCH_HELP = (
    "fetch once without a daemon; exit 1 if any account failed, 0 if every account was fetched (also"
    " when some messages could not be retrieved this time: they are counted as not retrieved in the"
    " account's line, named below it and warned about on stderr, and retried at the next fetch;"
    " 1 when that was for lack of room on this machine); exit 3 if deletions done on a server could"
    " not be recorded (the archive's disk full: NOT RECORDED)"
)
"""``maild fetch``'s line in ``maild --help``: the exit codes of :mod:`maild.cli.exit_codes` (a fetched
account with messages that failed to arrive is not a failed one). "Not retrieved", not "left on the
server": with ``retention = keep`` every message is left on the server by design."""


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``maild`` parser: every subcommand, or with ``command`` (see :func:`command_of`) only that
    one, or for a command group's subcommand only that group's.

    Each subparser costs argparse some 0.1-0.3 ms of gettext look-ups and formatter set-ups; a
    one-shot command does not build the 40-odd it will not run (start-up time, docs/performance.md,
    sessions 5 and 8: the twelve built-in subcommands cost 3 ms, one 0.6 ms). The man page, the
    completions and every usage error at the top level use the whole parser.
    """
    p = argparse.ArgumentParser(
        prog="maild",
        description="Fetch an office's mail by POP3 and IMAP into a safe archive.",
        epilog="Every command's exit codes are in its --help (maild COMMAND --help), in man maild"
        " (EXIT STATUS) and in docs/operations.md (Exit codes).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"maild {__version__}")
    p.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--log-level", choices=LOG_LEVELS, help=LOG_LEVEL_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is None or command in BUILT_IN_COMMANDS:
        _add_built_in_parsers(sub, command)
    for group, commands in COMMAND_GROUPS.items():
        if command is None or command in commands:
            _add_parsers(group)(sub)
    finish_subcommands(sub)  # descriptions, global options, exit codes
    return p


def _add_built_in_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None) -> None:
    """Add the subcommands of :data:`BUILT_IN_COMMANDS` to ``sub``: all of them, or only ``only``."""

    def add(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser | None:
        if only is not None and name != only:
            return None
        return sub.add_parser(name, help=text, description=description)

    if r := add("run", "run the daemon in the foreground (for systemd)"):
        r.set_defaults(handler=_run)
    if f := add("fetch", FETCH_HELP):
        f.add_argument(
            "accounts", nargs="*", metavar="ACCOUNT", help="accounts to fetch (default: all enabled)"
        )
        f.set_defaults(handler=_fetch)
    if s := add("status", "show the running daemon's status"):
        s.add_argument("account", nargs="?", help="only this account")
        s.add_argument("--json", action="store_true", help="print the raw JSON reply")
        s.add_argument("--failed", action="store_true", help="list only the accounts that need attention")
        s.set_defaults(handler=_status)
    if c := add("check", "one line for Nagios/Icinga/Zabbix: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"):
        c.set_defaults(handler=_check)
    if n := add("fetch-now", "ask the running daemon to fetch now"):
        n.add_argument("account", nargs="?", default="all", help="account name or 'all' (default)")
        n.add_argument(
            "--no-wait", action="store_true", help="return at once instead of waiting for the cycle"
        )
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
        if sp := add(name, text):
            sp.add_argument("account", help="account name")
            sp.set_defaults(handler=handler)
    for name, text, handler in (
        ("reload", "make the running daemon re-read its configuration", _reload),
        ("metrics", "print the daemon's metrics (Prometheus text format)", _metrics),
        ("alert-test", "make the daemon send a test alert through [alerts] command and mail_to", _alert_test),
        ("check-config", "validate the configuration; exit 0 if valid, 1 if not", _check_config),
        ("manpage", "print this man page, maild(1), in roff: `maild manpage | man -l -` reads it", _manpage),
    ):
        if sp := add(name, text):
            sp.set_defaults(handler=handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``maild`` console script; returns the process exit code.

    ``maild --version`` is answered before any parser is built: building the whole parser (every
    subcommand of every command group) cost some 50 ms of CPU for one line (docs/performance.md,
    "Session 9: small start-up costs").
    """
    words = sys.argv[1:] if argv is None else list(argv)
    if asks_version(words):
        print(f"maild {__version__}")
        return 0
    parser = _parser(command_of(words))
    if stray := stray_options(words):
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args = parser.parse_args(words)
    handler: Handler = args.handler
    if sys.stdout is not None and sys.stdout.isatty():
        # mail and server texts may hold terminal control sequences (ESC): shown, never obeyed
        from maild.cli.terminal import guard_stdout

        guard_stdout()
    if handler is not _fetch:  # `maild fetch` imports its cycle's modules first (fetch_once)
        collect_from_here()
    try:
        return int(handler(args))
    except BrokenPipeError:
        # The reader of our output went away (`maild messages list | head`): stop quietly, as a process
        # killed by SIGPIPE would, and keep Python's final flush of stdout from complaining again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except ControlError as exc:
        for line in str(exc).splitlines() or [""]:  # a rejected reload: one line per problem
            print(f"maild: {line}", file=sys.stderr)
        # A name the daemon does not know is the caller's mistake, like a wrong option: usage error.
        return EXIT_USAGE if exc.code == "unknown-account" else 1
    except ConfigError as exc:
        _print_problems(exc)
        return int(getattr(args, "error_exit", 1))  # `messages search`: 2, as grep (1 is "no match")
    except (MaildError, OSError) as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return int(getattr(args, "error_exit", 1))
    except KeyboardInterrupt:
        return 130


def collect_from_here() -> None:
    """Switch the cyclic garbage collector back on once a command's modules are imported, if
    :func:`console` switched it off, with everything made so far frozen (``gc.freeze``).

    The imports of a one-shot command create some 40,000 objects that live as long as the process
    (modules, classes, functions); with the collector on, each was scanned again and again while the
    next ones were made: 55 young and 4 middle collections, about 10 ms of a no-op ``maild fetch``'s
    190 ms of CPU (docs/performance.md, "Session 10: fixed costs"). Frozen, they are never scanned;
    what the command makes afterwards (its cycles, its messages) is collected as usual. A no-op where
    the collector is on (a test calling :func:`main`): nothing is frozen there.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def console() -> None:
    """The ``maild`` console script and ``python -m maild``: :func:`main`, then the process ends
    without Python's teardown when nothing else runs in it.

    The cyclic garbage collector is off until the command's modules are imported
    (:func:`collect_from_here`).

    Freeing every object and module at exit costs a one-shot ``maild fetch`` of 2,000 messages
    25-30 ms of CPU and serves nothing once a command has ended: its archive is closed and its
    thread pools are shut down (docs/performance.md, "Session 7: the POP3 one-shot"). Output is
    flushed first. The normal exit runs instead when another thread is still alive (its end is
    waited for) or when flushing fails (Python then reports it as usual); tests call :func:`main`.
    """
    gc.disable()  # until collect_from_here(): python -m maild switched it off before this module's imports
    code = main()
    import threading

    if threading.active_count() == 1:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe or stream: leave it to the normal exit
            sys.exit(code)
        if "logging" in sys.modules:  # what stdlib handlers still hold (an atexit hook otherwise)
            import logging

            logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _print_problems(exc: ConfigError) -> None:
    """Each problem of an invalid configuration as its own ``maild: FILE: KEY: ...`` line on stderr."""
    for problem in exc.problems:
        print(f"maild: {problem}", file=sys.stderr)


# -- without a daemon -----------------------------------------------------------------------------------


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_args_config(args)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from maild.cli.config_check import archive_problems  # reads the archive: only for this command

    problems, note = archive_problems(cfg)
    if note is not None:
        print(f"warning: {note}", file=sys.stderr)
    for problem in problems:
        print(f"maild: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{cfg.path}: OK, {len(cfg.accounts)} account{'' if len(cfg.accounts) == 1 else 's'}")
    return 0


def _manpage(args: argparse.Namespace) -> int:
    """``maild manpage``: the page a wheel or .deb installs, for a source checkout (``| man -l -``).

    Dated ``$SOURCE_DATE_EPOCH`` (seconds, UTC) when set, as the build does, else today (UTC).
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    from maild.cli.manpage import render_manpage

    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    sys.stdout.write(render_manpage(_parser(), __version__, moment.strftime("%Y-%m-%d")))
    return 0


def _run(args: argparse.Namespace) -> int:
    """``maild run``: the daemon in the foreground until SIGTERM; :data:`EXIT_CONFIG` for a bad config."""
    try:
        cfg = load_args_config(args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    import asyncio

    from maild.log import LogFormat, configure_logging, get_logger

    log_format: LogFormat = cfg.daemon.log_format  # type: ignore[assignment]  # validated by the loader
    configure_logging(args.log_level or cfg.daemon.log_level, fmt=log_format)
    for warning in cfg.warnings:
        get_logger().warning("config.warning", detail=warning)
    # Imported here, not at the top: the daemon's parts (scheduler, IDLE, metrics) are start-up time
    # that every other command would pay for nothing. Not a cycle: maild.service never imports maild.cli.
    from maild.service.daemon import Daemon

    try:
        asyncio.run(Daemon(cfg).run())
    except ProtocolChanged as exc:  # the configuration's fault: no restart loop under systemd
        print(f"maild: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ArchiveNeedsAdmin as exc:  # the archive is left as it is for the admin: no restart loop either
        print(f"maild: {exc}", file=sys.stderr)
        return EXIT_ARCHIVE_NEEDS_ADMIN
    except ArchiveNeedsRestart as exc:  # a fresh connection ends the open transaction: systemd restarts
        if exc.repeated:
            print(
                f"maild: {exc}; again within an hour of the last restart for it: not restarted, check the"
                " archive's disk (docs/service.md)",
                file=sys.stderr,
            )
            return EXIT_ARCHIVE_FAILING
        print(f"maild: {exc}; stopped for a restart (exit {EXIT_ARCHIVE_RESTART})", file=sys.stderr)
        return EXIT_ARCHIVE_RESTART
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """``maild fetch``: one cycle per account without a daemon (refused while a daemon or another
    ``maild fetch`` holds the archive's fetcher lock)."""
    import asyncio

    from maild.log import configure_logging

    cfg = load_args_config(args)
    unknown = [name for name in args.accounts if name not in cfg.accounts]
    if unknown:
        print(f"maild: {cfg.path}: no account named {unknown[0]!r}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or "warning")
    # A running daemon (of this or any configuration on the same archive) holds the archive's
    # fetcher lock: the one-shot then stops with one line that names it and `maild fetch-now`.
    return asyncio.run(fetch_once(cfg, args.accounts))


async def fetch_once(cfg: Config, names: Sequence[str]) -> int:
    """Fetch ``names`` (default: every enabled account) once, print a line per account; the exit code.

    The one place ``maild fetch`` composes a store and fetch cycles without the daemon.

    Raises:
        ConfigError: a name is not a configured account.
        StoreError: the archive cannot be opened.
    """
    # Imported here, not at the top: the daemon's parts cost start-up time every other command saves.
    from maild.service.oneshot import EXIT_DELETIONS_NOT_RECORDED, total_line
    from maild.service.oneshot import fetch_once as fetch_accounts_once

    collect_from_here()  # the cycle's modules are imported (an account's adapter comes with its cycle)

    # On a terminal (stdout and stderr both) a failed account's result line says it all: its
    # `fetch.failed` warning beside it would say it twice, so it goes to info there. Cron mail, a file
    # and the journal keep the warning (syslog priority 4), which monitoring greps for.
    on_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    started = time.monotonic()
    left_open: list[str] = []
    results = await fetch_accounts_once(
        cfg, names, failure_level="info" if on_terminal else "warning", on_left_open=left_open.append
    )
    for res in results:
        print(res.line(human_size))
    if (total := total_line(results, human_size, time.monotonic() - started)) is not None:
        print(total)
    if left_open:  # its cycle's line says only the I/O error (review of session 15): say what it means
        print(
            f"maild: {left_open[0]}: nothing was deleted on any server after it; the next run opens the"
            " archive afresh (SQLite rolls the transaction back), check the archive's disk",
            file=sys.stderr,
        )
    if any(res.unrecorded for res in results):  # the one case a next run cannot repair by itself
        return EXIT_DELETIONS_NOT_RECORDED
    return 1 if left_open or any(res.failed or res.short_of_room for res in results) else 0


# -- asking the daemon ----------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    """``maild status``: 0 all healthy, 1 an account needs attention, 3 the daemon is not running."""
    from maild.cli.status_view import (
        STATUS_ATTENTION,
        STATUS_NOT_RUNNING,
        STATUS_OK,
        needs_attention,
        render_status,
    )

    try:
        reply = daemon_client(args).status(args.account)
    except ControlError as exc:
        if exc.code != "not-running":
            raise
        print(f"maild: {exc}", file=sys.stderr)
        return STATUS_NOT_RUNNING
    if args.json:
        import json

        print(json.dumps({"ok": True, **reply.to_json()}, indent=2, ensure_ascii=False))
    else:
        print(render_status(reply, now=datetime.now(UTC), failed_only=args.failed))
    return STATUS_ATTENTION if needs_attention(reply) else STATUS_OK


def _check(args: argparse.Namespace) -> int:
    """``maild check``: the monitoring-plugin line; CRITICAL when the daemon is not running."""
    from maild.cli.status_view import CHECK_CRITICAL, CHECK_UNKNOWN, check_line

    try:
        reply = daemon_client(args).status()
    except ControlError as exc:
        code = CHECK_CRITICAL if exc.code == "not-running" else CHECK_UNKNOWN
        print(f"MAILD {'CRITICAL' if code == CHECK_CRITICAL else 'UNKNOWN'} - {exc}")
        return code
    code, line = check_line(reply, datetime.now(UTC))
    print(line)
    return code


def _fetch_now(args: argparse.Namespace) -> int:
    """``maild fetch-now``: exit 1 if a cycle failed or could not retrieve messages for lack of room on
    this machine; paused and disabled accounts are skipped."""
    from maild.cli.status_view import local_time, zone_name

    client = daemon_client(args)
    if args.no_wait:
        queued = client.queue_fetch(args.account, retry_failed=args.retry_failed)
        print("queued: " + (", ".join(queued.queued) or "none"))
        if queued.skipped:
            skipped = ", ".join(queued.skipped)
            print(f"skipped (paused, disabled or locked out; see `maild status`): {skipped}")
        return 0
    failed = 0
    now = datetime.now(UTC)
    started = time.monotonic()
    reply = client.fetch_now(args.account, retry_failed=args.retry_failed)
    for res in reply.results:
        if res.skipped is not None:
            print(f"{res.account}: skipped: {res.skipped}")
        elif (line := res.line(human_size)) is not None:
            print(line)
            failed += res.no_room > 0  # the disk is this machine's: exit 1, as `maild fetch` does
        elif res.locked_out_since is not None:
            failed += 1
            since = f"{local_time(res.locked_out_since, now, None)} {zone_name(now, None)}"
            print(f"{res.account}: LOCKED OUT since {since}, {res.error}")
        else:
            failed += 1
            print(f"{res.account}: FAILED: {res.error}")
    if (total := reply.total_line(human_size, time.monotonic() - started)) is not None:
        print(total)
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
    changes = daemon_client(args, warn_problems=False).reload().changes()
    print("reloaded" + (f" ({changes})" if changes else ", no account changed"))
    return 0


def _alert_test(args: argparse.Namespace) -> int:
    """``maild alert-test``: one line per channel; exit 1 if a channel failed or none is configured."""
    reply = daemon_client(args).alert_test()
    if not reply.channels:
        print("maild: no alert channel configured ([alerts] command or mail_to)", file=sys.stderr)
        return 1
    for channel in reply.channels:
        print(f"{channel.channel}: {channel.detail}")
    return 0 if all(c.ok for c in reply.channels) else 1


def _metrics(args: argparse.Namespace) -> int:
    sys.stdout.write(daemon_client(args).metrics().text)
    return 0
