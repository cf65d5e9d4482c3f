"""The Python steps of schema migrations load their modules only when a migration runs (start-up time,
docs/performance.md "Session 9: small start-up costs"; no timing).

Each test opens an archive in a fresh interpreter, as every ``maild fetch`` and admin command does,
and reads ``sys.modules`` after it closed: an archive whose schema is current loads none of the
migration modules; a new archive (every migration runs) loads them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: The modules of the Python migration steps (``_MIGRATION_STEPS`` of maild/archive/opening.py)
#: that nothing else of an archive open needs.
MIGRATION_MODULES = frozenset(
    {
        "maild.archive.cc_fill",
        "maild.archive.document_flag",
        "maild.archive.failure_kind",
        "maild.archive.layout",
        "maild.archive.columns",
    }
)

#: Opens and closes the archive named by argv[1] with the writer, then prints sys.modules as JSON.
OPEN_ARCHIVE = """
import asyncio, json, sys
from pathlib import Path
from maild.archive.store import Store

async def main():
    store = await Store.open(Path(sys.argv[1]))
    await store.close()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after_open(path: Path) -> set[str]:
    repo = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", OPEN_ARCHIVE, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": repo},
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_current_archive_is_opened_without_the_migration_modules(tmp_path: Path) -> None:
    """Steps: create an archive (every migration runs, their modules load); open it again in a new
    process: the schema is current, no migration module is loaded."""
    path = tmp_path / "maild.sqlite3"
    first = _modules_after_open(path)
    again = _modules_after_open(path)

    assert first >= MIGRATION_MODULES, "creating the archive ran the migration steps"
    assert "maild.archive.store" in again
    assert not again & MIGRATION_MODULES, again & MIGRATION_MODULES
