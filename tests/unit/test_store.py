"""The archive on a real SQLite file: schema, durability settings, deduplication, presence, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maild.archive.schema import _MIGRATIONS, SCHEMA_VERSION, _split_sql, parse_utc, utc_text
from maild.archive.store import Store
from maild.errors import StoreError
from maild.model import IMAPKey, Location, POP3Key, RetrievedMessage, StoreOutcome

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

MSG_A = (
    b"Message-ID: <a@example.org>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n"
    b"From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>\r\nTo: anna@example.org\r\n"
    b"Subject: Angebot\r\n\r\nHallo\r\n"
)
MSG_B = b"Subject: second\r\n\r\nbody B\r\n"
MSG_C = b"Subject: third\r\n\r\nbody C\r\n"


@pytest.fixture
async def store(store: Store) -> Store:
    """The shared open archive, with the POP3 account "anna-pop" and the IMAP account "anna-imap"."""
    await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", NOW)
    await store.ensure_account("anna-imap", "Kanzlei Berger", "Anna Berger", "imap", NOW)
    return store


async def query(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run a read-only query on the store's own connection."""
    async with store._conn.execute(sql, params) as cur:
        return [tuple(r) for r in await cur.fetchall()]


def pop(uidl: str, raw: bytes) -> RetrievedMessage:
    return RetrievedMessage(POP3Key(uidl), raw)


# -- opening ----------------------------------------------------------------------------------------


async def test_open_creates_current_schema(tmp_path: Path) -> None:
    """A new archive gets the current user_version and all tables of the documented schema."""
    path = tmp_path / "sub" / "dir" / "maild.sqlite3"
    async with await Store.open(path) as s:
        version = await query(s, "PRAGMA user_version")
        tables = {r[0] for r in await query(s, "SELECT name FROM sqlite_master WHERE type = 'table'")}

    assert SCHEMA_VERSION == 16
    assert version == [(SCHEMA_VERSION,)]
    assert {
        "accounts", "messages", "locations", "mailboxes", "deliveries", "appends", "messages_fts",
        "retrieval_failures", "moves", "account_history", "alert_memory", "mailbox_sync",
        "document_text",
    } <= tables  # fmt: skip
    assert path.exists()


async def test_open_enables_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    """The connection runs in WAL mode with synchronous=FULL (2) and foreign keys enforced."""
    async with await Store.open(tmp_path / "maild.sqlite3") as s:
        journal = await query(s, "PRAGMA journal_mode")
        synchronous = await query(s, "PRAGMA synchronous")
        foreign_keys = await query(s, "PRAGMA foreign_keys")

    assert journal == [("wal",)]
    assert synchronous == [(2,)]
    assert foreign_keys == [(1,)]


async def test_reopen_keeps_data_and_version(tmp_path: Path) -> None:
    """Opening an existing archive again keeps its version and its messages."""
    path = tmp_path / "maild.sqlite3"
    async with await Store.open(path) as s:
        await s.ensure_account("a", "o", "e", "pop3", NOW)
        await s.store_batch("a", [pop("u1", MSG_A)], NOW)
    async with await Store.open(path) as s:
        assert await query(s, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert await s.totals() == (1, len(MSG_A))
        assert await query(s, "PRAGMA synchronous") == [(2,)]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """An archive with a user_version above this maild's is refused with StoreError and left unmigrated."""
    path = tmp_path / "maild.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'messages'").fetchone() == (0,)
    conn.close()


async def test_non_database_file_is_refused(tmp_path: Path) -> None:
    """A file that is not an SQLite database is refused with StoreError, not a raw sqlite3 error."""
    path = tmp_path / "maild.sqlite3"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 100)

    with pytest.raises(StoreError):
        await Store.open(path)


# -- storing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(MSG_A, id="crlf"),
        pytest.param(b"Subject: x\n\nlf only\n", id="lf"),
        pytest.param(b"Subject: nul\r\n\r\n\x00\x00body\x00\r\n", id="nul"),
        pytest.param(b"Subject: Gr\xfc\xdfe\r\n\r\n\xff\xfe\x80 not utf-8\r\n", id="latin1"),
        pytest.param(b"no header at all", id="no-separator"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_raw_bytes_are_stored_exactly(store: Store, raw: bytes) -> None:
    """store_batch keeps the raw octets byte for byte, with their SHA-256 and size."""
    await store.store_batch("anna-pop", [pop("u1", raw)], NOW)

    rows = await query(store, "SELECT raw, sha256, size_octets FROM messages")
    assert len(rows) == 1
    stored, digest, size = rows[0]
    assert isinstance(stored, bytes)
    assert stored == raw
    assert digest == hashlib.sha256(raw).hexdigest()
    assert size == len(raw)


async def test_header_fields_are_stored(store: Store) -> None:
    """Message-ID, Date (as UTC text), decoded From, To and Subject are stored beside the raw octets."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)

    rows = await query(
        store, "SELECT message_id, date, from_header, to_header, subject, stored_at FROM messages"
    )
    assert rows == [
        (
            "<a@example.org>",
            "2026-03-02T09:00:00Z",
            "Jörg <joerg@example.org>",
            "anna@example.org",
            "Angebot",
            "2026-03-02T09:30:00Z",
        )
    ]


async def test_store_batch_outcome_counts(store: Store) -> None:
    """The outcome counts new messages, new links and octets of the links that were new."""
    outcome = await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_B)], NOW)

    assert outcome == StoreOutcome(
        new_messages=2,
        new_links=2,
        octets=len(MSG_A) + len(MSG_B),
        account_messages=2,
        new_octets=len(MSG_A) + len(MSG_B),
    )


async def test_same_content_under_two_keys_is_stored_once(store: Store) -> None:
    """Two server identities with identical content in one batch make one message row and two links."""
    outcome = await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_A)], NOW)

    assert outcome == StoreOutcome(
        new_messages=1, new_links=2, octets=2 * len(MSG_A), account_messages=1, new_octets=len(MSG_A)
    )
    assert await store.totals() == (1, len(MSG_A))
    locs = await store.locations("anna-pop")
    assert locs[POP3Key("u1")].message == locs[POP3Key("u2")].message


async def test_same_message_via_two_accounts_is_stored_once_and_linked_to_both(store: Store) -> None:
    """A message fetched through a POP3 and an IMAP account is one message row linked from both accounts."""
    first = await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)
    imap_key = IMAPKey("INBOX", 1700000000, 42)
    second = await store.store_batch(
        "anna-imap",
        [RetrievedMessage(imap_key, MSG_A, internaldate=NOW, flags=frozenset({"\\Seen", "\\Answered"}))],
        NOW,
    )

    assert first == StoreOutcome(1, 1, len(MSG_A), account_messages=1, new_octets=len(MSG_A))
    assert second == StoreOutcome(new_messages=0, new_links=1, octets=len(MSG_A), account_messages=1)
    assert await store.totals() == (1, len(MSG_A))
    assert await store.message_counts() == {"anna-pop": 1, "anna-imap": 1}
    pop_loc = (await store.locations("anna-pop"))[POP3Key("u1")]
    imap_loc = (await store.locations("anna-imap"))[imap_key]
    assert pop_loc.message == imap_loc.message
    assert await query(store, "SELECT internaldate, flags FROM locations WHERE uid = 42") == [
        ("2026-03-02T09:30:00Z", "\\Answered \\Seen")
    ]


async def test_restoring_a_batch_changes_nothing(store: Store) -> None:
    """Storing the same batch a second time reports nothing new and leaves rows and timestamps unchanged."""
    batch = [pop("u1", MSG_A), pop("u2", MSG_B)]
    await store.store_batch("anna-pop", batch, NOW)
    before = (
        await query(store, "SELECT * FROM messages ORDER BY id"),
        await query(store, "SELECT * FROM locations ORDER BY id"),
    )

    again = await store.store_batch("anna-pop", batch, NOW + timedelta(hours=1))

    after = (
        await query(store, "SELECT * FROM messages ORDER BY id"),
        await query(store, "SELECT * FROM locations ORDER BY id"),
    )
    assert again == StoreOutcome()
    assert after == before


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    """An empty batch returns an empty outcome and stores nothing."""
    assert await store.store_batch("anna-pop", [], NOW) == StoreOutcome()
    assert await store.totals() == (0, 0)


async def test_batch_for_unknown_account_is_refused(store: Store) -> None:
    """Storing for an account that was never recorded fails with StoreError and stores nothing."""
    with pytest.raises(StoreError):
        await store.store_batch("nobody", [pop("u1", MSG_A)], NOW)

    assert await store.totals() == (0, 0)


async def test_message_counts_and_totals(store: Store) -> None:
    """message_counts counts distinct messages per account; totals counts distinct messages and their octets."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_B), pop("u3", MSG_B)], NOW)
    await store.store_batch("anna-imap", [RetrievedMessage(IMAPKey("INBOX", 7, 1), MSG_C)], NOW)

    assert await store.message_counts() == {"anna-pop": 2, "anna-imap": 1}
    assert await store.totals() == (3, len(MSG_A) + len(MSG_B) + len(MSG_C))


async def test_on_server_summary_counts_messages_still_on_the_server(store: Store) -> None:
    """on_server_summary counts, per account, locations neither gone nor deleted, with the earliest first fetch."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)
    await store.store_batch("anna-pop", [pop("u2", MSG_B)], NOW + timedelta(days=1))
    await store.store_batch("anna-pop", [pop("u3", MSG_C)], NOW + timedelta(days=2))
    await store.update_presence("anna-pop", [POP3Key("u1")], [], NOW + timedelta(days=3))

    summary = await store.on_server_summary()
    await store.mark_deleted("anna-pop", [POP3Key("u2"), POP3Key("u3")], NOW + timedelta(days=4))
    after = await store.on_server_summary()

    assert summary == {"anna-pop": (2, NOW + timedelta(days=1))}
    assert after == {}


async def test_empty_archive_totals_are_zero(store: Store) -> None:
    """An empty archive has no counts and zero totals."""
    assert await store.message_counts() == {}
    assert await store.totals() == (0, 0)


# -- locations, presence, deletion ----------------------------------------------------------------


async def test_locations_round_trip(store: Store) -> None:
    """locations() returns each stored key with its first-fetch time and no gone/deleted marks."""
    imap_key = IMAPKey("Archiv/2025", 5, 9)
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)
    await store.store_batch("anna-imap", [RetrievedMessage(imap_key, MSG_B)], NOW + timedelta(minutes=1))

    pop_locs = await store.locations("anna-pop")
    imap_locs = await store.locations("anna-imap")

    assert list(pop_locs) == [POP3Key("u1")]
    assert pop_locs[POP3Key("u1")].first_fetched_at == NOW
    assert pop_locs[POP3Key("u1")].gone_at is None
    assert pop_locs[POP3Key("u1")].deleted_at is None
    assert list(imap_locs) == [imap_key]
    assert imap_locs[imap_key].first_fetched_at == NOW + timedelta(minutes=1)


async def test_first_fetched_at_is_not_overwritten(store: Store) -> None:
    """Storing a key again later keeps its original first-fetch time (retention counts from it)."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW + timedelta(days=5))

    assert (await store.locations("anna-pop"))[POP3Key("u1")].first_fetched_at == NOW


async def test_update_presence_marks_gone_and_back(store: Store) -> None:
    """update_presence sets gone_at for keys that left and clears it for keys that returned."""
    imap_key = IMAPKey("INBOX", 7, 3)
    await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    await store.store_batch("anna-imap", [RetrievedMessage(imap_key, MSG_C)], NOW)
    later = NOW + timedelta(hours=2)

    await store.update_presence("anna-pop", [POP3Key("u1")], [], later)
    await store.update_presence("anna-imap", [imap_key], [], later)
    gone = await store.locations("anna-pop")
    imap_gone = await store.locations("anna-imap")
    await store.update_presence("anna-pop", [], [POP3Key("u1")], later + timedelta(hours=1))
    back = await store.locations("anna-pop")

    assert gone[POP3Key("u1")].gone_at == later
    assert gone[POP3Key("u2")].gone_at is None
    assert imap_gone[imap_key].gone_at == later
    assert back[POP3Key("u1")].gone_at is None


async def test_update_presence_only_touches_the_named_account(store: Store) -> None:
    """Marking a UIDL gone for one account leaves the same UIDL of another account alone."""
    await store.ensure_account("bob-pop", "Kanzlei Berger", "Bob", "pop3", NOW)
    await store.store_batch("anna-pop", [pop("same", MSG_A)], NOW)
    await store.store_batch("bob-pop", [pop("same", MSG_A)], NOW)

    await store.update_presence("anna-pop", [POP3Key("same")], [], NOW)

    assert (await store.locations("anna-pop"))[POP3Key("same")].gone_at == NOW
    assert (await store.locations("bob-pop"))[POP3Key("same")].gone_at is None


async def test_mark_deleted_sets_deleted_and_gone(store: Store) -> None:
    """mark_deleted records deleted_at and, when not yet set, gone_at; an earlier gone_at is kept."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    earlier = NOW + timedelta(hours=1)
    later = NOW + timedelta(hours=3)
    await store.update_presence("anna-pop", [POP3Key("u2")], [], earlier)

    await store.mark_deleted("anna-pop", [POP3Key("u1"), POP3Key("u2")], later)

    locs = await store.locations("anna-pop")
    assert locs[POP3Key("u1")] == Location(locs[POP3Key("u1")].message, NOW, later, later)
    assert locs[POP3Key("u2")].gone_at == earlier
    assert locs[POP3Key("u2")].deleted_at == later


async def test_archived_returns_only_stored_keys(store: Store) -> None:
    """archived() returns the subset of keys whose message is in the archive for that account."""
    imap_key = IMAPKey("INBOX", 7, 1)
    await store.store_batch("anna-pop", [pop("u1", MSG_A)], NOW)
    await store.store_batch("anna-imap", [RetrievedMessage(imap_key, MSG_B)], NOW)

    found_pop = await store.archived("anna-pop", [POP3Key("u1"), POP3Key("u2"), imap_key])
    found_imap = await store.archived("anna-imap", [imap_key, IMAPKey("INBOX", 8, 1), POP3Key("u1")])

    assert found_pop == {POP3Key("u1")}
    assert found_imap == {imap_key}


async def test_archived_excludes_a_message_whose_raw_is_damaged(store: Store) -> None:
    """A location whose message no longer holds raw octets of the recorded size does not count as archived."""
    await store.store_batch("anna-pop", [pop("u1", MSG_A), pop("u2", MSG_B)], NOW)
    await store._conn.execute(
        "UPDATE messages SET raw = x'00' WHERE sha256 = ?", (hashlib.sha256(MSG_A).hexdigest(),)
    )

    assert await store.archived("anna-pop", [POP3Key("u1"), POP3Key("u2")]) == {POP3Key("u2")}


async def test_archived_handles_more_keys_than_one_query_chunk(store: Store) -> None:
    """archived() answers correctly for more keys than fit in one IN (...) list."""
    batch = [pop(f"u{i}", b"Subject: %d\r\n\r\n" % i) for i in range(1200)]
    await store.store_batch("anna-pop", batch, NOW)
    asked = [POP3Key(f"u{i}") for i in range(1300)]

    found = await store.archived("anna-pop", asked)

    assert found == {POP3Key(f"u{i}") for i in range(1200)}


async def test_ensure_account_refuses_protocol_change(store: Store) -> None:
    """An account created as POP3 cannot be recorded again as IMAP."""
    with pytest.raises(StoreError, match="pop3"):
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "imap", NOW)

    assert await query(store, "SELECT protocol FROM accounts WHERE name = 'anna-pop'") == [("pop3",)]


async def test_ensure_account_updates_owner_and_keeps_creation_time(store: Store) -> None:
    """Recording an existing account again updates organisation and employee but not created_at."""
    await store.ensure_account("anna-pop", "Berger & Partner", "Anna Weber", "pop3", NOW + timedelta(days=1))

    assert await query(
        store, "SELECT organisation, employee, created_at FROM accounts WHERE name = 'anna-pop'"
    ) == [("Berger & Partner", "Anna Weber", utc_text(NOW))]


def test_utc_text_round_trip() -> None:
    """utc_text converts to UTC with a Z suffix and parse_utc reads it back."""
    from datetime import timezone

    moment = datetime(2026, 3, 2, 10, 0, 5, tzinfo=timezone(timedelta(hours=1)))

    assert utc_text(moment) == "2026-03-02T09:00:05Z"
    assert parse_utc(utc_text(moment)) == moment


# -- cancellation -----------------------------------------------------------------------------------

STATEMENTS = ["BEGIN IMMEDIATE", "SELECT sha256", "INSERT INTO messages", "INSERT INTO locations", "COMMIT"]


async def cancel_store_batch_at(
    store: Store, statement: str
) -> tuple[BaseException | None, list[RetrievedMessage]]:
    """Run store_batch and cancel its task when SQLite starts the first statement beginning with ``statement``.

    The cancellation arrives while the statement runs in aiosqlite's thread, as a real cancellation
    would. Returns what the task ended with (None for a normal return) and the batch.
    """
    batch = [pop(f"c{i}", b"Subject: cancel %d\r\n\r\nbody\r\n" % i) for i in range(5)]
    loop = asyncio.get_running_loop()
    task: asyncio.Task[StoreOutcome] | None = None
    fired: list[str] = []

    def trace(sql: str) -> None:
        if sql.startswith(statement) and not fired and task is not None:
            fired.append(sql)
            loop.call_soon_threadsafe(task.cancel)

    await store._conn.set_trace_callback(trace)
    task = asyncio.create_task(store.store_batch("anna-pop", batch, NOW))
    ended: BaseException | None = None
    try:
        await task
    except BaseException as exc:
        ended = exc
    finally:
        await store._conn.set_trace_callback(None)
    assert fired, f"statement {statement!r} never ran"
    return ended, batch


@pytest.mark.parametrize("statement", STATEMENTS)
async def test_cancelled_store_batch_is_all_or_nothing(store: Store, statement: str) -> None:
    """Cancelling store_batch at any statement leaves either the whole batch or none of it, and a sound database."""
    _ended, batch = await cancel_store_batch_at(store, statement)

    [(messages,)] = await query(store, "SELECT count(*) FROM messages")
    [(links,)] = await query(store, "SELECT count(*) FROM locations")
    assert (messages, links) in {(0, 0), (len(batch), len(batch))}
    assert await store.integrity_check() == "ok"


@pytest.mark.parametrize(
    "statement",
    [
        "BEGIN IMMEDIATE",
        *STATEMENTS[1:],
    ],
)
async def test_store_is_usable_after_a_cancelled_store_batch(store: Store, statement: str) -> None:
    """After a cancelled store_batch, the next store_batch of the same messages succeeds and stores them all."""
    _ended, batch = await cancel_store_batch_at(store, statement)

    await store.store_batch("anna-pop", batch, NOW)

    assert set(await store.locations("anna-pop")) == {m.key for m in batch}
    assert await store.totals() == (len(batch), sum(len(m.raw) for m in batch))


@pytest.mark.parametrize(
    "statement",
    [
        *STATEMENTS[:-1],
        "COMMIT",
    ],
)
async def test_cancelled_store_batch_propagates_cancellation(store: Store, statement: str) -> None:
    """A cancelled store_batch ends with CancelledError, not with another error."""
    ended, _batch = await cancel_store_batch_at(store, statement)

    assert isinstance(ended, asyncio.CancelledError)


async def test_version_one_archive_is_migrated_forward(tmp_path: Path) -> None:
    """An archive at schema version 1 keeps its data and gains the later tables on open."""
    import sqlite3

    from maild.archive.schema import _MIGRATIONS, _split_sql

    path = tmp_path / "maild.sqlite3"
    with sqlite3.connect(path) as conn:
        for statement in _split_sql(_MIGRATIONS[1]):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO accounts VALUES ('a', 'O', 'E', 'pop3', '2026-01-01T00:00:00Z', NULL, NULL)"
        )
        conn.execute("PRAGMA user_version = 1")
    async with await Store.open(path) as s:
        assert await query(s, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert await query(s, "SELECT name FROM accounts") == [("a",)]
        assert await query(s, "SELECT count(*) FROM deliveries") == [(0,)]


async def test_locations_cache_follows_this_connections_writes(store: Store) -> None:
    """locations() is cached per account, but every write of this connection invalidates it, and a
    caller changing the returned dict does not change what the next call returns."""
    await store.store_batch("anna-pop", [pop("u1", b"Subject: a\r\n\r\none\r\n")], NOW)
    first = await store.locations("anna-pop")
    first.clear()
    assert set(await store.locations("anna-pop")) == {POP3Key("u1")}

    await store.store_batch("anna-pop", [pop("u2", b"Subject: b\r\n\r\ntwo\r\n")], NOW)
    assert set(await store.locations("anna-pop")) == {POP3Key("u1"), POP3Key("u2")}

    await store.update_presence("anna-pop", [POP3Key("u1")], [], NOW + timedelta(hours=1))
    assert (await store.locations("anna-pop"))[POP3Key("u1")].gone_at == NOW + timedelta(hours=1)

    await store.mark_deleted("anna-pop", [POP3Key("u2")], NOW + timedelta(hours=2))
    assert (await store.locations("anna-pop"))[POP3Key("u2")].deleted_at == NOW + timedelta(hours=2)


async def test_locations_cache_sees_commits_of_other_connections(store: Store) -> None:
    """A change committed by another process (another connection) is seen by the next locations()."""
    await store.store_batch("anna-pop", [pop("u1", b"Subject: a\r\n\r\none\r\n")], NOW)
    assert set(await store.locations("anna-pop")) == {POP3Key("u1")}

    other = sqlite3.connect(store.path)
    try:
        other.execute("DELETE FROM locations WHERE account = 'anna-pop'")
        other.commit()
    finally:
        other.close()

    assert await store.locations("anna-pop") == {}


async def test_locations_read_during_a_failed_write_is_not_cached(store: Store) -> None:
    """A read that overlaps a transaction (which may roll back) is not reused afterwards."""
    await store.store_batch("anna-pop", [pop("u1", b"Subject: a\r\n\r\none\r\n")], NOW)
    started = asyncio.Event()
    release = asyncio.Event()

    async def work() -> None:
        await store._conn.execute("DELETE FROM locations WHERE account = 'anna-pop'")
        started.set()
        await release.wait()
        raise RuntimeError("abandoned")

    task = asyncio.create_task(store._atomic(work, "test"))
    await started.wait()
    assert await store.locations("anna-pop") == {}  # same connection: sees its own uncommitted delete
    release.set()
    with pytest.raises(RuntimeError):
        await task
    assert set(await store.locations("anna-pop")) == {POP3Key("u1")}


async def test_large_message_is_stored_byte_exact_through_blob_io(store: Store) -> None:
    """A message of at least LARGE_BLOB_OCTETS goes through incremental blob I/O (aiosqlite's pinned
    thread queue): stored with its batch, byte-exact, deduplicated like any other."""
    from maild.archive import store as store_module

    assert callable(getattr(store._conn, "_execute", None))  # aiosqlite 0.22 internals relied on
    big = b"Subject: big\r\n\r\n" + bytes(range(256)) * (store_module.LARGE_BLOB_OCTETS // 256 + 5000)
    small = b"Subject: small\r\n\r\nx\r\n"
    outcome = await store.store_batch("anna-pop", [pop("big", big), pop("small", small)], NOW)
    again = await store.store_batch("anna-pop", [pop("big2", big)], NOW)

    assert (outcome.new_messages, again.new_messages, again.new_links) == (2, 0, 1)
    rows = await query(store, "SELECT raw, size_octets, sha256 FROM messages ORDER BY size_octets DESC")
    assert rows[0] == (big, len(big), hashlib.sha256(big).hexdigest())
    assert rows[1][0] == small


async def test_large_message_in_a_failed_batch_is_not_stored(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob written in place belongs to the batch's transaction: a batch failing after it was
    written leaves nothing behind."""
    from maild.archive import batches
    from maild.archive import store as store_module

    big = b"Subject: big\r\n\r\n" + b"y" * store_module.LARGE_BLOB_OCTETS

    def broken(*_args: object) -> set[object]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(batches, "_linked_keys", broken)  # runs after the messages are inserted
    with pytest.raises(StoreError):
        await store.store_batch("anna-pop", [pop("big", big)], NOW)
    assert await query(store, "SELECT count(*) FROM messages") == [(0,)]


async def test_account_history_round_trips_and_is_replaced(store: Store) -> None:
    """record_history keeps one row per account; account_histories reads back what was written last."""
    from maild.model import AccountHistory

    await store.ensure_account("a", "O", "E", "pop3", NOW)
    first = AccountHistory("a", last_success=NOW, cycles_ok=3, fetched_messages=10, fetched_octets=4096)
    failing = AccountHistory(
        "a",
        last_success=NOW,
        last_push=NOW,
        last_error="connection refused",
        last_error_at=NOW,
        failing_since=NOW,
        consecutive_failures=2,
        cycles_ok=3,
        cycles_failed=2,
        fetched_messages=10,
        fetched_octets=4096,
    )

    await store.record_history(first)
    assert await store.account_histories() == {"a": first}
    await store.record_history(failing)
    assert await store.account_histories() == {"a": failing}


async def test_close_keeps_the_wal_side_files_group_readable(tmp_path: Path) -> None:
    """After close the -wal (checkpointed, empty) and -shm stay, like the archive mode 0640 under umask 0077,
    so a read-only reader that may not write the directory can still open the archive."""
    import os
    import stat

    path = tmp_path / "maild.sqlite3"
    old = os.umask(0o077)
    try:
        async with await Store.open(path) as s:
            await s.ensure_account("anna-pop", "O", "E", "pop3", NOW)
            await s.store_batch("anna-pop", [pop("u1", b"Subject: a\r\n\r\none\r\n")], NOW)
    finally:
        os.umask(old)

    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) == 0o640, suffix
    assert (tmp_path / "maild.sqlite3-wal").stat().st_size == 0


async def test_version_six_failure_records_gain_header_fields_and_keep_their_counts(tmp_path: Path) -> None:
    """Migrating a v6 archive keeps each retrieval failure record and adds Subject, From and Date
    (unknown: NULL) and the header fetch attempt count (0), which ``record_headers`` then fills in."""
    from maild.archive.failures import failure_records, record_headers
    from maild.model import HeaderSummary

    path = tmp_path / "maild.sqlite3"
    with sqlite3.connect(path) as conn:
        for version in range(1, 7):
            for statement in _split_sql(_MIGRATIONS[version]):
                conn.execute(statement)
        conn.execute("INSERT INTO accounts VALUES ('a', 'O', 'E', 'pop3', '2026-01-01T00:00:00Z', NULL, NULL)")
        conn.execute(
            "INSERT INTO retrieval_failures VALUES ('a', 'pop3 u1', 3, '-ERR locked', '2026-01-01T00:00:00Z',"
            " '2026-01-02T00:00:00Z', 0)"
        )
        conn.execute("PRAGMA user_version = 6")
    async with await Store.open(path) as s:
        (before,) = (await failure_records(s, "a")).values()
        summary = HeaderSummary(None, datetime(2026, 3, 3, 9, 15, tzinfo=UTC), "B <b@example.com>", None, "Hallo")
        await record_headers(s, "a", [POP3Key("u1"), POP3Key("gone")], {POP3Key("u1"): summary})
        (after,) = (await failure_records(s, "a")).values()

    assert (before.failures, before.reason, before.subject, before.header_attempts) == (3, "-ERR locked", None, 0)
    assert (after.failures, after.subject, after.from_, after.date, after.header_attempts) == (
        3,
        "Hallo",
        "B <b@example.com>",
        summary.date,
        1,
    )


async def test_an_arriving_message_clears_only_its_own_failure_record(tmp_path: Path) -> None:
    """Storing a message removes its account's failure record for that key, keeps the others, and an
    account without records stores as before (the batch looks for records once, not per message)."""
    from maild.archive.failures import failure_records, record_failures
    from maild.model import RetrievalFailure

    async with await Store.open(tmp_path / "maild.sqlite3") as s:
        for name in ("a", "b", "c"):
            await s.ensure_account(name, "O", "E", "pop3", NOW)
        failures = [RetrievalFailure(POP3Key("u1"), "-ERR"), RetrievalFailure(POP3Key("u2"), "-ERR")]
        await record_failures(s, "a", failures, NOW)
        await record_failures(s, "b", [RetrievalFailure(POP3Key("u1"), "-ERR")], NOW)

        await s.store_batch("a", [RetrievedMessage(POP3Key("u1"), b"Subject: one\r\n\r\n1\r\n")], NOW)
        await s.store_batch("c", [RetrievedMessage(POP3Key("u1"), b"Subject: three\r\n\r\n3\r\n")], NOW)

        assert list(await failure_records(s, "a")) == [POP3Key("u2")]
        assert list(await failure_records(s, "b")) == [POP3Key("u1")]
        assert await failure_records(s, "c") == {}


@pytest.mark.parametrize(
    "key", [POP3Key("u1"), IMAPKey("INBOX", 7, 1)], ids=["pop3", "imap"]
)
async def test_one_identity_for_two_contents_in_a_batch_is_refused_and_nothing_is_stored(
    store: Store, key: POP3Key | IMAPKey
) -> None:
    """One server identity with two different contents in one batch cannot be told apart: the batch
    is refused whole (before: the second message was stored without a location, QA of session 9);
    the same identity twice with the same octets is one message with one link."""
    account = "anna-pop" if isinstance(key, POP3Key) else "anna-imap"
    with pytest.raises(StoreError, match="twice with different octets; nothing stored"):
        await store.store_batch(account, [RetrievedMessage(key, MSG_A), RetrievedMessage(key, MSG_B)], NOW)
    assert await store.totals() == (0, 0)

    outcome = await store.store_batch(account, [RetrievedMessage(key, MSG_A), RetrievedMessage(key, MSG_A)], NOW)
    assert (outcome.new_messages, outcome.new_links) == (1, 1)
    assert list(await store.locations(account)) == [key]


async def test_a_batch_is_stored_in_its_order_whatever_the_sizes(store: Store) -> None:
    """Messages get their ids (their storing order) in the batch's order, the large ones written by
    blob I/O among the small ones written by multi-row statements."""
    from maild.archive import store as store_module

    large = store_module.LARGE_BLOB_OCTETS
    sizes = [100, large + 10, 200, 300, large * 5, 400]
    raws = [b"Subject: %d\r\n\r\n" % n + bytes([65 + n]) * size for n, size in enumerate(sizes)]
    await store.store_batch("anna-pop", [pop(f"u{n}", raw) for n, raw in enumerate(raws)], NOW)
    rows = await query(store, "SELECT raw FROM messages ORDER BY id")
    assert [row[0] for row in rows] == raws
