"""The cyclic garbage collector is off while a command imports its modules and on for its work
(maild/cli/main.py, ``collect_from_here``): ``python -m maild`` switches it off first, and what the
imports made is frozen when it is switched on (docs/performance.md, "Session 10: fixed costs")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli_startup import write_config
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import short_dir

#: As ``python -m maild`` (maild/__main__.py) starts, with the fetch cycle watched: whether the
#: collector is on when a cycle starts, and after the command, and how many objects were frozen.
RUNNER = """
import gc, json, os, sys
gc.disable()
import maild.fetch.cycle as cycle
seen = []
real = cycle.fetch_cycle
async def watched(*args, **kwargs):
    seen.append(gc.isenabled())
    return await real(*args, **kwargs)
cycle.fetch_cycle = watched
import maild.service.runner as runner
runner.fetch_cycle = watched
from maild.cli.main import main
code = main(sys.argv[1:])
with open(os.environ["MAILD_TEST_GC"], "w") as fh:
    json.dump({"cycles": seen, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}, fh)
sys.exit(code)
"""


def _run(tmp: Path, *argv: str) -> dict[str, object]:
    out = tmp / "gc.json"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "MAILD_TEST_GC": str(out), "PYTHONPATH": repo}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.exists(), proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(out.read_text())
    return result


@pytest.mark.dovecot
def test_a_fetch_imports_without_the_collector_and_runs_its_cycle_with_it(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """``maild fetch``: the collector is on when the cycle starts and after it, and the objects of
    the imports (tens of thousands) are frozen; ``maild status`` (no daemon) switches it on too."""
    directory = short_dir("maildgc-")
    try:
        config = write_config(directory, dovecot, {"pop3": mail_user})
        fetched = _run(directory, "-c", str(config), "fetch")
        status = _run(directory, "-c", str(config), "status")
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    assert fetched["cycles"] == [True]
    assert fetched["enabled"] is True
    assert isinstance(fetched["frozen"], int) and fetched["frozen"] > 10_000
    assert status["enabled"] is True


def test_main_called_in_process_freezes_nothing(tmp_path: Path) -> None:
    """Where the collector is on (a test or another program calling main()), nothing is frozen."""
    import gc

    from maild.cli.main import collect_from_here

    before = gc.get_freeze_count()
    collect_from_here()

    assert gc.isenabled() and gc.get_freeze_count() == before
