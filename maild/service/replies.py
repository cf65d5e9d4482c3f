"""The typed replies of the control commands other than ``status`` (see :mod:`maild.service.status`).

Each is a frozen dataclass with one ``to_json()`` (the JSON object the daemon sends, without
``"ok"``) and a ``from_json()`` classmethod for the client. Shapes: docs/control-socket.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maild.service.labels import messages_text, new_and_known, outcome_extras, total_text, transfer_text
from maild.service.reply_fields import (
    bad_reply,
    read_bool,
    read_choice,
    read_field,
    read_float,
    read_int,
    read_object,
    read_objects,
    read_opt_int,
    read_str,
    read_strs,
    read_time,
)
from maild.service.status import AccountState, JSONObject, time_text


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
        return cls(read_str(data, "version"))


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """One account's result of ``fetch-now`` with ``"wait": true``.

    Attributes:
        account: the account name.
        error: why the cycle failed (or the state that kept it from running); None when it succeeded.
        new_links: messages newly archived for the account (as :attr:`CycleStatus.new_links`).
        octets: their size in octets.
        seconds: the cycle's duration, rounded to milliseconds.
        skipped: why no cycle ran although nothing failed (``paused``, ``disabled``), else None.
        new_messages: of ``new_links``, those new to the archive (the rest were archived already,
            through another account); None from a daemon that does not say.
        locked_out_since: when the account was locked out after refused logins (UTC), with
            ``error``: no cycle was tried (a login would count towards the provider's own lockout).
        deleted: messages deleted on the server in the cycle.
        not_retrieved: messages the cycle could not retrieve (retried at the next cycle).
        no_room: of ``not_retrieved``, those that failed for lack of room on this machine (the
            spool's or the archive's disk full): ``maild fetch-now`` exits 1.
        set_aside: messages skipped because they failed too often in a row.
        warnings: the cycle's warnings, in words (as ``maild status`` shows them).
    The five are 0 or empty from a daemon older than session 10, which did not send them.
    """

    account: str
    error: str | None = None
    new_links: int = 0
    octets: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    new_messages: int | None = None
    locked_out_since: datetime | None = None
    deleted: int = 0
    not_retrieved: int = 0
    no_room: int = 0
    set_aside: int = 0
    warnings: tuple[str, ...] = ()

    def counts(self) -> str:
        """The counts in words, as :func:`new_and_known` says them."""
        if self.new_messages is None:
            return messages_text(self.new_links, "new")
        return new_and_known(self.new_messages, self.new_links)

    def line(self, size_text: Callable[[int], str]) -> str | None:
        """``anna: 3 new messages (1.2 MB retrieved, 0.412 s)``: what ``maild fetch-now`` prints for a
        cycle that succeeded, in the words and form of ``maild fetch``'s line (``size_text``: the CLI's
        ``human_size``), with what was deleted, not retrieved (``see maild status anna``: the status
        names them) or set aside after the bracket and one indented line per warning; None for a
        skipped or failed one (the CLI words those)."""
        if not self.ok or self.skipped is not None:
            return None
        where = f"see maild status {self.account}"
        extra = outcome_extras(self.deleted, self.not_retrieved, self.no_room, self.set_aside, where)
        transfer = transfer_text(size_text(self.octets), self.seconds)
        lines = [f"{self.account}: {self.counts()} ({transfer}){extra}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        """True when the cycle succeeded or was skipped on purpose."""
        return self.error is None

    def to_json(self) -> JSONObject:
        """``{"ok": true, "new_links": N, "octets": N, "seconds": S}``, ``{"ok": true, "skipped":
        REASON}`` or ``{"ok": false, "error": ...}`` (with ``"locked_out_since": TIME`` for an account
        locked out, not tried)."""
        if self.error is not None:
            if self.locked_out_since is not None:
                since = time_text(self.locked_out_since)
                return {"ok": False, "error": self.error, "locked_out_since": since}
            return {"ok": False, "error": self.error}
        if self.skipped is not None:
            return {"ok": True, "skipped": self.skipped}
        out: JSONObject = {
            "ok": True,
            "new_links": self.new_links,
            "octets": self.octets,
            "seconds": self.seconds,
        }
        if self.new_messages is not None:
            out["new_messages"] = self.new_messages
        for name, value in (
            ("deleted", self.deleted),
            ("not_retrieved", self.not_retrieved),
            ("no_room", self.no_room),
            ("set_aside", self.set_aside),
        ):
            if value:
                out[name] = value
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_json(cls, account: str, data: Mapping[str, Any]) -> FetchOutcome:
        """Read :meth:`to_json`'s form for ``account``. Raises ControlError ``bad-reply``."""
        if not read_bool(data, "ok"):
            since = read_time(data, "locked_out_since")
            return cls(account, error=read_str(data, "error"), locked_out_since=since)
        if data.get("skipped") is not None:
            return cls(account, skipped=read_str(data, "skipped"))
        return cls(
            account,
            new_links=read_int(data, "new_links"),
            octets=read_int(data, "octets"),
            seconds=read_float(data, "seconds"),
            new_messages=read_opt_int(data, "new_messages"),
            deleted=_count(data, "deleted"),
            not_retrieved=_count(data, "not_retrieved"),
            no_room=_count(data, "no_room"),
            set_aside=_count(data, "set_aside"),
            warnings=read_strs(data, "warnings") if "warnings" in data else (),
        )


def _count(data: Mapping[str, Any], name: str) -> int:
    """An optional count of :class:`FetchOutcome`'s JSON form: 0 when absent (a daemon older than
    session 10). Raises ControlError ``bad-reply`` when present and not an integer >= 0."""
    value = read_int(data, name) if name in data else 0
    if value < 0:
        raise bad_reply(f"{name!r} is negative")
    return value


@dataclass(frozen=True, slots=True)
class FetchResults:
    """The reply to ``fetch-now`` with ``"wait": true``: each account's outcome, in request order."""

    results: tuple[FetchOutcome, ...]

    def to_json(self) -> JSONObject:
        """``{"results": {account: outcome}}``."""
        return {"results": {r.account: r.to_json() for r in self.results}}

    def total_line(self, size_text: Callable[[int], str], seconds: float) -> str | None:
        """The closing line of :func:`~maild.service.labels.total_text` for more than one account tried
        (None otherwise): ``seconds`` is the wall-clock time the client waited for the reply."""
        tried = [r for r in self.results if r.skipped is None and r.locked_out_since is None]
        if len(tried) < 2:
            return None
        done = [r for r in tried if r.ok]
        links = sum(r.new_links for r in done)
        new = sum(r.new_links if r.new_messages is None else r.new_messages for r in done)
        size = size_text(sum(r.octets for r in done))
        return total_text(len(tried), new, links, size, seconds, failed=len(tried) - len(done))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FetchResults:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        results = read_object(read_field(data, "results"), "results")
        return cls(tuple(FetchOutcome.from_json(n, read_object(r, n)) for n, r in results.items()))


@dataclass(frozen=True, slots=True)
class FetchQueued:
    """The reply to ``fetch-now`` with ``"wait": false``: the accounts whose cycle was requested."""

    queued: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def to_json(self) -> JSONObject:
        """``{"queued": [account, ...], "skipped": [account, ...]}`` (skipped: paused or disabled)."""
        return {"queued": list(self.queued), "skipped": list(self.skipped)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FetchQueued:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(read_strs(data, "queued"), read_strs(data, "skipped") if "skipped" in data else ())


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
        return cls(read_str(data, "account"), read_choice(data, "state", AccountState))


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
        return cls(read_strs(data, "added"), read_strs(data, "removed"), read_strs(data, "changed"))

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
        return cls(read_str(data, "text"))


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
        return cls(read_bool(data, "stopping"))


@dataclass(frozen=True, slots=True)
class AlertChannelResult:
    """How ``alert-test`` went through one channel: ``command`` or ``mail``, and ``sent`` or why not."""

    channel: str
    ok: bool
    detail: str

    def to_json(self) -> JSONObject:
        """``{"channel": ..., "ok": ..., "detail": ...}``."""
        return {"channel": self.channel, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertChannelResult:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(read_str(data, "channel"), read_bool(data, "ok"), read_str(data, "detail"))


@dataclass(frozen=True, slots=True)
class AlertTestReply:
    """The reply to ``alert-test``: one result per configured channel (empty: none configured)."""

    channels: tuple[AlertChannelResult, ...]

    def to_json(self) -> JSONObject:
        """``{"channels": [...]}``."""
        return {"channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertTestReply:
        """Read :meth:`to_json`'s form. Raises ControlError ``bad-reply`` when it does not fit."""
        return cls(tuple(AlertChannelResult.from_json(c) for c in read_objects(data, "channels")))
