"""A reader holding the archive's write-ahead log is visible where an administrator looks (QA finding
F2 of session 8): the line of ``maild status`` and its exit code, the WARNING of ``maild check`` with
what to do, the metrics, and one ``wal_held`` alert per episode; all cleared once it is released.
The daemon end to end (a real reader, ``maild run``) is tests/integration/test_wal_held.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from maild.archive.checkpointer import WalSnapshot
from maild.cli.status_view import (
    CHECK_CRITICAL,
    CHECK_OK,
    CHECK_WARNING,
    check_line,
    needs_attention,
    render_status,
)
from maild.config.alerts import AlertsConfig
from maild.service import metrics
from maild.service.account_runtime import AccountRuntime
from maild.service.alerts import AlertMonitor
from maild.service.status import ArchiveTotals, CycleStatus, StatusReply
from tests.support.accounts import pop3_account
from tests.support.status_records import account_record

NOW = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)
HELD_SINCE = datetime(2026, 3, 2, 10, 42, tzinfo=UTC)
HEALTHY = account_record(
    messages=12,
    last_success=NOW - timedelta(minutes=3),
    next_run=NOW + timedelta(minutes=2),
    on_server=3,
    last_cycle=CycleStatus(new_links=0, octets=0, deleted=0, seconds=0.2),
)
HELD = ArchiveTotals(12, 99_000, directory="/var/lib/maild", wal_octets=173_015_040, wal_held_since=HELD_SINCE)
CLEAR = replace(HELD, wal_octets=4_194_304, wal_held_since=None)
CONFIG = AlertsConfig(command=("true",), after_s=3600, repeat_s=86400, disk_free_percent=10)


def test_status_shows_the_held_log_first_with_what_to_do_and_needs_attention() -> None:
    """Held: a line after the summary says since when, how large and that storing goes on, the next
    line how to find the reader; ``maild status`` exits 1. Released: neither, exit 0."""
    reply = StatusReply("1.0", NOW, (HEALTHY,), HELD)
    lines = render_status(reply, now=NOW, tz=UTC).splitlines()
    assert lines[1] == "! archive: write-ahead log held by a reader since 10:42, 173.0 MB; storing goes on"
    assert "read transaction open on the archive" in lines[2]
    assert "`fuser -v /var/lib/maild/*`" in lines[2]
    assert needs_attention(reply)

    clear = StatusReply("1.0", NOW, (HEALTHY,), CLEAR)
    assert "write-ahead log" not in render_status(clear, now=NOW, tz=UTC)
    assert not needs_attention(clear)


def test_check_warns_of_a_held_log_with_the_facts_and_what_to_do() -> None:
    """Held with healthy accounts: WARNING naming since when (UTC), the size, that storing goes on and
    what to do, the log's size in the perfdata; with a failing account too, both are named; a
    critical account stays CRITICAL; released: OK."""
    code, line = check_line(StatusReply("1", NOW, (HEALTHY,), HELD), NOW)
    text, perf = line.split(" | ")
    assert code == CHECK_WARNING
    assert text == (
        "MAILD WARNING - archive: write-ahead log held by a reader since 10:42 UTC, 173.0 MB; storing goes"
        " on; end the long read transaction on the archive (docs/archive.md)"
    )
    assert "wal=173015040B;;;0" in perf.split()

    backoff = replace(HEALTHY, name="bea", state="backoff", last_error="refused", consecutive_failures=1)
    code, line = check_line(StatusReply("1", NOW, (backoff,), HELD), NOW)
    assert code == CHECK_WARNING
    assert line.startswith("MAILD WARNING - bea backoff; archive: write-ahead log held by a reader")

    locked = replace(backoff, state="auth_failed", consecutive_failures=3)
    assert check_line(StatusReply("1", NOW, (locked,), HELD), NOW)[0] == CHECK_CRITICAL
    code, line = check_line(StatusReply("1", NOW, (HEALTHY,), CLEAR), NOW)
    assert (code, "write-ahead" in line) == (CHECK_OK, False)


def test_the_status_record_carries_the_log_through_json_and_older_replies_read_as_unknown() -> None:
    """``wal_octets`` and ``wal_held_since`` survive to_json/from_json; a reply without them (an older
    daemon) reads as unknown and not held."""
    assert ArchiveTotals.from_json(HELD.to_json()) == HELD
    old = {k: v for k, v in HELD.to_json().items() if not k.startswith("wal_")}
    assert ArchiveTotals.from_json(old) == replace(HELD, wal_octets=None, wal_held_since=None)


def test_metrics_give_the_log_size_the_held_flag_and_since_when() -> None:
    """Held: ``maild_archive_wal_bytes``, ``maild_archive_wal_held 1`` and the start as Unix time;
    released: held 0 and no start sample."""
    held = metrics.render([], 1, 1, wal=WalSnapshot(173_015_040, HELD_SINCE, "a reader kept it"))
    assert "maild_archive_wal_bytes 173015040" in held.splitlines()
    assert "maild_archive_wal_held 1" in held.splitlines()
    assert f"maild_archive_wal_held_since_timestamp_seconds {int(HELD_SINCE.timestamp())}" in held.splitlines()
    clear = metrics.render([], 1, 1, wal=WalSnapshot(4096, None, None)).splitlines()
    assert "maild_archive_wal_held 0" in clear
    assert not [line for line in clear if line.startswith("maild_archive_wal_held_since_timestamp_seconds ")]


def test_a_held_log_alerts_once_per_episode_and_recovers_when_released() -> None:
    """One ``wal_held`` event (no account) when it starts, none while it holds (the text names no
    size), one ``recovered`` when released; a later episode fires again."""
    monitor = AlertMonitor(CONFIG)
    rt = AccountRuntime(pop3_account("anna"))
    held = WalSnapshot(150_000_000, HELD_SINCE, "a reader kept it")
    fired = monitor.evaluate([rt], NOW, wal=held, directory="/var/lib/maild")
    assert [(e.kind, e.state, e.account, e.since) for e in fired] == [("wal_held", "firing", None, HELD_SINCE)]
    assert "read transaction open since 10:42 UTC" in fired[0].message
    assert "`fuser -v /var/lib/maild/*`" in fired[0].next_step
    assert fired[0].subject() == "[maild] archive's write-ahead log held by a reader"
    grown = replace(held, octets=400_000_000)
    assert monitor.evaluate([rt], NOW + timedelta(minutes=5), wal=grown, directory="/var/lib/maild") == []
    released = monitor.evaluate(
        [rt], NOW + timedelta(minutes=9), wal=WalSnapshot(4096, None, None), directory="/var/lib/maild"
    )
    assert [(e.kind, e.state) for e in released] == [("wal_held", "recovered")]
    again = replace(held, held_since=NOW + timedelta(hours=1))
    later = monitor.evaluate([rt], NOW + timedelta(hours=1), wal=again, directory="/var/lib/maild")
    assert [(e.kind, e.state) for e in later] == [("wal_held", "firing")]
