"""The IDLE watcher with in-memory sessions, and its use by the scheduler, status and metrics.

:class:`FakeSession` stands in for :class:`maild.protocols.imap.idle.IMAPIdleSession`: the test pushes
events into it or makes it fail. The scheduler runs accounts on :class:`tests.unit.fakes.FakeServer`
maildrops with poll intervals of an hour, so a cycle after the first one comes from a push.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import AuthError, ConfigError, ConnectError, NetworkTimeout, ProtocolError
from maild.fetch.cycle import CycleResult
from maild.fetch.resync import IMAPCycleInfo, UIDValidityChange
from maild.protocols.imap.wire import MailboxEvents, SelectInfo
from maild.service import metrics
from maild.service.account_runtime import AccountRuntime
from maild.service.budget import Budgets
from maild.service.idle import IdleWatcher
from maild.service.scheduler import Scheduler
from maild.service.snapshot import account_status
from tests.support.accounts import imap_account, pop3_account
from tests.support.waiting import eventually
from tests.unit.fakes import FakeServer, maildrops_of

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeSession:
    """One IDLE session: ``events`` queue feeds idle_wait; ``fail_at`` makes a step raise."""

    def __init__(self, hub: SessionHub) -> None:
        self.hub = hub
        self.events: asyncio.Queue[MailboxEvents | BaseException] = asyncio.Queue()
        self.steps: list[str] = []
        self.aborted = False
        self.notify_refused: str | None = None

    @property
    def supports_idle(self) -> bool:
        return self.hub.supports_idle

    async def _step(self, name: str) -> None:
        self.steps.append(name)
        failure = self.hub.fail_at.pop(name, None)
        if failure is not None:
            raise failure

    async def open(self) -> None:
        await self._step("open")

    async def notify(self) -> bool:
        return False

    async def select_mailbox(self) -> SelectInfo:
        await self._step("select")
        return SelectInfo(exists=1, uidvalidity=self.hub.uidvalidity, uidnext=self.hub.uidnext)

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None:
        self.steps.append("keepalive")

    async def idle_start(self) -> None:
        await self._step("idle_start")

    async def idle_wait(self, timeout_s: float) -> MailboxEvents:
        try:
            item = await asyncio.wait_for(self.events.get(), timeout_s)
        except TimeoutError:
            return MailboxEvents()
        if isinstance(item, BaseException):
            raise item
        return item

    async def idle_done(self) -> MailboxEvents:
        await self._step("idle_done")
        return MailboxEvents()

    async def noop(self) -> MailboxEvents:
        await self._step("noop")
        return MailboxEvents()

    async def close(self) -> None:
        self.steps.append("close")

    async def abort(self) -> None:
        self.aborted = True


class SessionHub:
    """Makes FakeSessions and controls them: the current one, failures to inject, the mailbox state."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.fail_at: dict[str, BaseException] = {}
        self.factory_error: BaseException | None = None
        self.supports_idle = True
        self.uidvalidity = 7
        self.uidnext: int | None = 5

    def factory(self, account: AccountConfig) -> FakeSession:
        if self.factory_error is not None:
            raise self.factory_error
        session = FakeSession(self)
        self.sessions.append(session)
        return session

    @property
    def current(self) -> FakeSession:
        return self.sessions[-1]


@pytest.fixture
def hub() -> SessionHub:
    """Controls the fake sessions of a watcher."""
    return SessionHub()


def watcher_for(
    made: list[IdleWatcher],
    hub: SessionHub,
    account: AccountConfig | None = None,
    store: Store | None = None,
    budgets: Budgets | None = None,
) -> IdleWatcher:
    watcher = IdleWatcher(
        account or imap_account(),
        budgets=budgets,
        store=store,
        session_factory=hub.factory,
        clock=lambda: NOW,
        reconnect_base_s=0.01,
        reconnect_cap_s=0.04,
    )
    made.append(watcher)
    return watcher


# -- the watcher ----------------------------------------------------------------------------------------


async def test_push_and_timeout(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """EXISTS pushed: wait() returns "push" and last_push is set; flag changes alone are no push."""
    watcher = watcher_for(watchers, hub)
    assert watcher.mode == "polling"
    watcher.start()
    assert watcher.mode == "reconnecting"
    await eventually(lambda: watcher.mode == "idle")
    assert await watcher.wait(0.5) == "push"  # no store: catch up after connecting
    hub.current.events.put_nowait(MailboxEvents(other=1))
    assert await watcher.wait(0.05) == "timeout"
    assert watcher.last_push is None

    hub.current.events.put_nowait(MailboxEvents(exists=2))
    assert await watcher.wait(5) == "push"
    assert watcher.last_push == NOW
    assert hub.current.steps[:4] == ["open", "select", "keepalive", "idle_start"]


async def test_the_idle_connection_counts_against_the_host_and_is_given_back(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """While IDLE runs it holds one connection of the host; a loss and a stop give it back."""
    budgets = Budgets(max_cycles=4, per_host=2)
    account = imap_account()
    watcher = watcher_for(watchers, hub, account, budgets=budgets)
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")
    assert budgets.connections(account.host) == 1
    hub.current.events.put_nowait(ConnectError("connection lost"))
    await eventually(lambda: len(hub.sessions) == 2 and watcher.mode == "idle")
    assert budgets.connections(account.host) == 1
    await watcher.stop()
    assert budgets.connections(account.host) == 0


async def test_idle_waits_while_only_one_connection_of_the_host_is_left(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """With all but one connection of the host held, the watcher does not connect (the account polls)
    until one is given back."""
    budgets = Budgets(max_cycles=4, per_host=2)
    account = imap_account()
    await budgets.acquire_connection(account.host)  # a fetch cycle
    watcher = watcher_for(watchers, hub, account, budgets=budgets)
    watcher.start()
    await asyncio.sleep(0.05)
    assert (watcher.mode, hub.sessions) == ("reconnecting", [])
    budgets.release_connection(account.host)
    await eventually(lambda: watcher.mode == "idle")


async def test_one_connection_per_host_means_polling(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """With max_connections_per_host = 1 the watcher never connects: the one connection is the cycles'."""
    watcher = watcher_for(watchers, hub, budgets=Budgets(max_cycles=1, per_host=1))
    with capture_logs() as logs:
        watcher.start()
    assert not watcher.running
    assert watcher.mode == "polling"
    assert hub.sessions == []
    assert watcher.last_error is not None
    assert "max_connections_per_host" in watcher.last_error
    assert [e["event"] for e in logs] == ["imap.idle-no-connection"]


async def test_push_while_nobody_waits_is_kept(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """A push that arrives while no one waits (a fetch cycle runs) makes the next wait() return at once."""
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")
    await watcher.wait(0.5)
    hub.current.events.put_nowait(MailboxEvents(expunged=1))
    await asyncio.sleep(0.05)
    assert await watcher.wait(0) == "push"
    assert await watcher.wait(0) == "timeout"


async def test_catch_up_only_when_the_mailbox_moved(
    hub: SessionHub, watchers: list[IdleWatcher], store: Store
) -> None:
    """After (re)connecting, a cycle is triggered only when UIDVALIDITY or UIDNEXT differ from the last record."""
    account = imap_account()
    await store.ensure_account(account.name, account.organisation, account.employee, "imap", NOW)
    await store.record_mailbox_states(account.name, [("INBOX", 7, 5)], NOW)
    watcher = watcher_for(watchers, hub, account, store)
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")
    assert await watcher.wait(0.1) == "timeout"

    hub.uidnext = 6  # a message arrived while the connection was down
    hub.current.events.put_nowait(ConnectError("connection lost"))
    assert await watcher.wait(5) == "lost"
    await eventually(lambda: watcher.mode == "idle" and len(hub.sessions) == 2)
    assert await watcher.wait(0.5) == "push"
    assert watcher.last_push is None  # a catch-up is not a server push


async def test_loss_reconnects_with_backoff_and_is_reported_once(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """A loss: "lost" once, mode "reconnecting", failed attempts back off, then "idle" with the error cleared."""
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")
    await watcher.wait(0.5)
    hub.fail_at["open"] = ConnectError("refused")
    with capture_logs() as logs:
        hub.current.events.put_nowait(ConnectError("acct: IDLE: server closed the session: BYE"))
        assert await watcher.wait(5) == "lost"
        assert watcher.mode == "reconnecting"
        await eventually(lambda: len(hub.sessions) == 3 and watcher.mode == "idle")
    assert watcher.last_error is None
    assert hub.sessions[0].aborted and hub.sessions[1].aborted
    events = [(e["event"], e.get("retry_in_s")) for e in logs if e["event"].startswith("imap.idle-")]
    assert events[:3] == [
        ("imap.idle-lost", 0.01),
        ("imap.idle-connect-failed", 0.02),
        ("imap.idle-started", None),
    ]
    assert await watcher.wait(0.5) == "push"
    assert await watcher.wait(0.05) == "timeout"  # "lost" was reported once


async def test_restart_reissues_idle_with_liveness_check(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """Every idle_restart: DONE, NOOP, IDLE again, on the same session; a NOOP timeout is a loss."""
    watcher = watcher_for(watchers, hub, imap_account(idle_restart_s=0.02))
    watcher.start()
    await eventually(lambda: bool(hub.sessions) and hub.current.steps.count("idle_start") >= 3)
    steps = hub.current.steps
    assert steps[3:8] == ["idle_start", "idle_done", "noop", "idle_start", "idle_done"]
    assert len(hub.sessions) == 1

    with capture_logs() as logs:
        hub.fail_at["noop"] = NetworkTimeout("NOOP: no data from server for 1 s")
        await eventually(lambda: len(hub.sessions) == 2)
    assert [e["error"] for e in logs if e["event"] == "imap.idle-lost"] == [
        "NOOP: no data from server for 1 s"
    ]


async def test_internal_error_and_config_error_keep_the_watcher_alive(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """A bug in a session or an unreadable password makes the watcher retry, never die."""
    hub.factory_error = ConfigError("account anna-imap: password_file /x is empty")
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: watcher.last_error is not None)
    assert "password_file" in (watcher.last_error or "")
    assert watcher.running and watcher.mode == "reconnecting"
    hub.factory_error = None
    hub.fail_at["select"] = RuntimeError("bug")
    await eventually(lambda: watcher.mode == "idle")
    assert hub.sessions[0].aborted


async def test_refused_login_stops_the_watcher_without_retrying(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """LOGIN refused: no retry from the watcher (providers lock accounts after repeated failures);
    mode "polling"; a later start() (after a cycle that logged in) tries again."""
    hub.fail_at["open"] = AuthError("anna-imap: LOGIN refused: NO [AUTHENTICATIONFAILED]")
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: not watcher.running)
    await asyncio.sleep(0.05)
    assert (watcher.mode, len(hub.sessions)) == ("polling", 1)
    assert "AUTHENTICATIONFAILED" in (watcher.last_error or "")
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")


async def test_idle_mailbox_that_cannot_be_selected_stops_the_watcher(
    hub: SessionHub, watchers: list[IdleWatcher]
) -> None:
    """SELECT of idle_mailbox refused (NO): no reconnect loop; mode "polling" with the reason until the next start()."""
    hub.fail_at["select"] = ProtocolError("anna-imap: SELECT 'Eingang' refused: NO [NONEXISTENT]")
    watcher = watcher_for(watchers, hub)
    with capture_logs() as logs:
        watcher.start()
        await eventually(lambda: not watcher.running)
    assert (watcher.mode, len(hub.sessions)) == ("polling", 1)
    assert hub.current.aborted
    assert [e["event"] for e in logs] == ["imap.idle-select-failed"]


async def test_server_without_idle_leaves_polling(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """No IDLE capability: the session is closed, mode "polling", and start() does nothing more."""
    hub.supports_idle = False
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: not watcher.running)
    assert watcher.mode == "polling"
    assert hub.current.steps == ["open", "close"]
    watcher.start()
    assert not watcher.running and len(hub.sessions) == 1


async def test_stop_cancels_and_aborts(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """stop() ends the task at once, aborts the session and reports "polling"; start() begins again."""
    watcher = watcher_for(watchers, hub)
    watcher.start()
    await eventually(lambda: watcher.mode == "idle")
    await watcher.stop()
    assert not watcher.running and watcher.mode == "polling"
    assert hub.current.aborted
    watcher.start()
    await eventually(lambda: watcher.mode == "idle" and len(hub.sessions) == 2)


async def test_wait_interrupted(hub: SessionHub, watchers: list[IdleWatcher]) -> None:
    """The scheduler's wake-up event ends a wait (fetch-now, stop, reload) and stays set."""
    watcher = watcher_for(watchers, hub)
    wake = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, wake.set)
    assert await watcher.wait(5, interrupt=wake) == "interrupted"
    assert wake.is_set()


# -- the scheduler --------------------------------------------------------------------------------------


async def start_scheduler(
    store: Store,
    executor: ThreadPoolExecutor,
    accounts: list[AccountConfig],
    hub: SessionHub,
    servers: dict[str, FakeServer],
) -> tuple[Scheduler, asyncio.Event, asyncio.Task[None]]:
    for a in accounts:
        await store.ensure_account(a.name, a.organisation, a.employee, a.protocol, NOW)
        if a.protocol == "imap":  # what a first cycle would record (the fake maildrop records nothing)
            await store.record_mailbox_states(a.name, [("INBOX", hub.uidvalidity, hub.uidnext)], NOW)

    def factory(account: AccountConfig) -> IdleWatcher | None:
        if account.protocol != "imap" or not account.idle:
            return None
        return IdleWatcher(
            account, store=store, session_factory=hub.factory, clock=lambda: NOW, reconnect_base_s=0.01
        )

    sched = Scheduler(
        accounts,
        store,
        executor,
        max_concurrent_fetches=4,
        maildrop_factory=maildrops_of(servers),
        clock=lambda: NOW,
        watcher_factory=factory,
    )
    stop = asyncio.Event()
    return sched, stop, asyncio.create_task(sched.run(stop, 2.0))


async def stop_scheduler(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """End what :func:`start_scheduler` started: set ``stop`` and wait (at most 5 s) for the run to return."""
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_push_triggers_a_cycle_at_once(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer], hub: SessionHub
) -> None:
    """With a poll interval of an hour, a push from the IDLE session makes the next cycle run at once.

    Steps: first cycle; watcher idles (no catch-up needed: nothing recorded moved); push; a second
    cycle runs; a loss does not run one (polling continues); stop ends the watcher.
    """
    servers["anna-imap"] = FakeServer.with_pop3(2)
    sched, stop, task = await start_scheduler(store, executor, [imap_account()], hub, servers)
    rt = sched.accounts["anna-imap"]
    await eventually(lambda: rt.mode == "idle" and rt.cycles.get("ok") == 1)
    await asyncio.sleep(0.05)
    assert rt.cycles["ok"] == 1  # the mailbox did not move: no catch-up cycle
    cycles = rt.cycles["ok"]

    hub.current.events.put_nowait(MailboxEvents(exists=3))
    await eventually(lambda: rt.cycles.get("ok", 0) == cycles + 1)
    hub.current.events.put_nowait(ConnectError("lost"))
    await eventually(lambda: len(hub.sessions) == 2 and rt.mode == "idle")
    await asyncio.sleep(0.1)
    assert rt.cycles["ok"] == cycles + 1  # a loss alone runs no cycle

    await stop_scheduler(stop, task)
    assert rt.watcher is not None and not rt.watcher.running
    assert hub.current.aborted


async def test_paused_account_drops_its_idle_session(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer], hub: SessionHub
) -> None:
    """pause stops the watcher (no logins while paused); resume fetches and idles again."""
    servers["anna-imap"] = FakeServer.with_pop3(1)
    sched, stop, task = await start_scheduler(store, executor, [imap_account()], hub, servers)
    rt = sched.accounts["anna-imap"]
    await eventually(lambda: rt.mode == "idle")
    sched.pause("anna-imap")
    rt.wake.set()
    await eventually(lambda: rt.state == "paused" and rt.mode == "polling")
    sched.resume("anna-imap")
    await eventually(lambda: rt.mode == "idle" and len(hub.sessions) == 2)
    await stop_scheduler(stop, task)


async def test_no_idle_logins_while_the_account_fails_authentication(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer], hub: SessionHub
) -> None:
    """While fetch cycles fail with AuthError the watcher is not started (no extra failed logins)."""
    servers["anna-imap"] = FakeServer.with_pop3(1)
    servers["anna-imap"].default_plan.faults = {"open": AuthError("refused", account="anna-imap")}
    sched, stop, task = await start_scheduler(store, executor, [imap_account()], hub, servers)
    rt = sched.accounts["anna-imap"]
    await eventually(lambda: rt.state == "backoff" and rt.auth_failures == 1)
    await asyncio.sleep(0.05)
    assert hub.sessions == []
    assert rt.mode == "polling"
    await stop_scheduler(stop, task)


async def test_pop3_and_idle_false_accounts_have_no_watcher(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer], hub: SessionHub
) -> None:
    """POP3 accounts and IMAP accounts with idle = false poll: no watcher, mode "polling"."""
    servers["anna-pop"] = FakeServer.with_pop3(1)
    servers["anna-imap"] = FakeServer.with_pop3(1)
    accounts = [pop3_account(), imap_account(idle=False)]
    sched, stop, task = await start_scheduler(store, executor, accounts, hub, servers)
    await eventually(lambda: all(rt.cycles.get("ok") == 1 for rt in sched.accounts.values()))
    assert [(rt.watcher, rt.mode) for rt in sched.accounts.values()] == [(None, "polling")] * 2
    assert hub.sessions == []
    await stop_scheduler(stop, task)


# -- status and metrics -----------------------------------------------------------------------------------


def test_status_of_an_imap_account(hub: SessionHub) -> None:
    """IMAP status: mode, last_push, idle settings, covered mailboxes, mailbox failures, UIDVALIDITY changes."""
    account = imap_account(
        all_mailboxes=True, mailboxes=(), exclude=("Newsletter",), retention="delete-after", retention_days=30
    )
    rt = AccountRuntime(account)
    rt.watcher = IdleWatcher(account, session_factory=hub.factory)
    rt.watcher.mode = "idle"
    rt.watcher.last_push = NOW
    change = UIDValidityChange("INBOX", 1, 2, relinked=4, to_retrieve=1, at=NOW)
    rt.uidvalidity_changes = [change]
    result = CycleResult("anna-imap", on_server=3)
    result.imap = IMAPCycleInfo(["INBOX", "Entwürfe"], {"Archiv": "refused"}, [change])
    rt.last_result = result

    status = account_status(rt, 3).to_json()

    assert status["mode"] == "idle"
    assert status["last_push"] == "2026-03-02T09:00:00Z"
    assert status["mailboxes"] == ["INBOX", "Entwürfe"]
    assert (status["mailbox_selection"], status["exclude"]) == ("all", ["Newsletter"])
    assert (status["idle"], status["idle_mailbox"]) == (True, "INBOX")
    assert status["uidvalidity_changes"] == [
        {
            "mailbox": "INBOX",
            "old_uidvalidity": 1,
            "new_uidvalidity": 2,
            "relinked": 4,
            "to_retrieve": 1,
            "at": "2026-03-02T09:00:00Z",
        }
    ]
    assert status["last_cycle"]["mailbox_failures"] == {"Archiv": "refused"}
    assert (status["retention"], status["retention_days"]) == ("delete-after", 30)


def test_status_before_the_first_cycle_and_for_pop3() -> None:
    """Before any cycle the configured mailboxes are shown; POP3 and idle = false accounts are "polling"."""
    imap = account_status(
        AccountRuntime(imap_account(mailboxes=("INBOX", "Archiv"), idle=False)), 0
    ).to_json()
    assert (imap["mode"], imap["mailboxes"], imap["last_push"], imap["uidvalidity_changes"]) == (
        "polling",
        ["INBOX", "Archiv"],
        None,
        [],
    )
    pop = account_status(AccountRuntime(pop3_account()), 0).to_json()
    assert pop["mode"] == "polling"
    assert "mailboxes" not in pop


def test_metrics_report_the_real_mode(hub: SessionHub) -> None:
    """maild_account_mode carries the account's mode as a label."""
    idle_rt = AccountRuntime(imap_account())
    idle_rt.watcher = IdleWatcher(idle_rt.config, session_factory=hub.factory)
    idle_rt.watcher.mode = "reconnecting"
    text = metrics.render([idle_rt, AccountRuntime(pop3_account())], 0, 0)
    assert (
        'maild_account_mode{account="anna-imap",organisation="Kanzlei Berger",protocol="imap",mode="reconnecting"} 1'
        in text
    )
    assert (
        'maild_account_mode{account="anna-pop",organisation="Kanzlei Berger",protocol="pop3",mode="polling"} 1'
        in text
    )


def test_replace_keeps_watcher_settings() -> None:
    """AccountConfig equality covers the IDLE keys, so a reload that changes them restarts the account."""
    account = imap_account()
    assert replace(account, idle_restart_s=30.0) != account
    assert replace(account, idle=False) != account


def test_cli_status_table_shows_idle_failures_and_uidvalidity_changes(hub: SessionHub) -> None:
    """`maild status` adds lines for the IDLE mode, mailboxes not fetched and UIDVALIDITY changes."""
    from datetime import UTC

    from maild.cli.status_view import render_status
    from maild.service.status import ArchiveTotals, StatusReply

    rt = AccountRuntime(imap_account())
    rt.watcher = IdleWatcher(rt.config, session_factory=hub.factory)
    rt.watcher.mode = "reconnecting"
    rt.uidvalidity_changes = [UIDValidityChange("INBOX", 1, 2, relinked=4, to_retrieve=1, at=NOW)]
    result = CycleResult("anna-imap")
    result.imap = IMAPCycleInfo(["INBOX"], {"Archiv": "SELECT refused"}, [])
    rt.last_result = result
    reply = StatusReply("1", NOW, (account_status(rt, 5),), ArchiveTotals(5, 9))
    text = render_status(reply, now=NOW, tz=UTC)

    assert "    IDLE on 'INBOX': reconnecting, last push never" in text
    assert "    mailbox 'Archiv' not fetched: SELECT refused" in text
    assert "    UIDVALIDITY of 'INBOX' changed at 09:00: 4 recognised without download, 1 retrieved" in text
