"""``maild.cli.main.console``: the process ends without Python's teardown once a command is done,
its output complete and its exit code kept; another live thread is waited for as usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Replaces ``main`` by a stand-in that writes a partial line (still buffered at the end), registers
#: an atexit hook (which only Python's normal exit runs) and, with ``thread`` in argv, leaves a
#: non-daemon thread running that prints last.
RUNNER = """
import atexit, sys, threading, time
import maild.cli.main as cli

def stand_in():
    sys.stdout.write("result without newline")
    atexit.register(lambda: print("teardown ran", file=sys.stderr))
    if "thread" in sys.argv:
        threading.Thread(target=lambda: (time.sleep(0.2), print(" thread done", flush=True))).start()
    return 3

cli.main = stand_in
cli.console()
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_console_skips_the_teardown_but_keeps_output_and_exit_code() -> None:
    """With only the main thread left: buffered output is flushed, the exit code is main's, and the
    atexit hooks of Python's teardown do not run."""
    done = run()

    assert done.returncode == 3
    assert done.stdout == "result without newline"
    assert "teardown ran" not in done.stderr


def test_console_waits_for_a_live_thread_as_a_normal_exit_does() -> None:
    """With another thread still running, the normal exit runs: the thread finishes, the atexit hooks
    run, the exit code is main's."""
    done = run("thread")

    assert done.returncode == 3
    assert done.stdout == "result without newline thread done\n"
    assert "teardown ran" in done.stderr
