"""The long run of the property tests: ``python3 -m tests.bench.fuzz [pytest args]``.

Runs ``tests/unit/test_fuzz.py`` (parsers), ``tests/unit/test_config_fuzz.py`` (config.example.toml
mutated) and ``tests/unit/test_control_fuzz.py`` (control requests; both session 15) under the Hypothesis profile ``maild-long``
(:data:`tests.support.fuzzing.LONG_EXAMPLES` examples per property instead of the suite's
:data:`~tests.support.fuzzing.SUITE_EXAMPLES`) and prints Hypothesis' statistics, so that the count tried
and anything found can be written down. Not collected by pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The property-test modules the long run covers.
FUZZ_MODULES = ("tests/unit/test_fuzz.py", "tests/unit/test_config_fuzz.py", "tests/unit/test_control_fuzz.py")


def main(argv: list[str]) -> int:
    """Run the property tests with the long profile; return pytest's exit status."""
    env = {**os.environ, "MAILD_HYPOTHESIS_PROFILE": "maild-long", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "--hypothesis-show-statistics", "--timeout=3600", *FUZZ_MODULES, *argv,
    ]  # fmt: skip
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
