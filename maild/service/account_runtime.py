"""One account's live state in the daemon (:class:`AccountRuntime`) and how a cycle's end changes it.

The scheduler (:mod:`maild.service.scheduler`) owns the tasks and the timing; this module owns what
``status``, the metrics and the alerts read of an account: its state, its failures in a row and the
authentication lockout, its history as the archive keeps it, and the words naming a failure
(:func:`describe`; the short label is :func:`maild.service.labels.outcome_label`). Nothing here
does I/O but :func:`password_fingerprint`, which reads the password source to notice a change
during a lockout (the scheduler runs it in a worker thread).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from maild.config.loader import AccountConfig
from maild.errors import AuthError, MaildError, TransientError
from maild.fetch.cycle import CycleResult
from maild.fetch.progress import CycleProgress
from maild.fetch.resync import UIDValidityChange
from maild.model import AccountHistory
from maild.secret import redact_known
from maild.service.idle import IdleWatcher, Mode
from maild.service.labels import outcome_label

AccountState = Literal["idle", "fetching", "backoff", "error", "auth_failed", "paused", "disabled", "stopped"]
#: Refused logins in a row that lock an account out (``auth_failed``): no further tries until the
#: password or the configuration changes, or ``maild resume``, so the provider does not lock it.
AUTH_LOCKOUT_FAILURES = 3
#: UIDVALIDITY changes kept per account for ``status`` (the newest).
KEPT_UIDVALIDITY_CHANGES = 10
#: Consecutive failed cycles from which ``fetch.failed`` is logged at error instead of warning.
REPEATED_FAILURES = 3


@dataclass(slots=True)
class AccountRuntime:
    """The scheduler's live view of one account (what ``status`` reports).

    Attributes:
        config: the account's configuration.
        state: ``idle`` (waiting for the next run), ``fetching``, ``backoff`` (last cycle failed with a
            transient error, or its login was refused fewer than :data:`AUTH_LOCKOUT_FAILURES` times in
            a row), ``error`` (last cycle failed permanently, e.g. a protocol error),
            ``auth_failed`` (credentials refused :data:`AUTH_LOCKOUT_FAILURES` times in a row: no further
            attempts until the config changes or ``resume``, so the provider does not lock the
            account), ``paused`` (by ``pause``), ``disabled`` (``enabled = false``), ``stopped``.
        last_success: end of the last successful cycle (UTC), or None.
        next_run: when the next cycle is due (UTC), or None.
        last_error: text of the last failure, without secrets, or None after a success.
        consecutive_failures: failed cycles since the last success.
        last_result: the last successful cycle's result.
        auth_failures: consecutive cycles refused with an authentication error.
        paused: set by :meth:`Scheduler.pause`.
        retired: set when the account was removed or changed by a reload; its loop ends after the
            current cycle.
        watcher: the IDLE watcher of an IMAP account with ``idle = true``, else None.
        uidvalidity_changes: the last :data:`KEPT_UIDVALIDITY_CHANGES` UIDVALIDITY changes noticed
            (IMAP), oldest first.
        last_error_at: when the last failed cycle ended (UTC), or None.
        failing_since: when the first failed cycle of the current run of failures ended (UTC), None
            while the account succeeds.
        progress: the running cycle's progress, None between cycles.
        local_failing_since: when the current episode of messages failing on this machine's side
            began (``"local"`` failures: the spool's disk or directory; UTC): set by the first
            successful cycle with such failures, cleared by one without; None outside an episode.
            Not kept across restarts (the alert memory keeps its alert).
        remembered: the history the archive held when this runtime was made (earlier daemons and
            configurations of the account), or None; :meth:`history` adds this runtime's cycles.
    """

    config: AccountConfig
    state: AccountState = "idle"
    last_success: datetime | None = None
    next_run: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    last_result: CycleResult | None = None
    last_exception: BaseException | None = None
    auth_failures: int = 0
    lockout_fingerprint: str | None = None
    cycles: dict[str, int] = field(default_factory=dict)
    fetched_messages: int = 0
    new_messages: int = 0
    fetched_octets: int = 0
    paused: bool = False
    retired: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[asyncio.Future[CycleResult | None]] = field(default_factory=list)
    watcher: IdleWatcher | None = None
    uidvalidity_changes: list[UIDValidityChange] = field(default_factory=list)
    last_error_at: datetime | None = None
    failing_since: datetime | None = None
    remembered: AccountHistory | None = None
    progress: CycleProgress | None = None
    local_failing_since: datetime | None = None

    @property
    def mode(self) -> Mode:
        """How the account learns of new mail: ``idle``, ``polling`` or ``reconnecting`` (see idle.py)."""
        return self.watcher.mode if self.watcher is not None else "polling"

    @property
    def last_push(self) -> datetime | None:
        """When the server last announced new mail over IDLE (UTC): this watcher's, else remembered."""
        if self.watcher is not None and self.watcher.last_push is not None:
            return self.watcher.last_push
        return self.remembered.last_push if self.remembered is not None else None

    def remember(self, history: AccountHistory) -> None:
        """Start from what the archive remembers: last success, last error, failures in a row."""
        self.remembered = history
        self.last_success = history.last_success
        self.last_error = history.last_error
        self.last_error_at = history.last_error_at
        self.failing_since = history.failing_since
        self.consecutive_failures = history.consecutive_failures
        # A lockout outlives a restart: no fresh tries against the provider. The password's
        # fingerprint is not kept (nothing derived from a secret is stored), so a password changed
        # while maild was stopped needs `maild resume`; one changed later ends the lockout by itself.
        self.auth_failures = history.auth_failures

    def history(self) -> AccountHistory:
        """The history to keep in the archive: the remembered one plus this runtime's cycles."""
        base = self.remembered or AccountHistory(self.config.name)
        failed = sum(n for outcome, n in self.cycles.items() if outcome != "ok")
        return AccountHistory(
            account=self.config.name,
            last_success=self.last_success,
            last_push=self.last_push,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            failing_since=self.failing_since,
            consecutive_failures=self.consecutive_failures,
            cycles_ok=base.cycles_ok + self.cycles.get("ok", 0),
            cycles_failed=base.cycles_failed + failed,
            fetched_messages=base.fetched_messages + self.fetched_messages,
            fetched_octets=base.fetched_octets + self.fetched_octets,
            auth_failures=self.auth_failures,
        )

    def succeeded(self, result: CycleResult, now: datetime) -> None:
        """Record a successful cycle ended at ``now`` (aware, UTC): failures, lockout and error cleared,
        the last UIDVALIDITY changes kept (at most :data:`KEPT_UIDVALIDITY_CHANGES`)."""
        self.state = "idle"
        self.last_success = now
        self.last_error = None
        self.last_error_at = None
        self.failing_since = None
        self.consecutive_failures = 0
        self.auth_failures = 0
        self.last_result = result
        if result.imap is not None and result.imap.uidvalidity_changes:
            kept = self.uidvalidity_changes + result.imap.uidvalidity_changes
            self.uidvalidity_changes = kept[-KEPT_UIDVALIDITY_CHANGES:]
        self.cycles["ok"] = self.cycles.get("ok", 0) + 1
        self.new_messages += result.new_messages
        self.last_exception = None

    def note_local_failures(self, result: CycleResult, now: datetime) -> tuple[bool, bool]:
        """Follow the episode of local failures after a successful cycle ended at ``now`` (UTC).

        Returns:
            (started, ended): whether ``result``'s local failures begin an episode (the first
            such cycle: logged at warning), and whether a cycle without any ends one.
        """
        local = any(f.kind == "local" for f in result.failures)
        started = local and self.local_failing_since is None
        ended = not local and self.local_failing_since is not None
        if started:
            self.local_failing_since = now
        elif ended:
            self.local_failing_since = None
        return started, ended

    def failed(self, exc: BaseException, now: datetime) -> str:
        """Record a failed cycle ended at ``now`` (aware, UTC) and return its :func:`outcome_label`.

        The state becomes ``backoff`` (transient), ``error`` (permanent) or, after
        :data:`AUTH_LOCKOUT_FAILURES` refused logins in a row (or one refused refresh token, issue 13),
        ``auth_failed``; a refusal before the lockout is ``backoff``.
        """
        self.consecutive_failures += 1
        self.last_error = describe(exc)
        self.last_error_at = now
        if self.failing_since is None:
            self.failing_since = self.last_error_at
        outcome = outcome_label(exc)
        self.cycles[outcome] = self.cycles.get(outcome, 0) + 1
        self.state = "backoff" if isinstance(exc, TransientError) else "error"
        if isinstance(exc, AuthError):
            # A refused refresh token (issue 13) will not work again: lock out at once, no retries.
            self.auth_failures = AUTH_LOCKOUT_FAILURES if exc.reauthorize else self.auth_failures + 1
            if self.auth_failures < AUTH_LOCKOUT_FAILURES:
                # A refusal before the lockout is retried like a transient failure (a password being
                # changed, a provider's hiccup): "backoff", a warning, not a permanent "error".
                self.state = "backoff"
                self.last_error = (
                    f"{self.last_error} (refusal {self.auth_failures} of {AUTH_LOCKOUT_FAILURES}: tried"
                    f" again at the next cycle; {AUTH_LOCKOUT_FAILURES} in a row lock the account out)"
                )
            else:
                self.state = "auth_failed"
                self.lockout_fingerprint = None  # taken by the account loop, off the event loop
                self.last_error = (
                    f"{self.last_error} — {self.auth_failures} refusals in a row: not trying again until the "
                    "password or the account's configuration changes, or `maild resume`"
                )
        else:
            self.auth_failures = 0
        self.last_exception = exc
        return outcome


def describe(error: BaseException) -> str:
    """One line naming an error for status and logs; the value of any live secret is masked (errors
    should never hold one, but a server may echo it in text quoted by an error)."""
    if isinstance(error, MaildError):
        return redact_known(str(error))
    return redact_known(f"internal error: {type(error).__name__}: {error}")


def password_fingerprint(account: AccountConfig) -> str | None:
    """A digest (SHA-256, hex) of the account's current password, or of its OAuth2 grant, to notice a
    change during a lockout; None when it cannot be read.

    Blocks: it reads a ``password_file`` or runs a ``password_command``; call it in a worker thread.
    """
    import hashlib

    from maild.errors import ConfigError

    if account.sign_in.oauth2 is not None:  # issue 13: `maild accounts authorize` ends the lockout
        from maild.auth.tokens import grant_fingerprint

        return grant_fingerprint(account.sign_in.oauth2)
    try:
        secret = account.password.resolve(account.name)
    except ConfigError:
        return None
    return hashlib.sha256(secret.reveal().encode()).hexdigest()
