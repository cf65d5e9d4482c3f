"""Waiting for a condition in async tests: the one ``eventually`` every test layer uses.

Tests wait on a condition, never on a fixed sleep standing in for readiness (STYLE.md, Tests).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

DEFAULT_TIMEOUT_S = 20.0
"""Generous: it only matters when a test fails, and a loaded two-core CI machine is slow."""


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    step_s: float = 0.02,
) -> float:
    """Poll ``check`` (a plain or async callable) until it returns true.

    Args:
        check: returns whether the condition holds; may be a coroutine function.
        what: the condition in words, for the failure message.
        timeout_s: seconds after which the test fails.
        step_s: seconds between polls.

    Returns:
        The seconds it took, for tests that bound how quickly something happens.

    Raises:
        AssertionError: the condition did not hold within ``timeout_s`` seconds.
    """
    started = time.monotonic()
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)
