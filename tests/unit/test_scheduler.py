"""The scheduler with in-memory maildrops standing in for real servers.

The scheduler is given a maildrop factory (:func:`~tests.unit.fakes.maildrops_of`) that hands each
account a session of its own :class:`~tests.unit.fakes.FakeServer`. Poll intervals are an hour, so after its first cycle an
account only fetches again when asked to (``request_fetch``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import AuthError, ConnectError, ThrottledError
from maild.fetch.cycle import CycleResult
from maild.model import POP3Key
from maild.service import scheduler as scheduler_module
from maild.service.account_runtime import AccountRuntime
from maild.service.scheduler import Scheduler
from maild.waiting import BACKOFF_BASE_S, THROTTLE_MIN_S
from tests.support.accounts import pop3_account
from tests.support.waiting import eventually
from tests.unit.fakes import Concurrency, FakeServer, maildrops_of, make_message
from tests.unit.test_policy import LowRandom

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def make_scheduler(
    store: Store,
    executor: ThreadPoolExecutor,
    servers: dict[str, FakeServer],
    accounts: list[AccountConfig],
    *,
    max_concurrent_fetches: int = 8,
    max_connections_per_host: int = 8,
    rng: random.Random | None = None,
) -> Scheduler:
    for a in accounts:
        await store.ensure_account(a.name, a.organisation, a.employee, a.protocol, NOW)
    return Scheduler(
        accounts,
        store,
        executor,
        max_concurrent_fetches=max_concurrent_fetches,
        max_connections_per_host=max_connections_per_host,
        maildrop_factory=maildrops_of(servers),
        clock=lambda: NOW,
        rng=rng or LowRandom(),
    )


class Running:
    """Runs a scheduler in a background task until :meth:`stop`."""

    def __init__(self, scheduler: Scheduler, shutdown_timeout_s: float = 2.0) -> None:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(scheduler.run(self.stop_event, shutdown_timeout_s))

    async def stop(self, within_s: float = 5.0) -> None:
        self.stop_event.set()
        async with asyncio.timeout(within_s):
            await self.task


async def anna_after_first_cycle(
    store: Store,
    executor: ThreadPoolExecutor,
    servers: dict[str, FakeServer],
    shutdown_timeout_s: float = 2.0,
) -> tuple[FakeServer, Scheduler, AccountRuntime, Running]:
    """POP3 account "anna" with one message: its scheduler running and its first cycle done."""
    server = servers["anna"] = FakeServer.with_pop3(1)
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]
    run = Running(sched, shutdown_timeout_s)
    await eventually(lambda: rt.state == "idle" and rt.last_result is not None)
    return server, sched, rt, run


async def settled(fut: Awaitable[CycleResult | None]) -> CycleResult | None:
    async with asyncio.timeout(5):
        return await fut


# -- account loops --------------------------------------------------------------------------------


def gated_server(servers: dict[str, FakeServer], name: str, step: str) -> asyncio.Event:
    """A one-message POP3 server ``servers[name]`` whose sessions wait at ``step`` until the event is set."""
    gate = asyncio.Event()
    servers[name] = FakeServer.with_pop3(1)
    servers[name].plan(gates={step: gate})
    return gate


async def run_until_failed_beside_good(
    store: Store,
    executor: ThreadPoolExecutor,
    servers: dict[str, FakeServer],
    failing: str,
    faults: Mapping[str, BaseException],
    good_messages: int,
) -> Scheduler:
    """Run accounts ``failing`` (one message, its sessions failing with ``faults``) and ``good``
    (``good_messages`` messages) until ``failing`` has failed a cycle and ``good`` is "idle"; stopped."""
    servers[failing] = FakeServer.with_pop3(1)
    servers[failing].default_plan.faults = faults
    servers["good"] = FakeServer.with_pop3(good_messages)
    sched = await make_scheduler(store, executor, servers, [pop3_account(failing), pop3_account("good")])

    run = Running(sched)
    await eventually(
        lambda: sched.accounts[failing].state in ("error", "backoff")
        and sched.accounts["good"].state == "idle"
    )
    await run.stop()
    return sched


async def test_failing_account_does_not_stop_another(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """An account whose login is refused once is in state "backoff" (refusal 1 of 3, retried) while
    another account is fetched normally."""
    fault = AuthError("-ERR [AUTH] invalid password", account="bad")
    sched = await run_until_failed_beside_good(store, executor, servers, "bad", {"open": fault}, 2)

    assert sched.accounts["bad"].last_error is not None
    assert "invalid password" in sched.accounts["bad"].last_error
    assert "refusal 1 of 3" in sched.accounts["bad"].last_error
    assert sched.accounts["bad"].consecutive_failures == 1
    good = sched.accounts["good"]
    assert good.last_result is not None
    assert good.last_result.new_links == 2
    assert good.last_error is None
    assert (await store.message_counts()) == {"good": 2}


async def test_internal_error_in_one_account_does_not_stop_another(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A non-maild exception (a bug) in one account's cycle is recorded as an error; the other account still runs."""
    faults = {"inventory": RuntimeError("boom")}
    sched = await run_until_failed_beside_good(store, executor, servers, "buggy", faults, 1)

    assert sched.accounts["buggy"].last_error == "internal error: RuntimeError: boom"
    assert servers["buggy"].sessions[0].aborted
    assert (await store.message_counts()) == {"good": 1}


async def test_state_is_fetching_during_a_cycle(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """While a cycle runs the account is in state "fetching" with no next run; afterwards it is "idle" with one."""
    gate = gated_server(servers, "anna", "open")
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna", poll_interval_s=600.0)])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(
        lambda: bool(servers["anna"].sessions) and servers["anna"].sessions[0].has_reached("open")
    )
    during = (rt.state, rt.next_run)
    gate.set()
    await eventually(lambda: rt.state == "idle" and rt.next_run is not None)
    await run.stop()

    assert during == ("fetching", None)
    assert rt.next_run == NOW + timedelta(seconds=600)
    assert rt.last_success == NOW
    assert rt.state == "stopped"


async def test_transient_failure_backs_off_then_success_resets(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """Transient failures put the account in "backoff" with a doubling next run; a success returns it to "idle".

    Steps: first cycle fails (ConnectError); a requested cycle fails again; a third requested cycle
    succeeds.
    """
    server = servers["anna"] = FakeServer.with_pop3(1)
    server.plan(faults={"open": ConnectError("connection refused", account="anna")})
    server.plan(faults={"open": ConnectError("connection refused", account="anna")})
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(lambda: rt.state == "backoff" and rt.next_run is not None)
    first = (rt.consecutive_failures, rt.next_run)
    second_result = await settled(sched.request_fetch("anna"))
    second = (rt.state, rt.consecutive_failures, rt.next_run)
    third_result = await settled(sched.request_fetch("anna"))
    third = (rt.state, rt.consecutive_failures, rt.last_error, rt.next_run)
    await run.stop()

    assert first == (1, NOW + timedelta(seconds=BACKOFF_BASE_S))
    assert second_result is None
    assert second == ("backoff", 2, NOW + timedelta(seconds=2 * BACKOFF_BASE_S))
    assert third_result is not None
    assert third_result.new_links == 1
    assert third == ("idle", 0, None, NOW + timedelta(seconds=3600))


async def test_throttled_account_backs_off_at_least_the_throttle_minimum(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A provider asking to slow down puts the account in "backoff" with next run at least THROTTLE_MIN_S away."""
    servers["anna"] = FakeServer.with_pop3(1)
    servers["anna"].default_plan.faults = {"open": ThrottledError("-ERR [LOGIN-DELAY]", account="anna")}
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(lambda: rt.state == "backoff" and rt.next_run is not None)
    await run.stop()

    assert rt.next_run == NOW + timedelta(seconds=THROTTLE_MIN_S)


async def test_request_fetch_resolves_after_the_cycle(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A requested fetch resolves with that cycle's result only once the cycle has ended."""
    server, sched, _rt, run = await anna_after_first_cycle(store, executor, servers)

    gate = asyncio.Event()
    server.plan(gates={"retrieve": gate})
    server.add(POP3Key("uidl-2"), make_message(2))
    fut = sched.request_fetch("anna")
    await eventually(lambda: len(server.sessions) == 2 and server.sessions[1].has_reached("retrieve"))
    done_while_running = fut.done()
    gate.set()
    result = await settled(fut)
    await run.stop()

    assert not done_while_running
    assert result is not None
    assert result.new_links == 1
    assert server.sessions[1].closed


async def test_request_fetch_for_unknown_account_raises_key_error(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """Asking for a fetch of an account the scheduler does not know raises KeyError."""
    sched = await make_scheduler(store, executor, servers, [])

    with pytest.raises(KeyError):
        sched.request_fetch("nobody")


async def test_disabled_account_is_never_fetched(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A disabled account stays "disabled", opens no session, and a requested fetch resolves to None."""
    servers["off"] = FakeServer.with_pop3(1)
    sched = await make_scheduler(store, executor, servers, [pop3_account("off", enabled=False)])

    run = Running(sched)
    await eventually(lambda: sched.accounts["off"].state == "disabled")
    result = await settled(sched.request_fetch("off"))
    await run.stop()

    assert result is None
    assert servers["off"].sessions == []


async def test_shutdown_cancels_a_hung_cycle_within_the_timeout(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A stop returns shortly after shutdown_timeout_s although a cycle hangs; the cycle is cancelled and its session aborted."""
    server = servers["anna"] = FakeServer.with_pop3(2)
    server.plan(gates={"retrieve": asyncio.Event()}, retrieve_point_after=1)
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna", retention="delete")])

    run = Running(sched, shutdown_timeout_s=0.2)
    await eventually(lambda: bool(server.sessions) and server.sessions[0].has_reached("retrieve"))
    started = time.monotonic()
    await run.stop(within_s=3.0)
    elapsed = time.monotonic() - started

    drop = server.sessions[0]
    assert 0.19 <= elapsed < 2.0
    assert drop.aborted
    assert not drop.closed
    assert len(server.messages) == 2
    assert sched.accounts["anna"].state == "stopped"


async def test_shutdown_waits_for_a_cycle_that_finishes_in_time(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A cycle that ends within the shutdown timeout is allowed to finish and close its session normally."""
    gate = gated_server(servers, "anna", "retrieve")
    server = servers["anna"]
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])

    run = Running(sched, shutdown_timeout_s=5.0)
    await eventually(lambda: bool(server.sessions) and server.sessions[0].has_reached("retrieve"))
    stopping = asyncio.create_task(run.stop())
    await asyncio.sleep(0.05)
    gate.set()
    await stopping

    assert server.sessions[0].closed
    assert not server.sessions[0].aborted
    assert (await store.message_counts()) == {"anna": 1}


async def test_shutdown_resolves_the_request_of_a_cancelled_cycle(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A requested fetch whose cycle is cancelled by shutdown resolves to None (the daemon stopped)."""
    server, sched, _rt, run = await anna_after_first_cycle(store, executor, servers, 0.1)

    server.plan(gates={"retrieve": asyncio.Event()})
    server.add(POP3Key("uidl-2"), make_message(2))
    fut = sched.request_fetch("anna")
    await eventually(lambda: len(server.sessions) == 2 and server.sessions[1].has_reached("retrieve"))
    await run.stop()

    assert fut.done()
    assert fut.result() is None


async def test_max_concurrent_fetches_is_respected(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """With max_concurrent_fetches=2 and five accounts, never more than two sessions are open at once."""
    tracker = Concurrency()
    gate = asyncio.Event()
    names = [f"acct-{i}" for i in range(5)]
    for i, name in enumerate(names):
        servers[name] = FakeServer.with_pop3(1, start=i + 1, concurrency=tracker)
        servers[name].default_plan.gates = {"open": gate}
    sched = await make_scheduler(
        store, executor, servers, [pop3_account(n) for n in names], max_concurrent_fetches=2
    )

    run = Running(sched)
    await eventually(lambda: tracker.current == 2)
    for _ in range(50):
        await asyncio.sleep(0)
    sessions_while_blocked = sum(len(servers[n].sessions) for n in names)
    fetching_while_blocked = sum(1 for rt in sched.accounts.values() if rt.state == "fetching")
    gate.set()
    await eventually(lambda: all(sched.accounts[n].state == "idle" for n in names))
    await run.stop()

    assert sessions_while_blocked == 2
    assert fetching_while_blocked == 2
    assert tracker.peak == 2
    assert all(servers[n].sessions[0].closed for n in names)
    assert (await store.totals())[0] == 5


async def test_max_connections_per_host_is_respected(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """With max_connections_per_host=1, accounts on the same host (any case) fetch one at a time; other hosts are not held up."""
    shared, other = Concurrency(), Concurrency()
    gate = asyncio.Event()
    hosts = {"a1": "mail.example.org", "a2": "MAIL.example.org", "b1": "pop.other.example"}
    for i, name in enumerate(hosts):
        servers[name] = FakeServer.with_pop3(1, start=i + 1, concurrency=other if name == "b1" else shared)
        servers[name].default_plan.gates = {"open": gate}
    accounts = [pop3_account(n, host=h) for n, h in hosts.items()]
    sched = await make_scheduler(store, executor, servers, accounts, max_connections_per_host=1)

    run = Running(sched)
    await eventually(lambda: shared.current == 1 and other.current == 1)
    for _ in range(50):
        await asyncio.sleep(0)
    opened_while_blocked = shared.current + other.current
    gate.set()
    await eventually(lambda: all(sched.accounts[n].state == "idle" for n in hosts))
    await run.stop()

    assert opened_while_blocked == 2
    assert shared.peak == 1
    assert (await store.totals())[0] == 3


async def test_auth_lockout_after_repeated_refusals_and_resume(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """After AUTH_LOCKOUT_FAILURES refused logins the account stops trying ("auth_failed") until resume().

    Steps: three cycles refused; a requested fetch opens no session; the password is fixed and the
    account resumed; the next cycle succeeds.
    """
    server = servers["anna"] = FakeServer.with_pop3(1)
    server.default_plan.faults = {"open": AuthError("-ERR [AUTH] invalid password", account="anna")}
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(lambda: rt.consecutive_failures == 1 and rt.next_run is not None)
    states = [rt.state]
    for _ in range(scheduler_module.AUTH_LOCKOUT_FAILURES - 1):
        assert await settled(sched.request_fetch("anna")) is None
        states.append(rt.state)
    sessions_at_lockout = len(server.sessions)
    locked_result = await settled(sched.request_fetch("anna"))
    sessions_after_request = len(server.sessions)
    server.default_plan.faults = {}
    sched.resume("anna")
    await eventually(lambda: rt.state == "idle" and rt.last_result is not None)
    await run.stop()

    # Refusals before the lockout are retried, a warning (backoff), never the permanent "error".
    assert states == ["backoff"] * (scheduler_module.AUTH_LOCKOUT_FAILURES - 1) + ["auth_failed"]
    assert sessions_at_lockout == scheduler_module.AUTH_LOCKOUT_FAILURES
    assert locked_result is None
    assert sessions_after_request == sessions_at_lockout
    assert rt.auth_failures == 0
    assert rt.last_error is None


async def test_other_failure_resets_the_auth_refusal_count(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """Refusals only lock the account when consecutive: a transient failure in between resets the count."""
    server = servers["anna"] = FakeServer.with_pop3(1)
    refused = AuthError("-ERR [AUTH] invalid password", account="anna")
    for exc in (refused, refused, ConnectError("refused", account="anna"), refused):
        server.plan(faults={"open": exc})
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(lambda: rt.consecutive_failures == 1 and rt.next_run is not None)
    for _ in range(3):
        await settled(sched.request_fetch("anna"))
    await run.stop()

    assert rt.consecutive_failures == 4
    assert rt.auth_failures == 1
    assert rt.state == "stopped"
    assert len(server.sessions) == 4


async def test_paused_account_is_not_fetched_until_resumed(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """A paused account is in state "paused", a requested fetch resolves None without a session, and resume() fetches."""
    server, sched, rt, run = await anna_after_first_cycle(store, executor, servers)

    sched.pause("anna")
    paused = (rt.state, rt.next_run)
    during_pause = await settled(sched.request_fetch("anna"))
    sessions_during_pause = len(server.sessions)
    sched.resume("anna")
    await eventually(lambda: len(server.sessions) == 2 and rt.state == "idle")
    await run.stop()

    assert paused == ("paused", None)
    assert during_pause is None
    assert sessions_during_pause == 1
    assert server.sessions[1].closed


async def test_account_paused_while_waiting_for_a_slot_is_not_fetched(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """An account paused while it waits for a free fetch slot opens no session once the slot frees up."""
    gate = gated_server(servers, "first", "open")
    servers["second"] = FakeServer.with_pop3(1, start=2)
    sched = await make_scheduler(
        store, executor, servers, [pop3_account("first"), pop3_account("second")], max_concurrent_fetches=1
    )

    run = Running(sched)
    await eventually(
        lambda: bool(servers["first"].sessions) and servers["first"].sessions[0].has_reached("open")
    )
    sched.pause("second")
    gate.set()
    await eventually(lambda: sched.accounts["first"].state == "idle")
    for _ in range(50):
        await asyncio.sleep(0)
    await run.stop()

    assert servers["second"].sessions == []


async def test_refused_refresh_token_locks_out_at_once(
    store: Store, executor: ThreadPoolExecutor, servers: dict[str, FakeServer]
) -> None:
    """An AuthError that only re-authorization can cure (OAuth2 invalid_grant) puts the account in
    "auth_failed" after the first failure: no retry storm against the token endpoint (issue 13)."""
    server = servers["anna"] = FakeServer.with_pop3(1)
    revoked = AuthError(
        "account anna: the refresh token was refused (invalid_grant); run `maild accounts authorize anna`",
        account="anna",
        reauthorize=True,
    )
    server.default_plan.faults = {"open": revoked}
    sched = await make_scheduler(store, executor, servers, [pop3_account("anna")])
    rt = sched.accounts["anna"]

    run = Running(sched)
    await eventually(lambda: rt.state == "auth_failed")
    locked_result = await settled(sched.request_fetch("anna"))
    await run.stop()

    assert locked_result is None
    assert len(server.sessions) == 1
    assert rt.last_error is not None
    assert "run `maild accounts authorize anna`" in rt.last_error
