"""Alerts: which conditions need the administrator now, rate-limited, with a notice when they clear.

:class:`AlertMonitor` is evaluated by the daemon's housekeeping (every few seconds) with the
scheduler's accounts, the archive's free disk space and the daemon's own health; it returns the
events to send (:class:`AlertEvent`), which :mod:`maild.service.alert_delivery` hands to the
configured command and mail. Kinds:

- ``locked_out``: credentials refused three times in a row; maild stopped trying (sent at once).
- ``failing``: an account's cycles have failed for longer than ``[alerts] after`` (default 1 h).
- ``set_aside``: messages too large for ``max_message_size`` were left on the server (at once).
- ``disk_full``: the archive's file system has less free space than ``disk_free_percent``.
- ``daemon``: the daemon itself is unwell (an account loop ended; the watchdog is no longer fed).

One event per account and kind is sent when a condition starts; it is sent again only when its
message changes or ``repeat`` (default a day) has passed; when the condition clears, a ``recovered``
event follows. Messages come from the error texts of status, which never contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from maild.config.alerts import AlertsConfig
from maild.fetch.cycle import CycleResult
from maild.service.scheduler import AUTH_LOCKOUT_FAILURES, AccountRuntime, describe, outcome_label

AlertKind = Literal["locked_out", "failing", "set_aside", "disk_full", "daemon", "test"]
AlertState = Literal["firing", "recovered", "test"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert to send.

    Attributes:
        kind: what happened (:data:`AlertKind`).
        state: ``firing`` (the condition holds), ``recovered`` (it cleared) or ``test``.
        account: the account concerned, or None for the daemon and the disk.
        organisation, employee: whom the account belongs to ("" without an account).
        since: when the condition started (UTC).
        at: when the event was made (UTC).
        message: what is wrong, in words (never a secret).
        next_step: what the administrator should do.
    """

    kind: AlertKind
    state: AlertState
    account: str | None
    organisation: str
    employee: str
    since: datetime
    at: datetime
    message: str
    next_step: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object an alert command reads on stdin (times as ``YYYY-MM-DDTHH:MM:SSZ``)."""

        def text(moment: datetime) -> str:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "kind": self.kind,
            "state": self.state,
            "account": self.account,
            "organisation": self.organisation,
            "employee": self.employee,
            "since": text(self.since),
            "at": text(self.at),
            "message": self.message,
            "next_step": self.next_step,
        }

    def subject(self) -> str:
        """A mail subject line: ``[maild] anna-pop: locked out`` or ``[maild] recovered: …``."""
        what = f"{self.account}: {_TITLES[self.kind]}" if self.account else _TITLES[self.kind]
        prefix = {"firing": "", "recovered": "recovered: ", "test": "test: "}[self.state]
        return f"[maild] {prefix}{what}"


_TITLES: dict[AlertKind, str] = {
    "locked_out": "locked out (login refused)",
    "failing": "fetching fails",
    "set_aside": "messages set aside",
    "disk_full": "archive disk nearly full",
    "daemon": "maild is unwell",
    "test": "alert test",
}


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """Free and total octets of the archive's file system."""

    free_octets: int
    total_octets: int

    @property
    def free_percent(self) -> float:
        """Free space in percent of the total (100 for an empty total)."""
        return 100.0 * self.free_octets / self.total_octets if self.total_octets else 100.0


@dataclass(frozen=True, slots=True)
class _Condition:
    account: AccountRuntime | None
    since: datetime
    message: str
    next_step: str


@dataclass(slots=True)
class _Fired:
    event: AlertEvent
    sent_at: datetime


def _subjects(res: CycleResult | None) -> str:
    """The Subjects of set-aside messages, where known, for the alert text: `` ("A", "B")``."""
    known = [f'"{res.subjects[k]}"' for k in res.set_aside if k in res.subjects] if res else []
    return f" ({', '.join(known)})" if known else ""


def _failing_next_step(rt: AccountRuntime) -> str:
    label = outcome_label(rt.last_exception) if rt.last_exception is not None else "internal"
    name = rt.config.name
    if label in ("transient", "throttled"):
        return (
            f"the server {rt.config.host} has not answered properly for a while: check the provider's"
            " status page and this server's network; maild keeps retrying and loses nothing meanwhile"
        )
    if label == "auth":
        return (
            f"the server refuses the login: check the password of {name} with its owner or the provider"
            " (changed, expired, or the account locked by the provider)"
        )
    if label == "store":
        return "the archive could not be written: check free disk space and `journalctl -u maild -p err`"
    return (
        f"see `maild status {name}` and `journalctl -u maild -p warning`; fix the cause, then"
        f" `maild fetch-now {name}`"
    )


class AlertMonitor:
    """Turns the daemon's state into alert events, one per change (see the module docstring).

    Args:
        config: the ``[alerts]`` table.
    """

    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self._fired: dict[tuple[str | None, AlertKind], _Fired] = {}

    def _conditions(
        self,
        accounts: Iterable[AccountRuntime],
        disk: DiskSpace | None,
        daemon_problem: str | None,
        now: datetime,
    ) -> dict[tuple[str | None, AlertKind], _Condition]:
        found: dict[tuple[str | None, AlertKind], _Condition] = {}
        after = timedelta(seconds=self.config.after_s)
        for rt in accounts:
            name = rt.config.name
            since = rt.failing_since or now
            if rt.auth_failures >= AUTH_LOCKOUT_FAILURES:  # also while paused: still locked out
                found[(name, "locked_out")] = _Condition(
                    rt,
                    since,
                    rt.last_error or "the server refused the login",
                    "check the password with the provider (changed? account locked?); a new password"
                    f" file or credential ends the lockout by itself, or run `maild resume {name}`",
                )
            # Independent of the lockout: failing_since is cleared only by a successful cycle, so a
            # reload, a restart or a pause does not fake a recovery.
            if rt.failing_since is not None and now - since >= after:
                error = rt.last_exception
                found[(name, "failing")] = _Condition(
                    rt,
                    since,
                    describe(error) if error is not None else rt.last_error or "the last cycles failed",
                    _failing_next_step(rt),
                )
            res = rt.last_result
            too_large = len(res.too_large) if res is not None else 0
            failed = len(res.set_aside) if res is not None else 0
            if too_large or failed:
                parts = [f"{too_large} larger than max_message_size"] if too_large else []
                parts += [f"{failed} set aside after repeated failures{_subjects(res)}"] if failed else []
                found[(name, "set_aside")] = _Condition(
                    rt,
                    rt.last_success or now,
                    f"messages left on the server: {', '.join(parts)}",
                    f"`maild status {name}` lists them; raise max_message_size or run `maild fetch-now"
                    f" --retry-failed {name}`; they stay on the server, nothing is deleted",
                )
        limit = self.config.disk_free_percent
        if disk is not None and limit > 0 and disk.free_percent < limit:
            fired = self._fired.get((None, "disk_full"))
            found[(None, "disk_full")] = _Condition(
                None,
                fired.event.since if fired is not None else now,
                f"the archive's file system has {disk.free_percent:.0f} % free ({disk.free_octets} of"
                f" {disk.total_octets} octets), below {limit:g} %",
                "free space or grow the file system; when it is full maild stops archiving and never"
                " deletes anything on a server",
            )
        if daemon_problem is not None:
            fired = self._fired.get((None, "daemon"))
            found[(None, "daemon")] = _Condition(
                None,
                fired.event.since if fired is not None else now,
                daemon_problem,
                "`systemctl restart maild`, and keep `journalctl -u maild -p err` for a bug report",
            )
        return found

    def evaluate(
        self,
        accounts: Iterable[AccountRuntime],
        now: datetime,
        *,
        disk: DiskSpace | None = None,
        daemon_problem: str | None = None,
    ) -> list[AlertEvent]:
        """The events to send now, and remember them for rate limiting and recovery.

        Args:
            accounts: the scheduler's accounts.
            now: the current time (aware, UTC).
            disk: the archive's file system, or None when unknown.
            daemon_problem: what is wrong with the daemon itself, or None.
        """
        conditions = self._conditions(accounts, disk, daemon_problem, now)
        events: list[AlertEvent] = []
        repeat = timedelta(seconds=self.config.repeat_s)
        for key, cond in conditions.items():
            fired = self._fired.get(key)
            if fired is not None and fired.event.message == cond.message and now - fired.sent_at < repeat:
                continue
            rt = cond.account
            event = AlertEvent(
                kind=key[1],
                state="firing",
                account=key[0],
                organisation=rt.config.organisation if rt is not None else "",
                employee=rt.config.employee if rt is not None else "",
                since=cond.since,
                at=now,
                message=cond.message,
                next_step=cond.next_step,
            )
            self._fired[key] = _Fired(event, now)
            events.append(event)
        for key in [k for k in self._fired if k not in conditions]:
            old = self._fired.pop(key).event
            events.append(
                AlertEvent(
                    kind=old.kind,
                    state="recovered",
                    account=old.account,
                    organisation=old.organisation,
                    employee=old.employee,
                    since=old.since,
                    at=now,
                    message=f"cleared after {_duration(now - old.since)}: {old.message}",
                    next_step="nothing to do",
                )
            )
        return events

    def accounts_alerted(self) -> list[str]:
        """Accounts with a remembered (firing) alert."""
        return sorted({k[0] for k in self._fired if k[0] is not None})

    def forget(self, names: Iterable[str]) -> None:
        """Drop remembered alerts of accounts removed from the configuration (no recovery notice)."""
        gone = set(names)
        for key in [k for k in self._fired if k[0] in gone]:
            del self._fired[key]


def _duration(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def alert_test_event(now: datetime) -> AlertEvent:
    """The event ``maild alert-test`` sends through every configured channel."""
    return AlertEvent(
        kind="test",
        state="test",
        account=None,
        organisation="",
        employee="",
        since=now,
        at=now,
        message="a test alert from `maild alert-test`: if you read this, alerts reach you",
        next_step="nothing to do",
    )
