"""Run maild with its output on a pseudo-terminal, as an admin at a shell sees it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

#: How long to wait for more output on the terminal, and for the process to end, in seconds.
READ_TIMEOUT_S = 60


def run_on_terminal(*args: str, stderr_too: bool, env: dict[str, str]) -> tuple[int, bytes]:
    """Run ``python -m maild ARGS`` with stdout (and stderr if ``stderr_too``, else discarded) on a new
    pseudo-terminal and stdin from /dev/null; its exit code and everything it wrote there.

    Raises:
        subprocess.TimeoutExpired: the process did not end within :data:`READ_TIMEOUT_S` after its
            output stopped.
    """
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maild", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower if stderr_too else subprocess.DEVNULL,
            env=env,
        )
        os.close(follower)
        follower = -1
        chunks: list[bytes] = []
        while select.select([leader], [], [], READ_TIMEOUT_S)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=READ_TIMEOUT_S)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return code, b"".join(chunks)
