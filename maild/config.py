"""Configuration: TOML files to frozen dataclasses.

The main file (default ``/etc/maild/config.toml``; ``-c`` or ``$MAILD_CONFIG`` override it) holds a
``[daemon]`` table and ``[accounts.NAME]`` tables. Drop-in files ``accounts.d/*.toml`` next to the main
file hold further ``[accounts.NAME]`` tables (written by ``maild accounts add``), so the admin's main
file is never rewritten. Unknown keys, wrong types and bad values are :class:`ConfigError` naming the
file and the dotted key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
import string
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from maild.errors import ConfigError
from maild.model import Protocol, Secret, ServerSettings, TLSMode

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
PASSWORD_COMMAND_TIMEOUT_S = 30.0
_DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
_DURATION_FULL_RE = re.compile(r"\d+|(?:\d+\s*[smhd]\s*)+")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Retention = Literal["keep", "delete", "delete-after"]
#: Longest time between IDLE commands: RFC 2177 section 3 lets a server log out a client idle
#: for 30 minutes, so the client re-issues IDLE at least every 29.
IDLE_RESTART_MAX_S = 29 * 60.0
#: The longest password line read from a file or credential, in octets.
MAX_SECRET_OCTETS = 4096
#: Upper bound of any duration in the configuration: one year, in seconds.
MAX_DURATION_S = 365 * 86400.0
#: Keys whose values are never repeated in error messages.
SECRET_KEYS = frozenset({"password"})
#: Longest Unix socket path Linux accepts (sun_path is 108 octets with the terminating NUL).
MAX_SOCKET_PATH_OCTETS = 107


def _read_secret_file(path: Path, account: str, key: str) -> Secret:
    """Return the first line of ``path`` as a Secret; ConfigError (without the content) otherwise."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(MAX_SECRET_OCTETS + 1)
        if len(first) > MAX_SECRET_OCTETS:
            raise ConfigError(
                f"account {account}: {key} {path}: first line longer than {MAX_SECRET_OCTETS} octets"
            )
        text = first.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"account {account}: cannot read {key} {path}: {reason}") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise ConfigError(f"account {account}: {key} {path} is empty")
    return Secret(value)


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """Where an account's password comes from; exactly one field is set.

    Attributes:
        inline: the password written in the config file (discouraged).
        file: a file whose first line is the password.
        command: an argv list run without a shell; its first stdout line is the password.
        credential: a systemd credential name, read from ``$CREDENTIALS_DIRECTORY/NAME`` (set by
            ``LoadCredential=`` / ``LoadCredentialEncrypted=``, see systemd.exec(5)).
    """

    inline: Secret | None = None
    file: Path | None = None
    command: tuple[str, ...] | None = None
    credential: str | None = None

    def resolve(self, account: str) -> Secret:
        """Read the password now (files and commands are read on every fetch cycle, so rotation works).

        Raises:
            ConfigError: the file cannot be read, is empty, or the command fails or times out. The
                message never contains the password or the command's output.
        """
        if self.inline is not None:
            return self.inline
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    f"account {account}: password_credential {self.credential!r} needs $CREDENTIALS_DIRECTORY"
                    " (set by systemd's LoadCredential=)"
                )
            return _read_secret_file(Path(directory) / self.credential, account, "password_credential")
        if self.file is not None:
            return _read_secret_file(self.file, account, "password_file")
        assert self.command is not None
        try:
            done = subprocess.run(  # noqa: S603 - argv list from the admin's config, no shell
                list(self.command),
                capture_output=True,
                timeout=PASSWORD_COMMAND_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(
                f"account {account}: password_command {self.command[0]!r} failed: {type(exc).__name__}"
            ) from None
        value = done.stdout.decode("utf-8", "replace").splitlines()[0] if done.stdout else ""
        if done.returncode != 0 or not value:
            raise ConfigError(
                f"account {account}: password_command {self.command[0]!r} exited {done.returncode}"
                " without printing a password"
            )
        return Secret(value)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The ``[daemon]`` table.

    Attributes:
        state_dir: directory holding the SQLite archive ``maild.sqlite3``.
        control_socket: path of the Unix control socket.
        max_concurrent_fetches: fetch cycles allowed to run at once across all accounts.
        pop3_threads: size of maild's own thread pool for blocking POP3 I/O.
        log_level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.
        shutdown_timeout_s: seconds a stop waits for running cycles before cancelling them.
        max_connections_per_host: concurrent sessions to one server host, all accounts together.
        control_socket_group: group (name or id) allowed to use the control socket, or None.
        metrics_textfile: file rewritten atomically after each cycle with Prometheus metrics for
            node_exporter's textfile collector, or None.
    """

    state_dir: Path = Path("/var/lib/maild")
    control_socket: Path = Path("/run/maild/control.sock")
    max_concurrent_fetches: int = 8
    pop3_threads: int = 8
    log_level: str = "info"
    shutdown_timeout_s: float = 10.0
    max_connections_per_host: int = 8
    control_socket_group: str | None = None
    metrics_textfile: Path | None = None

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
        retention: POP3: ``"keep"``, ``"delete"`` or ``"delete-after"``; IMAP: ``"keep"`` or
            ``"delete-after"``.
        retention_days: days after first fetch for ``"delete-after"``.
        max_message_size: messages larger than this many octets are skipped and left on the server.
        deliver_maildir: the account's local Maildir (template expanded, see :func:`expand_maildir`), or
            None when messages are only archived.
        source: the file that defined the account.
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
    retention: Retention = "keep"
    retention_days: int | None = None
    max_message_size: int | None = None
    deliver_maildir: Path | None = None
    source: Path | None = None

    def server_settings(self) -> ServerSettings:
        """Resolve the password and return what an adapter needs to log in.

        Raises:
            ConfigError: the password cannot be obtained (see :meth:`PasswordSource.resolve`).
        """
        return ServerSettings(
            account=self.name,
            host=self.host,
            port=self.port,
            tls=self.tls,
            ca_file=self.ca_file,
            username=self.username,
            password=self.password.resolve(self.name),
            timeout_s=self.timeout_s,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: the main file plus its drop-ins.

    Attributes:
        path: the main file.
        daemon: the ``[daemon]`` table.
        accounts: account name to its configuration, in file order.
        warnings: non-fatal findings (e.g. a plain password in a file other users can read).
    """

    path: Path
    daemon: DaemonConfig
    accounts: Mapping[str, AccountConfig]
    warnings: tuple[str, ...] = ()


def config_path(cli_value: str | None) -> Path:
    """Return the config path: the ``-c`` value, else ``$MAILD_CONFIG``, else ``/etc/maild/config.toml``."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("MAILD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def parse_duration(value: object, where: str) -> float:
    """Parse ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or an integer number of seconds.

    Returns:
        The duration in seconds, > 0.

    Raises:
        ConfigError: the value has another form or is not positive; the message names ``where``.
    """
    if isinstance(value, bool):
        raise ConfigError(f'{where}: expected a duration such as "90s", "5m", "1h", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_FULL_RE.fullmatch(value.strip().lower()):
        text = value.strip().lower()
        seconds = (
            float(text)
            if text.isdigit()
            else sum(int(n) * _UNITS_S[unit] for n, unit in _DURATION_RE.findall(text))
        )
    else:
        raise ConfigError(f'{where}: expected a duration such as "90s", "5m", "1h", got {value!r}')
    if seconds <= 0:
        raise ConfigError(f"{where}: duration must be positive, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ConfigError(f"{where}: duration must be at most 365 days, got {value!r}")
    return seconds


class _Table:
    """Typed access to one TOML table that remembers which keys were read, to reject the rest."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = None, *, form: str = "") -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        bad_bool = isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
        if bad_bool or not isinstance(value, kinds):
            expected = form or (
                kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
            )
            shown = (
                "a value of another type (not shown: it is a secret)" if name in SECRET_KEYS else repr(value)
            )
            raise ConfigError(f"{self.key(name)}: expected {expected}, got {shown}")
        return value

    def require(self, name: str, kinds: type | tuple[type, ...], *, form: str = "") -> Any:
        if name not in self.data:
            raise ConfigError(f"{self.key(name)}: required key is missing")
        return self.get(name, kinds, form=form)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key"
                + (f" (also: {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
            )


def _positive_int(table: _Table, name: str, default: int | None) -> int | None:
    value = table.get(name, int, default, form="a positive integer")
    if value is not None and value <= 0:
        raise ConfigError(f"{table.key(name)}: expected a positive integer, got {value!r}")
    return cast("int | None", value)


def _text(table: _Table, name: str) -> str:
    """A required, non-empty string without control characters."""
    value = cast(str, table.require(name, str))
    if not value.strip():
        raise ConfigError(f"{table.key(name)}: must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{table.key(name)}: must not contain control characters (CR, LF, TAB, ...)")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _choice(table: _Table, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = table.get(name, str, default, form=" or ".join(f'"{c}"' for c in choices))
    if value not in choices:
        raise ConfigError(f"{table.key(name)}: expected one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


def _parse_daemon(data: Mapping[str, Any], where: str, base: Path) -> DaemonConfig:
    t = _Table(data, where)
    defaults = DaemonConfig()
    state_dir = t.get("state_dir", str, str(defaults.state_dir), form="a path string")
    sock = t.get("control_socket", str, str(defaults.control_socket), form="a path string")
    if len(os.fsencode(str(base / sock))) > MAX_SOCKET_PATH_OCTETS:
        raise ConfigError(
            f"{t.key('control_socket')}: {base / sock} is longer than the {MAX_SOCKET_PATH_OCTETS} octets"
            " a Unix socket path may have"
        )
    conc = _positive_int(t, "max_concurrent_fetches", defaults.max_concurrent_fetches)
    threads = _positive_int(t, "pop3_threads", defaults.pop3_threads)
    level = _choice(t, "log_level", ("debug", "info", "warning", "error"), defaults.log_level)
    shutdown = parse_duration(t.get("shutdown_timeout", (str, int), "10s"), t.key("shutdown_timeout"))
    per_host = _positive_int(t, "max_connections_per_host", defaults.max_connections_per_host)
    group = t.get("control_socket_group", (str, int), None, form="a group name or id")
    textfile = t.get("metrics_textfile", str, None, form="a path string")
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
        shutdown_timeout_s=shutdown,
        max_connections_per_host=per_host,
        control_socket_group=str(group) if group is not None else None,
        metrics_textfile=(base / textfile) if textfile is not None else None,
    )


MAILDIR_FIELDS = ("organisation", "employee", "account")


def maildir_component(value: str) -> str:
    """Make ``value`` safe as one path component: "/" and NUL become "_", a leading "." becomes "_".

    So a value can never add a directory level or climb one (no "/", never "." or "..").
    """
    safe = value.replace("/", "_").replace("\0", "_")
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return safe or "_"


def expand_maildir(template: str, where: str, **values: str) -> str:
    """Expand ``{organisation}``, ``{employee}`` and ``{account}`` in a ``deliver_maildir`` template.

    Each value is made safe with :func:`maildir_component` first; the template's own text is the
    admin's and kept as written.

    Raises:
        ConfigError: the template is empty or has another placeholder, a format spec or a conversion.
    """
    if not template.strip():
        raise ConfigError(f"{where}: expected a directory path, got an empty string")
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template {template!r}: {exc}") from None
    for literal, field_name, spec, conversion in parts:
        out.append(literal)
        if field_name is None:
            continue
        if field_name not in MAILDIR_FIELDS or spec or conversion:
            raise ConfigError(
                f"{where}: unknown placeholder {{{field_name}}} in {template!r};"
                " use {organisation}, {employee}, {account}"
            )
        out.append(maildir_component(values[field_name]))
    return "".join(out)


def _mailbox_name(table: _Table, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{table.key(key)}: expected mailbox names (no CR, LF or NUL), got {value!r}")
    return "INBOX" if value.upper() == "INBOX" else value


def _parse_imap(t: _Table) -> dict[str, Any]:
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
    return {
        "mailboxes": mailboxes,
        "all_mailboxes": all_mailboxes,
        "exclude": exclude,
        "idle": idle,
        "idle_mailbox": idle_mailbox,
        "idle_restart_s": restart,
    }


def _parse_account(name: str, data: Mapping[str, Any], where: str, path: Path) -> AccountConfig:
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: account name must match [a-z0-9][a-z0-9._-]* (at most 64 characters)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table")
    t = _Table(data, where)
    base = path.parent
    protocol = cast(
        Protocol,
        _choice(t, "protocol", ("pop3", "imap"), None) if "protocol" in data else t.require("protocol", str),
    )
    organisation = _text(t, "organisation")
    employee = _text(t, "employee")
    host = _text(t, "host")
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{t.key('host')}: expected a host name or IP address, got {host!r}")
    tls = cast(TLSMode, _choice(t, "tls", ("implicit", "starttls", "none"), "implicit"))
    port = t.get("port", int, DEFAULT_PORTS[(protocol, tls)], form="an integer 1-65535")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{t.key('port')}: expected an integer 1-65535, got {port!r}")
    ca_file = t.get("ca_file", str, None, form="a path string")
    if ca_file is not None:
        ca_file = str(base / ca_file)
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no PEM certificate in it"
            raise ConfigError(f"{t.key('ca_file')}: cannot use {ca_file}: {reason}") from None
    username = _text(t, "username")
    allow_plaintext = t.get("allow_plaintext", bool, False)
    if tls == "none" and not allow_plaintext and not _is_loopback(host):
        raise ConfigError(
            f'{t.key("tls")}: "none" sends the password in clear text to {host}; '
            'use "implicit" or "starttls", or set allow_plaintext = true'
        )
    sources = [
        k for k in ("password", "password_file", "password_command", "password_credential") if k in data
    ]
    if len(sources) != 1:
        raise ConfigError(
            f"{where}: set exactly one of password, password_file, password_command, password_credential"
            + (f" (found {', '.join(sources)})" if sources else " (none found)")
        )
    inline = t.get("password", str, None, form="a string")
    pw_file = t.get("password_file", str, None, form="a path string")
    pw_cmd = t.get("password_command", list, None, form="a list of strings (argv, no shell)")
    pw_cred = t.get("password_credential", str, None, form="a credential name")
    if pw_cred is not None and not re.fullmatch(r"[A-Za-z0-9_.@-]+", pw_cred):
        raise ConfigError(f'{t.key("password_credential")}: expected a credential name such as "anna"')
    if pw_cmd is not None and (not pw_cmd or not all(isinstance(a, str) for a in pw_cmd)):
        raise ConfigError(
            f"{t.key('password_command')}: expected a non-empty list of strings (argv, no shell)"
        )
    if pw_file is not None:
        try:
            _read_secret_file(base / pw_file, name, "password_file")
        except ConfigError as exc:
            raise ConfigError(f"{t.key('password_file')}: {str(exc).split(': ', 1)[1]}") from None
    password = PasswordSource(
        inline=Secret(inline) if inline is not None else None,
        file=(base / pw_file) if pw_file is not None else None,
        command=tuple(pw_cmd) if pw_cmd is not None else None,
        credential=pw_cred,
    )
    poll = parse_duration(t.get("poll_interval", (str, int), "5m"), t.key("poll_interval"))
    timeout = parse_duration(t.get("timeout", (str, int), "60s"), t.key("timeout"))
    enabled = t.get("enabled", bool, True)
    max_size = _positive_int(t, "max_message_size", None)
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
    imap: dict[str, Any] = {}
    retention: Retention = "keep"
    retention_days: int | None = None
    if protocol == "imap":
        imap = _parse_imap(t)
        retention = cast(Retention, _choice(t, "retention", ("keep", "delete-after"), "keep"))
        retention_days = _positive_int(t, "retention_days", None)
        if retention == "delete-after" and retention_days is None:
            raise ConfigError(f'{t.key("retention_days")}: required when retention = "delete-after"')
        if retention != "delete-after" and retention_days is not None:
            raise ConfigError(f'{t.key("retention_days")}: only valid with retention = "delete-after"')
    else:
        retention = cast(Retention, _choice(t, "retention", ("keep", "delete", "delete-after"), "keep"))
        retention_days = _positive_int(t, "retention_days", None)
        if retention == "delete-after" and retention_days is None:
            raise ConfigError(f'{t.key("retention_days")}: required when retention = "delete-after"')
        if retention != "delete-after" and retention_days is not None:
            raise ConfigError(f'{t.key("retention_days")}: only valid with retention = "delete-after"')
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
        deliver_maildir=deliver_maildir,
        source=path,
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


def dropin_dir(path: Path) -> Path:
    """Return the drop-in directory for the main config file ``path``: ``accounts.d`` beside it."""
    return path.parent / "accounts.d"


def load_config(path: Path) -> Config:
    """Load and validate the main file and its drop-ins.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: anything is wrong; the message starts with the file and names the dotted key.
    """
    data = _read_toml(path)
    warnings: list[str] = []
    unknown = sorted(set(data) - {"daemon", "accounts"})
    if unknown:
        raise ConfigError(
            f"{path}: {unknown[0]}: unknown top-level key (expected [daemon] and [accounts.NAME])"
        )
    daemon_raw = data.get("daemon", {})
    if not isinstance(daemon_raw, dict):
        raise ConfigError(f"{path}: daemon: expected a table")
    try:
        daemon = _parse_daemon(daemon_raw, "daemon", path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    files = [path]
    ddir = dropin_dir(path)
    if ddir.is_dir():
        files += sorted(p for p in ddir.glob("*.toml") if p.is_file())
    accounts: dict[str, AccountConfig] = {}
    for file in files:
        doc = data if file == path else _read_toml(file)
        if file != path:
            extra = sorted(set(doc) - {"accounts"})
            if extra:
                raise ConfigError(
                    f"{file}: {extra[0]}: unknown top-level key (drop-ins hold [accounts.NAME] only)"
                )
        accounts_raw = doc.get("accounts", {})
        if not isinstance(accounts_raw, dict):
            raise ConfigError(f"{file}: accounts: expected tables [accounts.NAME]")
        for name, table in accounts_raw.items():
            if name in accounts:
                raise ConfigError(f"{file}: accounts.{name}: defined twice (also in {accounts[name].source})")
            try:
                accounts[name] = _parse_account(name, table, f"accounts.{name}", file)
            except ConfigError as exc:
                raise ConfigError(f"{file}: {exc}") from None
            if accounts[name].password.inline is not None:
                mode = file.stat().st_mode
                if mode & (stat.S_IROTH | stat.S_IRGRP):
                    warnings.append(
                        f"{file}: accounts.{name}.password is in a file readable by other users; "
                        "use password_file (mode 0600) or password_command"
                    )
    return Config(path=path, daemon=daemon, accounts=accounts, warnings=tuple(warnings))
