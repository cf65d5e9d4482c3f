"""Without the documents extra (pypdf hidden from the interpreter), maild says once that attachment text is
not indexed, and works as before."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from maild.archive.store import Store


def test_reindex_without_the_extra_says_attachment_text_is_not_indexed(tmp_path: Path) -> None:
    """With pypdf hidden from the interpreter, `maild reindex` says once that attachment text is not
    indexed and how to get it; `--documents` is refused with the same advice."""
    cfg = tmp_path / "config.toml"
    state = tmp_path / "state"
    cfg.write_text(f'[daemon]\nstate_dir = "{state}"\ncontrol_socket = "{tmp_path}/c.sock"\n')
    hide = (
        "import sys, runpy, importlib.metadata as m; sys.modules['pypdf'] = None; real = m.version;"
        " m.version = lambda n: (_ for _ in ()).throw(m.PackageNotFoundError(n)) if n == 'pypdf' else real(n);"
        " sys.argv = ['maild'] + sys.argv[1:]; runpy.run_module('maild', run_name='__main__')"
    )

    async def create() -> None:
        async with await Store.open(state / "maild.sqlite3"):
            pass

    asyncio.run(create())
    done = subprocess.run(
        [sys.executable, "-c", hide, "-c", str(cfg), "reindex"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "attachment text (PDF, Office) is not indexed" in done.stdout
    assert "maild[documents]" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-c", hide, "-c", str(cfg), "reindex", "--documents"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "maild[documents]" in refused.stderr
