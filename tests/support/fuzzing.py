"""Hypothesis profiles for the property tests (``tests/unit/test_fuzz.py``).

``maild`` (the default, what ``.ci/run`` runs): a bounded number of examples per property, no example
database written into the worktree, no deadline (the machine is shared, speed is never asserted).
``maild-long``: the bench run (``python3 -m tests.bench.fuzz``). Choose one with the environment
variable ``MAILD_HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os
from typing import Any

SUITE_EXAMPLES = 60
"""Examples per property in the normal suite."""
LONG_EXAMPLES = 5000
"""Examples per property in the long bench run."""


def register_profiles(settings: Any, health_check: Any) -> None:
    """Register the ``maild`` and ``maild-long`` profiles and load the chosen one."""
    common: dict[str, Any] = {
        "deadline": None,
        "database": None,
        "suppress_health_check": [health_check.too_slow],
    }
    settings.register_profile("maild", max_examples=SUITE_EXAMPLES, **common)
    settings.register_profile("maild-long", max_examples=LONG_EXAMPLES, **common)
    settings.load_profile(os.environ.get("MAILD_HYPOTHESIS_PROFILE", "maild"))
