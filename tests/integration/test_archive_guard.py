"""The archive guard against real Dovecot: an archive deleted or replaced under a running maild
stops deletions on the server (issue 15, item 4). Kill-free: the fetch cycles run in-process on
the archive the test holds open, as the daemon's scheduler runs them."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive.store import ArchiveReplaced, Store
from maild.config.loader import AccountConfig
from maild.service.snapshot import status_reply
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import T0, cycle, pop3_account, prepare


def delete_account(dovecot: Dovecot, user: MailUser) -> AccountConfig:
    """``user``'s POP3 account with ``retention = "delete"``."""
    return pop3_account(dovecot.host, dovecot.ports.pop3, user.name, user.password, retention="delete")


@pytest.mark.parametrize(
    "how",
    ["unlinked", "replaced", "wal-unlinked", "wal-replaced", "wal-cut", "wal-cut-in-part", "wal-zeroed"],
)
async def test_archive_deleted_or_replaced_stops_deletion(
    dovecot: Dovecot,
    mail_user: MailUser,
    tmp_path: Path,
    executor: concurrent.futures.ThreadPoolExecutor,
    how: str,
) -> None:
    """Steps: a first cycle archives and deletes two messages; a backup copy is taken; three more
    arrive; the live archive file is removed (``rm``) or a backup renamed over it; the next cycle
    fails with ArchiveReplaced (logged at error) and all three stay on the server; so does every
    later cycle, also for another account (the stop is sticky for the whole archive)."""
    path = tmp_path / "state" / "maild.sqlite3"
    store = await Store.open(path)
    try:
        account = await prepare(store, delete_account(dovecot, mail_user))
        first = [corpus.make_message(subject=f"first {n}") for n in (1, 2)]
        dovecot.deliver_many(mail_user.name, first)
        result = await cycle(account, store, executor, clock=lambda: T0)
        assert (result.new_messages, result.deleted) == (2, 2)
        assert dovecot.maildir_messages(mail_user.name) == []

        backup = tmp_path / "backup.sqlite3"
        shutil.copyfile(path, backup)
        later = [corpus.make_message(subject=f"later {n}") for n in (1, 2, 3)]
        dovecot.deliver_many(mail_user.name, later)
        wal = path.with_name(path.name + "-wal")
        if how == "unlinked":
            os.unlink(path)
        elif how == "replaced":
            os.replace(backup, path)
        elif how == "wal-unlinked":  # commits would go to a file with no name (QA of session 11)
            os.unlink(wal)
        elif how == "wal-cut":  # `: > maild.sqlite3-wal`: the same file, its commits gone (QA of session 12)
            os.truncate(wal, 0)
        elif how == "wal-cut-in-part":
            os.truncate(wal, wal.stat().st_size - 1)
        elif how == "wal-zeroed":  # overwritten in place: its header
            with open(wal, "r+b") as fh:
                fh.write(bytes(32))
        else:
            shutil.copyfile(wal, tmp_path / "copy-wal")
            os.replace(tmp_path / "copy-wal", wal)

        with (
            capture_logs() as logs,
            pytest.raises(ArchiveReplaced, match="deletions on every server stopped"),
        ):
            await cycle(account, store, executor, clock=lambda: T0)
        assert dovecot.maildir_messages(mail_user.name) == later
        assert [e["log_level"] for e in logs if e["event"] == "archive.replaced"] == ["error"]
        assert store.replaced is not None
        status = await status_reply({}, store, T0)
        assert status.archive.replaced == store.replaced
        assert "deletions on every server stopped" in status.to_json()["archive"]["replaced"]

        with pytest.raises(ArchiveReplaced):
            await cycle(account, store, executor, clock=lambda: T0)
        assert dovecot.maildir_messages(mail_user.name) == later
    finally:
        await store.close()


async def test_guard_stops_deletion_after_commit_when_archive_vanishes_mid_cycle(
    dovecot: Dovecot,
    mail_user: MailUser,
    tmp_path: Path,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """The archive is removed after the cycle's start check but before its deletions (here: by the
    first commit): the check right before DELE stops them; the messages stay on the server."""
    path = tmp_path / "maild.sqlite3"

    class Vanishing(Store):
        async def insert_batch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            outcome = await super().insert_batch(*args, **kwargs)
            if path.exists():
                os.unlink(path)
            return outcome

    store = await Vanishing.open(path)
    try:
        account = await prepare(store, delete_account(dovecot, mail_user))
        messages = [corpus.make_message(subject=f"m {n}") for n in (1, 2)]
        dovecot.deliver_many(mail_user.name, messages)
        with pytest.raises(ArchiveReplaced, match="deleted under the running daemon"):
            await cycle(account, store, executor, clock=lambda: T0)
        assert dovecot.maildir_messages(mail_user.name) == messages
    finally:
        await store.close()


async def test_changed_schema_marker_fails_the_guard(tmp_path: Path) -> None:
    """Another process rewriting the schema marker (``PRAGMA user_version``) fails the guard."""
    path = tmp_path / "maild.sqlite3"
    store = await Store.open(path)
    try:
        await store.verify_identity()
        other = sqlite3.connect(path)
        other.execute("PRAGMA user_version = 99")
        other.close()
        with pytest.raises(ArchiveReplaced, match="schema marker 99"):
            await store.verify_identity()
    finally:
        await store.close()


def test_read_only_file_system_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's "disk I/O error" on a file system mounted read-only is reported as such (the file
    system's flags stand in for a read-only mount, which the test cannot make)."""
    from maild.archive import archive_file as store_module

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(store_module.os, "statvfs", lambda _path: ReadOnly())
    text = store_module._sqlite_problem(
        sqlite3.OperationalError("disk I/O error"), tmp_path / "maild.sqlite3"
    )
    assert text == f"the file system holding {tmp_path} is read-only (disk I/O error)"
