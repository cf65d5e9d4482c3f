"""The kind of a retrieval failure (local: this machine's spool or disk; message: the server or the
message), kept with the failure record (schema v15) and read by the set-aside policy."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild.archive.failures import failure_records, record_failures
from maild.archive.schema import SCHEMA_VERSION
from maild.archive.store import Store
from maild.model import POP3Key, RetrievalFailure
from maild.policy import SET_ASIDE_AFTER_FAILURES, set_aside
from maild.spool import SPOOL_FAILURE_PREFIX, local_failure

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_local_failure_is_of_kind_local_and_says_so_once() -> None:
    """spool.local_failure builds the local failure; its reason starts 'local spool: ' exactly once."""
    key = POP3Key("u1")

    bare = local_failure(key, "cannot create a spool file in /var/lib/maild: Permission denied")
    prefixed = local_failure(key, f"{SPOOL_FAILURE_PREFIX}the spool holds 5 octets")

    assert (bare.kind, prefixed.kind) == ("local", "local")
    assert bare.reason == "local spool: cannot create a spool file in /var/lib/maild: Permission denied"
    assert prefixed.reason == "local spool: the spool holds 5 octets"
    assert RetrievalFailure(key, "-ERR locked").kind == "message"


async def test_a_run_counts_failures_of_one_kind_and_the_other_kind_starts_a_new_run(tmp_path: Path) -> None:
    """Two message failures, then local ones: the local run starts at 1 and never sets the message
    aside however long it lasts; a message failure after it starts counting at 1 again, so the
    message is set aside only after three message failures in a row."""
    key = POP3Key("u1")
    message = RetrievalFailure(key, "-ERR [SYS/TEMP] locked")
    local = local_failure(key, "writing a spool file in /srv: No space left on device")
    async with await Store.open(tmp_path / "maild.sqlite3") as s:
        await s.ensure_account("a", "O", "E", "pop3", NOW)
        steps = [message, message, local, local, local, local, message, message, message]
        seen = []
        for i, failure in enumerate(steps):
            at = NOW + timedelta(minutes=i)
            await record_failures(s, "a", [failure], at)
            record = (await failure_records(s, "a"))[key]
            seen.append((record.kind, record.failures, record.first_failed_at == at))
            aside = set_aside({key: record}, at)
            assert (key in aside) == (record.kind == "message" and record.failures >= SET_ASIDE_AFTER_FAILURES)

    assert seen == [
        ("message", 1, True), ("message", 2, False),
        ("local", 1, True), ("local", 2, False), ("local", 3, False), ("local", 4, False),
        ("message", 1, True), ("message", 2, False), ("message", 3, False),
    ]  # fmt: skip


async def test_migration_marks_old_spool_records_local_and_the_rest_message(tmp_path: Path) -> None:
    """An archive of schema 14 (no kind column) gains ``retrieval_failures.kind``: records whose reason
    starts 'local spool: ' read as local (never set aside), all others as message, counts kept."""
    path = tmp_path / "maild.sqlite3"
    async with await Store.open(path) as s:
        await s.ensure_account("a", "O", "E", "pop3", NOW)
    with sqlite3.connect(path) as conn:  # back to version 14's table, with two records made then
        conn.execute("ALTER TABLE retrieval_failures DROP COLUMN kind")
        conn.execute("PRAGMA user_version = 14")
        for key, reason in (("pop3 big", "local spool: 5 octets free in /x"), ("pop3 bad", "-ERR broken")):
            conn.execute(
                "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at,"
                " last_failed_at) VALUES ('a', ?, 4, ?, '2026-03-02T09:00:00Z', '2026-03-02T09:20:00Z')",
                (key, reason),
            )

    async with await Store.open(path) as s:
        records = await failure_records(s, "a")
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]

    assert version == SCHEMA_VERSION
    big, bad = records[POP3Key("big")], records[POP3Key("bad")]
    assert (big.kind, big.failures, bad.kind, bad.failures) == ("local", 4, "message", 4)
    assert set_aside(records, NOW) == {POP3Key("bad")}


async def test_the_migration_meets_its_column_already_there(tmp_path: Path) -> None:
    """An archive whose user_version was set back below 15 while it has ``kind`` (a renumbered step at a
    merge, a test's rewind) migrates again without error and keeps each record's kind."""
    path = tmp_path / "maild.sqlite3"
    async with await Store.open(path) as s:
        await s.ensure_account("a", "O", "E", "pop3", NOW)
        await record_failures(s, "a", [local_failure(POP3Key("big"), "x")], NOW)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 14")

    async with await Store.open(path) as s:
        records = await failure_records(s, "a")

    assert [(r.kind, r.failures) for r in records.values()] == [("local", 1)]
