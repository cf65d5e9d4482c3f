"""The writer's prepared-statement cache is bounded (maild.archive.opening.CACHED_STATEMENTS): a
statement run again soon is not prepared again, one pushed out by that many others is. Observed
through SQLite's authorizer, which is called when a statement is prepared, never when it is reused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from maild.archive import opening
from maild.archive.store import Store

SQLITE_FUNCTION = 31
"""The authorizer's action code for a function call in a statement being prepared."""


async def test_the_writer_reuses_recent_statements_and_keeps_only_a_bounded_number(tmp_path: Path) -> None:
    """``SELECT abs(1)`` is prepared once while it stays among the last CACHED_STATEMENTS statements
    used, and once again after that many other statements pushed it out of the cache."""
    store = await Store.open(tmp_path / "a.sqlite3")
    prepared: list[str] = []

    def authorizer(
        action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
    ) -> int:
        if action == SQLITE_FUNCTION and arg2 == "abs":
            prepared.append(arg2)
        return sqlite3.SQLITE_OK

    try:
        await store.db._conn.set_authorizer(authorizer)
        for _ in range(3):
            await store.db._scalar("SELECT abs(1)")
        assert len(prepared) == 1
        for n in range(opening.CACHED_STATEMENTS - 2):  # with abs(1), fewer than the cache holds
            await store.db._scalar(f"SELECT {n}")
        await store.db._scalar("SELECT abs(1)")
        assert len(prepared) == 1
        for n in range(opening.CACHED_STATEMENTS):
            await store.db._scalar(f"SELECT 'filler {n}'")
        await store.db._scalar("SELECT abs(1)")
        assert len(prepared) == 2
    finally:
        await store.close()
