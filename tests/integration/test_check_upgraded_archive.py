"""``maild check`` and ``maild status`` against a daemon running on an archive it has just upgraded from
an older schema (QA of session 15; docs/guarantee.md had it as "not examined").

Steps, for an archive built at an old version by :mod:`tests.support.old_archives` (accounts, one
retired, messages, failures, alerts of that version):
1. ``maild check-config`` before the start: OK, exit 0 (a version 1 archive: a warning that says
   ``maild run`` upgrades it).
2. ``maild run`` upgrades it and answers on its control socket.
3. ``maild check``: OK, exit 0, the archive's messages in the perfdata; ``maild status``: exit 0.
4. SIGTERM: the daemon stops, exit 0.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maild.archive.schema import SCHEMA_VERSION
from tests.support.maildconf import short_dir
from tests.support.old_archives import MESSAGES, build_at_version


def maild(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``-c cfg``."""
    return subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("version", [1, 2, SCHEMA_VERSION - 1])
def test_check_and_status_on_a_daemon_that_just_upgraded_its_archive(version: int) -> None:
    """A daemon started on an archive of an older schema upgrades it, and check and status report it
    healthy with every message counted."""
    directory = short_dir()
    (directory / "state").mkdir()
    asyncio.run(build_at_version(directory / "state" / "maild.sqlite3", version))
    cfg = directory / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{directory}/state"\ncontrol_socket = "{directory}/c.sock"\n')

    before = maild(cfg, "check-config")
    assert before.returncode == 0, before.stderr
    if version == 1:
        assert "upgrades it" in before.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "maild", "-c", str(cfg), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while maild(cfg, "status").returncode != 0:
            assert proc.poll() is None, f"maild run exited {proc.returncode}"
            assert time.monotonic() < deadline, "the daemon did not come up"
            time.sleep(0.1)
        check = maild(cfg, "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith("MAILD OK")
        assert f"messages={len(MESSAGES)};" in check.stdout
        status = maild(cfg, "status")
        assert status.returncode == 0, status.stderr
        assert f"archive: {len(MESSAGES)} messages" in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        stopped = proc.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    assert stopped == 0
