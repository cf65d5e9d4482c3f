"""The Store's collaborators on their own: each works over a bare archive connection, without a Store.

:class:`maild.archive.store.Store` holds one collaborator per kind of record over its one connection
and delegates to them; these tests build the collaborators directly, as a new one would be tested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.batches import BatchWriter
from maild.archive.connection import ArchiveConnection
from maild.archive.figures import ArchiveFigures
from maild.archive.history import HistoryRecords
from maild.archive.locations import LocationRecords
from maild.archive.store import Store
from maild.model import AccountHistory, POP3Key, RetrievedMessage

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
RAW = b"Subject: Angebot\r\n\r\nHallo\r\n"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[ArchiveConnection]:
    """A bare archive connection with the POP3 account "anna-pop" (written by plain SQL)."""
    conn = await ArchiveConnection.open(tmp_path / "maild.sqlite3")
    await conn._write(
        [
            (
                "INSERT INTO accounts (name, organisation, employee, protocol, created_at)"
                " VALUES ('anna-pop', 'O', 'E', 'pop3', '2026-03-02T09:30:00Z')",
                (),
                False,
            )
        ]
    )
    try:
        yield conn
    finally:
        await conn.close()


async def test_batch_writer_and_location_records_work_over_a_bare_connection(db: ArchiveConnection) -> None:
    """A batch written by a BatchWriter is seen by a LocationRecords over the same connection and
    counted by ArchiveFigures: the collaborators share nothing but the connection."""
    writer = BatchWriter(db)
    prepared = await writer.prepare_batch([RetrievedMessage(POP3Key("u1"), RAW)], NOW)
    outcome = await writer.insert_batch("anna-pop", prepared)

    assert (outcome.new_messages, outcome.new_links) == (1, 1)
    assert set(await LocationRecords(db).locations("anna-pop")) == {POP3Key("u1")}
    assert await LocationRecords(db).archived("anna-pop", [POP3Key("u1"), POP3Key("u2")]) == {POP3Key("u1")}
    assert await ArchiveFigures(db).totals() == (1, len(RAW))


async def test_kept_counters_live_on_the_connection_and_follow_every_writer(db: ArchiveConnection) -> None:
    """ArchiveFigures.keep_counters puts the counters on the connection; a BatchWriter made before
    or after adds each committed batch to them."""
    counters = await ArchiveFigures(db).keep_counters()
    writer = BatchWriter(db)
    await writer.insert_batch("anna-pop", await writer.prepare_batch([RetrievedMessage(POP3Key("u1"), RAW)], NOW))

    assert db.counters is counters
    assert (counters.messages, counters.octets) == (1, len(RAW))


async def test_history_records_round_trip_over_a_bare_connection(db: ArchiveConnection) -> None:
    """HistoryRecords reads back the row it wrote, with no Store around it."""
    history = HistoryRecords(db)
    row = AccountHistory("anna-pop", last_success=NOW, cycles_ok=2)

    await history.record_history(row)

    assert await history.account_histories() == {"anna-pop": row}


async def test_store_methods_are_its_collaborators_methods(tmp_path: Path) -> None:
    """Store delegates each record method to the collaborator holding it; patching the collaborator
    of one store changes what that store calls, and nothing else."""
    async with await Store.open(tmp_path / "maild.sqlite3") as store:
        calls: list[str] = []

        async def account_histories() -> dict[str, AccountHistory]:
            calls.append("patched")
            return {}

        store.history_records.account_histories = account_histories  # type: ignore[method-assign]
        assert await store.account_histories() == {}
        assert calls == ["patched"]
        assert store.history_records.record_history.__doc__ == Store.record_history.__doc__
        assert store.locations.__self__ is store.location_records  # type: ignore[attr-defined]
        assert await Store.account_histories(store) == {}  # from the class: an unbound method


def test_a_delegated_method_must_keep_its_name() -> None:
    """A Store method delegated under another name than the collaborator's is refused at class creation
    (Python before 3.12 wraps the TypeError of ``__set_name__`` in a RuntimeError)."""
    from maild.archive.locations import LocationRecords
    from maild.archive.store import Delegated

    with pytest.raises((TypeError, RuntimeError)) as caught:

        class Slipped:
            archived = Delegated("location_records", LocationRecords.locations)

    error = caught.value if isinstance(caught.value, TypeError) else caught.value.__cause__
    assert "Slipped.archived delegates to locations" in str(error)


async def test_move_records_work_over_a_bare_connection(db: ArchiveConnection) -> None:
    """MoveRecords (the move commands' queries) reads what a BatchWriter stored over the same
    connection, with DeliveryRecords for the octets, and no Store around them."""
    from maild.archive.deliveries import DeliveryRecords
    from maild.archive.moves import MoveRecords

    writer = BatchWriter(db)
    await writer.insert_batch("anna-pop", await writer.prepare_batch([RetrievedMessage(POP3Key("u1"), RAW)], NOW))
    moves = MoveRecords(db, DeliveryRecords(db))

    linked = await moves.linked_messages("anna-pop")
    assert list(linked.values()) == [True]
    assert list((await moves.message_octets(list(linked))).values()) == [RAW]
    assert set(await moves.account_records()) == {"anna-pop"}
