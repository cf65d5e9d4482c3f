"""Build hook: the man page and the shell completions are generated from maild's argparse parser.

All metadata lives in pyproject.toml. This file only adds a ``build_py`` step that writes
``build/generated/{maild.1, bash/maild, _maild}`` (see maild/cli/manpage.py) and the data files that
the wheel installs under its prefix (``/usr/local`` for pip as root, ``/usr`` in the Debian package):

- ``share/man/man1/maild.1``, ``share/bash-completion/completions/maild``,
  ``share/zsh/site-functions/_maild``
- ``share/maild/systemd/`` (the units) and ``share/doc/maild/config.example.toml``

The page's date is ``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else today (UTC).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
GENERATED = Path("build", "generated")
UNITS = ("maild.service", "maild-backup.service", "maild-backup.timer")


def generate() -> None:
    """Write the man page and completions into ``build/generated`` (relative to the project root)."""
    sys.path.insert(0, str(ROOT))
    try:
        from maild import __version__
        from maild.cli.main import _parser
        from maild.cli.manpage import bash_completion, render_manpage, zsh_completion
    finally:
        sys.path.remove(str(ROOT))
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
    out = ROOT / GENERATED
    out.mkdir(parents=True, exist_ok=True)
    parser = _parser()
    (out / "maild.1").write_text(render_manpage(parser, __version__, time.strftime("%Y-%m-%d", stamp)))
    (out / "bash").mkdir(exist_ok=True)
    (out / "bash" / "maild").write_text(bash_completion(parser))
    (out / "_maild").write_text(zsh_completion(parser))


class BuildPy(build_py):
    """``build_py`` that generates the man page and completions first."""

    def run(self) -> None:
        generate()
        super().run()


setup(
    cmdclass={"build_py": BuildPy},
    data_files=[
        ("share/man/man1", [str(GENERATED / "maild.1")]),
        ("share/bash-completion/completions", [str(GENERATED / "bash" / "maild")]),
        ("share/zsh/site-functions", [str(GENERATED / "_maild")]),
        ("share/maild/systemd", [f"systemd/{unit}" for unit in UNITS]),
        ("share/doc/maild", ["config.example.toml", "README.md"]),
    ],
)
