"""``maild accounts list|add|remove``: accounts by organisation and employee, added and removed as drop-ins.

``add`` writes ``accounts.d/NAME.toml`` beside the main file (and the password, when typed, to
``secrets/NAME`` with mode 0600), validates the whole configuration with it (and removes it again if
that fails), then asks a running daemon to reload. ``remove`` deletes that drop-in; the account's
archive stays unless ``--purge`` is given and no message would be lost. The main file is never
rewritten: for an account defined there, the commands say what to edit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maild.cli.accounts_list import account_rows, archive_facts, render_accounts
from maild.cli.authorize import add_parser as add_authorize_parser  # issue 13: OAuth2 device sign-in
from maild.cli.common import load_args_config, reload_daemon, run_async
from maild.cli.provider_add import account_name, ask, oauth2_table, provider_steps
from maild.cli.units import count
from maild.config.providers import PROVIDERS
from maild.errors import ConfigError, MigrationError

if TYPE_CHECKING:
    from maild.config.loader import Config

# Start-up time: `maild --help` and every other command import this module to build the parser, so
# the archive, the config loader and writer, the control client and logging are imported by the
# handlers that use them (docs/performance.md, session 5).

TLS_CHOICES = ("implicit", "starttls", "none")
RETENTION_CHOICES = ("keep", "delete", "delete-after")


def add_parsers(sub: Any) -> None:
    """Add ``accounts`` (``list``, ``add``, ``remove``) to the ``maild`` subcommand parsers ``sub``."""
    a = sub.add_parser("accounts", help="list, add or remove accounts (drop-in files)")
    actions = a.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="accounts by organisation and employee")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_list)
    ad = actions.add_parser("add", help="add an account as accounts.d/NAME.toml")
    ad.add_argument(
        "name", help="account name: [a-z0-9][a-z0-9._-]*, or an e-mail address (then also the user name)"
    )
    ad.add_argument(
        "--name",
        dest="account_name",
        metavar="NAME",
        help="the account name when the first argument is an e-mail address (default: made from it;"
        " required when it holds non-ASCII letters)",
    )
    ad.add_argument(
        "--provider",
        choices=tuple(PROVIDERS),
        help="fill server, TLS and sign-in from a preset (see docs/providers.md); asks only for the rest",
    )
    ad.add_argument("--organisation", help="asked for when missing")
    ad.add_argument("--employee", help="asked for when missing")
    ad.add_argument("--protocol", choices=("pop3", "imap"), help="required without --provider (then imap)")
    ad.add_argument("--host", help="required without --provider")
    ad.add_argument("--port", type=int, help="default: by protocol and --tls (995/110, 993/143)")
    ad.add_argument("--tls", choices=TLS_CHOICES, help="default: implicit")
    ad.add_argument("--client-id", help="OAuth2 presets: the app registration's client ID (asked if missing)")
    ad.add_argument("--tenant", help="microsoft365: the directory (tenant) ID or domain (asked if missing)")
    ad.add_argument(
        "--client-secret-file", type=Path, help="OAuth2 presets: app-only access with this client secret file"
    )
    ad.add_argument("--ca-file", type=Path, help="PEM file of trusted CAs (default: the system's)")
    ad.add_argument("--username", help="login name (default: the account name)")
    ad.add_argument(
        "--mailbox", action="append", dest="mailboxes", metavar="MAILBOX", help="IMAP; repeatable"
    )
    ad.add_argument("--all-mailboxes", action="store_true", help='IMAP: mailboxes = "all" (see --exclude)')
    ad.add_argument(
        "--exclude", action="append", metavar="MAILBOX", help="IMAP with --all-mailboxes; repeatable"
    )
    ad.add_argument(
        "--retention", choices=RETENTION_CHOICES, help='default keep; IMAP: keep or "delete-after"'
    )
    ad.add_argument("--retention-days", type=int, help='days, for --retention "delete-after"')
    ad.add_argument("--poll-interval", help='e.g. "5m" (default 5m)')
    ad.add_argument(
        "--password-command",
        metavar="COMMAND",
        help="command printing the password (split like a shell would, run without one); otherwise"
        " the password is asked for on the terminal, or read from standard input's first line",
    )
    ad.add_argument(
        "--set",
        action="append",
        dest="settings",
        default=[],
        metavar="KEY=VALUE",
        help="any other account key (e.g. deliver_maildir=/srv/mail/anna, max_message_size=50MB); repeatable",
    )
    ad.set_defaults(handler=_add)
    st = actions.add_parser("set", help="change keys of an account added with `accounts add`")
    st.add_argument("name")
    st.add_argument(
        "settings",
        nargs="+",
        metavar="KEY=VALUE",
        help='e.g. retention=keep enabled=false \'mailboxes=["INBOX", "Altpost"]\' retention_days=30',
    )
    st.set_defaults(handler=_set)
    rm = actions.add_parser("remove", help="stop fetching an account (its archive is kept)")
    rm.add_argument("name")
    rm.add_argument(
        "--purge", action="store_true", help="also delete its archive, only if no message would be lost"
    )
    rm.set_defaults(handler=_remove)
    add_authorize_parser(actions)


# -- list ---------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    import json

    rows = account_rows(load_args_config(args))
    if args.json:
        print(json.dumps({"accounts": [r.to_json() for r in rows]}, indent=2, ensure_ascii=False))
    else:
        print(render_accounts(rows))
    return 0


# -- add ----------------------------------------------------------------------------------------------


def _account_table(args: argparse.Namespace) -> dict[str, Any]:
    """The drop-in's ``[accounts.NAME]`` table from the flags (password source added by the caller)."""
    from maild.config.dropin import parse_setting
    from maild.config.loader import DEFAULT_PORTS

    if args.protocol == "pop3" and (args.mailboxes or args.all_mailboxes or args.exclude):
        raise ConfigError("--mailbox, --all-mailboxes and --exclude are for IMAP accounts")
    if args.all_mailboxes and args.mailboxes:
        raise ConfigError("give either --mailbox or --all-mailboxes, not both")
    if args.exclude and not args.all_mailboxes:
        raise ConfigError("--exclude goes with --all-mailboxes")
    if args.protocol == "imap" and args.retention == "delete":
        raise ConfigError(
            '--retention delete is for POP3 accounts; IMAP supports keep or "delete-after"'
            " (with --retention-days)"
        )
    table: dict[str, Any] = {"organisation": args.organisation, "employee": args.employee}
    if args.provider:
        table["provider"] = args.provider
    table["protocol"] = args.protocol
    if args.host is not None:
        table["host"] = args.host
    tls = args.tls or ("implicit" if not args.provider else None)
    if tls is not None:
        table["tls"] = tls
    if args.port is not None or (tls is not None and not args.provider):
        table["port"] = (
            args.port if args.port is not None else DEFAULT_PORTS[(args.protocol, tls or "implicit")]
        )
    if args.ca_file is not None:
        table["ca_file"] = str(args.ca_file.absolute())
    table["username"] = args.username or args.name
    if args.protocol == "imap":
        if args.all_mailboxes:
            table["mailboxes"] = "all"
            if args.exclude:
                table["exclude"] = list(dict.fromkeys(args.exclude))
        else:
            table["mailboxes"] = list(dict.fromkeys(args.mailboxes or ["INBOX"]))
    table["retention"] = args.retention or "keep"
    if args.retention_days is not None:
        table["retention_days"] = args.retention_days
    if args.poll_interval:
        table["poll_interval"] = args.poll_interval
    table.update(parse_setting(text) for text in args.settings)
    return table


def _read_password(name: str) -> str:
    """Ask on the terminal (twice), or read standard input's first line when it is not a terminal."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ; nothing was written")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("empty password; nothing was written")
    return password


async def _recorded_protocol(config: Config, name: str) -> str | None:
    records, _counts = await archive_facts(config)
    record = records.get(name)
    return record.protocol if record else None


def _complete(args: argparse.Namespace) -> None:
    """Fill what a preset gives and ask for what is still missing (issue 13: ``--provider``)."""
    args.name, address = account_name(args.name, args.account_name)
    if address is not None and args.username is None:
        args.username = address
    if args.provider is None:
        for flag in ("protocol", "host"):
            if getattr(args, flag) is None:
                raise ConfigError(f"--{flag} is required (or give --provider)")
    else:
        preset = PROVIDERS[args.provider]
        args.protocol = args.protocol or ("imap" if preset.imap is not None else "pop3")
    if args.organisation is None:
        args.organisation = ask("organisation", "organisation (e.g. the firm)")
    if args.employee is None:
        args.employee = ask("employee", "employee (whose mailbox)")


def _add(args: argparse.Namespace) -> int:
    import shlex

    from maild.config.dropin import remove_durably, write_dropin, write_secret
    from maild.config.loader import ACCOUNT_NAME_RE, load_config

    config = load_args_config(args)
    _complete(args)
    name = args.name
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ConfigError(f"account name {name!r} must match [a-z0-9][a-z0-9._-]* (at most 64 characters)")
    if name in config.accounts:
        raise ConfigError(f"account {name} exists already (in {config.accounts[name].source})")
    recorded = run_async(_recorded_protocol(config, name))
    if recorded is not None and recorded != args.protocol:
        raise ConfigError(
            f"the archive knows account {name} as {recorded}; an account's protocol is fixed: choose"
            " another name (see 'Moving a mailbox from POP3 to IMAP')"
        )
    table = _account_table(args)
    secret: Path | None = None
    preset = PROVIDERS[args.provider] if args.provider else None
    if preset is not None and preset.auth == "oauth2":
        table["oauth2"] = oauth2_table(preset, args.client_id, args.tenant, args.client_secret_file)
    elif args.password_command:
        try:
            argv = shlex.split(args.password_command)
        except ValueError as exc:
            raise ConfigError(f"--password-command: {exc}") from None
        if not argv:
            raise ConfigError("--password-command is empty")
        table["password_command"] = argv
    else:
        secret = write_secret(config.path, name, _read_password(name))
        table["password_file"] = str(secret)
    try:
        path = write_dropin(config.path, name, table)
    except BaseException:
        if secret is not None:
            remove_durably(secret)
        raise
    try:
        load_config(config.path)
    except ConfigError as exc:
        remove_durably(path)
        if secret is not None:
            remove_durably(secret)
        raise ConfigError(f"not added, the configuration would be invalid: {exc}") from None
    where = f"; password in {secret}" if secret else ""
    print(f"added account {name} ({path}{where})")
    if preset is not None:
        delegated = preset.auth == "oauth2" and args.client_secret_file is None
        print(provider_steps(preset, name, delegated=delegated))
    outcome = reload_daemon(config)
    print(outcome)
    if outcome.startswith("daemon reloaded") and f"added: {name}" not in outcome and name not in outcome:
        print(
            f"maild: warning: the running daemon did not pick up {name}: can its user read {path}"
            f"{' and ' + str(secret) if secret else ''}? (see `maild status`, and the daemon's log)",
            file=sys.stderr,
        )
        return 1
    return 0


# -- set ----------------------------------------------------------------------------------------------


#: The keys of which an account has exactly one (without OAuth2).
_PASSWORD_KEYS = frozenset({"password", "password_file", "password_command", "password_credential"})


def _check_by_hand(name: str, source: Path, updates: dict[str, Any]) -> None:
    """Validate ``updates`` on the account's table as read from ``source`` (which maild does not
    write), so that ``accounts set`` never tells the admin to write an invalid key or value there.

    Raises:
        ConfigError: one line, ``not changed, the setting is invalid: FILE: accounts.NAME.KEY: ...``
            (the table's first error with the updates applied, as the loader would report it).
    """
    import tomllib

    from maild.config.account_table import parse_account

    if "protocol" in updates:
        raise ConfigError(f"accounts.{name}.protocol: fixed for an account's life; add a new account instead")
    try:
        table = tomllib.loads(source.read_text("utf-8")).get("accounts", {}).get(name)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return  # just loaded by the caller: a file changed meanwhile is the loader's to report
    if not isinstance(table, dict):
        return
    if _PASSWORD_KEYS & updates.keys():  # a new password source replaces the one written there
        table = {k: v for k, v in table.items() if k not in _PASSWORD_KEYS}
    try:
        parse_account(name, {**table, **updates}, f"accounts.{name}", source)
    except ConfigError as exc:
        raise ConfigError(f"not changed, the setting is invalid: {source}: {exc}") from None


def _edit_by_hand(name: str, source: Path, dropin: Path, updates: dict[str, Any]) -> str:
    """What ``accounts set`` says for an account of a file it does not write: the TOML lines to put
    there (no password value), and the other way, moving the table into its drop-in."""
    import tomli_w

    lines = "; ".join(
        f"{key} = ********" if "password" in key else tomli_w.dumps({key: value}).strip()
        for key, value in updates.items()
    )
    return (
        f"account {name} is defined in {source}, which maild never rewrites (your layout and comments"
        f" stay): put `{lines}` in its [accounts.{name}] table there and run `maild reload`; or move"
        f" that table into {dropin}, where `maild accounts set` can change it"
    )


def _set(args: argparse.Namespace) -> int:
    """``maild accounts set NAME KEY=VALUE...``: validated like the loader, written to the drop-in."""
    from maild.config.dropin import dropin_path, parse_setting, restore_dropin, update_dropin
    from maild.config.loader import load_config

    config = load_args_config(args)
    name = args.name
    account = config.accounts.get(name)
    if account is None:
        raise ConfigError(f"{config.path}: no account named {name!r}")
    path = dropin_path(config.path, name)
    updates = dict(parse_setting(text) for text in args.settings)
    if account.source != path:
        source = account.source or config.path
        _check_by_hand(name, source, updates)
        raise ConfigError(_edit_by_hand(name, source, path, updates))
    if "protocol" in updates:
        raise ConfigError(f"accounts.{name}.protocol: fixed for an account's life; add a new account instead")
    old = update_dropin(path, name, updates)
    try:
        load_config(config.path)
    except ConfigError as exc:
        restore_dropin(path, old)
        raise ConfigError(f"not changed, the configuration would be invalid: {exc}") from None
    shown = ", ".join(f"{k} = {v!r}" for k, v in updates.items() if "password" not in k)
    print(f"account {name}: {shown} ({path})")
    print(reload_daemon(config))
    return 0


# -- remove -------------------------------------------------------------------------------------------


def _remove(args: argparse.Namespace) -> int:
    from maild.config.dropin import dropin_path, remove_durably, secret_path
    from maild.config.loader import load_config

    config = load_args_config(args)
    name = args.name
    account = config.accounts.get(name)
    own = dropin_path(config.path, name)
    if account is not None and account.source != own:
        raise ConfigError(
            f"account {name} is defined in {account.source}, which maild never rewrites: to stop"
            f" fetching it and keep its archive, set enabled = false in [accounts.{name}] there and run"
            f" `maild reload`; to remove it, delete that table yourself (then `maild accounts remove"
            f" {name} --purge` may delete its archive)"
        )
    records, counts = run_async(archive_facts(config))
    if account is None and name not in records:
        raise ConfigError(f"no account named {name!r} (neither configured nor in the archive)")
    if args.purge and name in records:
        _refuse_lossy_purge(config, name)
    if account is not None:
        remove_durably(own)
        if account.password.file is not None and account.password.file == secret_path(config.path, name):
            remove_durably(account.password.file)
        print(f"removed account {name} ({own}); it is no longer fetched")
        print(reload_daemon(load_config(config.path)))
    elif not args.purge:
        print(f"account {name} is not configured; its archive keeps {counts.get(name, 0)} messages")
        return 0
    if args.purge and name in records:
        deleted = run_async(_purge(config, name))
        print(f"purged the archive of {name}: {count(deleted)} messages held by no other account deleted")
    else:
        print(f"its archive keeps {counts.get(name, 0)} messages (`--purge` deletes it when nothing is lost)")
    return 0


def _refuse_lossy_purge(config: Config, name: str) -> None:
    """Raise MigrationError when purging ``name`` would lose a message."""
    from maild.archive.move_queries import MigrationStore
    from maild.log import configure_logging
    from maild.move.retire import check_purge  # start-up time: only `--purge` needs it

    configure_logging("warning")

    async def run() -> Any:
        store = await MigrationStore.open(config.daemon.database)
        try:
            return await check_purge(config, store, name)
        finally:
            await store.close()

    check = run_async(run())
    if check.lost:
        detail = f" (could not check {', '.join(check.unchecked)})" if check.unchecked else ""
        raise MigrationError(
            f"--purge refused: {count(len(check.lost))} of the {count(check.exclusive)} messages only {name}"
            f" links to are on no other account's server{detail}; they would be lost. Nothing was changed."
            f" Migrate them first (`maild migrate {name} --to ACCOUNT`)"
        )


async def _purge(config: Config, name: str) -> int:
    from maild.archive.move_queries import MigrationStore

    store = await MigrationStore.open(config.daemon.database)
    try:
        return await store.purge_account(name)
    finally:
        await store.close()
