"""The parts of one account's record in the ``status`` reply, as typed records.

:class:`~maild.service.status.AccountStatus` holds these: the last cycle (:class:`CycleStatus`,
with :class:`RetrievalFailureStatus`), the IMAP part (:class:`IMAPStatus`, with
:class:`UIDValidityChangeStatus`), the messages failing to arrive (:class:`FailingMessageStatus`),
the history the archive keeps (:class:`HistoryStatus`), a running cycle's progress
(:class:`ProgressStatus`) and the sign-in (:class:`SignInStatus`). Each is a frozen dataclass with
one ``to_json()`` and a ``from_json()`` classmethod, as described in :mod:`maild.service.status`
(which re-exports them: the command line reads them from there). Times are aware datetimes in UTC
with whole seconds; :func:`time_text` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from maild.model import FailureKind
from maild.service.reply_fields import (
    TIME_FORMAT,
    bad_reply,
    read_bool,
    read_choice,
    read_float,
    read_int,
    read_object,
    read_objects,
    read_opt_int,
    read_opt_str,
    read_str,
    read_strs,
    read_time,
)

MailboxSelection = Literal["list", "all"]

JSONObject = dict[str, Any]


def time_text(moment: datetime | None) -> str | None:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None for None."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment is not None else None


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


def read_kind(data: Mapping[str, Any]) -> FailureKind:
    """A failure's ``kind`` (:data:`maild.model.FailureKind`); ``"message"`` when absent (older daemons).

    Raises:
        ControlError: ``bad-reply`` when it is another value.
    """
    if data.get("kind") is None:
        return "message"
    kind: FailureKind = read_choice(data, "kind", FailureKind)
    return kind


@dataclass(frozen=True, slots=True)
class RetrievalFailureStatus:
    """A message that could not be retrieved in the last cycle (retried in the next).

    Attributes:
        key: the message's server-side identity, as its ``repr``.
        reason: the server's reply or the cause, redacted.
        kind: ``"message"`` (the server or the message) or ``"local"`` (this machine's spool or
            disk), :data:`maild.model.FailureKind`; ``"message"`` when an older daemon did not say.
    """

    key: str
    reason: str
    kind: FailureKind = "message"

    def to_json(self) -> JSONObject:
        """The JSON object of ``last_cycle.failures``."""
        return {"key": self.key, "reason": self.reason, "kind": self.kind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrievalFailureStatus:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(read_str(data, "key"), read_str(data, "reason"), read_kind(data))


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
        kind: the last failure's side, :data:`maild.model.FailureKind`: ``"message"`` (counts towards
            setting it aside) or ``"local"`` (this machine's spool or disk: never set aside; ``maild
            check`` warns); ``"message"`` when an older daemon did not say.
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
    kind: FailureKind = "message"

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
            "kind": self.kind,
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
            read_kind(data),
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
            reported them); None before the inventory is complete; ``octets_total`` also None when
            the server did not report every size (IMAP without ``max_message_size``).
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
