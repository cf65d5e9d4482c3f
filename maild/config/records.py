"""The configuration's records: frozen dataclasses for the ``[daemon]`` table, one account, the whole.

:mod:`maild.config.loader` reads the files and builds them (re-exporting them: most callers import
them from there); :mod:`maild.config.account_table` validates an ``[accounts.NAME]`` table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from maild.config.alerts import AlertsConfig
from maild.config.auth import AuthConfig
from maild.config.passwords import PasswordSource
from maild.model import AccessTokenSource, CompressMode, Protocol, Retention, ServerSettings, TLSMode
from maild.protocols.progress import MIN_RATE_OCTETS_PER_S
from maild.secret import Secret

#: Longest time between IDLE commands: RFC 2177 section 3 lets a server log out a client idle
#: for 30 minutes, so the client re-issues IDLE at least every 29.
IDLE_RESTART_MAX_S = 29 * 60.0
#: Most fetch cycles ``max_concurrent_fetches`` may allow at once: 256. Each cycle holds a connection
#: and a few file descriptors; more than systemd's default soft limit of 1,024 descriptors could open
#: is a typo (10**11 was accepted until session 15's QA: it only sized a semaphore).
MAX_CONCURRENT_FETCHES = 256
#: Most threads ``pop3_threads`` may ask for: 256 (the pool grows lazily, one thread per blocked POP3
#: session; beyond the fetch cycles that may run at once they would never be used).
MAX_POP3_THREADS = 256
#: Most sessions ``max_connections_per_host`` may allow to one server host: 256.
MAX_CONNECTIONS_PER_HOST = 256
#: Largest ``max_message_size``: 1 GiB, in octets. A larger message could not be stored anyway (the
#: spool of large messages holds at most 1 GiB, ``SPOOL_MAX_OCTETS`` in :mod:`maild.spool`), and the
#: IMAP literal cap follows this key (never above ``MAX_LITERAL_CEILING_OCTETS``).
MAX_MESSAGE_SIZE_OCTETS = 2**30


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
