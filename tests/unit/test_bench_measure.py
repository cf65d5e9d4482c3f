"""The benchmark's user/system split (``tests/bench/measure.py``, ``tests/bench/run.py``): each part
lands in its own field. The children below spend their CPU almost wholly in one mode (a Python loop:
user; reads of ``/dev/zero``: the kernel zero-filling the buffer), so a swapped or dropped field
fails; no time is asserted, only which part is the larger and that the parts add up."""

from __future__ import annotations

import os
import sys

import pytest

from tests.bench import measure
from tests.bench.run import Row, user_sys

USER_CHILD = "sum(range(20_000_000))"
SYSTEM_CHILD = (
    "import os\n"
    "buffer = bytearray(2**20)\n"
    "with open('/dev/zero', 'rb', buffering=0) as zero:\n"
    "    for _ in range(3000):\n"
    "        zero.readinto(buffer)\n"
)

LOOP_ROUNDS = 5_000
"""Most rounds of 100,000 additions (about 1.5 ms each here) the running-process test spends before
its reading must show 50 ms of user time: several seconds of CPU, far more than it needs."""

needs_time = pytest.mark.skipif(not os.path.exists(measure.TIME), reason="GNU time is not installed")


@needs_time
def test_a_python_loop_is_user_time() -> None:
    run = measure.run([sys.executable, "-c", USER_CHILD], budget_s=120)
    assert run.returncode == 0
    assert run.user_s > run.sys_s
    assert run.cpu_s == pytest.approx(run.user_s + run.sys_s)


@needs_time
def test_reads_of_dev_zero_are_system_time() -> None:
    run = measure.run([sys.executable, "-c", SYSTEM_CHILD], budget_s=120)
    assert run.returncode == 0
    assert run.sys_s > run.user_s
    assert run.cpu_s == pytest.approx(run.user_s + run.sys_s)


def test_a_running_process_split_follows_its_work() -> None:
    """``process_user_sys_s`` reads utime then stime: the user part grows with a Python loop."""
    user0, sys0 = measure.process_user_sys_s(os.getpid())
    total = 0
    for _ in range(LOOP_ROUNDS):  # bounded: a broken reading must fail, not spin
        if measure.process_user_sys_s(os.getpid())[0] - user0 >= 0.05:
            break
        total += sum(range(100_000))
    user1, sys1 = measure.process_user_sys_s(os.getpid())
    assert user1 - user0 >= 0.05
    assert sys1 - sys0 < user1 - user0


def test_the_row_shows_its_split_or_a_dash() -> None:
    row = Row("a", "imap", "initial", "maild fetch", 1.0, 3.0, 50.0, 1, 1, extra={"user_s": 2.0, "sys_s": 1.0})
    assert user_sys(row) == "2.00 user + 1.00 sys"
    assert user_sys(Row("a", "imap", "initial", "mbsync", 1.0, 3.0, 50.0, 1, 1)) == "-"

