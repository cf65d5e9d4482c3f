"""The archive's move lock (maild/move/lock.py): one `migrate`/`--undo`/`retire`/`unretire` at a time."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maild.errors import MigrationError
from maild.move.lock import move_lock, move_lock_path


def test_a_second_holder_is_refused_naming_the_lock_and_the_pid(tmp_path: Path) -> None:
    """While one move command holds the lock, another is refused with the lock file and the holder's PID."""
    database = tmp_path / "maild.sqlite3"
    with (
        move_lock(database, "maild migrate a --to b"),
        pytest.raises(MigrationError) as refused,
        move_lock(database, "maild retire a --into b"),
    ):
        pytest.fail("a second holder got the lock")
    text = str(refused.value)
    assert text.startswith("maild retire a --into b: another move command")
    assert str(move_lock_path(database)) in text
    assert f"(held by PID {os.getpid()})" in text
    assert "\n" not in text


def test_the_lock_is_released_at_the_end_of_the_block_and_on_an_error(tmp_path: Path) -> None:
    """The lock is free again after its block ends, normally or by an exception; its file is mode 0600."""
    database = tmp_path / "maild.sqlite3"
    with move_lock(database, "first"):
        pass
    with pytest.raises(RuntimeError), move_lock(database, "second"):
        raise RuntimeError("boom")
    with move_lock(database, "third"):
        pass
    assert stat.S_IMODE(move_lock_path(database).stat().st_mode) == 0o600


def test_without_the_archives_directory_nothing_is_locked(tmp_path: Path) -> None:
    """No archive directory: the block runs and no lock file (nor directory) is made."""
    database = tmp_path / "missing" / "maild.sqlite3"
    with move_lock(database, "maild migrate a --to b"):
        pass
    assert not database.parent.exists()
