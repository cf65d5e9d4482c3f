"""Pure decisions of when to try again: the poll interval with jitter, capped exponential backoff
after failed cycles (longer for provider throttling), and the delays between IDLE reconnections.

Split from :mod:`maild.policy` (623 lines) in the review of session 14, with no change of behaviour.
Nothing here does I/O; the randomness of jitter is a parameter. May import :mod:`maild.errors` only.
"""

from __future__ import annotations

import random

from maild.errors import ThrottledError

BACKOFF_BASE_S = 30.0
"""Delay after the first failed cycle, in seconds; doubles with each further failure."""
BACKOFF_CAP_S = 1800.0
"""Longest delay between failed cycles, in seconds."""
THROTTLE_MIN_S = 300.0
"""Shortest delay after a provider throttled the account (``[SYS/TEMP]``, ``[IN-USE]``,
``[LOGIN-DELAY]``, RFC 2449 section 8 and RFC 3206), in seconds."""
JITTER_FRACTION = 0.1
"""Up to this fraction of a delay is added at random, so accounts do not run in step."""
JITTER_CAP_S = 30.0
"""The most jitter added to a poll interval, in seconds."""
RECONNECT_BASE_S = 1.0
"""First delay before an IDLE connection is made again after a loss, in seconds; doubles per failed
attempt."""
RECONNECT_CAP_S = 300.0
"""Longest delay between attempts to make an IDLE connection again, in seconds."""


def backoff_delay_s(failures: int, error: BaseException, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failed cycles (>= 1).

    Doubles from :data:`BACKOFF_BASE_S` up to :data:`BACKOFF_CAP_S`; provider throttling
    (:class:`~maild.errors.ThrottledError`) waits at least :data:`THROTTLE_MIN_S`. Up to
    :data:`JITTER_FRACTION` of the delay is added at random (``rng.uniform``).
    """
    delay = min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_CAP_S)
    if isinstance(error, ThrottledError):
        delay = max(delay, THROTTLE_MIN_S)
    return float(delay + rng.uniform(0, delay * JITTER_FRACTION))


def next_cycle_delay_s(
    poll_interval_s: float, failures: int, error: BaseException | None, rng: random.Random
) -> float:
    """Seconds from the end of a cycle to the next one of the same account.

    Args:
        poll_interval_s: the account's ``poll_interval``, in seconds.
        failures: consecutive failed cycles (>= 1 with an error).
        error: the last cycle's error, or None after a success.
        rng: the jitter source.

    Returns:
        After a success: the poll interval plus up to :data:`JITTER_FRACTION` of it (at most
        :data:`JITTER_CAP_S`). After a failure: :func:`backoff_delay_s`.
    """
    if error is None:
        return poll_interval_s + rng.uniform(0, min(poll_interval_s * JITTER_FRACTION, JITTER_CAP_S))
    return backoff_delay_s(failures, error, rng)


def reconnect_delay_s(
    failures: int, base_s: float = RECONNECT_BASE_S, cap_s: float = RECONNECT_CAP_S
) -> float:
    """Seconds to wait before IDLE reconnection attempt number ``failures`` (>= 1): doubling, capped."""
    return float(min(base_s * 2 ** (failures - 1), cap_s))
