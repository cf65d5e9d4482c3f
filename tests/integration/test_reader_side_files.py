"""A read-only reader of an archive without its ``-wal``/``-shm`` side files (QA of session 14).

The daemon leaves both files at its stop so that readers who may not write the state directory can
read (tests/integration/test_archive_other_user.py); an archive last closed by an older maild, or
its main file copied alone, has none. Such a reader cannot create them, and SQLite's words were all
it got: "unable to open database file" on a read-only file system, "attempt to write a readonly
database" in a directory it may not write. Now one line names the missing side files and the way out.
The read-only file system is a bind mount remounted read-only in a user and mount namespace.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.model import POP3Key, RetrievedMessage
from tests.support.namespaces import UNSHARE, namespace_state_dir

READ_ONLY_LIST = """
set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
exec "$2" -m maild messages list --database "$1/maild.sqlite3" --json
"""


async def _archive(path: Path) -> None:
    store = await Store.open(path)
    try:
        now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        await store.ensure_account("anna-pop", "Kanzlei Berger", "Anna Berger", "pop3", now)
        raw = b"Subject: Hallo\r\n\r\nText\r\n"
        await store.store_batch("anna-pop", [RetrievedMessage(POP3Key("u1"), raw)], now)
    finally:
        await store.close()


def _list_read_only(state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [*UNSHARE, "sh", "-c", READ_ONLY_LIST, "sh", str(state), sys.executable],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("side_files", [True, False], ids=["kept", "missing"])
def test_a_read_only_reader_reads_with_side_files_and_names_them_when_missing(side_files: bool) -> None:
    """Kept (the daemon's stop): the read-only reader lists the message. Missing: exit 1 and one line
    naming the side files, the read-only file system and what creates them."""
    _directory, state = namespace_state_dir()
    db = state / "maild.sqlite3"
    asyncio.run(_archive(db))
    if not side_files:
        for suffix in ("-wal", "-shm"):
            (state / f"maild.sqlite3{suffix}").unlink()

    result = _list_read_only(state)

    if side_files:
        assert result.returncode == 0, result.stderr
        assert '"subject": "Hallo"' in result.stdout
        return
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "maild.sqlite3-shm and maild.sqlite3-wal, which are missing" in lines[0]
    assert f"the read-only file system holding {state}" in lines[0]
    assert "start the daemon once" in lines[0]
