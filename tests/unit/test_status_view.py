"""``maild status`` and ``maild check`` text (:mod:`maild.cli.status_view`): golden renderings, the
summary line, problem accounts first, ``--failed``, human sizes, local times, the monitoring line."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild.cli.status_view import (
    CHECK_CRITICAL,
    CHECK_OK,
    CHECK_WARNING,
    check_line,
    local_time,
    render_status,
    summary_line,
)
from maild.service.status import ArchiveTotals, CycleStatus, StatusReply, attention
from tests.support.status_records import account_record

GOLDEN = Path(__file__).parent / "golden"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)  # 13:05 CET
EMPLOYEES = ("Anna Berger", "Bernd Krause", "Clara Schmidt", "Dieter Wolf", "Eva Lange")

HEALTHY = account_record(
    messages=1234,
    last_success=NOW - timedelta(minutes=3),
    next_run=NOW + timedelta(minutes=2),
    on_server=3,
    retention="delete-after",
    retention_days=7,
    pending_deletion=3,
    oldest_kept_since=NOW - timedelta(days=2),
    identity="uidl",
    last_cycle=CycleStatus(new_links=0, octets=0, deleted=0, seconds=0.2),
)


def golden(name: str, text: str) -> str:
    """The golden text ``name``; ``MAILD_UPDATE_GOLDEN=1`` rewrites it from ``text`` first."""
    path = GOLDEN / name
    if os.environ.get("MAILD_UPDATE_GOLDEN") == "1":
        path.write_text(text + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").removesuffix("\n")


def office(n: int) -> StatusReply:
    """``n`` accounts: every 8th locked out, every 11th in backoff, the 5th paused, the 7th IMAP IDLE."""
    accounts = []
    for i in range(n):
        a = replace(
            HEALTHY,
            name=f"acct-{i:02d}",
            employee=EMPLOYEES[i % len(EMPLOYEES)],
            organisation="Kanzlei Berger" if i % 3 else "Praxis Sonnenschein",
            messages=1000 * i + 7,
            pending_deletion=i % 4,
        )
        if i % 8 == 3:
            a = replace(
                a,
                state="auth_failed",
                last_error="login refused (AUTHENTICATIONFAILED) — 3 refusals in a row",
                consecutive_failures=3,
                next_run=None,
                last_success=NOW - timedelta(days=1, hours=2),
            )
        elif i % 11 == 6:
            a = replace(
                a, state="backoff", last_error="connection refused", consecutive_failures=1, retention="keep"
            )
        elif i == 5:
            a = replace(a, state="paused", next_run=None)
        elif i == 7:
            a = replace(a, protocol="imap", mode="idle", retention="delete", retention_days=None)
        accounts.append(a)
    return StatusReply("1.0", NOW - timedelta(days=3), tuple(accounts), ArchiveTotals(25_000, 1_432_000_000))


def test_one_healthy_account_renders_as_the_golden_text() -> None:
    """One healthy account: summary line, header, one row, archive line with a human size and the zone."""
    reply = StatusReply("1.0", NOW, (HEALTHY,), ArchiveTotals(1234, 56_789_012))

    text = render_status(reply, now=NOW, tz=BERLIN)

    assert text == golden("status_1.txt", text)


def test_twenty_five_accounts_render_as_the_golden_text() -> None:
    """25 accounts with lockouts, backoff and a pause: problems first, aligned columns, details after."""
    text = render_status(office(25), now=NOW, tz=BERLIN)

    assert text == golden("status_25.txt", text)


def test_problem_accounts_come_before_healthy_ones() -> None:
    """Every account that needs attention is listed before every healthy one."""
    rows = render_status(office(25), now=NOW, tz=BERLIN).split("\n\n")[1].splitlines()[1:]
    marks = [row.startswith("!") for row in rows]

    assert marks == sorted(marks, reverse=True)
    assert sum(marks) == 5


def test_failed_lists_only_the_accounts_needing_attention() -> None:
    """``--failed`` keeps the summary of all accounts and lists only the troubled ones."""
    text = render_status(office(25), now=NOW, tz=BERLIN, failed_only=True)
    rows = text.split("\n\n")[1].splitlines()[1:]  # the table without its header

    assert text.splitlines()[0] == summary_line(office(25), NOW, BERLIN)
    assert {row.split()[1] for row in rows} == {"acct-03", "acct-06", "acct-11", "acct-17", "acct-19"}


def test_summary_counts_states_and_names_the_zone() -> None:
    """The summary counts healthy accounts as ok and names the last fetch in local time with its zone."""
    line = summary_line(office(25), NOW, BERLIN)

    assert line == "25 accounts: 19 ok, 3 auth_failed, 2 backoff, 1 paused; last fetch 13:02 CET"


def test_summary_in_summer_names_the_summer_zone() -> None:
    """In July the same zone is CEST: the zone name follows the date."""
    july = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    reply = StatusReply("1.0", july, (replace(HEALTHY, last_success=july),), ArchiveTotals(0, 0))

    assert summary_line(reply, july, BERLIN).endswith("last fetch 12:00 CEST")


def test_local_time_shows_the_date_only_when_not_today() -> None:
    """Today is HH:MM; another day carries its date; no time is a dash."""
    assert local_time(NOW, NOW, BERLIN) == "13:05"
    assert local_time(NOW - timedelta(days=1), NOW, BERLIN) == "2026-03-01 13:05"
    assert local_time(None, NOW, BERLIN) == "-"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"state": "paused"}, None),
        ({"state": "disabled", "enabled": False}, None),
        ({"state": "backoff", "consecutive_failures": 1}, "backoff"),
        ({"state": "error", "consecutive_failures": 1}, "error"),
        ({"state": "auth_failed", "consecutive_failures": 3}, "auth_failed"),
        ({"state": "paused", "last_error": "login refused"}, "paused after a failure"),
        (
            {"last_cycle": CycleStatus(0, 0, 0, 0.1, too_large=("POP3Key(uidl='x')",))},
            "1 message set aside (too large)",
        ),
    ],
)
def test_attention_names_what_needs_the_admin(change: dict[str, object], reason: str | None) -> None:
    """Failed, locked-out, paused-after-failure and set-aside accounts need attention; others do not."""
    assert attention(replace(HEALTHY, **change)) == reason  # type: ignore[arg-type]


def test_check_is_ok_with_perfdata_when_all_are_healthy() -> None:
    """All healthy: OK, and perfdata for accounts, problems, archive size and the fetch lag in seconds."""
    reply = StatusReply("1.0", NOW, (HEALTHY,), ArchiveTotals(1234, 56_789_012))

    code, line = check_line(reply, NOW)

    assert code == CHECK_OK
    assert line == (
        "MAILD OK - 1 accounts ok | accounts=1;;;0 ok=1;;;0 problems=0;1;;0 messages=1234;;;0"
        " archive=56789012B;;;0 fetch_lag=180s;;;0"
    )


def test_check_warns_for_a_transient_failure_and_is_critical_for_a_lockout() -> None:
    """One backoff is WARNING; a lockout anywhere makes it CRITICAL and is named first."""
    backoff = replace(HEALTHY, name="b", state="backoff", consecutive_failures=1, last_error="x")
    locked = replace(HEALTHY, name="l", state="auth_failed", consecutive_failures=3)

    warn_code, warn_line = check_line(StatusReply("1", NOW, (HEALTHY, backoff), ArchiveTotals(0, 0)), NOW)
    crit_code, crit_line = check_line(StatusReply("1", NOW, (backoff, locked), ArchiveTotals(0, 0)), NOW)

    assert (warn_code, warn_line.split(" | ")[0]) == (CHECK_WARNING, "MAILD WARNING - b backoff")
    assert (crit_code, crit_line.split(" | ")[0]) == (CHECK_CRITICAL, "MAILD CRITICAL - l auth_failed (and 1 more)")
    assert "problems=2;1;;0" in crit_line


def test_check_names_an_account_paused_by_the_admin_and_warns_for_one_paused_after_a_failure() -> None:
    """Paused while healthy is the admin's decision: OK, named in the line; paused after a failure is
    a problem: WARNING (docs/operations.md, the exit-code table)."""
    holiday = replace(HEALTHY, name="eva-pop", state="paused", next_run=None)
    stuck = replace(HEALTHY, name="dieter-pop", state="paused", next_run=None, last_error="login refused")

    ok_code, ok_line = check_line(StatusReply("1", NOW, (HEALTHY, holiday), ArchiveTotals(0, 0)), NOW)
    warn_code, warn_line = check_line(StatusReply("1", NOW, (holiday, stuck), ArchiveTotals(0, 0)), NOW)

    assert (ok_code, ok_line.split(" | ")[0]) == (
        CHECK_OK,
        "MAILD OK - 2 accounts ok; paused by the admin: eva-pop",
    )
    assert warn_code == CHECK_WARNING
    assert warn_line.split(" | ")[0] == (
        "MAILD WARNING - dieter-pop paused after a failure; paused by the admin: eva-pop"
    )


def test_a_first_refused_login_is_a_warning_everywhere_until_the_lockout() -> None:
    """Refusal 1 of 3 (state backoff, issue 17 QA item 8): status needs attention, check WARNING, not
    the CRITICAL of a permanent error; the lockout is CRITICAL."""
    refused = replace(
        HEALTHY,
        state="backoff",
        consecutive_failures=1,
        last_error="login refused (refusal 1 of 3: tried again at the next cycle; 3 in a row lock the account out)",
    )
    locked = replace(refused, state="auth_failed", consecutive_failures=3)

    code, line = check_line(StatusReply("1", NOW, (refused,), ArchiveTotals(0, 0)), NOW)
    locked_code, _ = check_line(StatusReply("1", NOW, (locked,), ArchiveTotals(0, 0)), NOW)

    assert attention(refused) == "backoff"
    assert (code, line.split(" | ")[0]) == (CHECK_WARNING, "MAILD WARNING - anna-pop backoff")
    assert locked_code == CHECK_CRITICAL


def test_messages_failing_on_this_machine_make_check_warn_and_name_the_directory() -> None:
    """A last cycle that could not retrieve a message on this machine's side (the spool's disk) needs
    attention: status exits 1 and shows where to free space; check is WARNING (not CRITICAL: nothing
    is lost, small mail flows) naming the account and the directory. A failure of the server's does
    neither, nor does a local record alone once the last cycle no longer failed on it (the message
    left the server: records stay until a message is archived)."""
    from maild.service.status import FailingMessageStatus, RetrievalFailureStatus

    record = FailingMessageStatus("UIDL big", 2, "local spool: 5 octets free in /srv/maild", NOW, False, kind="local")

    def cycle(kind: str) -> CycleStatus:
        failure = RetrievalFailureStatus("POP3Key(uidl='big')", "local spool: 5 octets free", kind)  # type: ignore[arg-type]
        return CycleStatus(0, 0, 0, 0.1, failures=(failure,))

    local = replace(HEALTHY, failing_messages=(record,), last_cycle=cycle("local"))
    server = replace(HEALTHY, last_cycle=cycle("message"))
    gone = replace(HEALTHY, failing_messages=(record,))
    archive = ArchiveTotals(1, 2, directory="/srv/maild")

    code, line = check_line(StatusReply("1", NOW, (local,), archive), NOW)
    text = render_status(StatusReply("1", NOW, (local,), archive), now=NOW, tz=UTC)

    assert attention(local) == "1 message not retrieved: no room on this machine"
    assert (code, line.split(" | ")[0]) == (
        CHECK_WARNING,
        "MAILD WARNING - anna-pop 1 message not retrieved: no room on this machine; free space in /srv/maild",
    )
    assert "    free space in /srv/maild: large messages are spooled there" in text
    assert "not retrieved 2x in a row on this machine (retried every cycle, never set aside): UIDL big" in text
    assert (attention(server), attention(gone)) == (None, None)
    assert check_line(StatusReply("1", NOW, (server, gone), archive), NOW)[0] == CHECK_OK


def test_a_cycle_stopped_by_the_archive_full_disk_with_nothing_blocked_makes_check_warn() -> None:
    """QA of session 13: a cycle that ran into the archive's full disk with no message blocked (nothing
    new, every batch committed, or the deletions' record) ends with a warning only, and deletes nothing
    on the server from then on until there is room; before, status exited 0 and check said OK.
    Now it needs attention: check WARNING naming the directory, status the advice; a later cycle
    without the warning clears it."""
    from maild.model import ARCHIVE_FULL_WARNING

    warning = (
        f"{ARCHIVE_FULL_WARNING} (archive /srv/maild/maild.sqlite3: writing: database or disk is full):"
        " the cycle stopped before deleting anything; nothing was lost"
    )
    stopped = replace(HEALTHY, warnings=(warning,))
    other = replace(HEALTHY, warnings=("a server re-using UIDLs?",))
    archive = ArchiveTotals(1, 2, directory="/srv/maild")

    code, line = check_line(StatusReply("1", NOW, (stopped,), archive), NOW)
    text = render_status(StatusReply("1", NOW, (stopped,), archive), now=NOW, tz=UTC)

    assert (
        attention(stopped)
        == "no room on this machine: the archive's disk is full, the last cycle stopped short"
    )
    assert (code, line.split(" | ")[0]) == (
        CHECK_WARNING,
        "MAILD WARNING - anna-pop no room on this machine: the archive's disk is full, the last cycle"
        " stopped short; free space in /srv/maild",
    )
    assert (
        "    free space in /srv/maild: the archive is there, and its disk is full: nothing is deleted" in text
    )
    assert attention(other) is None
    assert check_line(StatusReply("1", NOW, (other,), archive), NOW)[0] == CHECK_OK
