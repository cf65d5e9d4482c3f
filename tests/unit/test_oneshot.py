"""``maild fetch`` without a daemon (``maild.service.oneshot``), with in-memory maildrops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from maild.config.loader import AccountConfig, Config, DaemonConfig
from maild.errors import AuthError, ConfigError, NetworkTimeout
from maild.model import POP3Key
from maild.service.oneshot import fetch_once
from tests.support.accounts import pop3_account
from tests.unit.fakes import Concurrency, FakeServer, maildrops_of


def config_of(tmp_path: Path, accounts: list[AccountConfig], **daemon: int) -> Config:
    return Config(
        path=tmp_path / "config.toml",
        daemon=DaemonConfig(state_dir=tmp_path, **daemon),  # type: ignore[arg-type]
        accounts={a.name: a for a in accounts},
    )


async def test_one_cycle_per_enabled_account_with_its_line(tmp_path: Path) -> None:
    """Every enabled account fetches once, in config order; a failure is reported, not raised."""
    servers = {"a": FakeServer.with_pop3(2), "b": FakeServer.with_pop3(1, start=5), "off": FakeServer()}
    servers["b"].default_plan.faults = {"open": AuthError("-ERR [AUTH] invalid password", account="b")}
    accounts = [pop3_account("a"), pop3_account("b"), pop3_account("off", enabled=False)]

    results = await fetch_once(config_of(tmp_path, accounts), [], maildrop_factory=maildrops_of(servers))

    assert [r.account for r in results] == ["a", "b"]
    first = results[0].result
    assert first is not None
    assert results[0].line() == f"a: 2 new messages ({first.octets} octets retrieved, {first.seconds:.3f} s)"
    assert results[1].failed
    assert results[1].line().startswith("b: FAILED: ")
    assert servers["off"].sessions == []
    assert servers["a"].sessions[0].closed


async def test_unknown_account_name_fetches_nothing(tmp_path: Path) -> None:
    """An unknown name is a ConfigError naming it, raised before any account is fetched."""
    servers = {"a": FakeServer.with_pop3(1)}
    with pytest.raises(ConfigError, match="'nobody'"):
        await fetch_once(
            config_of(tmp_path, [pop3_account("a")]), ["a", "nobody"], maildrop_factory=maildrops_of(servers)
        )
    assert servers["a"].sessions == []


async def test_connections_per_host_hold_for_a_one_shot_fetch(tmp_path: Path) -> None:
    """With max_connections_per_host = 1, accounts of one host are fetched one at a time, as in the daemon."""
    shared = Concurrency()
    gate = asyncio.Event()
    servers = {n: FakeServer.with_pop3(1, start=i + 1, concurrency=shared) for i, n in enumerate("abc")}
    for server in servers.values():
        server.default_plan.gates = {"open": gate}
    accounts = [pop3_account(n, host="mail.example.org") for n in servers]
    config = config_of(tmp_path, accounts, max_connections_per_host=1)

    task = asyncio.create_task(fetch_once(config, [], maildrop_factory=maildrops_of(servers)))
    async with asyncio.timeout(5):  # the archive is opened, then the first cycle logs in
        while not any(s.sessions and s.sessions[0].has_reached("open") for s in servers.values()):
            await asyncio.sleep(0.005)
    for _ in range(50):
        await asyncio.sleep(0)
    opened_while_blocked = sum(len(s.sessions) for s in servers.values())
    gate.set()
    results = await asyncio.wait_for(task, 5)

    assert opened_while_blocked == 1
    assert shared.peak == 1
    assert [r.failed for r in results] == [False, False, False]


async def test_the_line_names_each_failed_message_and_a_failed_quit_is_not_failed(tmp_path: Path) -> None:
    """`maild fetch` names each message that could not be retrieved with the server's words, and a
    poll that stored everything but whose QUIT failed is reported with a warning, not as FAILED."""
    server = FakeServer.with_pop3(3)
    server.default_plan.refuse = {POP3Key("uidl-2"): "-ERR [SYS/TEMP] message locked"}
    server.default_plan.faults = {"close": NetworkTimeout("no reply to QUIT", account="a")}

    (result,) = await fetch_once(
        config_of(tmp_path, [pop3_account("a")]), [], maildrop_factory=maildrops_of({"a": server})
    )

    assert not result.failed
    first, failed, warning = result.line().splitlines()
    assert first.startswith("a: 2 new messages (")
    assert first.endswith(" s), 1 message not retrieved (retried at the next fetch; listed below)")
    assert failed == "  not retrieved: UIDL uidl-2: -ERR [SYS/TEMP] message locked"
    assert warning.startswith("  warning: everything was stored, but the session did not end cleanly")


def test_the_size_after_already_archived_messages_reads_as_retrieved_not_new() -> None:
    """After a killed run, a fetch that finds everything archived already says the octets were
    retrieved, never beside "already archived" alone (where 148 MB read as if they were new)."""
    from maild.cli.units import human_size
    from maild.fetch.cycle import CycleResult
    from maild.service.oneshot import OneShotResult

    rerun = CycleResult(
        "anna", on_server=37, new_messages=0, new_links=37, octets=148_000_000, seconds=3.0214
    )

    line = OneShotResult("anna", rerun).line(human_size)

    assert line == "anna: 0 new messages, 37 already archived (148.0 MB retrieved, 3.021 s)"


def test_one_new_message_is_singular_and_the_time_is_said_as_fetch_now_says_it() -> None:
    """One new message reads "1 new message" (not "1 new messages"), and the bracket carries the
    cycle's time in the form `maild fetch-now` prints for the same cycle through the daemon."""
    from maild.cli.units import human_size
    from maild.fetch.cycle import CycleResult
    from maild.service.oneshot import OneShotResult
    from maild.service.replies import FetchOutcome

    one = CycleResult("anna", on_server=1, new_messages=1, new_links=1, octets=2_048, seconds=0.4123)
    daemon = FetchOutcome("anna", new_links=1, octets=2_048, seconds=0.412, new_messages=1)

    assert OneShotResult("anna", one).line(human_size) == "anna: 1 new message (2.0 kB retrieved, 0.412 s)"
    assert daemon.line(human_size) == OneShotResult("anna", one).line(human_size)
    assert (
        FetchOutcome("anna", new_links=1, seconds=0.5).line(human_size)
        == "anna: 1 new message (0 B retrieved, 0.500 s)"
    )


def test_several_accounts_end_with_a_total_line_in_both_commands() -> None:
    """With more than one account, `maild fetch` and `maild fetch-now` close with the same total line:
    accounts, counts, size and the command's wall-clock time, and how many failed; one account has
    none; skipped and locked-out accounts are not counted by fetch-now."""
    from datetime import UTC, datetime

    from maild.cli.units import human_size
    from maild.fetch.cycle import CycleResult
    from maild.service.oneshot import OneShotResult, total_line
    from maild.service.replies import FetchOutcome, FetchResults

    a = CycleResult("a", on_server=3, new_messages=2, new_links=3, octets=3_000, seconds=1.0)
    b = CycleResult("b", on_server=1, new_messages=1, new_links=1, octets=1_000, seconds=0.5)
    results = [OneShotResult("a", a), OneShotResult("b", b), OneShotResult("c", None, "refused")]
    expected = "all 3 accounts: 3 new messages, 1 already archived (4.0 kB retrieved, 1.250 s), 1 failed"

    assert total_line(results, human_size, 1.25) == expected
    assert total_line(results[:1], human_size, 1.25) is None
    daemon = FetchResults(
        (
            FetchOutcome("a", new_links=3, octets=3_000, seconds=1.0, new_messages=2),
            FetchOutcome("b", new_links=1, octets=1_000, seconds=0.5, new_messages=1),
            FetchOutcome("c", error="refused"),
            FetchOutcome("p", skipped="paused"),
            FetchOutcome("l", error="locked out", locked_out_since=datetime(2026, 12, 7, tzinfo=UTC)),
        )
    )
    assert daemon.total_line(human_size, 1.25) == expected
    assert FetchResults(daemon.results[:1]).total_line(human_size, 1.0) is None


def test_many_failed_messages_are_named_up_to_a_bound_and_a_full_archive_is_one_line() -> None:
    """An account's line of `maild fetch` names at most LISTED_FAILURES messages one by one and
    counts the rest; messages lost to a full archive disk (one cause) are one line, not hundreds."""
    from maild.fetch.cycle import CycleResult
    from maild.model import ARCHIVE_FULL_PREFIX, POP3Key, RetrievalFailure
    from maild.service.oneshot import LISTED_FAILURES, OneShotResult

    own = [RetrievalFailure(POP3Key(f"u{i}"), "-ERR locked") for i in range(LISTED_FAILURES + 5)]
    full = [
        RetrievalFailure(POP3Key(f"f{i}"), f"{ARCHIVE_FULL_PREFIX}database or disk is full", "local")
        for i in range(30)
    ]
    res = CycleResult("a", on_server=55, new_messages=0, new_links=0, octets=0, seconds=1.0)
    res.failures.extend(own + full)

    _, *rest = OneShotResult("a", res).line().splitlines()

    assert rest[:2] == ["  not retrieved: UIDL u0: -ERR locked", "  not retrieved: UIDL u1: -ERR locked"]
    assert rest[LISTED_FAILURES] == "  ... and 5 more not retrieved"
    assert rest[LISTED_FAILURES + 1 :] == [
        "  not retrieved: 30 messages: local archive: database or disk is full"
    ]


def test_fetch_now_says_what_fetch_says_after_the_bracket_and_a_full_disk_is_short_of_room() -> None:
    """`maild fetch-now`'s line carries what `maild fetch`'s does after the bracket (deleted, not
    retrieved with the share lacking room on this machine, set aside) and the cycle's warnings, pointing
    to `maild status` for the names; the daemon's reply carries the counts through JSON (an older
    daemon's reply without them reads as 0; a negative count is a bad reply); a cycle short of room
    is what makes both commands exit 1 (session 10: before, fetch-now said "0 new messages" only)."""
    from maild.cli.units import human_size
    from maild.errors import ControlError
    from maild.fetch.cycle import CycleResult
    from maild.model import RetrievalFailure
    from maild.service.oneshot import OneShotResult
    from maild.service.replies import FetchOutcome
    from maild.service.snapshot import fetch_outcome

    res = CycleResult("anna", on_server=9, new_messages=2, new_links=2, octets=2_000, seconds=1.0, deleted=2)
    res.failures.extend(
        [RetrievalFailure(POP3Key("a"), "-ERR locked"), RetrievalFailure(POP3Key("b"), "local spool: full", "local")]
    )
    res.set_aside.append(POP3Key("c"))
    res.warnings.append("the archive's disk is full: the cycle stopped")

    class Runtime:  # the part of AccountRuntime that fetch_outcome reads
        class config:  # noqa: N801
            name = "anna"

    outcome = fetch_outcome(Runtime(), res)  # type: ignore[arg-type]
    again = FetchOutcome.from_json("anna", outcome.to_json())

    assert again == outcome and (again.not_retrieved, again.no_room, again.set_aside) == (2, 1, 1)
    head, warned = again.line(human_size).splitlines()  # type: ignore[union-attr]
    assert head == (
        "anna: 2 new messages (2.0 kB retrieved, 1.000 s), 2 deleted on the server, 2 messages not retrieved"
        " (retried at the next fetch; 1 for lack of room on this machine; see maild status anna), 1 set aside"
        " after repeated failures (see maild status)"
    )
    assert warned == "  warning: the archive's disk is full: the cycle stopped"
    assert OneShotResult("anna", res).line(human_size).splitlines()[0] == head.replace(
        "see maild status anna", "listed below"
    )
    assert OneShotResult("anna", res).short_of_room
    res.failures.pop()
    assert not OneShotResult("anna", res).short_of_room
    assert not OneShotResult("anna", None, "refused").short_of_room
    old = {"ok": True, "new_links": 1, "octets": 5, "seconds": 0.5}
    assert FetchOutcome.from_json("anna", old) == FetchOutcome("anna", new_links=1, octets=5, seconds=0.5)
    with pytest.raises(ControlError, match="'no_room' is negative"):
        FetchOutcome.from_json("anna", {**old, "no_room": -1})
