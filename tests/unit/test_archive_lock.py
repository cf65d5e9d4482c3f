"""The archive's fetcher lock (maild/service/archive_lock.py): one fetcher per archive file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maild.errors import StoreError
from maild.service.archive_lock import COMPACT_ROLE, acquire_archive_lock, lock_path


def test_a_second_lock_on_the_same_archive_is_refused_naming_the_holder(tmp_path: Path) -> None:
    database = tmp_path / "state" / "maild.sqlite3"
    first = acquire_archive_lock(database)
    assert first.held
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o750  # made as the archive's directory
    assert stat.S_IMODE(os.stat(lock_path(database)).st_mode) == 0o600
    with pytest.raises(StoreError) as refused:
        acquire_archive_lock(database)  # another open file description: flock refuses it
    text = str(refused.value)
    assert f"held by PID {os.getpid()}" in text and str(lock_path(database)) in text
    assert "\n" not in text
    first.release()
    first.release()  # idempotent
    again = acquire_archive_lock(database)
    assert again.held
    again.release()


def test_a_fetcher_refused_by_compact_is_told_to_wait_for_it(tmp_path: Path) -> None:
    """While `maild compact` holds the lock, a daemon or `maild fetch` refused by it says so (QA: it
    said "another maild ... is fetching ...; stop it, or ask the running daemon with `maild
    fetch-now`", and `fetch-now` then said that no daemon runs)."""
    database = tmp_path / "maild.sqlite3"
    compacting = acquire_archive_lock(database, "unused", COMPACT_ROLE)
    assert lock_path(database).read_text() == f"{os.getpid()} {COMPACT_ROLE}\n"
    with pytest.raises(StoreError) as refused:
        acquire_archive_lock(database)
    text = str(refused.value)
    assert text.startswith(f"`maild compact` is rewriting {database}: ")
    assert f"held by PID {os.getpid()}" in text and "wait until it finishes" in text
    assert "fetch-now" not in text and "\n" not in text
    compacting.release()
    fetcher = acquire_archive_lock(database)
    assert lock_path(database).read_text() == f"{os.getpid()}\n"
    with pytest.raises(StoreError, match="is fetching into"):
        acquire_archive_lock(database)
    fetcher.release()


def test_other_archives_have_their_own_locks(tmp_path: Path) -> None:
    one = acquire_archive_lock(tmp_path / "a.sqlite3")
    two = acquire_archive_lock(tmp_path / "b.sqlite3")
    assert one.held and two.held
    one.release()
    two.release()


def test_an_unreadable_lock_content_still_locks(tmp_path: Path) -> None:
    database = tmp_path / "maild.sqlite3"
    lock_path(database).write_bytes(b"\xff" * 100)
    held = acquire_archive_lock(database)
    assert lock_path(database).read_text() == f"{os.getpid()}\n"
    held.release()
