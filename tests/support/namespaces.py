"""Running a command in its own user and mount namespace (``unshare``), where a test may mount a
tmpfs under the archive without touching the machine's mounts (they vanish with the namespace)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.maildconf import short_dir

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]
"""The argv prefix: a new user namespace (this user as its root) and mount namespace."""


def namespaces_unavailable() -> str | None:
    """None when an unprivileged user and mount namespace can mount a tmpfs here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs tmpfs "$d" && umount "$d" && rmdir "$d"'],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        None if probe.returncode == 0 else f"user/mount namespaces unavailable: {probe.stderr.strip()[:200]}"
    )


def namespace_state_dir() -> tuple[Path, Path]:
    """Skip the calling test unless :func:`namespaces_unavailable` finds namespaces usable; else a
    fresh short test directory and its empty ``state`` subdirectory (where a test mounts its tmpfs),
    as ``(directory, state)``."""
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    directory = short_dir()
    state = directory / "state"
    state.mkdir()
    return directory, state


FILL_AND_FREE_DRIVER = """
import os, sqlite3, subprocess, sys
state, cfg, left = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % int(sys.argv[4]), "tmpfs", state], check=True)
daemon = subprocess.Popen(
    [sys.executable, "-m", "maild", "-c", cfg, "run"], stdout=subprocess.DEVNULL, stderr=open(cfg + ".log", "w")
)
print("started", flush=True)
sys.stdin.readline()
st = os.statvfs(state)
fd = os.open(os.path.join(state, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - left)
os.close(fd)
print("filled", flush=True)
sys.stdin.readline()
os.unlink(os.path.join(state, "filler"))
print("freed", flush=True)
sys.stdin.readline()
"""
"""The start of a driver run in :data:`UNSHARE` as ``python -c DRIVER STATE CONFIG LEFT_OCTETS
TMPFS_MIB``: mounts a tmpfs of TMPFS_MIB on STATE, starts ``maild run``, and at each line on its
stdin fills the tmpfs up to LEFT_OCTETS free, then frees it (answering ``started``, ``filled``,
``freed``). A test appends what happens after ``freed`` (the daemon is ``daemon``; ``sqlite3`` is
imported)."""
