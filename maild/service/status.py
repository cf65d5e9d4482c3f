"""The reply to the control command ``status``, as typed records.

Each record is a frozen dataclass with one ``to_json()`` (the JSON object the daemon sends, without
``"ok"``) and a ``from_json()`` classmethod (what the CLI reads back). Readers use the attributes,
never string keys. The shapes are documented in docs/control-socket.md.

The other commands' replies are in :mod:`maild.service.replies`; both read JSON with
:mod:`maild.service.reply_fields`. None of them imports the daemon's parts, so the command line can
load them. Times are aware datetimes in UTC with whole seconds (the JSON text
``2026-03-02T09:00:00Z`` carries no fraction); :mod:`maild.service.snapshot` builds them that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from maild.service.reply_fields import (
    TIME_FORMAT,
    bad_reply,
    read_bool,
    read_choice,
    read_field,
    read_float,
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
MailboxSelection = Literal["list", "all"]

JSONObject = dict[str, Any]


def time_text(moment: datetime | None) -> str | None:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None for None."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment is not None else None


# -- the status reply --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UIDValidityChangeStatus:
    """One mailbox whose UIDVALIDITY changed (RFC 9051 section 2.3.1.1), and what the cycle did.

    Attributes:
        mailbox: the readable mailbox name.
        old_uidvalidity, new_uidvalidity: before and now.
        relinked: archived messages recognised under their new UIDs without a download.
        to_retrieve: messages under new UIDs left to normal retrieval.
        at: when the change was noticed (UTC), or None.
    """

    mailbox: str
    old_uidvalidity: int
    new_uidvalidity: int
    relinked: int
    to_retrieve: int
    at: datetime | None

    def to_json(self) -> JSONObject:
        """The JSON object of ``uidvalidity_changes``."""
        return {
            "mailbox": self.mailbox,
            "old_uidvalidity": self.old_uidvalidity,
            "new_uidvalidity": self.new_uidvalidity,
            "relinked": self.relinked,
            "to_retrieve": self.to_retrieve,
            "at": time_text(self.at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UIDValidityChangeStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(
            read_str(data, "mailbox"),
            read_int(data, "old_uidvalidity"),
            read_int(data, "new_uidvalidity"),
            read_int(data, "relinked"),
            read_int(data, "to_retrieve"),
            read_time(data, "at"),
        )


@dataclass(frozen=True, slots=True)
class RetrievalFailureStatus:
    """A message the server refused to hand out in the last cycle (retried in the next).

    Attributes:
        key: the message's server-side identity, as its ``repr``.
        reason: the server's reply or the cause, redacted.
    """

    key: str
    reason: str

    def to_json(self) -> JSONObject:
        """The JSON object of ``last_cycle.failures``."""
        return {"key": self.key, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrievalFailureStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(read_str(data, "key"), read_str(data, "reason"))


@dataclass(frozen=True, slots=True)
class FailingMessageStatus:
    """A message that failed to arrive in one or more cycles in a row (the archive's failure record).

    Attributes:
        key: the message's server-side identity, as its ``repr``.
        failures: failed attempts in a row.
        reason: the last failure's cause, with the server's words where there were any.
        last_failed_at: when the last attempt failed (UTC).
        set_aside: whether later cycles skip it (left on the server, never deleted; tried again
            at ``next_retry`` and on ``maild fetch-now --retry-failed``).
        next_retry: when a set-aside message is tried again (UTC); None when not set aside.
        subject: the message's Subject (RFC 2047 decoded), read by a separate header fetch; None
            while unknown or absent.
        from_: its From field, decoded; None while unknown or absent.
        date: its Date field (UTC); None while unknown, absent or unparseable.
    """

    key: str
    failures: int
    reason: str
    last_failed_at: datetime
    set_aside: bool
    next_retry: datetime | None = None
    subject: str | None = None
    from_: str | None = None
    date: datetime | None = None

    def to_json(self) -> JSONObject:
        """The JSON object of ``failing_messages``."""
        return {
            "key": self.key,
            "failures": self.failures,
            "reason": self.reason,
            "last_failed_at": time_text(self.last_failed_at),
            "set_aside": self.set_aside,
            "next_retry": time_text(self.next_retry),
            "subject": self.subject,
            "from": self.from_,
            "date": time_text(self.date),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailingMessageStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        last = read_time(data, "last_failed_at")
        if last is None:
            raise bad_reply("'last_failed_at' is missing")
        return cls(
            read_str(data, "key"),
            read_int(data, "failures"),
            read_str(data, "reason"),
            last,
            read_bool(data, "set_aside"),
            read_time(data, "next_retry"),
            read_opt_str(data, "subject"),
            read_opt_str(data, "from"),
            read_time(data, "date"),
        )


@dataclass(frozen=True, slots=True)
class CycleStatus:
    """What an account's last successful fetch cycle did (``last_cycle``).

    Attributes:
        new_links: messages newly archived for this account (linked to it), including copies the
            archive already held for another account.
        new_messages: of ``new_links``, those new to the archive (distinct content); the rest were
            "already archived". None when the daemon did not say (older versions).
        octets: size in octets of those messages.
        deleted: messages deleted on the server.
        seconds: wall-clock duration, rounded to milliseconds.
        failures: messages the server refused to hand out.
        too_large: keys (``repr``) of messages skipped for ``max_message_size``.
        mailbox_failures: IMAP only: (mailbox, reason) for each mailbox that could not be selected;
            None for POP3.
    """

    new_links: int
    octets: int
    deleted: int
    seconds: float
    failures: tuple[RetrievalFailureStatus, ...] = ()
    too_large: tuple[str, ...] = ()
    mailbox_failures: tuple[tuple[str, str], ...] | None = None
    new_messages: int | None = None

    def to_json(self) -> JSONObject:
        """The JSON object of ``last_cycle``."""
        out: JSONObject = {
            "new_links": self.new_links,
            "octets": self.octets,
            "deleted": self.deleted,
            "seconds": self.seconds,
            "failures": [f.to_json() for f in self.failures],
            "too_large": list(self.too_large),
        }
        if self.mailbox_failures is not None:
            out["mailbox_failures"] = dict(self.mailbox_failures)
        if self.new_messages is not None:
            out["new_messages"] = self.new_messages
            out["already_archived"] = self.new_links - self.new_messages
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CycleStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        failures = data.get("mailbox_failures")
        mailbox_failures = None
        if failures is not None:
            pairs = read_object(failures, "mailbox_failures").items()
            if not all(isinstance(v, str) for _k, v in pairs):
                raise bad_reply("'mailbox_failures' maps a mailbox to something other than a reason")
            mailbox_failures = tuple(pairs)
        return cls(
            new_links=read_int(data, "new_links"),
            octets=read_int(data, "octets"),
            deleted=read_int(data, "deleted"),
            seconds=read_float(data, "seconds"),
            failures=tuple(RetrievalFailureStatus.from_json(f) for f in read_objects(data, "failures")),
            too_large=read_strs(data, "too_large"),
            new_messages=read_opt_int(data, "new_messages"),
            mailbox_failures=mailbox_failures,
        )


@dataclass(frozen=True, slots=True)
class IMAPStatus:
    """The IMAP part of an account's status (its keys sit in the account's JSON object).

    Attributes:
        mailboxes: those the last cycle covered, else the configured ones.
        mailbox_selection: ``list`` (configured names) or ``all`` (every mailbox LISTed).
        exclude: with ``all``, the names left out; None with ``list``.
        idle: the configured ``idle`` setting.
        idle_mailbox: the mailbox IDLE watches.
        last_push: when the server last announced a change (UTC), or None.
        idle_error: why the IDLE connection last failed, or None.
        uidvalidity_changes: the last UIDVALIDITY changes noticed, oldest first.
    """

    mailboxes: tuple[str, ...]
    mailbox_selection: MailboxSelection
    idle: bool
    idle_mailbox: str
    last_push: datetime | None = None
    idle_error: str | None = None
    uidvalidity_changes: tuple[UIDValidityChangeStatus, ...] = ()
    exclude: tuple[str, ...] | None = None

    def to_json(self) -> JSONObject:
        """The IMAP keys of the account's JSON object."""
        out: JSONObject = {
            "mailboxes": list(self.mailboxes),
            "mailbox_selection": self.mailbox_selection,
            "idle": self.idle,
            "idle_mailbox": self.idle_mailbox,
            "last_push": time_text(self.last_push),
            "idle_error": self.idle_error,
            "uidvalidity_changes": [c.to_json() for c in self.uidvalidity_changes],
        }
        if self.exclude is not None:
            out["exclude"] = list(self.exclude)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IMAPStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(
            mailboxes=read_strs(data, "mailboxes"),
            mailbox_selection=read_choice(data, "mailbox_selection", MailboxSelection),
            idle=read_bool(data, "idle"),
            idle_mailbox=read_str(data, "idle_mailbox"),
            last_push=read_time(data, "last_push"),
            idle_error=read_opt_str(data, "idle_error"),
            uidvalidity_changes=tuple(
                UIDValidityChangeStatus.from_json(c) for c in read_objects(data, "uidvalidity_changes")
            ),
            exclude=read_strs(data, "exclude") if "exclude" in data else None,
        )


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """An account's history as the archive keeps it across reloads and restarts (``history``).

    Attributes:
        failing_since: end of the first failed cycle of the current run of failures (UTC), None
            while the account succeeds.
        last_error_at: when the last failed cycle ended (UTC), or None.
        cycles_ok, cycles_failed: cycles ever, by outcome.
        fetched_messages, fetched_octets: messages newly archived for the account ever, and octets.
    """

    failing_since: datetime | None
    last_error_at: datetime | None
    cycles_ok: int
    cycles_failed: int
    fetched_messages: int
    fetched_octets: int

    def to_json(self) -> JSONObject:
        """The JSON object of ``history``."""
        return {
            "failing_since": time_text(self.failing_since),
            "last_error_at": time_text(self.last_error_at),
            "cycles_ok": self.cycles_ok,
            "cycles_failed": self.cycles_failed,
            "fetched_messages": self.fetched_messages,
            "fetched_octets": self.fetched_octets,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(
            read_time(data, "failing_since"),
            read_time(data, "last_error_at"),
            read_int(data, "cycles_ok"),
            read_int(data, "cycles_failed"),
            read_int(data, "fetched_messages"),
            read_int(data, "fetched_octets"),
        )


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """How far a running cycle is (``progress``, only while the account is ``fetching``).

    Attributes:
        messages_done, octets_done: committed to the archive in this cycle (octets as received).
        messages_total, octets_total: what the inventory left to fetch (octets as the server
            reported them); None before the inventory is complete.
        rate_octets_per_s: committed octets per second since retrieval started, or None.
        seconds_left: estimated seconds until every planned message is committed, or None.
    """

    messages_done: int
    octets_done: int
    messages_total: int | None
    octets_total: int | None
    rate_octets_per_s: float | None
    seconds_left: float | None

    def to_json(self) -> JSONObject:
        """The JSON object of ``progress``."""
        return {
            "messages_done": self.messages_done,
            "octets_done": self.octets_done,
            "messages_total": self.messages_total,
            "octets_total": self.octets_total,
            "rate_octets_per_s": self.rate_octets_per_s,
            "seconds_left": self.seconds_left,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProgressStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        rate = data.get("rate_octets_per_s")
        left = data.get("seconds_left")
        return cls(
            read_int(data, "messages_done"),
            read_int(data, "octets_done"),
            read_opt_int(data, "messages_total"),
            read_opt_int(data, "octets_total"),
            read_float(data, "rate_octets_per_s") if rate is not None else None,
            read_float(data, "seconds_left") if left is not None else None,
        )


@dataclass(frozen=True, slots=True)
class SignInStatus:
    """How an account signs in, and for OAuth2 when its tokens end (issue 13; never a token).

    Attributes:
        auth: ``"password"`` or ``"oauth2"``.
        grant: for OAuth2, ``"client_credentials"``, ``"refresh_token"`` or ``"token_command"``.
        token_expires_at: when the access token in memory expires (UTC), or None.
        refresh_token_obtained_at: when the refresh token was obtained or last rotated, or None.
        refresh_token_expires_at: when it ends, where the lifetime is known, or None.
        warning: a sentence when it ends within 3 days, else None.
    """

    auth: str = "password"
    grant: str | None = None
    token_expires_at: datetime | None = None
    refresh_token_obtained_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    warning: str | None = None

    def to_json(self) -> JSONObject:
        """The ``sign_in`` object of the account."""
        return {
            "auth": self.auth,
            "grant": self.grant,
            "token_expires_at": time_text(self.token_expires_at),
            "refresh_token_obtained_at": time_text(self.refresh_token_obtained_at),
            "refresh_token_expires_at": time_text(self.refresh_token_expires_at),
            "warning": self.warning,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignInStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(
            auth=read_str(data, "auth"),
            grant=read_opt_str(data, "grant"),
            token_expires_at=read_time(data, "token_expires_at"),
            refresh_token_obtained_at=read_time(data, "refresh_token_obtained_at"),
            refresh_token_expires_at=read_time(data, "refresh_token_expires_at"),
            warning=read_opt_str(data, "warning"),
        )


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
        deletion_suspended: POP3 only: why the last cycle deleted nothing although retention
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
    sign_in: SignInStatus = SignInStatus()

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
    """

    messages: int
    octets: int
    read_at: datetime | None = None
    replaced: str | None = None

    def to_json(self) -> JSONObject:
        """The JSON object of ``archive``."""
        return {
            "messages": self.messages,
            "octets": self.octets,
            "read_at": time_text(self.read_at) if self.read_at is not None else None,
            "replaced": self.replaced,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchiveTotals:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        read_at = read_time(data, "read_at")
        replaced = read_opt_str(data, "replaced")
        return cls(read_int(data, "messages"), read_int(data, "octets"), read_at, replaced)


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


def attention(account: AccountStatus) -> str | None:
    """Why ``account`` needs the administrator, in a few words, or None when it is healthy.

    An account needs attention when its last cycle failed (``backoff``, ``error``), it is locked out
    after refused logins (``auth_failed``), it is paused while its last cycle had failed (paused for
    a problem, not a holiday), or its last cycle set messages aside (too large to fetch, left on the
    server, or failed to arrive too often in a row). ``maild status`` exits 1 and ``maild check``
    warns for such an account.
    """
    if account.state in FAILING_STATES:
        return account.state
    if account.state == "paused" and (account.last_error or account.consecutive_failures):
        return "paused after a failure"
    set_aside = sum(1 for f in account.failing_messages if f.set_aside)
    if set_aside:
        return f"{set_aside} message{'s' if set_aside > 1 else ''} set aside after repeated failures"
    if account.last_cycle is not None and account.last_cycle.too_large:
        n = len(account.last_cycle.too_large)
        return f"{n} message{'s' if n > 1 else ''} set aside (too large)"
    return None
