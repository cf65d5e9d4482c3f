"""``IN (...)`` look-ups padded to a few lengths (maild/archive/in_list.py): every length from 1 to N
finds exactly the rows asked for, and the writer prepares at most one statement per padded length
(observed through SQLite's authorizer, called when a statement is prepared, never when it is reused)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from maild.archive.in_list import padded_in, padded_length
from maild.archive.schema import QUERY_CHUNK
from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
SQLITE_SELECT = 21
"""The authorizer's action code for a SELECT statement being prepared."""


def test_every_count_gets_a_list_at_least_as_long_from_ten_lengths() -> None:
    """Counts 1..QUERY_CHUNK map to ten lengths (powers of two, then QUERY_CHUNK), each at least the
    count; the values come first, NULLs after them."""
    lengths = {padded_length(n) for n in range(1, QUERY_CHUNK + 1)}

    assert lengths == {1, 2, 4, 8, 16, 32, 64, 128, 256, QUERY_CHUNK}
    for n in range(1, QUERY_CHUNK + 1):
        marks, params = padded_in(list(range(n)))
        assert marks.split(",") == ["?"] * padded_length(n) == ["?"] * len(params)
        assert params[:n] == list(range(n)) and set(params[n:]) <= {None}


@pytest.mark.parametrize("count", [0, QUERY_CHUNK + 1])
def test_an_empty_or_unchunked_list_is_refused(count: int) -> None:
    """No keys, or more than one chunk, is the caller's error: one clear ValueError."""
    with pytest.raises(ValueError, match=f"1 to {QUERY_CHUNK} keys, not {count}"):
        padded_in(list(range(count)))


def test_the_null_padding_matches_no_row_not_even_a_null_value() -> None:
    """``x IN (..., NULL)`` does not select a row whose x is NULL: the padding finds nothing."""
    db = sqlite3.connect(":memory:")
    db.executescript("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b'), (NULL);")
    marks, params = padded_in(["a", "c", "d"])
    rows = db.execute(f"SELECT x FROM t WHERE x IN ({marks})", params).fetchall()

    assert params == ["a", "c", "d", None]
    assert rows == [("a",)]


async def test_archived_of_every_length_finds_exactly_the_stored_keys_with_few_statements(store: Store) -> None:
    """``Store.archived`` asked for 1..300 POP3 keys (every other one not stored) returns exactly
    the stored ones each time, and the writer prepares its look-up once per padded length (ten at
    most), not once per length (300)."""
    await store.ensure_account("anna", "Kanzlei", "Anna", "pop3", NOW)
    stored = [RetrievedMessage(POP3Key(f"u{i}"), b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(300)]
    await store.store_batch("anna", stored, NOW)
    prepared: list[int] = []

    def authorizer(action: int, *_: str | None) -> int:
        if action == SQLITE_SELECT:
            prepared.append(action)
        return sqlite3.SQLITE_OK

    await store.db._conn.set_authorizer(authorizer)
    for n in range(1, 301):
        asked = [POP3Key(f"u{k}") if k % 2 == 0 else POP3Key(f"absent{k}") for k in range(n)]

        found = await store.archived("anna", asked)

        assert found == {POP3Key(f"u{k}") for k in range(0, n, 2)}, n
    assert 0 < len(prepared) <= len({padded_length(n) for n in range(1, 301)})


async def test_batches_of_every_length_link_exactly_the_new_keys(store: Store) -> None:
    """A batch's look-ups (keys already linked, digests already stored, messages already linked to
    the account) are padded too: batches of 1..40 messages, half of them known, count exactly the
    new messages and links."""
    await store.ensure_account("anna", "Kanzlei", "Anna", "pop3", NOW)
    known = [RetrievedMessage(POP3Key(f"k{i}"), b"Subject: known %d\r\n\r\nx\r\n" % i) for i in range(40)]
    await store.store_batch("anna", known, NOW)
    for n in range(1, 41):
        fresh = [RetrievedMessage(POP3Key(f"n{n}-{i}"), b"Subject: %d-%d\r\n\r\ny\r\n" % (n, i)) for i in range(n)]
        batch = [m for pair in zip(fresh, known[:n], strict=True) for m in pair]  # known keys: linked already

        outcome = await store.store_batch("anna", batch, NOW)

        assert (outcome.new_messages, outcome.new_links) == (n, n), n
