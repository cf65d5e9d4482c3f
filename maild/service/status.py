"""What the daemon answers on its control socket, as typed records.

Each reply is a frozen dataclass with one ``to_json()`` (the JSON object the daemon sends, without
``"ok"``) and a ``from_json()`` classmethod (what the CLI reads back). Readers use the attributes,
never string keys. The shapes are documented in the README ("Control socket").

This module imports only the standard library and :mod:`maild.errors`, so the command line can load
it without the daemon's parts. Times are aware datetimes in UTC with whole seconds (the JSON text
``2026-03-02T09:00:00Z`` carries no fraction); :mod:`maild.service.snapshot` builds them that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from maild.errors import ControlError

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

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# -- reading JSON: one place that checks types ------------------------------------------------------


def _bad(what: str) -> ControlError:
    return ControlError("bad-reply", f"maild sent a reply this client cannot read: {what}")


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what} is not a JSON object")
    return cast("Mapping[str, Any]", value)


def _field(data: Mapping[str, Any], key: str) -> object:
    if key not in data:
        raise _bad(f"missing {key!r}")
    return data[key]


def _str(data: Mapping[str, Any], key: str) -> str:
    value = _field(data, key)
    if not isinstance(value, str):
        raise _bad(f"{key!r} is not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{key!r} is not a string")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = _field(data, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{key!r} is not an integer")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _float(data: Mapping[str, Any], key: str) -> float:
    value = _field(data, key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(f"{key!r} is not a number")
    return float(value)


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = _field(data, key)
    if not isinstance(value, bool):
        raise _bad(f"{key!r} is not true or false")
    return value


def _strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = _field(data, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{key!r} is not a list of strings")
    return tuple(value)


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = _field(data, key)
    if not isinstance(value, list):
        raise _bad(f"{key!r} is not a list")
    return [_object(v, key) for v in value]


def _choice(data: Mapping[str, Any], key: str, choices: Any) -> Any:
    value = _str(data, key)
    if value not in get_args(choices):
        raise _bad(f"{key!r} is {value!r}, not one of {', '.join(get_args(choices))}")
    return value


def time_text(moment: datetime | None) -> str | None:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None for None."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT) if moment is not None else None


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    text = _opt_str(data, key)
    if text is None:
        return None
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"{key!r} is not a time like 2026-03-02T09:00:00Z") from None


def _required_time(data: Mapping[str, Any], key: str) -> datetime:
    moment = _time(data, key)
    if moment is None:
        raise _bad(f"missing {key!r}")
    return moment


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
            _str(data, "mailbox"),
            _int(data, "old_uidvalidity"),
            _int(data, "new_uidvalidity"),
            _int(data, "relinked"),
            _int(data, "to_retrieve"),
            _time(data, "at"),
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
        return cls(_str(data, "key"), _str(data, "reason"))


@dataclass(frozen=True, slots=True)
class CycleStatus:
    """What an account's last successful fetch cycle did (``last_cycle``).

    Attributes:
        new_links: messages newly archived for this account (linked to it), including copies the
            archive already held for another account.
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
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CycleStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        failures = data.get("mailbox_failures")
        mailbox_failures = None
        if failures is not None:
            pairs = _object(failures, "mailbox_failures").items()
            if not all(isinstance(v, str) for _k, v in pairs):
                raise _bad("'mailbox_failures' maps a mailbox to something other than a reason")
            mailbox_failures = tuple(pairs)
        return cls(
            new_links=_int(data, "new_links"),
            octets=_int(data, "octets"),
            deleted=_int(data, "deleted"),
            seconds=_float(data, "seconds"),
            failures=tuple(RetrievalFailureStatus.from_json(f) for f in _objects(data, "failures")),
            too_large=_strs(data, "too_large"),
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
            mailboxes=_strs(data, "mailboxes"),
            mailbox_selection=_choice(data, "mailbox_selection", MailboxSelection),
            idle=_bool(data, "idle"),
            idle_mailbox=_str(data, "idle_mailbox"),
            last_push=_time(data, "last_push"),
            idle_error=_opt_str(data, "idle_error"),
            uidvalidity_changes=tuple(
                UIDValidityChangeStatus.from_json(c) for c in _objects(data, "uidvalidity_changes")
            ),
            exclude=_strs(data, "exclude") if "exclude" in data else None,
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
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        protocol: Protocol = _choice(data, "protocol", Protocol)
        last_cycle = data.get("last_cycle")
        return cls(
            name=_str(data, "name"),
            organisation=_str(data, "organisation"),
            employee=_str(data, "employee"),
            protocol=protocol,
            host=_str(data, "host"),
            enabled=_bool(data, "enabled"),
            state=_choice(data, "state", AccountState),
            messages=_int(data, "messages"),
            last_success=_time(data, "last_success"),
            next_run=_time(data, "next_run"),
            last_error=_opt_str(data, "last_error"),
            consecutive_failures=_int(data, "consecutive_failures"),
            mode=_choice(data, "mode", FetchMode),
            on_server=_opt_int(data, "on_server"),
            retention=_choice(data, "retention", Retention),
            retention_days=_opt_int(data, "retention_days"),
            pending_deletion=_int(data, "pending_deletion"),
            oldest_kept_since=_time(data, "oldest_kept_since"),
            imap=IMAPStatus.from_json(data) if protocol == "imap" else None,
            identity=_opt_str(data, "identity"),
            warnings=_strs(data, "warnings"),
            next_deletion_due=_time(data, "next_deletion_due"),
            last_cycle=(
                CycleStatus.from_json(_object(last_cycle, "last_cycle")) if last_cycle is not None else None
            ),
        )


@dataclass(frozen=True, slots=True)
class ArchiveTotals:
    """The whole archive: distinct messages and their total size in octets."""

    messages: int
    octets: int

    def to_json(self) -> JSONObject:
        """The JSON object of ``archive``."""
        return {"messages": self.messages, "octets": self.octets}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchiveTotals:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_int(data, "messages"), _int(data, "octets"))


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
            version=_str(data, "version"),
            started_at=_required_time(data, "started_at"),
            accounts=tuple(AccountStatus.from_json(a) for a in _objects(data, "accounts")),
            archive=ArchiveTotals.from_json(_object(_field(data, "archive"), "archive")),
        )


# -- the other commands' replies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionReply:
    """The reply to ``version``."""

    version: str

    def to_json(self) -> JSONObject:
        """``{"version": ...}``."""
        return {"version": self.version}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_str(data, "version"))


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """One account's result of ``fetch-now`` with ``"wait": true``.

    Attributes:
        account: the account name.
        error: why the cycle failed (or the state that kept it from running); None when it succeeded.
        new_links: messages newly archived for the account (as :attr:`CycleStatus.new_links`).
        octets: their size in octets.
        seconds: the cycle's duration, rounded to milliseconds.
    """

    account: str
    error: str | None = None
    new_links: int = 0
    octets: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the cycle succeeded."""
        return self.error is None

    def to_json(self) -> JSONObject:
        """``{"ok": true, "new_links": N, "octets": N, "seconds": S}`` or ``{"ok": false, "error": ...}``."""
        if self.error is not None:
            return {"ok": False, "error": self.error}
        return {"ok": True, "new_links": self.new_links, "octets": self.octets, "seconds": self.seconds}

    @classmethod
    def from_json(cls, account: str, data: Mapping[str, Any]) -> FetchOutcome:
        """Read :meth:`to_json`'s form for ``account``. Raises ControlError ``bad-reply``."""
        if not _bool(data, "ok"):
            return cls(account, error=_str(data, "error"))
        return cls(account, None, _int(data, "new_links"), _int(data, "octets"), _float(data, "seconds"))


@dataclass(frozen=True, slots=True)
class FetchResults:
    """The reply to ``fetch-now`` with ``"wait": true``: each account's outcome, in request order."""

    results: tuple[FetchOutcome, ...]

    def to_json(self) -> JSONObject:
        """``{"results": {account: outcome}}``."""
        return {"results": {r.account: r.to_json() for r in self.results}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FetchResults:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        results = _object(_field(data, "results"), "results")
        return cls(tuple(FetchOutcome.from_json(n, _object(r, n)) for n, r in results.items()))


@dataclass(frozen=True, slots=True)
class FetchQueued:
    """The reply to ``fetch-now`` with ``"wait": false``: the accounts whose cycle was requested."""

    queued: tuple[str, ...]

    def to_json(self) -> JSONObject:
        """``{"queued": [account, ...]}``."""
        return {"queued": list(self.queued)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FetchQueued:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_strs(data, "queued"))


@dataclass(frozen=True, slots=True)
class AccountStateReply:
    """The reply to ``pause`` and ``resume``: the account and its state now."""

    account: str
    state: AccountState

    def to_json(self) -> JSONObject:
        """``{"account": NAME, "state": STATE}``."""
        return {"account": self.account, "state": self.state}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountStateReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_str(data, "account"), _choice(data, "state", AccountState))


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """The reply to ``reload``: accounts added, removed and changed (names sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def to_json(self) -> JSONObject:
        """``{"added": [...], "removed": [...], "changed": [...]}``."""
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReloadReport:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_strs(data, "added"), _strs(data, "removed"), _strs(data, "changed"))

    def changes(self) -> str:
        """The changes in words, e.g. ``added: anna-imap; removed: anna-pop``; empty when none."""
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if names
        ]
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class MetricsReply:
    """The reply to ``metrics``: the Prometheus text exposition."""

    text: str

    def to_json(self) -> JSONObject:
        """``{"text": ...}``."""
        return {"text": self.text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricsReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_str(data, "text"))


@dataclass(frozen=True, slots=True)
class StopReply:
    """The reply to ``stop``: the daemon is stopping."""

    stopping: bool = True

    def to_json(self) -> JSONObject:
        """``{"stopping": true}``."""
        return {"stopping": self.stopping}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StopReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(_bool(data, "stopping"))
