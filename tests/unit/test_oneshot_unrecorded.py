"""``maild fetch`` whose deletions' record finds the archive's disk full (session 14, item 4).

The daemon keeps such deletions in memory and writes them before the account's next cycle
(``LocationRecords.write_pending``); a one-shot ends and forgets them. It now tries once more before
it exits; when that fails too, the account's line says so and ``maild fetch`` exits 3. The disk is
filled with the ENOSPC/SQLITE_FULL injection of ``tests/integration/test_archive_full_bookkeeping.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from maild.archive.store import Store
from maild.cli import main as cli_main
from maild.service import oneshot
from maild.service.oneshot import EXIT_DELETIONS_NOT_RECORDED, fetch_once
from tests.integration.test_archive_full_bookkeeping import DELETIONS, disk_full_at, full_error
from tests.support.accounts import pop3_account
from tests.unit.fakes import FakeServer, maildrops_of
from tests.unit.test_oneshot import config_of


@contextmanager
def archive_opened(monkeypatch: pytest.MonkeyPatch, fill: Any) -> Iterator[list[Store]]:
    """Every archive the one-shot opens gets ``fill(store, stack)`` applied; yields those stores."""
    real_open = Store.open
    stores: list[Store] = []
    with ExitStack() as stack:

        async def opening(path: Path) -> Store:
            store = await real_open(path)
            stores.append(store)
            fill(store, stack)
            return store

        monkeypatch.setattr(Store, "open", opening)
        yield stores


def full_for_good(kind: str) -> Any:
    """The disk stays full for the deletions' record (every try)."""
    return lambda store, stack: stack.enter_context(disk_full_at(store, DELETIONS, kind))


def full_once(store: Store, _stack: ExitStack) -> None:
    """The disk is full for the first write of the deletions' record only (space freed meanwhile)."""
    conn: Any = store.db._conn
    raw = conn._connection  # the sqlite3 connection: writes run in aiosqlite's thread as one call
    refused: list[str] = []

    class FullOnce:
        """The real connection, refusing the deletions' record once as a full disk would."""

        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def execute(self, sql: str, *args: Any) -> Any:
            return raw.execute(sql, *args)

        def executemany(self, sql: str, *args: Any) -> Any:
            if DELETIONS in sql and not refused:
                refused.append(sql)
                raise full_error("enospc")
            return raw.executemany(sql, *args)

    conn._connection = FullOnce()


@pytest.mark.parametrize("kind", ["sqlite", "enospc"])
async def test_deletions_whose_record_stays_refused_are_one_line_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Steps: retention "delete", two messages; the cycle archives and deletes them (+OK to QUIT), the
    record of the deletions finds the disk full, and so does the one-shot's second try before it
    exits: the account's line says NOT RECORDED with the count and what to do, and `maild fetch`
    exits 3 (before session 14: exit 0 with a warning only, the deletions forgotten)."""
    servers = {"a": FakeServer.with_pop3(2)}
    config = config_of(tmp_path, [pop3_account("a", retention="delete")])
    factory = maildrops_of(servers)
    monkeypatch.setattr(oneshot, "fetch_once", functools.partial(fetch_once, maildrop_factory=factory))

    with archive_opened(monkeypatch, full_for_good(kind)) as stores:
        code = await cli_main.fetch_once(config, [])

    out = capsys.readouterr().out
    assert code == EXIT_DELETIONS_NOT_RECORDED == 3
    assert "  NOT RECORDED: 2 deletions done on the server could not be recorded" in out
    assert servers["a"].messages == {}  # deleted on the server: the record is what is missing
    assert len(stores) == 1


async def test_deletions_recorded_on_the_second_try_exit_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Space freed during the run: the one-shot's second try records the deletions, no NOT RECORDED line."""
    servers = {"a": FakeServer.with_pop3(2)}
    config = config_of(tmp_path, [pop3_account("a", retention="delete")])

    with archive_opened(monkeypatch, full_once):
        results = await fetch_once(config, [], maildrop_factory=maildrops_of(servers))

    monkeypatch.undo()
    assert results[0].unrecorded == 0
    assert "NOT RECORDED" not in results[0].line()
    store = await Store.open(config.daemon.database)
    try:
        locations = await store.locations("a")
    finally:
        await store.close()
    assert len(locations) == 2
    assert all(loc.deleted_at is not None for loc in locations.values())
