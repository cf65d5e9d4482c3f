"""The archive is readable by another Unix user in its group, whether the writer runs, stopped cleanly or was killed.

The writer is the real Store in a subprocess under ``umask 0077`` (tests/support/archive_writer.py); the
reader is ``maild messages list --database`` run as an unprivileged user (``setpriv``) who is only a
member of the state directory's group, with no write access to the directory. Needs root (useradd,
setpriv); skipped otherwise.
"""

from __future__ import annotations

import grp
import importlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

GROUP = "maild-archive-test"
USER = "maild-crm-test"
READER_PYTHON = ("/usr/bin/python3", sys.executable)
#: Top-level packages ``maild messages`` imports, copied where the reader's user can read them.
PACKAGES = ("maild", "aiosqlite", "structlog", "tomli_w", "colorama", "certifi", "typing_extensions")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("useradd") is None,
    reason="needs root, setpriv and useradd",
)


def _ensure_user() -> tuple[int, int]:
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
        gid = grp.getgrnam(GROUP).gr_gid
    try:
        uid = pwd.getpwnam(USER).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "-M", "-N", "-g", "nogroup", "-G", GROUP, "-s", "/usr/sbin/nologin", USER], check=True
        )
        uid = pwd.getpwnam(USER).pw_uid
    return uid, gid


@pytest.fixture
def shared() -> Iterator[tuple[Path, Path, int, int]]:
    """(state directory, a directory of importable packages the reader may read, uid, gid).

    The state directory is ``2750 root:GROUP``: the writer runs as root here, and the set-group-ID bit
    gives its files the group GROUP, as the daemon's own group does under the systemd unit.
    """
    uid, gid = _ensure_user()
    top = Path(tempfile.mkdtemp(prefix="maild-shared-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        state = top / "state"
        state.mkdir(mode=0o750)
        os.chown(state, 0, gid)
        os.chmod(state, 0o2750)
        site = top / "site"
        site.mkdir()
        for name in PACKAGES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            origin = Path(module.__file__ or "")
            if origin.name == "__init__.py":
                shutil.copytree(origin.parent, site / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, site / origin.name)
        subprocess.run(["chmod", "-R", "a+rX", str(site)], check=True)
        yield state, site, uid, gid
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _as_reader(site: Path, gid: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run python ARGS as USER (groups: GROUP only) with only ``site`` on the path."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    last: subprocess.CompletedProcess[str] | None = None
    for python in READER_PYTHON:
        last = subprocess.run(
            ["setpriv", f"--reuid={USER}", "--regid=nogroup", f"--groups={gid}", python, *args],
            capture_output=True, text=True, env=env, timeout=120, check=False, cwd="/",
        )  # fmt: skip
        if "No module named 'encodings'" not in last.stderr and "Permission denied" not in last.stderr:
            return last
    assert last is not None
    return last


def _listed(site: Path, gid: int, db: Path) -> list[dict[str, object]]:
    res = _as_reader(
        site, gid, "-m", "maild", "messages", "list", "--database", str(db), "--limit", "0", "--json"
    )
    assert res.returncode == 0, res.stderr
    listed: list[dict[str, object]] = json.loads(res.stdout)
    return listed


def _writer(db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.archive_writer", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _wait_stored(proc: subprocess.Popen[str], at_least: int) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("stored ") and int(line.split()[1]) >= at_least:
            return int(line.split()[1])
    raise AssertionError(f"writer ended early: {proc.stderr.read() if proc.stderr else ''}")


def test_group_member_reads_while_writing_after_clean_stop_and_after_kill(
    shared: tuple[Path, Path, int, int],
) -> None:
    """A group member reads the archive in all three states of the writer and can never write it.

    Steps: start the writer; read three times while it commits; stop it cleanly (the daemon's
    close); check the side files stay, mode 0640; read all messages; try to write (refused); start
    the writer again and SIGKILL it mid-stream; read every message it reported committed.
    """
    state, site, _uid, gid = shared
    db = state / "maild.sqlite3"
    writer = _writer(db)
    try:
        seen = _wait_stored(writer, 10)
        for _ in range(3):
            count = len(_listed(site, gid, db))
            assert count >= seen
            seen = count
        (state / "maild.sqlite3.stop").touch()
        assert writer.stdout is not None
        lines = writer.stdout.read().split()
        assert writer.wait(timeout=60) == 0
    finally:
        _end(writer)
    assert "closed" in lines
    stored = max([seen, *(int(w) for w in lines if w.isdigit())])
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode)
        assert mode == 0o640, (suffix, oct(mode))
    assert (state / "maild.sqlite3-wal").stat().st_size == 0  # checkpointed: all in the main file
    assert len(_listed(site, gid, db)) == stored

    attempt = _as_reader(
        site, gid, "-c",
        f"import sqlite3; c = sqlite3.connect({str(db)!r}); c.execute('DELETE FROM messages'); c.commit()",
    )  # fmt: skip
    assert attempt.returncode != 0
    assert "readonly" in attempt.stderr

    (state / "maild.sqlite3.stop").unlink()
    writer = _writer(db)
    try:
        killed_after = _wait_stored(writer, stored + 15)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    finally:
        _end(writer)
    count = len(_listed(site, gid, db))
    assert killed_after <= count <= killed_after + 1  # the commit after the last line may have landed
