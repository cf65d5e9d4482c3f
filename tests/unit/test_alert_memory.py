"""Alerts across a restart and the daemon's own kinds: the alert memory in a real archive, a real alert
command, a real scheduler whose account loop dies, a really blocked event loop."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild.archive.store import Store
from maild.config.alerts import AlertsConfig
from maild.errors import AuthError
from maild.fetch.cycle import CycleResult
from maild.model import POP3Key
from maild.service.account_runtime import AUTH_LOCKOUT_FAILURES, AccountRuntime
from maild.service.alert_delivery import Alerter
from maild.service.alerts import AlertMonitor
from maild.service.health import LoopLagProbe, daemon_problems
from maild.service.scheduler import Scheduler
from tests.support.accounts import pop3_account

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def alert_command(out: Path) -> tuple[str, ...]:
    """An alert command appending each JSON event to ``out``."""
    return (sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())")


def received(out: Path) -> list[tuple[str, str, str | None]]:
    """(kind, state, account) of every event the command got."""
    text = out.read_text() if out.exists() else ""
    return [(e["kind"], e["state"], e["account"]) for e in map(json.loads, text.splitlines())]


def locked_out(name: str) -> AccountRuntime:
    """A runtime as the scheduler leaves it after the third refused login."""
    rt = AccountRuntime(pop3_account(name))
    rt.state, rt.auth_failures, rt.consecutive_failures = "auth_failed", AUTH_LOCKOUT_FAILURES, 3
    rt.failing_since = rt.last_error_at = T0
    rt.last_exception = AuthError("login refused", account=name)
    rt.last_error = "login refused — 3 refusals in a row: not trying again"
    rt.cycles = {"auth": 3}
    return rt


async def test_a_restart_neither_resends_nor_forgets_an_open_alert(tmp_path: Path) -> None:
    """Steps: a daemon's alerter sends failing and locked_out for a locked-out account and remembers
    them in the archive; the daemon stops; a new one opens the archive, restores the account from its
    history (the lockout counter included) and the alerts from the memory: nothing is sent again,
    also a day minus a minute later; the password fixed (resume, a good cycle): one recovery per kind."""
    path = tmp_path / "maild.sqlite3"
    out = tmp_path / "events.jsonl"
    config = AlertsConfig(command=alert_command(out), after_s=60, disk_free_percent=0)

    async with await Store.open(path) as store:
        await store.ensure_account("anna", "O", "E", "pop3", T0)
        alerter = Alerter(config)
        await alerter.attach(store)
        rt = locked_out("anna")
        await store.record_history(rt.history())
        await alerter.check([rt], T0 + timedelta(minutes=5), tmp_path)
        await alerter.close()
    assert received(out) == [("locked_out", "firing", "anna"), ("failing", "firing", "anna")]

    async with await Store.open(path) as store:
        alerter = Alerter(config)
        await alerter.attach(store)
        fresh = AccountRuntime(pop3_account("anna"))
        fresh.remember((await store.account_histories())["anna"])
        assert fresh.auth_failures == AUTH_LOCKOUT_FAILURES  # still locked out: no fresh tries
        for later in (timedelta(minutes=6), timedelta(hours=23, minutes=59)):
            assert await alerter.check([fresh], T0 + later, tmp_path) == []

        fresh.auth_failures, fresh.failing_since, fresh.state = 0, None, "idle"  # resumed, a good cycle
        fresh.last_result, fresh.cycles = CycleResult("anna"), {"ok": 1}
        events = await alerter.check([fresh], T0 + timedelta(days=1), tmp_path)
        await alerter.close()
        assert sorted((e.kind, e.state, e.organisation) for e in events) == [
            ("failing", "recovered", fresh.config.organisation),
            ("locked_out", "recovered", fresh.config.organisation),
        ]
    async with await Store.open(path) as store:
        again = Alerter(config)
        await again.attach(store)
        assert again.monitor.accounts_alerted() == []  # the recoveries were remembered too
    assert len(received(out)) == 4


def test_set_aside_remembered_is_kept_until_the_first_cycle_says_otherwise() -> None:
    """After a restart the set-aside messages are unknown until a cycle ran: no recovery notice
    before, one after a cycle that left nothing aside."""
    monitor = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0))
    big = AccountRuntime(pop3_account("bernd"))
    big.last_result = replace(CycleResult("bernd"), too_large=[POP3Key("u1")])
    monitor.evaluate([big], T0)
    sent, _cleared = monitor.take_changes()

    restarted = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0))
    restarted.restore(sent)
    fresh = AccountRuntime(pop3_account("bernd"))
    assert restarted.evaluate([fresh], T0 + timedelta(minutes=1)) == []
    fresh.last_result = CycleResult("bernd")
    assert [(e.kind, e.state) for e in restarted.evaluate([fresh], T0 + timedelta(minutes=2))] == [
        ("set_aside", "recovered")
    ]


def test_the_archive_guard_alerts_and_recovers() -> None:
    """A replaced archive fires archive_replaced at once with the guard's text and a next step; when
    it no longer holds (a restart on the right file) a recovery follows."""
    monitor = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0))
    text = "archive /x was deleted under the running daemon; deletions on every server stopped"
    fired = monitor.evaluate([], T0, archive_replaced=text)
    assert [(e.kind, e.state, e.account, e.message) for e in fired] == [
        ("archive_replaced", "firing", None, text)
    ]
    assert "systemctl restart maild" in fired[0].next_step
    assert fired[0].subject() == "[maild] archive replaced, deletions stopped"
    assert [e.state for e in monitor.evaluate([], T0 + timedelta(minutes=1))] == ["recovered"]


async def test_an_account_loop_that_dies_is_a_daemon_problem_of_that_account(tmp_path: Path) -> None:
    """A real scheduler whose account loop ends with an exception (here: making its IDLE watcher
    fails) reports that account in daemon_problems; the alert names it."""

    def broken_watcher(_account: object) -> None:
        raise RuntimeError("watcher exploded")

    async with await Store.open(tmp_path / "maild.sqlite3") as store:
        await store.ensure_account("anna", "O", "E", "pop3", T0)
        with ThreadPoolExecutor(1) as executor:
            scheduler = Scheduler([pop3_account("anna")], store, executor, watcher_factory=broken_watcher)
            stop = asyncio.Event()
            running = asyncio.create_task(scheduler.run(stop, 1.0))
            async with asyncio.timeout(10):
                while not scheduler.ended_loops():
                    await asyncio.sleep(0.01)
            problems = daemon_problems(scheduler, None, T0)
            runtimes = list(scheduler.accounts.values())
            stop.set()
            await running
    assert list(problems) == ["anna"]
    assert "watcher exploded" in problems["anna"]
    events = AlertMonitor(AlertsConfig(command=("true",), disk_free_percent=0)).evaluate(
        runtimes, T0, daemon_problems=problems
    )
    assert [(e.kind, e.account) for e in events] == [("daemon", "anna")]


async def test_a_blocked_event_loop_is_noticed() -> None:
    """A call that blocks the event loop (a deliberate time.sleep across the probe's wake-up time)
    longer than loop_lag is reported by the probe, with how long."""
    probe = LoopLagProbe(threshold_s=0.3)
    probe.start()
    try:
        await asyncio.sleep(0.05)  # the probe is asleep now
        time.sleep(1.6)  # the blocking call under test, across the probe's wake-up time
        await asyncio.sleep(1.5)  # the probe wakes late and records it
    finally:
        await probe.stop()
    problem = probe.problem(datetime.now(UTC))
    assert problem is not None and "the event loop was blocked for" in problem
    assert probe.worst_s >= 0.3
    assert probe.problem(datetime.now(UTC) + timedelta(hours=1)) is None  # forgotten after a while


async def test_a_restart_keeps_a_lockout_and_a_changed_configuration_ends_it(tmp_path: Path) -> None:
    """A scheduler started with a remembered lockout (history auth_failures 3) keeps the account locked
    out; a reload that changes the account's configuration starts it afresh."""
    async with await Store.open(tmp_path / "maild.sqlite3") as store:
        with ThreadPoolExecutor(1) as executor:
            account = pop3_account("anna")
            history = {"anna": locked_out("anna").history()}
            scheduler = Scheduler([account], store, executor, history=history)
            assert scheduler.accounts["anna"].auth_failures == AUTH_LOCKOUT_FAILURES
            assert scheduler._blocked(scheduler.accounts["anna"]) == "auth_failed"

            scheduler.apply([replace(account, username="anna.new")])
            assert scheduler.accounts["anna"].auth_failures == 0
            assert scheduler._blocked(scheduler.accounts["anna"]) is None


def test_a_blocked_loop_is_logged_once_per_episode_and_when_worse() -> None:
    """Lateness above loop_lag is logged at error when an episode starts and when it gets worse, not
    at every late wake-up; the worst lateness is what the alert reports."""
    from structlog.testing import capture_logs

    probe = LoopLagProbe(threshold_s=10.0)
    with capture_logs() as logs:
        probe.record(12.0, T0)
        probe.record(11.0, T0 + timedelta(seconds=1))
        probe.record(15.0, T0 + timedelta(seconds=2))
        probe.record(3.0, T0 + timedelta(seconds=3))  # below the threshold: not a block
    assert [(e["event"], e["log_level"], e["seconds"]) for e in logs] == [
        ("daemon.loop-blocked", "error", 12.0),
        ("daemon.loop-blocked", "error", 15.0),
    ]
    problem = probe.problem(T0 + timedelta(seconds=4))
    assert problem is not None and "blocked for 15.0 s" in problem


async def test_alerts_configured_later_send_the_problems_already_open(tmp_path: Path) -> None:
    """Steps: a daemon without [alerts] sees an account locked out (no channel: nothing sent, nothing
    remembered); the admin adds an alert command (a reload): the next check sends locked_out and failing at
    once, not after `repeat` (QA of session 11: they were remembered as sent to no one and held back a day)."""
    path = tmp_path / "maild.sqlite3"
    out = tmp_path / "events.jsonl"
    async with await Store.open(path) as store:
        await store.ensure_account("anna", "O", "E", "pop3", T0)
        alerter = Alerter(AlertsConfig(disk_free_percent=0))
        await alerter.attach(store)
        rt = locked_out("anna")
        assert await alerter.check([rt], T0 + timedelta(minutes=5), tmp_path) == []
        await alerter.close()
        alerter.reconfigure(
            AlertsConfig(command=alert_command(out), after_s=60, disk_free_percent=0), ["anna"]
        )
        await alerter.check([rt], T0 + timedelta(minutes=6), tmp_path)
        await alerter.close()
    assert received(out) == [("locked_out", "firing", "anna"), ("failing", "firing", "anna")]
