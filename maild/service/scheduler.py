"""The scheduler: one asyncio task per account, a fetch at start and then every poll interval.

At most ``max_concurrent_fetches`` cycles run at once, and every other limit holds too: the scheduler
is handed the process's :class:`~maild.service.budget.Budgets` and passes it on to the kept
sessions, the IDLE watchers and every fetch cycle. A failing account is retried with capped
exponential backoff (decided in :func:`maild.waiting.next_cycle_delay_s`) and never delays the
others. :meth:`Scheduler.run` returns after a stop
request once running cycles have finished, or after ``shutdown_timeout_s`` by cancelling them
(which aborts their sessions: nothing committed is lost, nothing uncommitted is deleted) and ending
every request to a token endpoint still running (:func:`~maild.auth.endpoint.abort_exchanges`, also
one in its TCP connect) and every secret command still running in a thread
(:func:`~maild.auth.command.stop_commands`).
Each account's live state, and how a cycle's end changes it, is :mod:`maild.service.account_runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import structlog

from maild import waiting
from maild.archive.store import Store
from maild.auth.command import stop_commands
from maild.auth.endpoint import abort_exchanges
from maild.config.loader import AccountConfig
from maild.errors import AuthError, MaildError, StoreError
from maild.fetch.cycle import CycleResult, MaildropFactory, make_maildrop, utc_now
from maild.fetch.progress import CycleProgress
from maild.model import AccountHistory, StoreOutcome
from maild.service.account_runtime import (
    AUTH_LOCKOUT_FAILURES,
    REPEATED_FAILURES,
    AccountRuntime,
    AccountState,
    describe,
    password_fingerprint,
)
from maild.service.budget import Budgets
from maild.service.idle import IdleWatcher
from maild.service.kept_sessions import KeptSessions
from maild.service.runner import CycleRunner

log = structlog.get_logger("maild.service.scheduler")

#: Seconds between checks, without logging in, whether a locked-out account's password changed.
LOCKOUT_RECHECK_S = 30.0
#: Least seconds from the end of a cycle to the next cycle an IDLE push starts: the pushes of a
#: burst are taken together, and a server pushing ``* n EXISTS`` without end (hostile or broken; QA
#: of session 11: 242 cycles in 3 s, a core's worth of CPU, no new mail) gets one cycle per this.
IDLE_PUSH_GAP_S = 2.0


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
            await self.flush_history()
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            # A cycle cancelled while its worker thread waits for a token endpoint waits for that
            # thread (POP3), and the process's exit joins it (IMAP): a hanging endpoint held the stop
            # up to HTTP_TIMEOUT_S past shutdown_timeout (QA of session 14). End those requests now,
            # also one still in its TCP connect, and kill the token_command / client_secret_command /
            # password_command (in a thread) still running, each with its process group: it was
            # waited for up to its 30 s timeout (session 15).
            stopped = abort_exchanges()
            killed = stop_commands()
            log.warning(
                "shutdown.cancelled",
                cycles=len(pending),
                token_requests_stopped=stopped,
                secret_commands_killed=killed,
            )
            await asyncio.wait(pending)
        await self.sessions.drop_all()
        await self.flush_history()  # the quiet cycles' rows: a stopped daemon has no housekeeping
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
        disk must not stop fetching: the archive's own commits report it).

        A quiet cycle's row (only its time and count of successes differ from the account's last
        row) is deferred to :meth:`flush_history`, so fifty accounts polling without new mail are
        one commit every few seconds, not fifty (docs/performance.md, "Session 10: fixed costs");
        any other change (a failure, its end, a push, new mail) is committed before this returns,
        with the deferred rows.
        """
        history = rt.history()
        previous = self.history.get(history.account)
        self.history[history.account] = history
        quiet = previous is not None and history == dataclasses.replace(
            previous, last_success=history.last_success, cycles_ok=history.cycles_ok
        )
        # after a failed commit a quiet row is committed at once: its success ends the problem shown
        # (QA of session 10: deferred rows never cleared it, the `daemon` alert stayed on for days)
        defer = quiet and self.history_error is None
        try:
            await self.store.record_history(history, defer=defer)
        except StoreError as exc:
            self.history_error = str(exc)
            log.warning("history.not-recorded", error=str(exc))
        else:
            if not defer:
                self.history_error = None

    async def flush_history(self) -> None:
        """Commit the deferred history rows of quiet cycles (:meth:`_keep_history`): called by the
        daemon's housekeeping every few seconds and when the scheduler stops. A failure is logged and
        shown (:attr:`history_error`) until a history commit succeeds."""
        try:
            committed = await self.store.flush_history()
        except StoreError as exc:
            self.history_error = str(exc)
            log.warning("history.not-recorded", error=str(exc))
        else:
            if committed:
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
                        rt.lockout_fingerprint = await asyncio.to_thread(password_fingerprint, rt.config)
                    await self._sleep(rt, LOCKOUT_RECHECK_S)
                    current = await asyncio.to_thread(password_fingerprint, rt.config)
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
            delay = waiting.next_cycle_delay_s(
                account.poll_interval_s, rt.consecutive_failures, failure, self.rng
            )
            rt.next_run = self.clock() + timedelta(seconds=delay)
            await self._wait(rt, delay)

    async def _wait(self, rt: AccountRuntime, delay: float) -> None:
        """Wait ``delay`` seconds before the next cycle; a wake-up, or an IDLE push, ends it early.

        While the IDLE watcher reconnects after a loss, this keeps waiting: the account polls. A push
        ends the wait no sooner than :data:`IDLE_PUSH_GAP_S` after it began (the end of the last cycle).
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
        earliest = loop.time() + IDLE_PUSH_GAP_S
        while (outcome := await watcher.wait(max(0.0, deadline - loop.time()), interrupt=rt.wake)) == "lost":
            pass
        if outcome == "push" and loop.time() < earliest:
            await self._sleep(rt, earliest - loop.time())  # a fetch-now or a stop ends it at once
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
        rt.succeeded(result, self.clock())
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
        self._log_local_failures(rt, result)
        await self._keep_history(rt)
        return result

    def _log_local_failures(self, rt: AccountRuntime, result: CycleResult) -> None:
        """Messages that failed on this machine's side (``"local"``: the spool's disk or directory):
        the first cycle of an episode logs a warning (journald priority 4) naming where to free
        space; later cycles of the same episode log at info, and the cycle that ends it says so."""
        started, ended = rt.note_local_failures(result, self.clock())
        local = [f for f in result.failures if f.kind == "local"]
        if local:
            (log.warning if started else log.info)(
                "fetch.local-failure",
                messages=len(local),
                reason=local[0].reason,
                action=f"free space in {self.store.spool.directory}; the messages stay on the server and"
                " are retried at every cycle",
                since=rt.local_failing_since.isoformat() if rt.local_failing_since else None,
            )
        elif ended:
            log.info("fetch.local-failure.cleared")

    def _failed(self, rt: AccountRuntime, exc: BaseException) -> None:
        """Record a failed cycle in ``rt`` and log it."""
        outcome = rt.failed(exc, self.clock())
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


def _settle(waiters: list[asyncio.Future[CycleResult | None]], outcome: CycleResult | None) -> None:
    """Resolve every pending ``fetch-now`` future with ``outcome`` and empty the list."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(outcome)
    waiters.clear()
