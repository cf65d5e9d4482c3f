"""The reply to the control command ``status``, as typed records.

Each record is a frozen dataclass with one ``to_json()`` (the JSON object the daemon sends, without
``"ok"``) and a ``from_json()`` classmethod (what the CLI reads back). Readers use the attributes,
never string keys. The shapes are documented in docs/control-socket.md. This module holds the
reply, its accounts and the archive totals, and what needs the administrator (:func:`attention`);
the parts of an account's record are in :mod:`maild.service.status_parts` and re-exported here, so
that the command line reads every record from this one module.

The other commands' replies are in :mod:`maild.service.replies`; both read JSON with
:mod:`maild.service.reply_fields`. None of them imports the daemon's parts, so the command line can
load them. Times are aware datetimes in UTC with whole seconds (the JSON text
``2026-03-02T09:00:00Z`` carries no fraction); :mod:`maild.service.snapshot` builds them that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from maild.service.reply_fields import (
    read_bool,
    read_choice,
    read_field,
    read_int,
    read_object,
    read_objects,
    read_opt_int,
    read_opt_str,
    read_required_time,
    read_str,
    read_strs,
    read_time,
)
from maild.service.status_parts import (
    CycleStatus,
    FailingMessageStatus,
    HistoryStatus,
    IMAPStatus,
    JSONObject,
    MailboxSelection,
    ProgressStatus,
    RetrievalFailureStatus,
    SignInStatus,
    UIDValidityChangeStatus,
    time_text,
)

__all__ = [
    "FAILING_STATES",
    "AccountState",
    "AccountStatus",
    "ArchiveTotals",
    "CycleStatus",
    "FailingMessageStatus",
    "FetchMode",
    "HistoryStatus",
    "IMAPStatus",
    "JSONObject",
    "MailboxSelection",
    "ProgressStatus",
    "Protocol",
    "Retention",
    "RetrievalFailureStatus",
    "SignInStatus",
    "StatusReply",
    "UIDValidityChangeStatus",
    "archive_full",
    "attention",
    "time_text",
]

#: What an account is doing. ``waiting`` means waiting for its next cycle (the scheduler's
#: ``idle``; renamed so it cannot be mistaken for the IMAP IDLE :data:`FetchMode`).
AccountState = Literal[
    "waiting", "fetching", "backoff", "error", "auth_failed", "paused", "disabled", "stopped"
]
#: How an account learns of new mail: ``idle`` (an IMAP IDLE connection, RFC 2177), ``polling``, or
#: ``reconnecting`` (the IDLE connection is down; polling meanwhile).
FetchMode = Literal["idle", "polling", "reconnecting"]
Protocol = Literal["pop3", "imap"]
Retention = Literal["keep", "delete", "delete-after"]


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One account in the status reply.

    Attributes:
        name, organisation, employee, protocol, host, enabled: from the configuration.
        state: what the account is doing (:data:`AccountState`).
        messages: archived messages linked to the account.
        last_success, next_run: end of the last successful cycle, next cycle due (UTC), or None.
        last_error: the last failure in words (never a secret), None after a success.
        consecutive_failures: failed cycles since the last success.
        mode: how the account learns of new mail (:data:`FetchMode`).
        on_server: messages left on the server by the last cycle, or None before one.
        imap: the IMAP part; None for POP3.
        retention, retention_days: the configured retention.
        identity: POP3 only: ``uidl`` or ``content-digest`` as the last cycle used, or None.
        warnings: sentences the last cycle left for the administrator.
        pending_deletion: archived messages still on the server that retention will delete.
        oldest_kept_since: the earliest first-fetch time among archived messages still on the server.
        next_deletion_due: with ``delete-after``, when the oldest of them is due (UTC), else None.
        last_cycle: the last successful cycle, or None before one.
        failing_messages: messages that failed to arrive in a row, set aside or not (from the
            archive, so they survive a restart).
        history: what the archive remembers across reloads and restarts, or None (older daemons).
        progress: while ``fetching``: how far the cycle is; else None.
        deletion_suspended: why the last cycle deleted nothing although retention
            would (an unfinished move into an IMAP account holding the same messages), or None.
        sign_in: how it signs in and the health of its OAuth2 tokens (see :class:`SignInStatus`).
    """

    name: str
    organisation: str
    employee: str
    protocol: Protocol
    host: str
    enabled: bool
    state: AccountState
    messages: int
    last_success: datetime | None
    next_run: datetime | None
    last_error: str | None
    consecutive_failures: int
    mode: FetchMode
    on_server: int | None
    retention: Retention
    retention_days: int | None
    pending_deletion: int
    oldest_kept_since: datetime | None
    imap: IMAPStatus | None = None
    identity: str | None = None
    warnings: tuple[str, ...] = ()
    next_deletion_due: datetime | None = None
    last_cycle: CycleStatus | None = None
    failing_messages: tuple[FailingMessageStatus, ...] = ()
    history: HistoryStatus | None = None
    progress: ProgressStatus | None = None
    deletion_suspended: str | None = None
    sign_in: SignInStatus = field(default_factory=SignInStatus)

    def to_json(self) -> JSONObject:
        """The account's JSON object, keys in the documented order."""
        out: JSONObject = {
            "name": self.name,
            "organisation": self.organisation,
            "employee": self.employee,
            "protocol": self.protocol,
            "host": self.host,
            "enabled": self.enabled,
            "state": self.state,
            "messages": self.messages,
            "last_success": time_text(self.last_success),
            "next_run": time_text(self.next_run),
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "mode": self.mode,
            "on_server": self.on_server,
        }
        if self.imap is not None:
            out.update(self.imap.to_json())
        out["retention"] = self.retention
        out["retention_days"] = self.retention_days
        if self.protocol == "pop3":
            out["identity"] = self.identity
        out["warnings"] = list(self.warnings)
        out["pending_deletion"] = self.pending_deletion
        out["oldest_kept_since"] = time_text(self.oldest_kept_since)
        if self.next_deletion_due is not None:
            out["next_deletion_due"] = time_text(self.next_deletion_due)
        if self.last_cycle is not None:
            out["last_cycle"] = self.last_cycle.to_json()
        out["failing_messages"] = [f.to_json() for f in self.failing_messages]
        if self.history is not None:
            out["history"] = self.history.to_json()
        if self.progress is not None:
            out["progress"] = self.progress.to_json()
        if self.deletion_suspended is not None:
            out["deletion_suspended"] = self.deletion_suspended
        out["sign_in"] = self.sign_in.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        protocol: Protocol = read_choice(data, "protocol", Protocol)
        last_cycle = data.get("last_cycle")
        return cls(
            name=read_str(data, "name"),
            organisation=read_str(data, "organisation"),
            employee=read_str(data, "employee"),
            protocol=protocol,
            host=read_str(data, "host"),
            enabled=read_bool(data, "enabled"),
            state=read_choice(data, "state", AccountState),
            messages=read_int(data, "messages"),
            last_success=read_time(data, "last_success"),
            next_run=read_time(data, "next_run"),
            last_error=read_opt_str(data, "last_error"),
            consecutive_failures=read_int(data, "consecutive_failures"),
            mode=read_choice(data, "mode", FetchMode),
            on_server=read_opt_int(data, "on_server"),
            retention=read_choice(data, "retention", Retention),
            retention_days=read_opt_int(data, "retention_days"),
            pending_deletion=read_int(data, "pending_deletion"),
            oldest_kept_since=read_time(data, "oldest_kept_since"),
            imap=IMAPStatus.from_json(data) if protocol == "imap" else None,
            identity=read_opt_str(data, "identity"),
            warnings=read_strs(data, "warnings"),
            next_deletion_due=read_time(data, "next_deletion_due"),
            last_cycle=(
                CycleStatus.from_json(read_object(last_cycle, "last_cycle"))
                if last_cycle is not None
                else None
            ),
            failing_messages=tuple(
                FailingMessageStatus.from_json(f) for f in read_objects(data, "failing_messages")
            ),
            history=(
                HistoryStatus.from_json(read_object(data["history"], "history"))
                if data.get("history") is not None
                else None
            ),
            progress=(
                ProgressStatus.from_json(read_object(data["progress"], "progress"))
                if data.get("progress") is not None
                else None
            ),
            deletion_suspended=read_opt_str(data, "deletion_suspended"),
            sign_in=(
                SignInStatus.from_json(read_object(data["sign_in"], "sign_in"))
                if "sign_in" in data
                else SignInStatus()
            ),
        )


@dataclass(frozen=True, slots=True)
class ArchiveTotals:
    """The whole archive: distinct messages and their total size in octets.

    Attributes:
        messages, octets: the figures when the archive was last read.
        read_at: when that was (UTC), or None when it could not be read yet (the archive busy, for
            example under another process's lock): the figures, and the accounts' archived counts,
            are then 0 and unknown.
        replaced: None, or why deletions stopped on every server: the archive file was deleted or
            replaced under the running daemon (see :meth:`maild.archive.store.Store.verify_identity`).
        directory: the archive's directory (``state_dir``), where large messages are spooled: the
            place to free space in when messages fail on this machine's side (``"local"``
            failures); None from older daemons.
        wal_octets: octets of pages in the archive's write-ahead log now, or None when unknown
            (older daemons, no ``-shm`` file yet).
        wal_held_since: since when a reader (a long read transaction: a CRM's query, ``maild
            backup``) keeps the write-ahead log from being copied into the archive and started
            again (UTC, whole seconds; :class:`maild.archive.checkpointer.WalSnapshot`), or None.
            Storing goes on meanwhile; the log's file grows until the reader ends.
    """

    messages: int
    octets: int
    read_at: datetime | None = None
    replaced: str | None = None
    directory: str | None = None
    wal_octets: int | None = None
    wal_held_since: datetime | None = None

    def to_json(self) -> JSONObject:
        """The JSON object of ``archive``."""
        return {
            "messages": self.messages,
            "octets": self.octets,
            "read_at": time_text(self.read_at) if self.read_at is not None else None,
            "replaced": self.replaced,
            "directory": self.directory,
            "wal_octets": self.wal_octets,
            "wal_held_since": time_text(self.wal_held_since),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchiveTotals:
        """Read :meth:`to_json`'s form (the ``wal_*`` fields may be missing: older daemons). Raises
        ControlError ``bad-reply`` when it does not fit."""
        read_at = read_time(data, "read_at")
        replaced = read_opt_str(data, "replaced")
        directory = read_opt_str(data, "directory")
        return cls(
            read_int(data, "messages"),
            read_int(data, "octets"),
            read_at,
            replaced,
            directory,
            read_opt_int(data, "wal_octets"),
            read_time(data, "wal_held_since"),
        )


@dataclass(frozen=True, slots=True)
class StatusReply:
    """The reply to ``status``: the daemon, its accounts (in configuration order) and the archive.

    Attributes:
        version: maild's version.
        started_at: when the daemon started (UTC).
        accounts: one record per account (only the one asked for, when the request named one).
        archive: archive totals.
    """

    version: str
    started_at: datetime
    accounts: tuple[AccountStatus, ...]
    archive: ArchiveTotals

    def to_json(self) -> JSONObject:
        """The reply's JSON object (without ``"ok"``)."""
        return {
            "version": self.version,
            "started_at": time_text(self.started_at),
            "accounts": [a.to_json() for a in self.accounts],
            "archive": self.archive.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(
            version=read_str(data, "version"),
            started_at=read_required_time(data, "started_at"),
            accounts=tuple(AccountStatus.from_json(a) for a in read_objects(data, "accounts")),
            archive=ArchiveTotals.from_json(read_object(read_field(data, "archive"), "archive")),
        )


# -- what needs the administrator ----------------------------------------------------------------------

#: States that are trouble by themselves (a failed last cycle, a lockout).
FAILING_STATES: frozenset[str] = frozenset({"backoff", "error", "auth_failed"})


def local_failures(account: AccountStatus) -> int:
    """How many messages ``account``'s last successful cycle could not retrieve on this machine's side
    (``"local"``: the spool's disk or directory).

    Read from the last cycle, not from the failure records: a record stays until its message is
    archived, also when the message has left the server meanwhile, while a local failure is never
    set aside, so a message still on the server fails again in every cycle until there is room.
    """
    cycle = account.last_cycle
    return sum(1 for f in cycle.failures if f.kind == "local") if cycle is not None else 0


def archive_full_stop(account: AccountStatus) -> bool:
    """Whether ``account``'s last cycle ran into the archive's full disk without a message blocked by
    it (a warning beginning :data:`maild.model.ARCHIVE_FULL_WARNING`: nothing deleted on the server
    from that write on, or deletions done and not recorded yet); it needs attention until a cycle
    finds room."""
    from maild.model import ARCHIVE_FULL_WARNING

    return any(w.startswith(ARCHIVE_FULL_WARNING) for w in account.warnings)


def archive_full(account: AccountStatus) -> bool:
    """Whether ``account``'s last cycle had messages arrive that the archive could not store, its
    disk full (local failures whose reason begins :data:`maild.model.ARCHIVE_FULL_PREFIX`), rather
    than messages the spool had no room for."""
    from maild.model import ARCHIVE_FULL_PREFIX

    cycle = account.last_cycle
    failures = cycle.failures if cycle is not None else ()
    return any(f.kind == "local" and f.reason.startswith(ARCHIVE_FULL_PREFIX) for f in failures)


def attention(account: AccountStatus) -> str | None:
    """Why ``account`` needs the administrator, in a few words, or None when it is healthy.

    An account needs attention when its last cycle failed (``backoff``, ``error``), it is locked out
    after refused logins (``auth_failed``), it is paused while its last cycle had failed (paused for
    a problem, not a holiday), its last cycle could not retrieve messages on this machine's side
    (``"local"``, :func:`local_failures`: the spool's disk short of room, its directory not
    writable, the archive's disk full; they stay on the server and are retried at every cycle, but
    mail is blocked until the admin frees space), or ran into the archive's full disk with no message
    blocked (:func:`archive_full_stop`: nothing deleted on the server until there is room), or its
    last cycle set messages aside (too large to fetch, left on the server, or failed to arrive too often in a
    row). ``maild status`` exits 1 and ``maild check`` warns for such an account.
    """
    if account.state in FAILING_STATES:
        return account.state
    if account.state == "paused" and (account.last_error or account.consecutive_failures):
        return "paused after a failure"
    local = local_failures(account)
    if local:
        return f"{local} message{'s' if local > 1 else ''} not retrieved: no room on this machine"
    if archive_full_stop(account):
        return "no room on this machine: the archive's disk is full, the last cycle stopped short"
    set_aside = sum(1 for f in account.failing_messages if f.set_aside)
    if set_aside:
        return f"{set_aside} message{'s' if set_aside > 1 else ''} set aside after repeated failures"
    if account.last_cycle is not None and account.last_cycle.too_large:
        n = len(account.last_cycle.too_large)
        return f"{n} message{'s' if n > 1 else ''} set aside (too large)"
    return None
