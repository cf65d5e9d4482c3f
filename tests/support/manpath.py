"""An environment in which ``man maild`` resolves, for ``systemd-analyze verify`` of the units.

The units name ``Documentation=man:maild(1)``; ``systemd-analyze verify`` runs ``man`` for each such
entry and fails when the page is missing. A source checkout has no installed page, so the tests put
the one ``maild manpage`` prints in front of the system's manpath.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def env_with_maild_manpage(directory: Path) -> dict[str, str]:
    """``os.environ`` plus ``MANPATH=DIRECTORY/man:`` (the trailing colon keeps the system's manpath)
    after writing ``DIRECTORY/man/man1/maild.1`` from ``python -m maild manpage``.

    Raises:
        subprocess.CalledProcessError: ``maild manpage`` failed.
    """
    man1 = directory / "man" / "man1"
    man1.mkdir(parents=True, exist_ok=True)
    page = subprocess.run(
        [sys.executable, "-m", "maild", "manpage"], capture_output=True, text=True, check=True
    ).stdout
    (man1 / "maild.1").write_text(page, encoding="utf-8")
    return {**os.environ, "MANPATH": f"{directory / 'man'}:"}
