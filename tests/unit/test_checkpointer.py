"""The WAL's checkpoints off the commit path (maild.archive.checkpointer): the wal-index read agrees
with SQLite, the checkpointer's thread copies the WAL, the WAL stays under its bound under a stream of
batches and with a reader holding it back, and a checkpointer that keeps failing is logged once while
storing goes on, and a reader never stops storing. Sizes are counted in frames and octets, never in time."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from maild.archive import checkpointer, opening
from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage
from tests.support.daemonproc import end_process

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
MIB = 2**20
MESSAGE_OCTETS = 100_000
BATCH = 5
"""A batch of five 100 kB messages: about 29 frames (0.9 MiB) in the WAL, each message taking four
32 KiB pages, plus index and full-text pages."""
BATCH_MARGIN_OCTETS = 2 * MIB
"""What one batch's transaction may add to the WAL, with room to spare."""
_numbers = iter(range(1, 1_000_000))


def batch() -> list[RetrievedMessage]:
    """Five distinct messages of about 100 kB each."""
    out = []
    for _ in range(BATCH):
        n = next(_numbers)
        line = b"Zeile des Briefes %d mit etwas Text darin\r\n" % n
        body = line * (MESSAGE_OCTETS // len(line))
        out.append(RetrievedMessage(POP3Key(f"u{n}"), b"Subject: Brief %d\r\n\r\n" % n + body))
    return out


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints from 1 MiB not yet copied, the writer's bound at 4 MiB."""
    monkeypatch.setattr(checkpointer, "CHECKPOINT_WAL_OCTETS", MIB)
    monkeypatch.setattr(checkpointer, "WAL_HARD_OCTETS", 4 * MIB)


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer waits 0.2 s for a lock (not 10 s)."""
    monkeypatch.setattr(opening, "BUSY_TIMEOUT_MS", 200)


async def opened(path: Path) -> Store:
    store = await Store.open(path)
    await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
    return store


def wal_file_bound(page_size: int, octets: int) -> int:
    """Size of a ``-wal`` file holding ``octets`` of pages: a 32-octet header, 24 octets per frame."""
    return 32 + (octets // page_size + 1) * (page_size + 24)


async def count(store: Store) -> int:
    return int(await store._scalar("SELECT count(*) FROM messages"))


async def wait_idle(store: Store) -> None:
    assert await asyncio.to_thread(store.db.checkpointer.wait_idle, 60)


async def test_the_wal_state_read_from_the_shm_file_agrees_with_sqlite(tmp_path: Path) -> None:
    """Frames, page size and frames copied read from the wal-index equal what SQLite's own
    checkpoint reports, before and after a checkpoint by another connection."""
    store = await opened(tmp_path / "a.sqlite3")
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        before = store.db.checkpointer.wal_state()
        assert before is not None
        other = sqlite3.connect(tmp_path / "a.sqlite3")
        try:
            busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()
        after = store.db.checkpointer.wal_state()
    finally:
        await store.close()
    assert busy == 0
    assert before.page_size == 32768
    assert before.frames == frames > 0
    assert before.backfilled < frames
    assert after is not None
    assert (after.frames, after.backfilled, after.attempted) == (frames, copied, copied)
    assert after.pending_octets == 0


async def test_the_writer_does_not_checkpoint_and_the_checkpointer_copies_past_its_bound(
    tmp_path: Path, small_bounds: None
) -> None:
    """The writer's connection has automatic checkpoints off; once 1 MiB is in the WAL not yet
    copied, the checkpointer's thread copies all of it, and nothing is copied before."""
    store = await opened(tmp_path / "a.sqlite3")
    try:
        assert await store._scalar("PRAGMA wal_autocheckpoint") == 0
        await wait_idle(store)  # the new archive's schema is more than 1 MiB of 32 KiB pages
        start = store.db.checkpointer.wal_state()
        assert start is not None
        done = store.db.checkpointer.checkpoints
        state = start
        while state.pending_octets < MIB:
            await store.store_batch("anna-pop", batch(), NOW)
            new = store.db.checkpointer.wal_state()
            assert new is not None
            assert new.backfilled == start.backfilled or new.pending_octets >= MIB
            state = new
        await wait_idle(store)
        after = store.db.checkpointer.wal_state()
        assert store.db.checkpointer.checkpoints == done + 1
    finally:
        await store.close()
    assert after is not None
    assert after.backfilled == after.frames == state.frames


async def test_the_wal_stays_under_its_bound_under_a_stream_of_batches(
    tmp_path: Path, small_bounds: None
) -> None:
    """Sixty batches (30 MB) committed back to back: the WAL never holds more than its bound plus one
    batch, the ``-wal`` file stays that small, and every message is stored."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    most = 0
    try:
        for _ in range(60):
            await store.store_batch("anna-pop", batch(), NOW)
            state = store.db.checkpointer.wal_state()
            assert state is not None
            most = max(most, state.octets)
        stored = await count(store)
    finally:
        await store.close()
    assert stored == 60 * BATCH
    assert 4 * MIB <= most <= 4 * MIB + BATCH_MARGIN_OCTETS
    # close() truncates the WAL; its largest size is what the file reached while storing
    assert os.path.getsize(f"{db}-wal") == 0


async def test_the_wal_file_never_passes_its_bound_while_storing(tmp_path: Path, small_bounds: None) -> None:
    """The same stream, with the ``-wal`` file's size (the disk it takes) checked after every commit."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    try:
        for _ in range(40):
            await store.store_batch("anna-pop", batch(), NOW)
            state = store.db.checkpointer.wal_state()
            assert state is not None
            assert os.path.getsize(f"{db}-wal") <= wal_file_bound(
                state.page_size, 4 * MIB + BATCH_MARGIN_OCTETS
            )
    finally:
        await store.close()


async def test_a_reader_holding_a_read_transaction_never_stops_storing(
    tmp_path: Path, small_bounds: None, short_busy_timeout: None
) -> None:
    """A reader keeps a read transaction open: storing goes on past the WAL's bound (a reader never
    stops the mail from being fetched), one warning names the bound and the reader, the next RESTART
    is tried only after another bound's worth; once the reader ends, the next try empties the log
    and its release is logged."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()
        with capture_logs() as logs:
            for _ in range(14):  # about 12 MiB of pages: three times the 4 MiB bound
                await store.store_batch("anna-pop", batch(), NOW)
        held = [e for e in logs if e["event"] == "archive.wal.held"]
        assert len(held) == 1 and held[0]["log_level"] == "warning"
        assert re.search(r"write-ahead log holds \d+ MiB \(bound 4 MiB\)", held[0]["problem"])
        assert "read transaction open" in held[0]["problem"] and "storing goes on" in held[0]["problem"]
        tries = [e for e in logs if e["event"] == "archive.checkpoint.restart"]
        assert 2 <= len(tries) <= 4  # once per further 4 MiB, not before every batch
        grown = store.db.checkpointer.wal_state()
        assert grown is not None and grown.octets > 8 * MIB
        assert await count(store) == 15 * BATCH
        reader.execute("COMMIT")
        with capture_logs() as logs:
            for _ in range(6):
                await store.store_batch("anna-pop", batch(), NOW)
        assert [e["event"] for e in logs if e["event"].startswith("archive.wal.")] == ["archive.wal.released"]
        again = store.db.checkpointer.wal_state()
        assert await count(store) == 21 * BATCH
        assert again is not None  # the file itself shrank back too (journal_size_limit), not only the log
        assert os.path.getsize(f"{db}-wal") <= wal_file_bound(again.page_size, 4 * MIB + BATCH_MARGIN_OCTETS)
    finally:
        reader.close()
        await store.close()
    assert again is not None
    assert again.frames < grown.frames // 2


async def test_a_restart_refused_by_this_connections_own_reader_defers_and_stores(
    tmp_path: Path, small_bounds: None
) -> None:
    """The daemon's one connection has another account's SELECT still open between its steps when a
    batch passes the bound: the RESTART gets SQLITE_LOCKED ("database table is locked"); the batch
    is stored anyway, nothing is warned, and the next transaction empties the log (the 50-account
    benchmark of session 8 found storing failing on exactly this)."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    try:
        while (state := store.db.checkpointer.wal_state()) is None or state.octets < 4 * MIB:
            await store.store_batch("anna-pop", batch(), NOW)
        stored = await count(store)
        with capture_logs() as logs:
            async with store._conn.execute("SELECT id FROM messages") as cursor:
                assert await cursor.fetchone() is not None  # a read statement of this connection, open
                await store.store_batch("anna-pop", batch(), NOW)
            assert [e for e in logs if e["event"] == "archive.checkpoint.restart-deferred"]
            await store.store_batch("anna-pop", batch(), NOW)
        assert not [e for e in logs if e["log_level"] == "warning"]
        assert await count(store) == stored + 2 * BATCH
        after = store.db.checkpointer.wal_state()
        assert after is not None and after.octets < 4 * MIB
    finally:
        await store.close()


HOLD_CHECKPOINT_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 121)  # WAL_CKPT_LOCK: byte 120 + 1 of the -shm file
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def checkpoint_lock_holder() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Where a test puts the processes :func:`hold_checkpoint_lock` started; each is ended afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        end_process(proc)


def hold_checkpoint_lock(shm: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Another process takes the checkpoint lock of the archive's wal-index (as another SQLite
    process's checkpoint would), so every checkpoint of this process gets SQLITE_BUSY."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_CHECKPOINT_LOCK, str(shm)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"held\n"
    return proc


async def test_a_checkpointer_failing_again_and_again_is_logged_once_and_storing_goes_on(
    tmp_path: Path,
    small_bounds: None,
    checkpoint_lock_holder: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process holds the checkpoint lock: every checkpoint fails with SQLITE_BUSY, one
    warning says so, and batches are still stored (up to the writer's bound, here 8 MiB); once the
    lock is free, the next checkpoint copies the whole WAL and its recovery is logged."""
    monkeypatch.setattr(checkpointer, "WAL_HARD_OCTETS", 8 * MIB)
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        await wait_idle(store)
        start = store.db.checkpointer.wal_state()
        assert start is not None
        holder = hold_checkpoint_lock(Path(f"{db}-shm"), checkpoint_lock_holder)
        with capture_logs() as logs:
            for _ in range(4):  # each past the checkpointer's 1 MiB, all under the writer's 8 MiB
                await store.store_batch("anna-pop", batch(), NOW)
                await wait_idle(store)
            failing = store.db.checkpointer.attempts
            state = store.db.checkpointer.wal_state()
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait()
            await store.store_batch("anna-pop", batch(), NOW)
            await wait_idle(store)
        assert await count(store) == 6 * BATCH
        after = store.db.checkpointer.wal_state()
    finally:
        await store.close()
    assert failing >= 2
    assert state is not None
    assert state.backfilled == start.backfilled
    failed = [e for e in logs if e["event"] == "archive.checkpoint.failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "warning"
    assert "locked" in failed[0]["error"]
    assert [e["event"] for e in logs if e["event"] == "archive.checkpoint.recovered"] == [
        "archive.checkpoint.recovered"
    ]
    assert after is not None
    assert after.backfilled == after.frames


async def test_closing_ends_the_checkpointer_thread_and_empties_the_wal(tmp_path: Path, small_bounds: None) -> None:
    """close() ends the checkpointer's thread and leaves an empty ``-wal`` file, as before."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    for _ in range(4):
        await store.store_batch("anna-pop", batch(), NOW)
    thread = store.db.checkpointer._thread
    assert thread is not None
    await store.close()
    assert not thread.is_alive()
    assert os.path.getsize(f"{db}-wal") == 0


async def test_a_held_wal_is_in_the_snapshot_and_logged_without_the_account(
    tmp_path: Path, small_bounds: None, short_busy_timeout: None
) -> None:
    """A reader holds the WAL while an account's batches are stored (that account's context variables
    bound, as the scheduler binds them): ``snapshot()`` says since when and how large; the warning
    ``archive.wal.held`` and ``archive.wal.released`` carry the archive's path and not the account
    (the log is the archive's: QA finding F3); after the release the snapshot is clear."""
    db = tmp_path / "a.sqlite3"
    store = await opened(db)
    reader = sqlite3.connect(db, isolation_level=None)
    merge = [structlog.contextvars.merge_contextvars]
    structlog.contextvars.bind_contextvars(account="anna-pop", organisation="Kanzlei Berger")
    try:
        await store.store_batch("anna-pop", batch(), NOW)
        assert store.db.checkpointer.snapshot().held_since is None
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()
        before = datetime.now(UTC)
        with capture_logs(processors=merge) as logs:
            for _ in range(8):  # about 7 MiB of pages: past the 4 MiB bound
                await store.store_batch("anna-pop", batch(), NOW)
        held = store.db.checkpointer.snapshot()
        (warned,) = [e for e in logs if e["event"] == "archive.wal.held"]
        assert warned["path"] == str(db)
        assert "account" not in warned and "organisation" not in warned
        assert held.held_since is not None and before <= held.held_since <= datetime.now(UTC)
        assert held.octets is not None and held.octets > 4 * MIB
        assert held.problem is not None and "read transaction open" in held.problem
        reader.execute("COMMIT")
        with capture_logs(processors=merge) as logs:
            for _ in range(6):
                await store.store_batch("anna-pop", batch(), NOW)
        (released,) = [e for e in logs if e["event"] == "archive.wal.released"]
        assert released["path"] == str(db) and "account" not in released
        clear = store.db.checkpointer.snapshot()
        assert (clear.held_since, clear.problem) == (None, None)
        assert clear.octets is not None and clear.octets < held.octets
    finally:
        structlog.contextvars.clear_contextvars()
        reader.close()
        await store.close()
