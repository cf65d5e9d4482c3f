"""The read-only queries (``maild messages``, ``maild export``, the CRM's way in) on an archive of
every schema version the reader accepts, as it is before the daemon upgrades it: an upgrade pending
(maild updated, the daemon not restarted yet) or a backup of an older maild read in place (QA of
session 14)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from maild.archive.reader import ArchiveReader, MessageFilter
from maild.archive.schema import SCHEMA_VERSION
from maild.cli.main import main
from maild.errors import StoreError
from tests.support.old_archives import MESSAGES, build_at_version

READ_VERSIONS = range(2, SCHEMA_VERSION + 1)
"""The versions :class:`ArchiveReader` reads (it refuses 1, without ``mailboxes`` and the rest)."""


def _octets_and_mode(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mode


@pytest.mark.parametrize("version", READ_VERSIONS)
async def test_every_read_works_on_an_archive_not_upgraded_yet_and_writes_nothing(
    tmp_path: Path, version: int
) -> None:
    """list, show with octets, the attachment-text note and (from version 3, which made the index)
    search answer on the archive as it is; the archive file is exactly as before (SQLite may add the
    empty ``-wal`` and the ``-shm`` beside it, as for any reader of a WAL database)."""
    path = tmp_path / "maild.sqlite3"
    await build_at_version(path, version)
    before = _octets_and_mode(path)

    with ArchiveReader(path) as reader:
        listed = reader.list_messages(MessageFilter())
        assert len(listed) == len(MESSAGES)
        first = reader.message(hashlib.sha256(MESSAGES[0]).hexdigest(), raw=True)
        assert first is not None
        assert first.raw == MESSAGES[0]
        pending = reader.documents_pending()
        assert pending == (0 if version < 11 else len(MESSAGES) - 1)  # message 1 was looked at (v11 row)
        if version >= 3:
            reader.search("hallo", MessageFilter())

    assert _octets_and_mode(path) == before


@pytest.mark.parametrize("version", [11, 12])
def test_search_on_a_schema_11_or_12_archive_exits_as_grep(
    tmp_path: Path, version: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``maild messages search`` counted the attachments not indexed yet with ``has_documents``
    (schema 13): on a schema 11 or 12 archive it stopped with "no such column: has_documents" (exit 2)
    instead of answering."""
    path = tmp_path / "maild.sqlite3"
    asyncio.run(build_at_version(path, version))

    code = main(["messages", "search", "--database", str(path), "Welt"])

    out, err = capsys.readouterr()
    assert "has_documents" not in err
    assert code == 0, err
    assert "Hallo Welt 1" in out


async def test_a_version_1_archive_is_refused_with_what_upgrades_it(tmp_path: Path) -> None:
    """A schema 1 archive (which ``maild run`` upgrades at its start) is refused by the reader in words
    that say so: before, "this maild reads versions 2 to 16" left the admin thinking the archive was
    unusable; ``maild check-config`` printed it as a warning (QA of session 15)."""
    path = tmp_path / "maild.sqlite3"
    await build_at_version(path, 1)

    with pytest.raises(StoreError) as info:
        ArchiveReader(path)

    message = str(info.value)
    assert "schema version 1" in message
    assert "maild run" in message and "upgrade" in message
    assert "\n" not in message
