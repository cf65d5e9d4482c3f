"""The control socket's command table (:mod:`maild.service.commands`): routing, replies, errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from maild.archive.checkpointer import WalSnapshot
from maild.archive.store import Store
from maild.errors import AuthError, ControlError
from maild.fetch.cycle import CycleResult
from maild.service.account_runtime import AccountRuntime
from maild.service.commands import COMMANDS, CommandContext, dispatch
from maild.service.replies import ReloadReport
from maild.service.scheduler import Scheduler
from maild.service.status import StatusReply
from maild.spool import Spool
from tests.support.accounts import pop3_account

STARTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STAMP = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeScheduler:
    """The parts of :class:`Scheduler` the commands use; records what was asked of it."""

    def __init__(self) -> None:
        self.accounts = {
            name: AccountRuntime(pop3_account(name)) for name in ("anna-pop", "bernd-pop", "broken-pop")
        }
        self.requested: list[str] = []

    def pause(self, name: str) -> None:
        self.accounts[name].state = "paused"

    def resume(self, name: str) -> None:
        self.accounts[name].state = "idle"

    def request_fetch(self, name: str) -> asyncio.Future[CycleResult | None]:
        self.requested.append(name)
        future: asyncio.Future[CycleResult | None] = asyncio.get_running_loop().create_future()
        if name == "broken-pop":
            self.accounts[name].last_error = "login refused"
            future.set_result(None)
        else:
            future.set_result(CycleResult(name, new_messages=1, new_links=2, octets=300, seconds=0.1234))
        return future


class FakeStore:
    """The archive counts the status command reads; the failure records of :mod:`maild.archive.failures`
    (one set-aside message of anna-pop), reached through the store's query helpers."""

    def __init__(self) -> None:
        self.retry_requested: list[str] = []

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert "FROM retrieval_failures" in sql
        if params != ("anna-pop",):
            return []
        subject, sender = "Rechnung 42 für März", "Buchhaltung <buchhaltung@example.com>"
        return [
            ("pop3 uidl-7", 3, "-ERR [SYS/TEMP] message locked", STAMP, STAMP, 0, subject, sender, STAMP, 1, "message")
        ]

    async def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return 1 if params == ("anna-pop",) else 0

    async def _write(self, statements: list[tuple[str, tuple[Any, ...], bool]]) -> None:
        for sql, params, _ in statements:
            assert sql.startswith("UPDATE retrieval_failures SET retry_requested = 1")
            self.retry_requested.append(params[0])

    generation = 0
    replaced = None
    writing = False
    counters = None  # a daemon's store keeps counters (maild.archive.counters); this one is read
    spool = Spool(Path("/var/lib/maild"))  # only its directory is read (the status's archive.directory)

    async def message_counts(self) -> dict[str, int]:
        return {"anna-pop": 5}

    async def on_server_summary(self) -> dict[str, tuple[int, datetime | None]]:
        return {}

    async def totals(self) -> tuple[int, int]:
        return 5, 1000

    def wal_snapshot(self) -> WalSnapshot:
        return WalSnapshot(4096)  # a small write-ahead log, not held

    async def recheck_wal(self) -> None:
        """Not held: nothing to re-check."""


class Daemon:
    """What the context's callbacks reach: reload, metrics, stop."""

    def __init__(self) -> None:
        self.scheduler = FakeScheduler()
        self.store = FakeStore()
        self.stopped = False

    async def reload(self) -> ReloadReport:
        return ReloadReport(added=("neu",))

    async def metrics_text(self) -> str:
        return "maild_up 1\n"

    def stop(self) -> None:
        self.stopped = True

    def context(self) -> CommandContext:
        return CommandContext(
            scheduler=cast("Scheduler", self.scheduler),
            store=cast("Store", self.store),
            started_at=STARTED,
            reload=self.reload,
            metrics_text=self.metrics_text,
            stop=self.stop,
        )


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


async def ask(daemon: Daemon, **request: Any) -> dict[str, Any]:
    return await dispatch(daemon.context(), request)


def test_the_table_holds_every_documented_command() -> None:
    """The table registers exactly the documented commands, in the order the error message lists them."""
    assert list(COMMANDS) == [
        "status",
        "version",
        "fetch-now",
        "pause",
        "resume",
        "reload",
        "metrics",
        "alert-test",
        "stop",
    ]


async def test_unknown_command_gets_the_unknown_command_error(daemon: Daemon) -> None:
    """A command not in the table is refused with unknown-command and the list of commands."""
    with pytest.raises(ControlError) as info:
        await ask(daemon, command="restart")

    assert info.value.code == "unknown-command"
    assert str(info.value) == (
        "unknown command 'restart' (status, version, fetch-now, pause, resume, reload, metrics, alert-test, stop)"
    )


async def test_every_command_is_refused_while_starting() -> None:
    """Before the archive and scheduler are up every request gets the starting error."""
    for name in [*COMMANDS, "nope"]:
        with pytest.raises(ControlError) as info:
            await dispatch(None, {"command": name})
        assert info.value.code == "starting"


async def test_account_must_be_a_string(daemon: Daemon) -> None:
    """A non-string account is a bad request, whatever the command."""
    with pytest.raises(ControlError) as info:
        await ask(daemon, command="fetch-now", account={"a": 1})

    assert info.value.code == "bad-request"


async def test_status_is_routed_and_reads_back(daemon: Daemon) -> None:
    """status answers the accounts in order with waiting (not idle) as the state, and reads back as a record."""
    reply = await ask(daemon, command="status")

    status = StatusReply.from_json(reply)
    assert [a.name for a in status.accounts] == ["anna-pop", "bernd-pop", "broken-pop"]
    assert [a.state for a in status.accounts] == ["waiting"] * 3
    assert (status.accounts[0].messages, status.archive.messages, status.archive.octets) == (5, 5, 1000)
    assert status.started_at == STARTED
    assert status.to_json() == reply


async def test_status_of_one_account(daemon: Daemon) -> None:
    """status with an account answers only that account; an unknown one is unknown-account."""
    reply = await ask(daemon, command="status", account="bernd-pop")
    assert [a["name"] for a in reply["accounts"]] == ["bernd-pop"]

    with pytest.raises(ControlError) as info:
        await ask(daemon, command="status", account="nobody")
    assert info.value.code == "unknown-account"


async def test_version_is_routed(daemon: Daemon) -> None:
    """version answers maild's version."""
    from maild import __version__

    assert await ask(daemon, command="version") == {"version": __version__}


async def test_fetch_now_waits_and_reports_each_account(daemon: Daemon) -> None:
    """fetch-now (wait) asks every account for a cycle and reports new_links, or the failure."""
    reply = await ask(daemon, command="fetch-now", account="all")

    assert daemon.scheduler.requested == ["anna-pop", "bernd-pop", "broken-pop"]
    assert reply == {
        "results": {
            "anna-pop": {"ok": True, "new_links": 2, "octets": 300, "seconds": 0.123, "new_messages": 1},
            "bernd-pop": {"ok": True, "new_links": 2, "octets": 300, "seconds": 0.123, "new_messages": 1},
            "broken-pop": {"ok": False, "error": "login refused"},
        }
    }


async def test_status_lists_set_aside_messages_with_reason_and_next_try(daemon: Daemon) -> None:
    """status lists a message that failed three times in a row as set aside, with the server's words,
    its Subject and From (read by the header fetch) and when it is tried again."""
    reply = await ask(daemon, command="status")
    status = StatusReply.from_json(reply)

    (failing,) = status.accounts[0].failing_messages
    assert (failing.key, failing.failures, failing.set_aside) == ("UIDL uidl-7", 3, True)
    assert failing.reason == "-ERR [SYS/TEMP] message locked"
    assert (failing.subject, failing.from_) == ("Rechnung 42 für März", "Buchhaltung <buchhaltung@example.com>")
    assert reply["accounts"][0]["failing_messages"][0]["subject"] == "Rechnung 42 für März"
    assert failing.next_retry is not None
    assert failing.next_retry - failing.last_failed_at == timedelta(days=1)
    assert status.accounts[1].failing_messages == ()


async def test_fetch_now_retry_failed_marks_the_records_before_the_cycle(daemon: Daemon) -> None:
    """fetch-now with retry_failed asks the archive to retry the account's failing messages, then runs the cycle; a non-boolean is bad-request."""
    await ask(daemon, command="fetch-now", account="anna-pop", retry_failed=True)
    assert daemon.store.retry_requested == ["anna-pop"]
    assert daemon.scheduler.requested == ["anna-pop"]

    with pytest.raises(ControlError) as info:
        await ask(daemon, command="fetch-now", account="anna-pop", retry_failed="yes")
    assert info.value.code == "bad-request"


async def test_fetch_now_without_wait_queues(daemon: Daemon) -> None:
    """fetch-now with wait false replies with the queued accounts."""
    assert await ask(daemon, command="fetch-now", account="anna-pop", wait=False) == {"queued": ["anna-pop"], "skipped": []}


async def test_fetch_now_does_not_try_a_locked_out_account_and_says_why(daemon: Daemon) -> None:
    """fetch-now of an account locked out after refused logins opens no session (another refusal would
    count at the provider): a failure naming the lockout, since when and what ends it."""
    locked = daemon.scheduler.accounts["broken-pop"]
    locked.state, locked.auth_failures, locked.last_error_at = "auth_failed", 3, STARTED

    reply = await ask(daemon, command="fetch-now", account="all")
    queued = await ask(daemon, command="fetch-now", account="broken-pop", wait=False)

    assert daemon.scheduler.requested == ["anna-pop", "bernd-pop"]
    outcome = reply["results"]["broken-pop"]
    assert outcome["ok"] is False
    assert outcome["locked_out_since"] == "2026-03-02T09:00:00Z"
    assert outcome["error"].startswith("not tried: 3 refused logins in a row locked the account out; ")
    assert "`maild resume broken-pop`" in outcome["error"]
    assert queued == {"queued": [], "skipped": ["broken-pop"]}


async def test_fetch_now_of_an_account_whose_oauth2_grant_was_refused_names_authorize(daemon: Daemon) -> None:
    """Locked out at once by a refused OAuth2 grant (issue 13): the outcome names `maild accounts authorize`."""
    locked = daemon.scheduler.accounts["broken-pop"]
    locked.auth_failures, locked.last_error_at = 3, STARTED
    locked.last_exception = AuthError("invalid_grant", account="broken-pop", reauthorize=True)

    reply = await ask(daemon, command="fetch-now", account="broken-pop")

    assert reply["results"]["broken-pop"]["error"] == (
        "not tried: the provider refused the stored OAuth2 grant; run `maild accounts authorize broken-pop`"
    )


async def test_fetch_now_of_an_unknown_account_requests_nothing(daemon: Daemon) -> None:
    """fetch-now of an unknown account is unknown-account and no cycle is requested."""
    with pytest.raises(ControlError) as info:
        await ask(daemon, command="fetch-now", account="nobody")

    assert info.value.code == "unknown-account"
    assert daemon.scheduler.requested == []


@pytest.mark.parametrize(("command", "state"), [("pause", "paused"), ("resume", "waiting")])
async def test_pause_and_resume_are_routed(daemon: Daemon, command: str, state: str) -> None:
    """pause and resume change the account and answer its state now."""
    assert await ask(daemon, command=command, account="anna-pop") == {"account": "anna-pop", "state": state}


@pytest.mark.parametrize("command", ["pause", "resume"])
async def test_pause_and_resume_need_a_known_account(daemon: Daemon, command: str) -> None:
    """pause and resume without an account, or with an unknown one, are unknown-account, the message
    saying which (before session 10 a missing account read "no account named None")."""
    for request, message in (
        ({}, 'the request names no account ("account": "NAME")'),
        ({"account": "nobody"}, "no account named 'nobody'"),
    ):
        with pytest.raises(ControlError) as info:
            await ask(daemon, command=command, **request)
        assert (info.value.code, str(info.value)) == ("unknown-account", message)


async def test_reload_metrics_and_stop_are_routed(daemon: Daemon) -> None:
    """reload answers the report, metrics the text, stop stops the daemon."""
    assert await ask(daemon, command="reload") == {"added": ["neu"], "removed": [], "changed": []}
    assert await ask(daemon, command="metrics") == {"text": "maild_up 1\n"}
    assert not daemon.stopped
    assert await ask(daemon, command="stop") == {"stopping": True}
    assert daemon.stopped


@pytest.mark.parametrize("wait", ["no", 0, "false", None])
async def test_wait_must_be_a_boolean(daemon: Daemon, wait: object) -> None:
    """fetch-now's "wait" must be true or false: "no" is refused, not taken as true."""
    with pytest.raises(ControlError, match='"wait" must be true or false') as info:
        await ask(daemon, command="fetch-now", account="all", wait=wait)
    assert info.value.code == "bad-request"


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"command": "fetch-now", "accounts": "anna-pop"}, "accounts"),
        ({"command": "fetch-now", "account": "anna-pop", "retry-failed": True}, "retry-failed"),
        ({"command": "pause", "account": "anna-pop", "for": "1h"}, "for"),
        ({"command": "status", "failed": True}, "failed"),
        ({"command": "stop", "force": True}, "force"),
        ({"command": "reload", "path": "/etc/other.toml"}, "path"),
    ],
)
async def test_a_field_the_command_does_not_take_is_a_bad_request(
    daemon: Daemon, request_fields: dict[str, Any], field: str
) -> None:
    """A field the command does not take is refused, naming it, and nothing is done: before, a
    misspelt ``accounts`` made fetch-now fetch every account (QA of session 15)."""
    with pytest.raises(ControlError) as info:
        await dispatch(daemon.context(), request_fields)

    assert info.value.code == "bad-request"
    assert f'"{field}"' in str(info.value)
    assert daemon.scheduler.requested == [] and not daemon.stopped


async def test_the_fields_each_command_takes_are_accepted(daemon: Daemon) -> None:
    """Every field the command-line client sends (and docs/control-socket.md lists) is accepted."""
    await ask(daemon, command="status", account="anna-pop", version=1)
    await ask(daemon, command="fetch-now", account="all", wait=False, retry_failed=False, version=1)
    await ask(daemon, command="pause", account="anna-pop")
    await ask(daemon, command="resume", account="anna-pop")
    for name in ("version", "reload", "metrics", "alert-test", "stop"):
        await ask(daemon, command=name, version=1)
