"""Configuration: TOML files to frozen dataclasses.

The main file (default ``/etc/maild/config.toml``; ``-c`` or ``$MAILD_CONFIG`` override it) holds a
``[daemon]`` table and ``[accounts.NAME]`` tables. Drop-in files ``accounts.d/*.toml`` next to the main
file hold further ``[accounts.NAME]`` tables (written by ``maild accounts add``), so the admin's main
file is never rewritten. Unknown keys, wrong types and bad values are :class:`ConfigError` naming the
file and the dotted key.

This module reads the files, the ``[daemon]`` table and puts the whole together; the records are in
:mod:`maild.config.records` and an account table is validated in :mod:`maild.config.account_table`
(both re-exported here: most callers import the records from this module).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from maild.config.account_table import ACCOUNT_NAME_RE, DEFAULT_PORTS, RETENTION_BY_PROTOCOL, parse_account
from maild.config.alerts import AlertsConfig, parse_alerts
from maild.config.auth import OAUTH2_DIR
from maild.config.passwords import PasswordSource, file_kind
from maild.config.records import (
    IDLE_RESTART_MAX_S,
    MAX_CONCURRENT_FETCHES,
    MAX_CONNECTIONS_PER_HOST,
    MAX_POP3_THREADS,
    AccountConfig,
    Config,
    DaemonConfig,
)
from maild.config.values import Table, choice, parse_duration, positive_int, shown_path, toml_key
from maild.errors import ConfigError, ConfigErrors
from maild.model import Retention

__all__ = [
    "ACCOUNT_NAME_RE",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_PORTS",
    "IDLE_RESTART_MAX_S",
    "MAX_SOCKET_PATH_OCTETS",
    "RETENTION_BY_PROTOCOL",
    "AccountConfig",
    "Config",
    "DaemonConfig",
    "PasswordSource",  # re-exported: the type of AccountConfig.password, built by many tests
    "Retention",  # re-exported from maild.model
    "config_path",
    "dropin_dir",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/maild/config.toml")

#: Largest configuration file (the main file or a drop-in) maild reads, in octets: 4 MiB, some ten
#: thousand accounts; anything larger is a wrong path (``-c /dev/zero``), refused before it fills memory.
MAX_CONFIG_OCTETS = 4 * 1024 * 1024
#: Longest Unix socket path Linux accepts (sun_path is 108 octets with the terminating NUL).
MAX_SOCKET_PATH_OCTETS = 107


def config_path(cli_value: str | None) -> Path:
    """Return the config path: the ``-c`` value, else ``$MAILD_CONFIG``, else ``/etc/maild/config.toml``."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("MAILD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def _parse_daemon(data: Mapping[str, Any], where: str, base: Path) -> DaemonConfig:
    t = Table(data, where)
    defaults = DaemonConfig()
    state_dir = t.get("state_dir", str, str(defaults.state_dir), form="a path string")
    sock = t.get("control_socket", str, str(defaults.control_socket), form="a path string")
    if len(os.fsencode(str(base / sock))) > MAX_SOCKET_PATH_OCTETS:
        raise ConfigError(
            f"{t.key('control_socket')}: {shown_path(base / sock)} is longer than the"
            f" {MAX_SOCKET_PATH_OCTETS} octets a Unix socket path may have"
        )
    conc = positive_int(t, "max_concurrent_fetches", defaults.max_concurrent_fetches, MAX_CONCURRENT_FETCHES)
    threads = positive_int(t, "pop3_threads", defaults.pop3_threads, MAX_POP3_THREADS)
    level = choice(t, "log_level", ("debug", "info", "warning", "error"), defaults.log_level)
    log_format = choice(t, "log_format", ("auto", "json", "logfmt", "console"), defaults.log_format)
    shutdown = parse_duration(t.get("shutdown_timeout", (str, int), "10s"), t.key("shutdown_timeout"))
    per_host = positive_int(
        t, "max_connections_per_host", defaults.max_connections_per_host, MAX_CONNECTIONS_PER_HOST
    )
    group = t.get("control_socket_group", (str, int), None, form="a group name or id")
    textfile = t.get("metrics_textfile", str, None, form="a path string")
    listen = t.get("metrics_listen", str, None, form='"HOST:PORT", e.g. "127.0.0.1:9817"')
    t.reject_unknown()
    assert per_host is not None
    assert conc is not None
    assert threads is not None
    return DaemonConfig(
        state_dir=(base / state_dir),
        control_socket=(base / sock),
        max_concurrent_fetches=conc,
        pop3_threads=threads,
        log_level=level,
        log_format=log_format,
        shutdown_timeout_s=shutdown,
        max_connections_per_host=per_host,
        control_socket_group=None if group is None else socket_group(group, t.key("control_socket_group")),
        metrics_textfile=(base / textfile) if textfile is not None else None,
        metrics_listen=listen_address(listen, t.key("metrics_listen")) if listen is not None else None,
    )


#: Largest group id: 2**32 - 2 (Linux; 2**32 - 1 is chown's "leave unchanged", as is -1).
MAX_GID = 2**32 - 2


def socket_group(group: str | int, key: str) -> str:
    """``control_socket_group`` as the control socket's group: a group name of this system, or a
    decimal id 0 to :data:`MAX_GID`.

    Returns:
        The name or the id as text (what :class:`DaemonConfig` holds).

    Raises:
        ConfigError: an id out of range (-1 meant "leave the group as it is" to chown), or a name no
            group of this system has (``maild run`` then failed to start with exit 1, which systemd
            restarts for ever, while check-config said OK: QA of session 15).
    """
    import grp  # only when the key is set

    text = str(group).strip()
    if text.isdigit() or (isinstance(group, int) and not isinstance(group, bool)):
        if not text.isdigit() or int(text) > MAX_GID:
            raise ConfigError(f"{key}: expected a group name or an id 0-{MAX_GID}, got {group!r}")
        return text
    if not text:
        raise ConfigError(f"{key}: expected a group name or an id 0-{MAX_GID}, got {group!r}")
    try:
        grp.getgrnam(text)
    except KeyError:
        raise ConfigError(f"{key}: no group named {text!r} on this system (see `getent group`)") from None
    return text


def listen_address(text: str, key: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6) into (host, port).

    Raises:
        ConfigError: no port, a port outside 1-65535, or an empty host.
    """
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            f'{key}: expected "HOST:PORT" with a port 1-65535, e.g. "127.0.0.1:9817", got {text!r}'
        )
    return host, int(port_text)


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``, read up to :data:`MAX_CONFIG_OCTETS`.

    Raises:
        ConfigError: one line naming the file: missing, a directory or another file that is not a
            regular one (a FIFO nobody writes would block every command for ever: QA of session 11),
            unreadable, larger than :data:`MAX_CONFIG_OCTETS`, not UTF-8 or not TOML.
    """
    try:
        mode = path.stat().st_mode  # follows a symbolic link; never blocks, unlike opening a FIFO
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise ConfigError(
                f"{shown_path(path)}: not a regular file ({file_kind(mode)}); a configuration is a TOML file"
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_OCTETS + 1)
        if len(data) > MAX_CONFIG_OCTETS:
            raise ConfigError(
                f"{shown_path(path)}: larger than {MAX_CONFIG_OCTETS} octets: not a maild configuration file"
            )
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{shown_path(path)}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown_path(path)}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{shown_path(path)}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{shown_path(path)}: not UTF-8 text (octet {exc.start}); TOML files must be UTF-8"
        ) from None
    except RecursionError:
        raise ConfigError(f"{shown_path(path)}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown_path(path)}: not valid TOML: {exc}") from None
    except ValueError as exc:  # an integer of more than 4300 digits (sys.int_info)
        raise ConfigError(f"{shown_path(path)}: not valid TOML: {_number_problem(exc)}") from None


def _number_problem(exc: ValueError) -> str:
    """One line for the ValueError that Python's integer conversion raises on huge numbers."""
    text = str(exc)
    if "digits" in text:
        return "a number has too many digits (more than 4300)"
    return text.split(";")[0]


def _with_token_dir(account: AccountConfig, daemon: DaemonConfig) -> AccountConfig:
    """``account`` with its OAuth2 refresh tokens under ``daemon.state_dir`` (issue 13)."""
    oauth = account.sign_in.oauth2
    if oauth is None:
        return account
    oauth = dataclasses.replace(oauth, token_dir=daemon.state_dir / OAUTH2_DIR)
    return dataclasses.replace(account, sign_in=dataclasses.replace(account.sign_in, oauth2=oauth))


def _dropin_files(ddir: Path) -> tuple[list[Path], list[str]]:
    """The drop-in files in ``ddir`` (``*.toml``, sorted), and one problem per entry that is not one.

    A dangling symbolic link, a loop, a directory, a FIFO or a device named ``*.toml`` is an error, not
    skipped: skipping it silently dropped the accounts it was meant to hold (a reload then stopped
    fetching them) while check-config said OK (QA of session 11).
    """
    files: list[Path] = []
    problems: list[str] = []
    for entry in sorted(ddir.glob("*.toml")):
        try:
            mode = entry.stat().st_mode  # follows symbolic links
        except FileNotFoundError:
            problems.append(
                f"{shown_path(entry)}: a symbolic link to nothing; remove it or point it at a drop-in file"
            )
            continue
        except OSError as exc:
            problems.append(f"{shown_path(entry)}: cannot be read: {exc.strerror or exc}")
            continue
        if stat.S_ISREG(mode):
            files.append(entry)
        else:
            problems.append(
                f"{shown_path(entry)}: not a regular file ({file_kind(mode)}); a drop-in is a TOML file"
            )
    return files, problems


def dropin_dir(path: Path) -> Path:
    """Return the drop-in directory for the main config file ``path``: ``accounts.d`` beside it."""
    return path.parent / "accounts.d"


_T = TypeVar("_T")


def _main_table(
    data: Mapping[str, Any], path: Path, key: str, parse: Callable[[Mapping[str, Any], str, Path], _T]
) -> _T:
    """``parse`` the main file's table ``key`` (empty when absent); errors start with ``path``."""
    raw = data.get(key, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown_path(path)}: {key}: expected a table")
    try:
        return parse(raw, key, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{shown_path(path)}: {exc}") from None


def _refuse_unknown_top_level(doc: Mapping[str, Any], file: Path, allowed: set[str], hint: str) -> list[str]:
    """One problem per top-level key of ``file`` not in ``allowed`` (sorted), each with ``hint``."""
    return [
        f"{shown_path(file)}: {toml_key(key)}: unknown top-level key ({hint})"
        for key in sorted(set(doc) - allowed)
    ]


def load_config(path: Path) -> Config:
    """Load and validate the main file and its drop-ins.

    Every independent part is checked even after an error in another: unknown top-level keys,
    ``[alerts]``, ``[daemon]``, each drop-in file and each account (within one table, its first
    error: later keys of a table may depend on earlier ones).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the main file cannot be read or is not TOML (one problem), or
            :class:`~maild.errors.ConfigErrors` (a subclass): one or more problems, each a line
            starting with the file and naming the dotted key.
    """
    data = _read_toml(path)
    warnings: list[str] = []
    problems = _refuse_unknown_top_level(
        data, path, {"daemon", "accounts", "alerts"}, "expected [daemon], [alerts] and [accounts.NAME]"
    )
    alerts: AlertsConfig | None = None
    daemon = DaemonConfig()
    try:
        alerts = _main_table(data, path, "alerts", parse_alerts)
    except ConfigError as exc:
        problems += exc.problems
    try:
        daemon = _main_table(data, path, "daemon", _parse_daemon)
    except ConfigError as exc:
        problems += exc.problems
    files = [path]
    ddir = dropin_dir(path)
    if ddir.is_dir():
        dropins, unusable = _dropin_files(ddir)
        files += dropins
        problems += unusable
    accounts: dict[str, AccountConfig] = {}
    for file in files:
        try:
            doc = data if file == path else _read_toml(file)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if file != path:
            hint = "drop-ins hold [accounts.NAME] only"
            problems += _refuse_unknown_top_level(doc, file, {"accounts"}, hint)
        accounts_raw = doc.get("accounts", {})
        if not isinstance(accounts_raw, dict):
            problems.append(f"{shown_path(file)}: accounts: expected tables [accounts.NAME]")
            continue
        for name, table in accounts_raw.items():
            if name in accounts:
                problems.append(
                    f"{shown_path(file)}: accounts.{toml_key(name)}: defined twice"
                    f" (also in {shown_path(accounts[name].source)})"
                )
                continue
            try:
                account = parse_account(name, table, f"accounts.{toml_key(name)}", file)
            except ConfigError as exc:
                problems.append(f"{shown_path(file)}: {exc}")
                continue
            accounts[name] = _with_token_dir(account, daemon)
            if account.password.inline is not None:
                mode = file.stat().st_mode
                if mode & (stat.S_IROTH | stat.S_IRGRP):
                    warnings.append(
                        f"{shown_path(file)}: accounts.{toml_key(name)}.password is in a file readable by"
                        " other users; use password_file (mode 0600) or password_command"
                    )
    if problems:
        raise ConfigErrors(tuple(problems))
    assert alerts is not None  # no problem, so [alerts] was parsed
    return Config(path=path, daemon=daemon, accounts=accounts, warnings=tuple(warnings), alerts=alerts)
