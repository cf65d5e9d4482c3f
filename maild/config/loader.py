"""Configuration: TOML files to frozen dataclasses.

The main file (default ``/etc/maild/config.toml``; ``-c`` or ``$MAILD_CONFIG`` override it) holds a
``[daemon]`` table and ``[accounts.NAME]`` tables. Drop-in files ``accounts.d/*.toml`` next to the main
file hold further ``[accounts.NAME]`` tables (written by ``maild accounts add``), so the admin's main
file is never rewritten. Unknown keys, wrong types and bad values are :class:`ConfigError` naming the
file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from maild.config.alerts import AlertsConfig, parse_alerts
from maild.config.auth import OAUTH2_DIR, AuthConfig, parse_auth, secret_source_keys
from maild.config.passwords import PasswordSource
from maild.config.providers import apply_provider
from maild.config.values import (
    Table,
    choice,
    expand_maildir,
    is_loopback,
    parse_duration,
    positive_int,
    required_text,
)
from maild.errors import ConfigError, ConfigErrors
from maild.model import AccessTokenSource, CompressMode, Protocol, Retention, Secret, ServerSettings, TLSMode
from maild.protocols.progress import MIN_RATE_OCTETS_PER_S

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
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEFAULT_PORTS: dict[tuple[str, str], int] = {
    ("pop3", "implicit"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "none"): 110,
    ("imap", "implicit"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
}

#: Longest time between IDLE commands: RFC 2177 section 3 lets a server log out a client idle
#: for 30 minutes, so the client re-issues IDLE at least every 29.
IDLE_RESTART_MAX_S = 29 * 60.0
#: Longest Unix socket path Linux accepts (sun_path is 108 octets with the terminating NUL).
MAX_SOCKET_PATH_OCTETS = 107


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The ``[daemon]`` table.

    Attributes:
        state_dir: directory holding the SQLite archive ``maild.sqlite3``.
        control_socket: path of the Unix control socket.
        max_concurrent_fetches: fetch cycles allowed to run at once across all accounts.
        pop3_threads: size of maild's own thread pool for blocking POP3 I/O.
        log_level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.
        log_format: ``"auto"`` (logfmt with syslog priorities in the journal, console on a terminal,
            JSON lines otherwise), ``"json"``, ``"logfmt"`` or ``"console"`` (see :mod:`maild.log`).
        shutdown_timeout_s: seconds a stop waits for running cycles before cancelling them.
        max_connections_per_host: concurrent sessions to one server host, all accounts together, IMAP
            sessions kept between cycles and IDLE connections included (IDLE may use all but one;
            see :class:`~maild.service.budget.Budgets`).
        control_socket_group: group (name or id) allowed to use the control socket, or None.
        metrics_textfile: file rewritten atomically after each cycle with Prometheus metrics for
            node_exporter's textfile collector, or None.
        metrics_listen: (host, port) where ``GET /metrics`` answers over HTTP, or None.
    """

    state_dir: Path = Path("/var/lib/maild")
    control_socket: Path = Path("/run/maild/control.sock")
    max_concurrent_fetches: int = 8
    pop3_threads: int = 8
    log_level: str = "info"
    log_format: str = "auto"
    shutdown_timeout_s: float = 10.0
    max_connections_per_host: int = 8
    control_socket_group: str | None = None
    metrics_textfile: Path | None = None
    metrics_listen: tuple[str, int] | None = None

    @property
    def database(self) -> Path:
        """Path of the archive database file."""
        return self.state_dir / "maild.sqlite3"


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One ``[accounts.NAME]`` table: one login at one provider; the protocol is fixed for its life.

    Attributes:
        name: stable identifier, ``[a-z0-9._-]``.
        organisation, employee: who the mailbox belongs to.
        protocol: ``"pop3"`` or ``"imap"``.
        host, port, tls, ca_file, username: how to reach and log in.
        password: where the password comes from.
        poll_interval_s: seconds between fetch cycles.
        timeout_s: seconds allowed for each network operation.
        enabled: False keeps the account and its archive but fetches nothing.
        allow_plaintext: permit ``tls = "none"`` to a non-loopback host.
        mailboxes: IMAP mailboxes to fetch (readable Unicode names); empty for POP3 and with
            ``all_mailboxes``.
        all_mailboxes: IMAP ``mailboxes = "all"``: every mailbox the server LISTs, except
            ``\\Noselect``, special-use ``\\Trash``/``\\Junk`` and ``exclude``.
        exclude: with ``all_mailboxes``, mailbox names left out (with the mailboxes beneath them).
        idle: IMAP: wait for new mail with IDLE (RFC 2177) when the server offers it, else poll.
        idle_mailbox: the mailbox IDLE watches (readable name); the others are polled.
        idle_restart_s: seconds after which IDLE is ended and issued again (at most 29 minutes).
        compress: IMAP ``COMPRESS=DEFLATE`` (RFC 4978): ``"auto"`` (when offered and a transfer was
            measured slow, see :func:`maild.policy.want_compression`), ``"always"`` (when offered)
            or ``"never"``.
        retention: POP3: ``"keep"``, ``"delete"`` or ``"delete-after"``; IMAP: ``"keep"`` or
            ``"delete-after"``.
        retention_days: days after first fetch for ``"delete-after"``.
        max_message_size: messages larger than this many octets are skipped and left on the server.
        min_transfer_rate: the progress floor of message transfers, octets per second: a server
            sending slower over a 30 s window is cut off ("server too slow") and retried later.
        deliver_maildir: the account's local Maildir (template expanded, see
            :func:`~maild.config.values.expand_maildir`), or None when messages are only archived.
        source: the file that defined the account.
        sign_in: ``auth``, ``sasl_mechanism`` and the ``oauth2`` table (see :mod:`maild.config.auth`).
    """

    name: str
    organisation: str
    employee: str
    protocol: Protocol
    host: str
    port: int
    tls: TLSMode
    ca_file: str | None
    username: str
    password: PasswordSource = field(repr=False)
    poll_interval_s: float = 300.0
    timeout_s: float = 60.0
    enabled: bool = True
    allow_plaintext: bool = False
    mailboxes: tuple[str, ...] = ()
    all_mailboxes: bool = False
    exclude: tuple[str, ...] = ()
    idle: bool = True
    idle_mailbox: str = "INBOX"
    idle_restart_s: float = IDLE_RESTART_MAX_S
    compress: CompressMode = "auto"
    retention: Retention = "keep"
    retention_days: int | None = None
    max_message_size: int | None = None
    min_transfer_rate: int = MIN_RATE_OCTETS_PER_S
    deliver_maildir: Path | None = None
    source: Path | None = None
    sign_in: AuthConfig = field(default_factory=AuthConfig)

    async def resolved(self) -> AccountConfig:
        """This account with its password read now (without blocking the event loop) and held inline,
        so that :meth:`server_settings` then costs nothing.

        Raises:
            ConfigError: the password cannot be obtained (see :meth:`PasswordSource.resolve_async`).
        """
        if self.password.inline is not None or self.sign_in.oauth2 is not None:
            return self  # OAuth2 tokens are fetched in the adapter's worker thread (maild.auth)
        secret = await self.password.resolve_async(self.name)
        return dataclasses.replace(self, password=PasswordSource(inline=secret))

    def server_settings(self) -> ServerSettings:
        """Resolve the password and return what an adapter needs to log in.

        Blocks while a ``password_command`` runs: in the daemon, call :meth:`resolved` first.

        Raises:
            ConfigError: the password cannot be obtained (see :meth:`PasswordSource.resolve`).
        """
        auth: Literal["password", "oauth2"] = "password"
        tokens: AccessTokenSource | None = None
        if self.sign_in.oauth2 is None:
            password = self.password.resolve(self.name)
        else:  # issue 13: tokens are fetched in the worker, not here
            from maild.auth.tokens import source_for

            password, auth, tokens = Secret(""), "oauth2", source_for(self.sign_in.oauth2)
        return ServerSettings(
            account=self.name,
            host=self.host,
            port=self.port,
            tls=self.tls,
            ca_file=self.ca_file,
            username=self.username,
            password=password,
            timeout_s=self.timeout_s,
            min_rate_octets_per_s=self.min_transfer_rate,
            auth=auth,
            sasl_mechanism=self.sign_in.sasl_mechanism,
            tokens=tokens,
            compress=self.compress,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: the main file plus its drop-ins.

    Attributes:
        path: the main file.
        daemon: the ``[daemon]`` table.
        accounts: account name to its configuration, in file order.
        warnings: non-fatal findings (e.g. a plain password in a file other users can read).
        alerts: the ``[alerts]`` table (no channel when absent).
    """

    path: Path
    daemon: DaemonConfig
    accounts: Mapping[str, AccountConfig]
    warnings: tuple[str, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


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
            f"{t.key('control_socket')}: {base / sock} is longer than the {MAX_SOCKET_PATH_OCTETS} octets"
            " a Unix socket path may have"
        )
    conc = positive_int(t, "max_concurrent_fetches", defaults.max_concurrent_fetches)
    threads = positive_int(t, "pop3_threads", defaults.pop3_threads)
    level = choice(t, "log_level", ("debug", "info", "warning", "error"), defaults.log_level)
    log_format = choice(t, "log_format", ("auto", "json", "logfmt", "console"), defaults.log_format)
    shutdown = parse_duration(t.get("shutdown_timeout", (str, int), "10s"), t.key("shutdown_timeout"))
    per_host = positive_int(t, "max_connections_per_host", defaults.max_connections_per_host)
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
        control_socket_group=str(group) if group is not None else None,
        metrics_textfile=(base / textfile) if textfile is not None else None,
        metrics_listen=listen_address(listen, t.key("metrics_listen")) if listen is not None else None,
    )


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


def _mailbox_name(table: Table, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{table.key(key)}: expected mailbox names (no CR, LF or NUL), got {value!r}")
    return "INBOX" if value.upper() == "INBOX" else value


def _parse_imap(t: Table) -> dict[str, Any]:
    """The IMAP-only keys of an account table, as :class:`AccountConfig` field values."""
    form = 'a list of mailbox names or "all"'
    raw_boxes = t.get("mailboxes", (list, str), ["INBOX"], form=form)
    all_mailboxes = raw_boxes == "all"
    mailboxes: tuple[str, ...] = ()
    if not all_mailboxes:
        if isinstance(raw_boxes, str) or not raw_boxes:
            raise ConfigError(f"{t.key('mailboxes')}: expected {form}, got {raw_boxes!r}")
        mailboxes = tuple(dict.fromkeys(_mailbox_name(t, "mailboxes", b) for b in raw_boxes))
    raw_exclude = t.get("exclude", list, None, form="a list of mailbox names")
    if raw_exclude is not None and not all_mailboxes:
        raise ConfigError(f'{t.key("exclude")}: only valid with mailboxes = "all"')
    exclude = tuple(dict.fromkeys(_mailbox_name(t, "exclude", b) for b in raw_exclude or ()))
    idle = t.get("idle", bool, True)
    idle_mailbox = t.get("idle_mailbox", str, None, form="a mailbox name")
    if idle_mailbox is None:
        idle_mailbox = "INBOX" if all_mailboxes or "INBOX" in mailboxes else mailboxes[0]
    else:
        idle_mailbox = _mailbox_name(t, "idle_mailbox", idle_mailbox)
        if not all_mailboxes and idle_mailbox not in mailboxes:
            raise ConfigError(
                f"{t.key('idle_mailbox')}: {idle_mailbox!r} is not one of the mailboxes fetched"
                f" ({', '.join(mailboxes)})"
            )
    restart = parse_duration(t.get("idle_restart", (str, int), "29m"), t.key("idle_restart"))
    if restart > IDLE_RESTART_MAX_S:
        raise ConfigError(
            f"{t.key('idle_restart')}: at most 29m (a server may end a session idle for 30 minutes)"
        )
    compress = cast(CompressMode, choice(t, "compress", ("auto", "always", "never"), "auto"))
    return {
        "compress": compress,
        "mailboxes": mailboxes,
        "all_mailboxes": all_mailboxes,
        "exclude": exclude,
        "idle": idle,
        "idle_mailbox": idle_mailbox,
        "idle_restart_s": restart,
    }


RETENTION_BY_PROTOCOL: dict[Protocol, tuple[Retention, ...]] = {
    "pop3": ("keep", "delete", "delete-after"),
    "imap": ("keep", "delete-after"),
}
"""The retention modes each protocol offers. IMAP has no ``"delete"``: see the README, "Deleting on
the server"."""


def _parse_retention(t: Table, protocol: Protocol) -> tuple[Retention, int | None]:
    """Read ``retention`` and ``retention_days``: the only place either is validated.

    Returns:
        The mode and the days (a positive integer exactly when the mode is ``"delete-after"``,
        else None); code after the configuration relies on that pairing.

    Raises:
        ConfigError: a mode the protocol does not offer, ``retention_days`` missing with
            ``"delete-after"``, given with another mode, or not a positive integer.
    """
    retention = cast(Retention, choice(t, "retention", RETENTION_BY_PROTOCOL[protocol], "keep"))
    retention_days = positive_int(t, "retention_days", None)
    if retention == "delete-after" and retention_days is None:
        raise ConfigError(f'{t.key("retention_days")}: required when retention = "delete-after"')
    if retention != "delete-after" and retention_days is not None:
        raise ConfigError(f'{t.key("retention_days")}: only valid with retention = "delete-after"')
    return retention, retention_days


def _parse_account(name: str, data: Mapping[str, Any], where: str, path: Path) -> AccountConfig:
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: account name must match [a-z0-9][a-z0-9._-]* (at most 64 characters)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table")
    data = apply_provider(data, where)  # issue 13: provider presets fill missing keys
    t = Table(data, where)
    base = path.parent
    protocol = cast(
        Protocol,
        choice(t, "protocol", ("pop3", "imap"), None) if "protocol" in data else t.require("protocol", str),
    )
    organisation = required_text(t, "organisation")
    employee = required_text(t, "employee")
    host = required_text(t, "host")
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{t.key('host')}: expected a host name or IP address, got {host!r}")
    tls = cast(TLSMode, choice(t, "tls", ("implicit", "starttls", "none"), "implicit"))
    port = t.get("port", int, DEFAULT_PORTS[(protocol, tls)], form="an integer 1-65535")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{t.key('port')}: expected an integer 1-65535, got {port!r}")
    ca_file = t.get("ca_file", str, None, form="a path string")
    if ca_file is not None:
        ca_file = str(base / ca_file)
        import ssl  # here, not at the top: start-up time of every command that reads the config

        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no PEM certificate in it"
            raise ConfigError(f"{t.key('ca_file')}: cannot use {ca_file}: {reason}") from None
    username = required_text(t, "username")
    allow_plaintext = t.get("allow_plaintext", bool, False)
    if tls == "none" and not allow_plaintext and not is_loopback(host):
        raise ConfigError(
            f'{t.key("tls")}: "none" sends the password in clear text to {host}; '
            'use "implicit" or "starttls", or set allow_plaintext = true'
        )
    sign_in = parse_auth(t, name, base, protocol)  # issue 13: auth, sasl_mechanism, [oauth2]
    sources = [
        k for k in ("password", "password_file", "password_command", "password_credential") if k in data
    ]
    if sign_in.auth == "oauth2" and sources:
        raise ConfigError(f'{where}: {sources[0]} is not used with auth = "oauth2"; remove it')
    if len(sources) != 1 and sign_in.auth == "password":
        raise ConfigError(
            f"{where}: set exactly one of password, password_file, password_command, password_credential"
            + (f" (found {', '.join(sources)})" if sources else " (none found)")
        )
    inline = t.get("password", str, None, form="a string")
    pw_file, pw_cmd, pw_cred = secret_source_keys(t, name, base, "password", "anna")
    password = PasswordSource(
        inline=Secret(inline) if inline is not None else None,
        file=(base / pw_file) if pw_file is not None else None,
        command=pw_cmd,
        credential=pw_cred,
    )
    poll = parse_duration(t.get("poll_interval", (str, int), "5m"), t.key("poll_interval"))
    timeout = parse_duration(t.get("timeout", (str, int), "60s"), t.key("timeout"))
    enabled = t.get("enabled", bool, True)
    max_size = positive_int(t, "max_message_size", None)
    min_rate = positive_int(t, "min_transfer_rate", MIN_RATE_OCTETS_PER_S)
    maildir_template = t.get("deliver_maildir", str, None, form="a directory path or template")
    deliver_maildir = (
        base
        / expand_maildir(
            maildir_template,
            t.key("deliver_maildir"),
            organisation=organisation,
            employee=employee,
            account=name,
        )
        if maildir_template is not None
        else None
    )
    imap = _parse_imap(t) if protocol == "imap" else {}
    retention, retention_days = _parse_retention(t, protocol)
    t.reject_unknown()
    return AccountConfig(
        name=name,
        organisation=organisation,
        employee=employee,
        protocol=protocol,
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
        poll_interval_s=poll,
        timeout_s=timeout,
        enabled=enabled,
        allow_plaintext=allow_plaintext,
        **imap,
        retention=retention,
        retention_days=retention_days,
        max_message_size=max_size,
        min_transfer_rate=min_rate or MIN_RATE_OCTETS_PER_S,
        deliver_maildir=deliver_maildir,
        source=path,
        sign_in=sign_in,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (octet {exc.start}); TOML files must be UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:  # an integer of more than 4300 digits (sys.int_info)
        raise ConfigError(f"{path}: not valid TOML: {_number_problem(exc)}") from None


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
        raise ConfigError(f"{path}: {key}: expected a table")
    try:
        return parse(raw, key, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _refuse_unknown_top_level(doc: Mapping[str, Any], file: Path, allowed: set[str], hint: str) -> list[str]:
    """One problem per top-level key of ``file`` not in ``allowed`` (sorted), each with ``hint``."""
    return [f"{file}: {key}: unknown top-level key ({hint})" for key in sorted(set(doc) - allowed)]


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
        files += sorted(p for p in ddir.glob("*.toml") if p.is_file())
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
            problems.append(f"{file}: accounts: expected tables [accounts.NAME]")
            continue
        for name, table in accounts_raw.items():
            if name in accounts:
                problems.append(f"{file}: accounts.{name}: defined twice (also in {accounts[name].source})")
                continue
            try:
                account = _parse_account(name, table, f"accounts.{name}", file)
            except ConfigError as exc:
                problems.append(f"{file}: {exc}")
                continue
            accounts[name] = _with_token_dir(account, daemon)
            if account.password.inline is not None:
                mode = file.stat().st_mode
                if mode & (stat.S_IROTH | stat.S_IRGRP):
                    warnings.append(
                        f"{file}: accounts.{name}.password is in a file readable by other users; "
                        "use password_file (mode 0600) or password_command"
                    )
    if problems:
        raise ConfigErrors(tuple(problems))
    assert alerts is not None  # no problem, so [alerts] was parsed
    return Config(path=path, daemon=daemon, accounts=accounts, warnings=tuple(warnings), alerts=alerts)
