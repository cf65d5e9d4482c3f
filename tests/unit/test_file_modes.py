"""Files maild creates are private to its user and group whatever the umask (issue 15, item 6)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.maildir import (
    DIR_MODE,
    FILE_MODE,
    STALE_TMP_S,
    clean_stale_tmp,
    deliver,
    ensure_maildir,
    unique_name,
)
from maild.archive.store import Store


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test under umask 022, as a hand-started maild would."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_archive_and_side_files_are_0640_in_a_0750_directory(tmp_path: Path) -> None:
    """Under umask 022 the archive directory is 0750, the archive and its -wal and -shm files 0640."""
    path = tmp_path / "state" / "sub" / "maild.sqlite3"
    store = await Store.open(path)
    try:
        await store.ensure_account("a", "O", "E", "pop3", datetime.now(UTC))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert [mode(f) for f in files] == [0o640] * 3
        assert mode(path.parent) == mode(path.parent.parent) == 0o750
    finally:
        await store.close()


@pytest.mark.usefixtures("umask_022")
def test_maildir_folders_and_files_have_explicit_modes(tmp_path: Path) -> None:
    """Under umask 022 Maildir directories are 0750 and delivered files 0640."""
    root = tmp_path / "Maildir"
    directory = ensure_maildir(root, ".Archiv")
    [delivered] = deliver(root, ".Archiv", [("a" * 64, b"Subject: x\r\n\r\nbody\r\n")])
    assert mode(delivered.path) == FILE_MODE == 0o640
    assert {mode(d) for d in (root, root / "new", directory, directory / "tmp")} == {DIR_MODE}


def test_stale_tmp_files_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    """Files in tmp/ older than 36 hours (top level and folders) go; younger ones and new/ stay."""
    root = tmp_path / "Maildir"
    folder = ensure_maildir(root, ".Archiv")
    ensure_maildir(root)
    old_top, old_folder, young = (
        root / "tmp" / unique_name("1" * 64, 1),
        folder / "tmp" / unique_name("2" * 64, 1),
        root / "tmp" / unique_name("3" * 64, 1),
    )
    done = root / "new" / unique_name("4" * 64, 1)
    for f in (old_top, old_folder, young, done):
        f.write_bytes(b"x")
    past = time.time() - STALE_TMP_S - 60
    for f in (old_top, old_folder, done):
        os.utime(f, (past, past))
    assert clean_stale_tmp(root) == 2
    assert not old_top.exists() and not old_folder.exists()
    assert young.exists() and done.exists()
    assert clean_stale_tmp(tmp_path / "missing") == 0


def test_stale_tmp_cleaning_removes_only_files_maild_named(tmp_path: Path) -> None:
    """A deliver_maildir set by mistake to a directory that is not maild's Maildir (here a home
    directory with ~/tmp and ~/.cache/tmp): old files there that maild did not write stay; an old
    leftover of maild's own stays removed (QA of session 10: every file over 36 hours old went)."""
    home = tmp_path / "anna"
    (home / "tmp").mkdir(parents=True)
    (home / ".cache" / "tmp").mkdir(parents=True)
    theirs = [
        home / "tmp" / "thesis-draft.odt",
        home / ".cache" / "tmp" / "session.dat",
        home / "tmp" / "1.M2P3Q4",
    ]
    ours = home / "tmp" / unique_name("5" * 64, 10)
    past = time.time() - STALE_TMP_S - 60
    for f in (*theirs, ours):
        f.write_bytes(b"x")
        os.utime(f, (past, past))
    assert clean_stale_tmp(home) == 1
    assert all(f.exists() for f in theirs)
    assert not ours.exists()
