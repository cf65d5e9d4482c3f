"""Alerts: which conditions need the administrator now, rate-limited, with a notice when they clear.

:class:`AlertMonitor` is evaluated by the daemon's housekeeping (every few seconds) with the
scheduler's accounts, the archive's free disk space and the daemon's own health; it returns the
events to send (:class:`AlertEvent`), which :mod:`maild.service.alert_delivery` hands to the
configured command and mail. Kinds:

- ``locked_out``: credentials refused three times in a row; maild stopped trying (sent at once).
- ``failing``: an account's cycles have failed for longer than ``[alerts] after`` (default 1 h).
- ``set_aside``: messages too large for ``max_message_size`` were left on the server (at once).
- ``disk_full``: the archive's file system has less free space than ``disk_free_percent``.
- ``local_failure``: an account's messages fail on this machine's side (``"local"`` failures: the
  spool's disk short of room, its directory not writable, the archive's disk full), so mail is
  blocked until space is freed; one event per episode (from the first cycle with such failures to
  the first without).
- ``token_expiry``: an OAuth2 account's refresh token (the person's consent) ends within
  ``token_expiry_ahead`` (default 7 days), or getting a token has started failing.
- ``archive_replaced``: the archive file was deleted or replaced under the running daemon (the
  archive guard, :meth:`maild.archive.store.Store.verify_identity`): deletions stopped everywhere.
- ``wal_held``: a program reading the archive (a long read transaction: a CRM's query, ``maild
  backup``) keeps its write-ahead log from being copied and started again: storing goes on and the
  log grows; one event per episode (``archive.wal.held`` to ``archive.wal.released``).
- ``daemon``: the daemon itself is unwell, as the watchdog would see it: an account's loop ended
  (per account), the event loop was blocked longer than ``loop_lag``, or the account history cannot
  be written to the archive.

One event per account and kind is sent when a condition starts; it is sent again only when its
message changes or ``repeat`` (default a day) has passed; when the condition clears, a ``recovered``
event follows. Messages come from the error texts of status, which never contain a secret.

What was sent is remembered in the archive (:mod:`maild.archive.alert_memory`): :meth:`AlertMonitor.restore`
starts from it, so a restart neither sends an open alert again nor forgets its recovery notice.
A remembered alert whose condition cannot be judged yet after a restart (set-aside messages before
the account's first cycle, token expiry before its first token) is kept as it is, neither sent again
nor recovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from maild.archive.alert_memory import AlertRecord
from maild.config.alerts import AlertsConfig
from maild.fetch.cycle import CycleResult
from maild.service.account_runtime import AUTH_LOCKOUT_FAILURES, AccountRuntime, describe
from maild.service.alert_conditions import Condition, token_condition, token_health, wal_condition
from maild.service.labels import outcome_label

if TYPE_CHECKING:
    from maild.archive.checkpointer import WalSnapshot

AlertKind = Literal[
    "locked_out",
    "failing",
    "set_aside",
    "disk_full",
    "local_failure",
    "token_expiry",
    "archive_replaced",
    "wal_held",
    "daemon",
    "test",
]
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
    "local_failure": "messages blocked: no room on this machine",
    "token_expiry": "sign-in token ends soon",
    "archive_replaced": "archive replaced, deletions stopped",
    "wal_held": "archive's write-ahead log held by a reader",
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


@dataclass(slots=True)
class _Fired:
    event: AlertEvent
    sent_at: datetime
    restored: bool = False
    """Read from the archive at start: until the account's first cycle in this process nothing new
    happened, so it is not sent again even if its text is built differently now."""


_Key = tuple[str | None, AlertKind]


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
        self._fired: dict[_Key, _Fired] = {}
        self._sent: dict[_Key, _Fired] = {}
        """Sent since the last :meth:`take_changes` (to remember in the archive)."""
        self._cleared: set[_Key] = set()
        """Cleared since the last :meth:`take_changes` (to forget in the archive)."""

    def restore(self, records: Iterable[AlertRecord]) -> None:
        """Start from the alerts the archive remembers as sent and open (records of unknown kinds
        are ignored)."""
        kinds: tuple[str, ...] = get_args(AlertKind)
        for r in records:
            if r.kind not in kinds or r.kind == "test":
                continue
            kind: AlertKind = r.kind  # type: ignore[assignment]  # checked against AlertKind above
            event = AlertEvent(kind, "firing", r.account, "", "", r.since, r.sent_at, r.message, r.next_step)
            self._fired[(r.account, kind)] = _Fired(event, r.sent_at, restored=True)

    @property
    def changed(self) -> bool:
        """Whether anything is to be written to the archive (see :meth:`take_changes`)."""
        return bool(self._sent or self._cleared)

    def take_changes(self) -> tuple[list[AlertRecord], list[tuple[str | None, str]]]:
        """What changed since the last call: (alerts sent, keys cleared), for the archive."""
        sent = [
            AlertRecord(k[0], k[1], f.event.since, f.sent_at, f.event.message, f.event.next_step)
            for k, f in self._sent.items()
        ]
        cleared: list[tuple[str | None, str]] = [(k[0], k[1]) for k in self._cleared]
        self._sent, self._cleared = {}, set()
        return sent, cleared

    def give_back(self, sent: Iterable[AlertRecord], cleared: Iterable[tuple[str | None, str]]) -> None:
        """Keep changes :meth:`take_changes` returned that could not be written, for the next try."""
        for r in sent:
            key: _Key = (r.account, r.kind)  # type: ignore[assignment]  # made by take_changes
            if key not in self._sent and key in self._fired:
                self._sent[key] = self._fired[key]
        for account, kind in cleared:
            gone: _Key = (account, kind)  # type: ignore[assignment]  # made by take_changes
            if gone not in self._fired:
                self._cleared.add(gone)

    def _since(self, key: _Key, now: datetime) -> datetime:
        fired = self._fired.get(key)
        return fired.event.since if fired is not None else now

    def _conditions(
        self,
        accounts: Iterable[AccountRuntime],
        disk: DiskSpace | None,
        daemon_problems: Mapping[str | None, str],
        archive_replaced: str | None,
        now: datetime,
        directory: str,
        wal: WalSnapshot | None,
    ) -> tuple[dict[_Key, Condition], set[_Key]]:
        """The conditions that hold now, and the keys that cannot be judged now (kept as they are)."""
        found: dict[_Key, Condition] = {}
        unknown: set[_Key] = set()
        after = timedelta(seconds=self.config.after_s)
        for rt in accounts:
            name = rt.config.name
            if rt.config.sign_in.oauth2 is not None:
                health = token_health(rt)
                token = (
                    token_condition(rt, health, self.config.token_expiry_ahead_s, now)
                    if health is not None
                    else None
                )
                if health is None:
                    unknown.add((name, "token_expiry"))
                elif token is not None:
                    found[(name, "token_expiry")] = token
            if rt.last_result is None:  # no successful cycle since start: set-aside unknown
                unknown.add((name, "set_aside"))
                unknown.add((name, "local_failure"))
            elif rt.local_failing_since is not None:
                # The text stays the same through the episode (no counts, no free octets): one event
                # per episode, not one per cycle; the recovery notice follows the first clean cycle.
                found[(name, "local_failure")] = Condition(
                    rt,
                    rt.local_failing_since,
                    f"messages are not retrieved: this machine has no room for them in {directory}"
                    " (the disk full or short of the spool's reserve, or the directory not writable)",
                    f"free space in {directory} (or make it writable for maild); the messages stay on"
                    f" the server and are retried at every cycle: `maild status {name}` says how many",
                )
            problem = daemon_problems.get(name)
            if problem is not None:
                found[(name, "daemon")] = Condition(
                    rt,
                    self._since((name, "daemon"), now),
                    problem,
                    "`systemctl restart maild` (nothing is lost), and keep `journalctl -u maild -p err`"
                    " for a bug report",
                )
            since = rt.failing_since or now
            if rt.auth_failures >= AUTH_LOCKOUT_FAILURES:  # also while paused: still locked out
                found[(name, "locked_out")] = Condition(
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
                found[(name, "failing")] = Condition(
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
                found[(name, "set_aside")] = Condition(
                    rt,
                    rt.last_success or now,
                    f"messages left on the server: {', '.join(parts)}",
                    f"`maild status {name}` lists them; raise max_message_size or run `maild fetch-now"
                    f" --retry-failed {name}`; they stay on the server, nothing is deleted",
                )
        limit = self.config.disk_free_percent
        if disk is not None and limit > 0 and disk.free_percent < limit:
            fired = self._fired.get((None, "disk_full"))
            found[(None, "disk_full")] = Condition(
                None,
                fired.event.since if fired is not None else now,
                # whole percent, no free octets: a disk filling by a few octets is no new alert
                f"the archive's file system has {disk.free_percent:.0f} % free (of {disk.total_octets}"
                f" octets), below {limit:g} %",
                "free space or grow the file system; when it is full maild stops archiving and never"
                " deletes anything on a server",
            )
        problem = daemon_problems.get(None)
        if problem is not None:
            found[(None, "daemon")] = Condition(
                None,
                self._since((None, "daemon"), now),
                problem,
                "`systemctl restart maild`, and keep `journalctl -u maild -p err` for a bug report",
            )
        if archive_replaced is not None:
            # imported here: the archive's connection module is needed only once the guard failed
            from maild.archive.archive_errors import TRANSACTION_LEFT_OPEN

            found[(None, "archive_replaced")] = Condition(
                None,
                self._since((None, "archive_replaced"), now),
                archive_replaced,
                # A transaction left open: the file is sound, a restart drops the uncommitted rows.
                # Putting "the right file" back (an older backup) would lose what was archived since.
                "nothing is deleted on any server now; the archive file itself is sound: `systemctl"
                " restart maild` (what was not committed is dropped and fetched again), and keep"
                " `journalctl -u maild -p err` for a bug report"
                if TRANSACTION_LEFT_OPEN in archive_replaced
                else "nothing is deleted on any server now; put the right archive file back at its path"
                " (see docs/backup.md for a restore), then `systemctl restart maild`",
            )
        held = wal_condition(wal, directory)
        if held is not None:
            found[(None, "wal_held")] = held
        return found, unknown

    def evaluate(
        self,
        accounts: Iterable[AccountRuntime],
        now: datetime,
        *,
        disk: DiskSpace | None = None,
        daemon_problems: Mapping[str | None, str] | None = None,
        archive_replaced: str | None = None,
        directory: str = "the archive's directory",
        wal: WalSnapshot | None = None,
    ) -> list[AlertEvent]:
        """The events to send now, and remember them for rate limiting and recovery.

        Args:
            accounts: the scheduler's accounts.
            now: the current time (aware, UTC).
            disk: the archive's file system, or None when unknown.
            daemon_problems: what is wrong with the daemon itself: by account name (its loop
                ended), and under None the daemon as a whole (one text).
            archive_replaced: why the archive guard stopped deletions, or None.
            directory: the archive's directory (where large messages are spooled), named by the
                ``local_failure`` and ``wal_held`` alerts.
            wal: the archive's write-ahead log (``wal_held``), or None when unknown.
        """
        accounts = list(accounts)
        people = {rt.config.name: rt.config for rt in accounts}
        conditions, unknown = self._conditions(
            accounts, disk, daemon_problems or {}, archive_replaced, now, directory, wal
        )
        events: list[AlertEvent] = []
        repeat = timedelta(seconds=self.config.repeat_s)
        for key, cond in conditions.items():
            fired = self._fired.get(key)
            rt = cond.account
            if fired is not None and now - fired.sent_at < repeat:
                if fired.event.message == cond.message:
                    continue
                if fired.restored and rt is not None and not rt.cycles:
                    continue  # no cycle since the restart: nothing new to tell
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
            self._fired[key] = self._sent[key] = _Fired(event, now)
            self._cleared.discard(key)
            events.append(event)
        for key in [k for k in self._fired if k not in conditions and k not in unknown]:
            old = self._fired.pop(key).event
            self._sent.pop(key, None)
            self._cleared.add(key)
            person = people.get(old.account) if old.account is not None else None
            events.append(
                AlertEvent(
                    kind=old.kind,
                    state="recovered",
                    account=old.account,
                    organisation=old.organisation or (person.organisation if person else ""),
                    employee=old.employee or (person.employee if person else ""),
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
            self._sent.pop(key, None)
            self._cleared.add(key)


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
