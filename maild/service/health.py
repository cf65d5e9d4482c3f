"""The daemon's own health, as a watchdog would see it: a blocked event loop, an account loop that
ended, an account history that cannot be written.

:class:`LoopLagProbe` wakes every :data:`PROBE_INTERVAL_S` seconds and measures how late it woke:
lateness means something blocked the event loop (a bug: nothing may block it), and every account,
``maild status`` and the systemd watchdog waited that long. :func:`daemon_problems` gathers what is
wrong for the ``daemon`` alert (:mod:`maild.service.alerts`), by account where one is concerned.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from maild.service.scheduler import Scheduler

log = structlog.get_logger("maild.service.health")

#: Seconds between two wake-ups of the loop-lag probe.
PROBE_INTERVAL_S = 1.0
#: Seconds a blocked loop stays reported after it ran freely again (so that housekeeping sees it).
LAG_REMEMBERED_S = 300.0


class LoopLagProbe:
    """Measures how late the event loop wakes a sleeping task (seconds), in the background.

    Args:
        threshold_s: lateness from which the loop counts as blocked (``[alerts] loop_lag``).
    """

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.worst_s = 0.0
        """The largest lateness above the threshold in the last :data:`LAG_REMEMBERED_S` seconds."""
        self.worst_at: datetime | None = None
        """When that lateness ended (UTC), or None."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")

    async def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def record(self, late_s: float, now: datetime) -> None:
        """Note that the loop woke ``late_s`` seconds late at ``now`` (aware, UTC)."""
        if late_s >= self.threshold_s:
            if self._expired(now) or late_s > self.worst_s:  # a new episode or a worse block: logged
                log.error("daemon.loop-blocked", seconds=round(late_s, 1), threshold_s=self.threshold_s)
                self.worst_s = late_s
            self.worst_at = now

    def _expired(self, now: datetime) -> bool:
        return self.worst_at is None or (now - self.worst_at).total_seconds() > LAG_REMEMBERED_S

    def problem(self, now: datetime) -> str | None:
        """The blocked loop in words while it is remembered, else None."""
        if self.worst_at is None or self._expired(now):
            return None
        return (
            f"the event loop was blocked for {self.worst_s:.1f} s (last at {self.worst_at:%H:%M:%S} UTC;"
            f" loop_lag = {self.threshold_s:g} s): every account, status and the watchdog waited"
        )

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(PROBE_INTERVAL_S)
            self.record(loop.time() - start - PROBE_INTERVAL_S, datetime.now(UTC))


def daemon_problems(scheduler: Scheduler, probe: LoopLagProbe | None, now: datetime) -> dict[str | None, str]:
    """What is wrong with the daemon itself: by account name (its fetch loop ended with an error),
    and under None the daemon as a whole (a blocked loop, an account history that cannot be written),
    one text joining them."""
    problems: dict[str | None, str] = {
        name: f"the fetch loop of {name} stopped with an internal error ({error}); it fetches nothing"
        " until maild is restarted"
        for name, error in scheduler.ended_loops().items()
    }
    whole = []
    if probe is not None and (lag := probe.problem(now)) is not None:
        whole.append(lag)
    if scheduler.history_error is not None:
        whole.append(f"the account history cannot be written to the archive: {scheduler.history_error}")
    if whole:
        problems[None] = "; ".join(whole)
    return problems
