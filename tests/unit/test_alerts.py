"""Alert decisions (:mod:`maild.service.alerts`): what fires when, rate limiting, recovery notices, and
delivery to a real alert command (:mod:`maild.service.alert_delivery`)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild.config.alerts import AlertsConfig
from maild.config.passwords import PasswordSource
from maild.errors import AuthError, ConnectError
from maild.fetch.cycle import CycleResult
from maild.model import POP3Key
from maild.secret import Secret
from maild.service.account_runtime import AccountRuntime
from maild.service.alert_delivery import deliver, mail_message
from maild.service.alerts import AlertEvent, AlertMonitor, DiskSpace, alert_test_event
from tests.support.accounts import pop3_account

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = AlertsConfig(command=("true",), after_s=3600, repeat_s=86400, disk_free_percent=10)


def failing(rt: AccountRuntime, since: datetime, error: Exception) -> AccountRuntime:
    """Make ``rt`` look like the scheduler after failed cycles since ``since``."""
    rt.state = "backoff"
    rt.failing_since = since
    rt.last_exception = error
    rt.last_error = str(error)
    rt.consecutive_failures = 2
    return rt


def test_failing_fires_only_after_the_configured_time_and_once() -> None:
    """A failing account alerts after `after`, not before; the same failure is not sent again within `repeat`."""
    monitor = AlertMonitor(CONFIG)
    rt = failing(AccountRuntime(pop3_account("anna")), T0, ConnectError("connection refused", account="anna"))

    assert monitor.evaluate([rt], T0 + timedelta(minutes=59)) == []
    fired = monitor.evaluate([rt], T0 + timedelta(hours=1))
    assert [(e.kind, e.state, e.account, e.since) for e in fired] == [("failing", "firing", "anna", T0)]
    assert "connection refused" in fired[0].message
    assert "provider's status page" in fired[0].next_step
    assert monitor.evaluate([rt], T0 + timedelta(hours=5)) == []


def test_an_unchanged_alert_repeats_after_a_day_and_a_changed_one_at_once() -> None:
    """Still failing after `repeat`: sent again; a different error: sent at once."""
    monitor = AlertMonitor(CONFIG)
    rt = failing(AccountRuntime(pop3_account("anna")), T0, ConnectError("connection refused", account="anna"))
    monitor.evaluate([rt], T0 + timedelta(hours=1))

    assert [e.kind for e in monitor.evaluate([rt], T0 + timedelta(hours=25))] == ["failing"]
    rt.last_exception = ConnectError("no route to host", account="anna")
    changed = monitor.evaluate([rt], T0 + timedelta(hours=26))
    assert [(e.kind, "no route to host" in e.message) for e in changed] == [("failing", True)]


def test_recovery_is_sent_once_when_the_condition_clears() -> None:
    """After a success (failing_since cleared) one `recovered` event follows, then nothing."""
    monitor = AlertMonitor(CONFIG)
    rt = failing(AccountRuntime(pop3_account("anna")), T0, ConnectError("connection refused", account="anna"))
    monitor.evaluate([rt], T0 + timedelta(hours=1))
    rt.failing_since = None
    rt.state = "idle"

    recovered = monitor.evaluate([rt], T0 + timedelta(hours=2))
    assert [(e.kind, e.state, e.since) for e in recovered] == [("failing", "recovered", T0)]
    assert recovered[0].message.startswith("cleared after 2 h 0 min: ")
    assert monitor.evaluate([rt], T0 + timedelta(hours=3)) == []


def test_a_pause_or_a_reload_does_not_fake_a_recovery() -> None:
    """Pausing a failing account, or replacing its runtime (reload) with the remembered history, keeps the alert."""
    monitor = AlertMonitor(CONFIG)
    rt = failing(AccountRuntime(pop3_account("anna")), T0, ConnectError("connection refused", account="anna"))
    monitor.evaluate([rt], T0 + timedelta(hours=1))
    rt.paused, rt.state = True, "paused"
    fresh = AccountRuntime(pop3_account("anna"))
    fresh.remember(rt.history())

    assert monitor.evaluate([rt], T0 + timedelta(hours=2)) == []
    assert [e.state for e in monitor.evaluate([fresh], T0 + timedelta(hours=3))] == []


def test_a_lockout_and_set_aside_messages_fire_at_once() -> None:
    """Three refused logins and messages too large to fetch need no waiting time."""
    monitor = AlertMonitor(CONFIG)
    locked = failing(AccountRuntime(pop3_account("anna")), T0, AuthError("login refused", account="anna"))
    locked.state, locked.auth_failures = "auth_failed", 3
    big = AccountRuntime(pop3_account("bernd"))
    big.last_result = replace(CycleResult("bernd"), too_large=[POP3Key("u1"), POP3Key("u2")])

    events = monitor.evaluate([locked, big], T0 + timedelta(seconds=1))

    assert [(e.kind, e.account) for e in events] == [("locked_out", "anna"), ("set_aside", "bernd")]
    assert "maild resume anna" in events[0].next_step
    assert events[1].message == "messages left on the server: 2 larger than max_message_size"


def test_a_refused_login_before_the_lockout_alerts_like_any_failure() -> None:
    """Refusal 1 or 2 of 3 (state backoff, QA #17 item 8): no locked_out alert, only `failing` after
    `after`, as `maild check` says WARNING and not CRITICAL for it."""
    monitor = AlertMonitor(CONFIG)
    refused = failing(AccountRuntime(pop3_account("anna")), T0, AuthError("login refused", account="anna"))
    refused.auth_failures = 2

    assert monitor.evaluate([refused], T0 + timedelta(seconds=1)) == []
    assert [e.kind for e in monitor.evaluate([refused], T0 + timedelta(hours=1))] == ["failing"]


def test_disk_and_daemon_problems_fire_and_recover() -> None:
    """Less free space than the threshold fires disk_full; a sick daemon fires daemon; both recover."""
    monitor = AlertMonitor(CONFIG)
    full = DiskSpace(free_octets=5, total_octets=100)

    fired = monitor.evaluate([], T0, disk=full, daemon_problems={None: "the event loop was blocked"})
    cleared = monitor.evaluate([], T0 + timedelta(minutes=5), disk=DiskSpace(50, 100))

    assert [(e.kind, e.state, e.account) for e in fired] == [
        ("disk_full", "firing", None),
        ("daemon", "firing", None),
    ]
    assert "5 % free" in fired[0].message
    assert [(e.kind, e.state) for e in cleared] == [("disk_full", "recovered"), ("daemon", "recovered")]


def test_a_disk_filling_by_a_few_octets_is_no_new_alert() -> None:
    """disk_full names whole percent, not free octets: a little less free space within the same
    percent sends nothing new."""
    monitor = AlertMonitor(CONFIG)
    assert [e.kind for e in monitor.evaluate([], T0, disk=DiskSpace(5_000_000, 100_000_000))] == ["disk_full"]
    assert monitor.evaluate([], T0 + timedelta(minutes=1), disk=DiskSpace(4_990_000, 100_000_000)) == []


def test_no_secret_reaches_an_alert() -> None:
    """The password of an account appears in no event, JSON or mail text."""
    password = "Geheim-Passwort-4711"
    account = pop3_account("anna", password=PasswordSource(inline=Secret(password)))
    monitor = AlertMonitor(replace(CONFIG, after_s=1))
    rt = failing(AccountRuntime(account), T0, AuthError("login refused", account="anna"))
    rt.auth_failures = 3

    events = monitor.evaluate([rt], T0 + timedelta(minutes=1))

    config = replace(CONFIG, mail_to=("admin@office.example",))
    texts = [json.dumps(e.to_json()) + mail_message(config, e, "host").decode() for e in events]
    assert len(events) == 2
    assert not any(password in t for t in texts)


async def test_the_command_reads_the_json_event_on_stdin(tmp_path: Path) -> None:
    """The alert command gets exactly one JSON object on stdin; a failing command is reported, not raised."""
    out = tmp_path / "event.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    config = AlertsConfig(command=(sys.executable, "-c", script))

    outcomes = await deliver(config, alert_test_event(T0))
    failed = await deliver(
        AlertsConfig(command=(sys.executable, "-c", "import sys; sys.exit('no way')")), alert_test_event(T0)
    )
    missing = await deliver(AlertsConfig(command=(str(tmp_path / "missing"),)), alert_test_event(T0))

    assert [(o.channel, o.ok, o.detail) for o in outcomes] == [("command", True, "sent")]
    assert json.loads(out.read_text()) == alert_test_event(T0).to_json()
    assert failed[0].ok is False and failed[0].detail.endswith("exited 1: no way")
    assert missing[0].ok is False and "cannot run" in missing[0].detail


def test_the_set_aside_alert_names_the_subjects_it_knows() -> None:
    """Messages set aside after repeated failures are named by Subject in the alert text, where the
    header fetch read one (maild.fetch.failed_headers)."""
    monitor = AlertMonitor(CONFIG)
    rt = AccountRuntime(pop3_account("bernd"))
    rt.last_result = replace(
        CycleResult("bernd"),
        set_aside=[POP3Key("u1"), POP3Key("u2")],
        subjects={POP3Key("u1"): "Rechnung 42 für März"},
    )

    (event,) = monitor.evaluate([rt], T0 + timedelta(seconds=1))

    assert event.kind == "set_aside"
    assert event.message == (
        'messages left on the server: 2 set aside after repeated failures ("Rechnung 42 für März")'
    )


def test_local_failures_alert_once_per_episode_and_recover_after_a_clean_cycle() -> None:
    """Cycles whose messages fail on this machine's side (the spool's disk) send one local_failure
    event naming the directory, however often the count or the free space in the reason changes;
    the first cycle without local failures sends the recovery; a new episode fires again."""
    from maild.model import RetrievalFailure
    from maild.spool import local_failure

    monitor = AlertMonitor(CONFIG)
    rt = AccountRuntime(pop3_account("anna"))
    key, other = POP3Key("big"), POP3Key("bigger")

    sent: list[AlertEvent] = []

    def cycle(at: datetime, *failures: RetrievalFailure) -> list[tuple[str, str]]:
        result = CycleResult("anna", on_server=3)
        result.failures.extend(failures)
        rt.succeeded(result, at)
        rt.note_local_failures(result, at)
        events = monitor.evaluate([rt], at, directory="/var/lib/maild")
        sent.extend(events)
        return [(e.kind, e.state) for e in events]

    firing = cycle(T0, local_failure(key, "100 octets free in /var/lib/maild"))
    assert "/var/lib/maild" in sent[0].message and "free space in /var/lib/maild" in sent[0].next_step
    later = [
        cycle(T0 + timedelta(minutes=5 * i), local_failure(key, f"{i} octets free"), local_failure(other, "x"))
        for i in range(1, 4)
    ]
    message_only = cycle(T0 + timedelta(minutes=30), RetrievalFailure(key, "-ERR locked"))
    again = cycle(T0 + timedelta(minutes=35), local_failure(key, "0 octets free"))

    assert firing == [("local_failure", "firing")]
    assert later == [[], [], []]
    assert message_only == [("local_failure", "recovered")]
    assert again == [("local_failure", "firing")]
