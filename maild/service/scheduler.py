"""The scheduler: one asyncio task per account, a fetch at start and then every poll interval.

At most ``max_concurrent_fetches`` cycles run at once, and every other limit holds too: the scheduler
is handed the process's :class:`~maild.service.budget.Budgets` and passes it on to the kept
sessions, the IDLE watchers and every fetch cycle. A failing account is retried with capped
exponential backoff (decided in :func:`maild.policy.next_cycle_delay_s`) and never delays the
others. :meth:`Scheduler.run` returns after a stop
request once running cycles have finished, or after ``shutdown_timeout_s`` by cancelling them
(which aborts their sessions: nothing committed is lost, nothing uncommitted is deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import structlog

from maild import policy
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import AuthError, MaildError, StoreError, TransientError
from maild.fetch.cycle import CycleResult, MaildropFactory, make_maildrop, utc_now
from maild.fetch.progress import CycleProgress
from maild.fetch.resync import UIDValidityChange
from maild.model import AccountHistory, StoreOutcome, redact_known
from maild.service.budget import Budgets
from maild.service.idle import IdleWatcher, Mode
from maild.service.kept_sessions import KeptSessions
from maild.service.labels import outcome_label
from maild.service.runner import CycleRunner

log = structlog.get_logger("maild.service.scheduler")

AccountState = Literal["idle", "fetching", "backoff", "error", "auth_failed", "paused", "disabled", "stopped"]
AUTH_LOCKOUT_FAILURES = 3
LOCKOUT_RECHECK_S = 30.0
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



def describe(error: BaseException) -> str:
    """One line naming an error for status and logs; the value of any live secret is masked (errors
    should never hold one, but a server may echo it in text quoted by an error)."""
    if isinstance(error, MaildError):
        return redact_known(str(error))
    return redact_known(f"internal error: {type(error).__name__}: {error}")


class Scheduler:
    """Runs fetch cycles for a set of accounts.

    Args:
        accounts: the configured accounts.
        store: the open archive.
        executor: the POP3 thread pool.
        budgets: the process's concurrency budgets (cycles, connections per host, transfers,
            memory), shared with every cycle, kept session and IDLE watcher of this scheduler.
        max_concurrent_fetches, max_connections_per_host: without ``budgets``, the budgets are built
            from these (``[daemon]`` values) and the default transfer and memory limits.
        maildrop_factory: makes the unopened adapter of an account; default
            :func:`~maild.fetch.cycle.make_maildrop`.
        clock: returns the current aware UTC time.
        rng: randomness for jitter (seeded in tests).
        watcher_factory: makes the IDLE watcher of an account, or None when it polls; default:
            an :class:`~maild.service.idle.IdleWatcher` for IMAP accounts with ``idle = true``.
    """

    def __init__(
        self,
        accounts: Iterable[AccountConfig],
        store: Store,
        executor: ThreadPoolExecutor,
        *,
        budgets: Budgets | None = None,
        max_concurrent_fetches: int = 8,
        max_connections_per_host: int = 8,
        maildrop_factory: MaildropFactory = make_maildrop,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        watcher_factory: Callable[[AccountConfig], IdleWatcher | None] | None = None,
        history: Mapping[str, AccountHistory] | None = None,
    ) -> None:
        self.store = store
        self.history: dict[str, AccountHistory] = dict(history or {})
        """What the archive remembers of each account (see :meth:`Store.account_histories`), kept
        current after every cycle, so that an account changed by a reload starts from it."""
        self._watcher_factory = watcher_factory or self._default_watcher
        self.executor = executor
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.accounts: dict[str, AccountRuntime] = {a.name: self._runtime(a) for a in accounts}
        self.budgets = budgets or Budgets(
            max_cycles=max_concurrent_fetches, per_host=max_connections_per_host
        )
        self.sessions = KeptSessions(self.budgets)
        """IMAP sessions kept between cycles, and each cycle's host connection (see kept_sessions.py)."""
        self.runner = CycleRunner(store, executor, self.budgets, self.sessions, maildrop_factory, clock)
        """Runs each cycle within the budgets (see runner.py)."""
        self._stopping = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._started = False
        self.history_error: str | None = None
        """Why the last account history could not be written to the archive, None once one was."""

    async def run(self, stop: asyncio.Event, shutdown_timeout_s: float = 10.0) -> None:
        """Run every account's loop until ``stop`` is set; then stop within ``shutdown_timeout_s``.

        Running cycles get ``shutdown_timeout_s`` seconds to finish before they are cancelled.
        """
        self._started = True
        for name, rt in self.accounts.items():
            self._tasks[name] = asyncio.create_task(self._account_loop(rt), name=f"account:{name}")
        await stop.wait()
        await self.shutdown(shutdown_timeout_s)

    async def shutdown(self, timeout_s: float) -> None:
        """Ask every loop to stop, wait up to ``timeout_s`` seconds, then cancel what still runs."""
        self._stopping = True
        for rt in self.accounts.values():
            rt.wake.set()
        tasks = list(self._tasks.values()) + list(self._retiring)
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("shutdown.cancelled", cycles=len(pending))
            await asyncio.wait(pending)
        await self.sessions.drop_all()
        for rt in self.accounts.values():
            rt.state = "stopped"
            for fut in rt.waiters:
                if not fut.done():
                    fut.set_result(None)

    def apply(self, accounts: Iterable[AccountConfig]) -> dict[str, list[str]]:
        """Switch to a new set of accounts (after a reload) without a restart.

        Added accounts start at once; removed ones stop after their current cycle; changed ones
        (any setting differs) stop after their current cycle and start again with the new settings
        (never two cycles of one account at once). Unchanged accounts keep their state.

        Returns:
            ``{"added": [...], "removed": [...], "changed": [...]}``, names sorted.
        """
        new = {a.name: a for a in accounts}
        report: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        for name in list(self.accounts):
            if name not in new:
                report["removed"].append(name)
                self._retire(name)
                del self.accounts[name]
        for name, acc in new.items():
            old = self.accounts.get(name)
            if old is not None and old.config == acc:
                continue
            report["changed" if old is not None else "added"].append(name)
            previous = self._retire(name) if old is not None else None
            rt = self._runtime(acc)
            rt.auth_failures = 0  # a changed configuration ends a lockout (a restart does not)
            self.accounts[name] = rt
            if self._started:
                self._tasks[name] = asyncio.create_task(self._after(previous, rt), name=f"account:{name}")
        self.accounts = {name: self.accounts[name] for name in new}
        return {k: sorted(v) for k, v in report.items()}

    def _runtime(self, account: AccountConfig) -> AccountRuntime:
        """A fresh runtime for ``account``, starting from its remembered history."""
        rt = AccountRuntime(account)
        remembered = self.history.get(account.name)
        if remembered is not None:
            rt.remember(remembered)
        return rt

    async def _keep_history(self, rt: AccountRuntime) -> None:
        """Write ``rt``'s history to the archive after a cycle; a failure is logged, not raised (a full
        disk must not stop fetching: the archive's own commits report it)."""
        history = rt.history()
        self.history[history.account] = history
        try:
            await self.store.record_history(history)
        except StoreError as exc:
            self.history_error = str(exc)
            log.warning("history.not-recorded", error=str(exc))
        else:
            self.history_error = None

    def _retire(self, name: str) -> asyncio.Task[None] | None:
        rt = self.accounts.get(name)
        task = self._tasks.pop(name, None)
        if rt is not None:
            rt.retired = True
            rt.wake.set()
        if task is not None and not task.done():
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return task
        return None

    async def _after(self, previous: asyncio.Task[None] | None, rt: AccountRuntime) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self._account_loop(rt)

    def ended_loops(self) -> dict[str, str]:
        """Accounts whose loop ended while the daemon runs (a bug), with the cause in words."""
        if self._stopping:
            return {}
        out: dict[str, str] = {}
        for name, task in self._tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                out[name] = describe(error) if error is not None else "the loop ended"
        return out

    def healthy(self) -> bool:
        """True while every account loop is alive (no loop ended with an exception)."""
        return not any(t.done() for t in self._tasks.values()) or self._stopping

    def pause(self, name: str) -> None:
        """Stop scheduling account ``name`` (a running cycle finishes); its IDLE connection and kept
        session are closed at once, not at the next due cycle. Raises KeyError if unknown."""
        rt = self.accounts[name]
        rt.paused = True
        if rt.state != "fetching":
            rt.state = "paused"
            rt.next_run = None
        rt.wake.set()  # the loop notices now: no connections while paused

    def resume(self, name: str) -> None:
        """Resume account ``name`` after :meth:`pause` or an auth lockout, with a cycle now.

        Raises:
            KeyError: no such account.
        """
        rt = self.accounts[name]
        rt.paused = False
        rt.auth_failures = 0
        if rt.state in ("paused", "auth_failed"):
            rt.state = "idle"
        rt.wake.set()

    def request_fetch(self, name: str) -> asyncio.Future[CycleResult | None]:
        """Ask for a cycle of account ``name`` now; the future resolves when that cycle ends.

        The future's result is the cycle's result, or None when it failed or the daemon stopped.

        Raises:
            KeyError: no such account.
        """
        rt = self.accounts[name]
        fut: asyncio.Future[CycleResult | None] = asyncio.get_running_loop().create_future()
        rt.waiters.append(fut)
        rt.wake.set()
        return fut

    def _default_watcher(self, account: AccountConfig) -> IdleWatcher | None:
        if account.protocol != "imap" or not account.idle:
            return None
        return IdleWatcher(account, budgets=self.budgets, store=self.store, clock=self.clock)

    def _blocked(self, rt: AccountRuntime) -> AccountState | None:
        """The state that keeps ``rt`` from fetching, or None when it may fetch."""
        if not rt.config.enabled:
            return "disabled"
        if rt.paused:
            return "paused"
        if rt.auth_failures >= AUTH_LOCKOUT_FAILURES:
            return "auth_failed"
        return None

    async def _account_loop(self, rt: AccountRuntime) -> None:
        account = rt.config
        structlog.contextvars.bind_contextvars(account=account.name, organisation=account.organisation)
        rt.watcher = self._watcher_factory(account)
        try:
            await self._cycles(rt)
        finally:
            await self.sessions.drop(account.name)
            if rt.watcher is not None:
                await rt.watcher.stop()
        _settle(rt.waiters, None)

    async def _cycles(self, rt: AccountRuntime) -> None:
        account = rt.config
        while not self._stopping and not rt.retired:
            blocked = self._blocked(rt)
            if blocked is not None:
                rt.state = blocked
                rt.next_run = None
                _settle(rt.waiters, None)
                await self.sessions.drop(account.name)  # no connections while paused or locked out
                if rt.watcher is not None:  # no logins while paused or locked out
                    await rt.watcher.stop()
                if blocked == "auth_failed":
                    # A new password (file, credential or command output) ends the lockout, like a
                    # config change would; checked every LOCKOUT_RECHECK_S seconds, without logging in.
                    if rt.lockout_fingerprint is None:
                        rt.lockout_fingerprint = await asyncio.to_thread(_password_fingerprint, rt.config)
                    await self._sleep(rt, LOCKOUT_RECHECK_S)
                    current = await asyncio.to_thread(_password_fingerprint, rt.config)
                    if rt.auth_failures and current is not None and current != rt.lockout_fingerprint:
                        rt.auth_failures = 0
                        rt.last_error = (rt.last_error or "") + " (password changed: trying again)"
                else:
                    await self._sleep(rt, None)
                continue
            waiters, rt.waiters = rt.waiters, []
            outcome: CycleResult | None = None
            try:
                outcome = await self._run_cycle(rt)
            finally:  # also when cancelled at shutdown: fetch-now callers get None
                _settle(waiters, outcome)
            if self._stopping or rt.retired:
                break
            if self._blocked(rt) is not None:
                continue
            failure = None if outcome is not None else rt.last_exception or RuntimeError()
            delay = policy.next_cycle_delay_s(
                account.poll_interval_s, rt.consecutive_failures, failure, self.rng
            )
            rt.next_run = self.clock() + timedelta(seconds=delay)
            await self._wait(rt, delay)

    async def _wait(self, rt: AccountRuntime, delay: float) -> None:
        """Wait ``delay`` seconds before the next cycle; a wake-up, or an IDLE push, ends it early.

        While the IDLE watcher reconnects after a loss, this keeps waiting: the account polls.
        """
        watcher = rt.watcher
        if watcher is None or self._stopping or rt.retired:
            await self._sleep(rt, delay)
            return
        if isinstance(rt.last_exception, AuthError):  # no extra failed logins from the watcher
            await watcher.stop()
        else:
            watcher.start()
        if not watcher.running:  # the server lacks IDLE
            await self._sleep(rt, delay)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while await watcher.wait(max(0.0, deadline - loop.time()), interrupt=rt.wake) == "lost":
            pass
        rt.wake.clear()

    async def _run_cycle(self, rt: AccountRuntime) -> CycleResult | None:
        account = rt.config

        def proceed() -> bool:  # the slot and the connection are held now
            if self._stopping or rt.retired or self._blocked(rt) is not None:
                return False  # paused (or stopped) while waiting
            rt.state = "fetching"
            rt.next_run = None
            return True

        def counted(outcome: StoreOutcome) -> None:  # metrics per committed batch, not per cycle
            rt.fetched_messages += outcome.new_links
            rt.fetched_octets += outcome.octets

        rt.progress = CycleProgress(on_commit=counted)
        try:
            result = await self.runner.run(account, keep_open=True, proceed=proceed, progress=rt.progress)
        except MaildError as exc:
            self._failed(rt, exc)
            await self._keep_history(rt)
            return None
        except Exception as exc:  # a bug must not stop the other accounts
            log.exception("fetch.failed", outcome="internal-error")
            self._failed(rt, exc)
            await self._keep_history(rt)
            return None
        finally:
            rt.progress = None
        if result is None:
            return None
        rt.state = "idle"
        rt.last_success = self.clock()
        rt.last_error = None
        rt.last_error_at = None
        rt.failing_since = None
        rt.consecutive_failures = 0
        rt.auth_failures = 0
        rt.last_result = result
        if result.imap is not None and result.imap.uidvalidity_changes:
            kept = rt.uidvalidity_changes + result.imap.uidvalidity_changes
            rt.uidvalidity_changes = kept[-KEPT_UIDVALIDITY_CHANGES:]
        rt.cycles["ok"] = rt.cycles.get("ok", 0) + 1
        rt.new_messages += result.new_messages
        rt.last_exception = None
        quiet = not (result.new_links or result.deleted or result.failures or result.too_large)
        # A cycle with nothing new is the normal case (~80 % of a day's lines at a 5-minute poll):
        # debug. Messages set aside for good (too large) need the admin: error.
        (log.debug if quiet else log.info)(
            "fetch.complete",
            outcome="ok",
            on_server=result.on_server,
            new_messages=result.new_messages,
            already_archived=result.new_links - result.new_messages,
            octets=result.octets,
            deleted=result.deleted,
            failures=len(result.failures),
            too_large=len(result.too_large),
            seconds=round(result.seconds, 3),
        )
        if result.too_large:
            log.error(
                "fetch.messages-set-aside",
                messages=len(result.too_large),
                reason="larger than max_message_size; left on the server",
            )
        await self._keep_history(rt)
        return result

    def _failed(self, rt: AccountRuntime, exc: BaseException) -> None:
        """Record a failed cycle in ``rt`` and log it."""
        rt.consecutive_failures += 1
        rt.last_error = describe(exc)
        rt.last_error_at = self.clock()
        if rt.failing_since is None:
            rt.failing_since = rt.last_error_at
        outcome = outcome_label(exc)
        rt.cycles[outcome] = rt.cycles.get(outcome, 0) + 1
        rt.state = "backoff" if isinstance(exc, TransientError) else "error"
        if isinstance(exc, AuthError):
            # A refused refresh token (issue 13) will not work again: lock out at once, no retries.
            rt.auth_failures = AUTH_LOCKOUT_FAILURES if exc.reauthorize else rt.auth_failures + 1
            if rt.auth_failures < AUTH_LOCKOUT_FAILURES:
                # A refusal before the lockout is retried like a transient failure (a password being
                # changed, a provider's hiccup): "backoff", a warning, not a permanent "error".
                rt.state = "backoff"
                rt.last_error = (
                    f"{rt.last_error} (refusal {rt.auth_failures} of {AUTH_LOCKOUT_FAILURES}: tried"
                    f" again at the next cycle; {AUTH_LOCKOUT_FAILURES} in a row lock the account out)"
                )
            else:
                rt.state = "auth_failed"
                rt.lockout_fingerprint = None  # taken by the account loop, off the event loop
                rt.last_error = (
                    f"{rt.last_error} — {rt.auth_failures} refusals in a row: not trying again until the "
                    "password or the account's configuration changes, or `maild resume`"
                )
        else:
            rt.auth_failures = 0
        rt.last_exception = exc
        if isinstance(exc, MaildError):
            # One failure is weather (warning); a lockout, REPEATED_FAILURES in a row or an archive
            # that cannot be written needs the admin (error), so `journalctl -p err` shows those.
            serious = (
                rt.state == "auth_failed"
                or rt.consecutive_failures >= REPEATED_FAILURES
                or outcome == "store"  # the archive cannot be written (a full disk): no retry helps
            )
            (log.error if serious else log.warning)(
                "fetch.failed",
                outcome=outcome,
                error=rt.last_error,
                consecutive_failures=rt.consecutive_failures,
                locked_out=rt.state == "auth_failed",
            )

    async def _sleep(self, rt: AccountRuntime, delay: float | None) -> None:
        if self._stopping or rt.retired:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await rt.wake.wait()
        rt.wake.clear()


def _password_fingerprint(account: AccountConfig) -> str | None:
    """A digest of the account's current password, to notice a change; None when it cannot be read."""
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


def _settle(waiters: list[asyncio.Future[CycleResult | None]], outcome: CycleResult | None) -> None:
    """Resolve every pending ``fetch-now`` future with ``outcome`` and empty the list."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(outcome)
    waiters.clear()
