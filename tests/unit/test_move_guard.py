"""The same-mailbox decision by content: the archive's query, the policy's reason, the status field."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild import policy
from maild.archive.move_guard import UnfinishedMove, overlapping_moves
from maild.archive.move_queries import MigrationStore
from maild.archive.schema import _MIGRATIONS, SCHEMA_VERSION, _split_sql
from maild.model import POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LATER = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
OLD = b"Subject: old\r\n\r\nonly in the archive\r\n"
OTHER = b"Subject: other\r\n\r\nsomething else\r\n"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MigrationStore]:
    """An archive with POP3 accounts ``pop`` (the source) and ``office`` and the IMAP account ``imap``."""
    s = await MigrationStore.open(tmp_path / "maild.sqlite3")
    for name, protocol in (("pop", "pop3"), ("office", "pop3"), ("imap", "imap")):
        await s.ensure_account(name, "O", "E", protocol, NOW)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        await s.close()


async def _message_id(store: MigrationStore, raw: bytes) -> int:
    ids = [m for m, octets in (await store.message_octets(list(range(1, 50)))).items() if octets == raw]
    assert len(ids) == 1
    return ids[0]


async def test_no_move_means_no_overlap(store: MigrationStore) -> None:
    """Without a recorded move, sharing messages with another account suspends nothing."""
    await store.store_batch("pop", [RetrievedMessage(POP3Key("a"), OLD)], NOW)
    await store.store_batch("office", [RetrievedMessage(POP3Key("x"), OLD)], NOW)

    assert await overlapping_moves(store, "office") == []


async def test_a_pop3_server_holding_an_upload_overlaps_the_unfinished_move(store: MigrationStore) -> None:
    """A POP3 account that fetched what was uploaded into the target overlaps the move until retire."""
    await store.store_batch("pop", [RetrievedMessage(POP3Key("a"), OLD)], NOW)
    message = await _message_id(store, OLD)
    await store.start_move("pop", "imap", NOW)
    await store.record_append(message, "imap", "INBOX", 7, 1, NOW)
    await store.store_batch(
        "office", [RetrievedMessage(POP3Key("x"), OLD), RetrievedMessage(POP3Key("y"), OTHER)], LATER
    )

    assert await overlapping_moves(store, "office") == [UnfinishedMove("pop", "imap", 1)]

    await store.retire("pop", "imap", LATER)
    assert await overlapping_moves(store, "office") == []
    assert await store.unretire("pop") == "imap"
    assert await overlapping_moves(store, "office") == [UnfinishedMove("pop", "imap", 1)]


async def test_messages_gone_from_the_pop3_server_do_not_overlap(store: MigrationStore) -> None:
    """Only what the POP3 server holds now counts: a location marked deleted does not."""
    await store.store_batch("office", [RetrievedMessage(POP3Key("x"), OLD)], NOW)
    message = await _message_id(store, OLD)
    await store.start_move("pop", "imap", NOW)
    await store.record_append(message, "imap", "INBOX", 7, 1, NOW)
    await store.mark_deleted("office", [POP3Key("x")], LATER)

    assert await overlapping_moves(store, "office") == []


def test_move_suspension_names_the_move_and_the_command_that_ends_it() -> None:
    """The reason names the account, the target, the source and `maild retire`; none without moves."""
    assert policy.move_suspension("office", []) is None
    reason = policy.move_suspension("office", [("pop", "imap", 12), ("old", "imap", 1)])
    assert reason is not None
    assert reason.startswith(
        "deletion suspended: 12 messages on office's server are also in IMAP account imap"
    )
    assert "(and 1 more moves)" in reason
    assert "`maild retire pop --into imap`" in reason


def test_status_carries_the_suspension_and_reads_it_back() -> None:
    """AccountStatus writes ``deletion_suspended`` only when set, and reads it back."""
    from maild.service.status import AccountStatus

    fields = {
        "name": "office", "organisation": "O", "employee": "E", "protocol": "pop3", "host": "h",
        "enabled": True, "state": "waiting", "messages": 1, "last_success": None, "next_run": None,
        "last_error": None, "consecutive_failures": 0, "mode": "polling", "on_server": 1,
        "retention": "delete", "retention_days": None, "pending_deletion": 1, "oldest_kept_since": None,
    }  # fmt: skip
    plain = AccountStatus(**fields)  # type: ignore[arg-type]
    assert "deletion_suspended" not in plain.to_json()
    suspended = AccountStatus(**fields, deletion_suspended="deletion suspended: ...")  # type: ignore[arg-type]
    data = suspended.to_json()
    assert data["deletion_suspended"] == "deletion suspended: ..."
    assert AccountStatus.from_json(data) == suspended


async def test_version_two_archive_gains_moves_from_its_uploads(tmp_path: Path) -> None:
    """Migrating a v2 archive records a move per (account linked to an upload, target); retired ones finished."""
    path = tmp_path / "maild.sqlite3"
    with sqlite3.connect(path) as conn:
        for version in (1, 2):
            for statement in _split_sql(_MIGRATIONS[version]):
                conn.execute(statement)
        conn.executemany(
            "INSERT INTO accounts VALUES (?, 'O', 'E', ?, '2026-01-01T00:00:00Z', ?, ?)",
            [
                ("pop", "pop3", None, None),
                ("old", "pop3", "2026-02-01T00:00:00Z", "imap"),
                ("imap", "imap", None, None),
            ],
        )
        conn.executemany(
            "INSERT INTO messages (id, sha256, size_octets, stored_at, raw) VALUES (?, ?, 1, 'x', x'00')",
            [(1, "a"), (2, "b")],
        )
        conn.executemany(
            "INSERT INTO locations (account, message, uidl, first_fetched_at) VALUES (?, ?, ?, '2026-01-01T00:00:00Z')",
            [("pop", 1, "u1"), ("old", 2, "u2")],
        )
        conn.executemany(
            "INSERT INTO appends VALUES (?, 'imap', 'INBOX', 1, ?, '2026-01-05T00:00:00Z')", [(1, 1), (2, 2)]
        )
        conn.execute("PRAGMA user_version = 2")
    async with await MigrationStore.open(path) as s:
        rows = await s._all("SELECT source, target, started_at, finished_at FROM moves ORDER BY source")
        version = await s._all("PRAGMA user_version")
    assert [tuple(r) for r in rows] == [
        ("old", "imap", "2026-01-05T00:00:00Z", "2026-02-01T00:00:00Z"),
        ("pop", "imap", "2026-01-05T00:00:00Z", None),
    ]
    assert version[0][0] == SCHEMA_VERSION


def test_a_suspended_cycle_shows_its_reason_and_counts_in_the_status_and_metrics() -> None:
    """The last cycle's suspension reaches the account's status; new vs already archived reach
    last_cycle and the metrics."""
    from maild.fetch.cycle import CycleResult
    from maild.service import metrics
    from maild.service.account_runtime import AccountRuntime
    from maild.service.snapshot import account_status
    from tests.support.accounts import pop3_account

    rt = AccountRuntime(pop3_account(retention="delete"))
    result = CycleResult(rt.config.name, on_server=12, new_messages=2, new_links=12)
    result.deletion_suspended = "deletion suspended: 12 messages ..."
    rt.last_result = result
    rt.new_messages = 2

    status = account_status(rt, 12).to_json()

    assert status["deletion_suspended"] == "deletion suspended: 12 messages ..."
    assert status["last_cycle"]["new_messages"] == 2
    assert status["last_cycle"]["already_archived"] == 10
    assert f'maild_new_messages_total{{account="{rt.config.name}"' in metrics.render([rt], 0, 12)


async def test_cycle_of_a_pop3_account_sharing_an_unfinished_moves_target_deletes_nothing(
    tmp_path: Path,
) -> None:
    """A deleting POP3 cycle whose server holds what was uploaded into an unfinished move's target
    archives as usual, deletes nothing, logs ``fetch.delete.suspended`` and says why; after retire it deletes."""
    from structlog.testing import capture_logs

    from maild.fetch.cycle import fetch_cycle
    from tests.support.accounts import pop3_account
    from tests.support.fetching import Clock, prepare
    from tests.unit.fakes import FakeServer, make_message

    async with await MigrationStore.open(tmp_path / "maild.sqlite3") as store:
        assert isinstance(store, MigrationStore)
        for name, protocol in (("pop", "pop3"), ("imap", "imap")):
            await store.ensure_account(name, "O", "E", protocol, NOW)  # type: ignore[arg-type]
        await store.store_batch("pop", [RetrievedMessage(POP3Key("old"), make_message(2))], NOW)
        await store.start_move("pop", "imap", NOW)
        await store.record_append(await _message_id(store, make_message(2)), "imap", "INBOX", 7, 9, NOW)
        account = await prepare(store, pop3_account("office", retention="delete"))
        server = FakeServer.with_pop3(3)

        with capture_logs() as logs:
            result = await fetch_cycle(account, store, server.session(), clock=Clock())

        assert (result.new_links, result.new_messages, result.deleted) == (3, 2, 0)
        assert len(server.messages) == 3
        assert result.deletion_suspended is not None
        assert "into which the move from pop is unfinished" in result.deletion_suspended
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["fetch.delete.suspended"]

        await store.retire("pop", "imap", LATER)
        again = await fetch_cycle(account, store, server.session(), clock=Clock())
        assert again.deleted == 3
        assert again.deletion_suspended is None
