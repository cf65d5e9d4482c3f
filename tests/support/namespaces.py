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
