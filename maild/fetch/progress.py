"""Live progress of one fetch cycle: what the inventory left to fetch, what is committed, how fast.

The cycle writes it (:meth:`CycleProgress.planned` after the inventory, :meth:`CycleProgress.committed`
after each durable batch); the daemon's status and metrics read it while the cycle runs. Only
committed messages count as done: a message retrieved but not yet committed is not safe yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from maild.model import StoreOutcome

log = structlog.get_logger("maild.fetch.progress")

#: Seconds between two ``fetch.progress`` log lines of one cycle (info level), so a long first fetch
#: shows in the journal without a line per batch.
PROGRESS_LOG_INTERVAL_S = 60.0


@dataclass(slots=True)
class CycleProgress:
    """How far one cycle is.

    Attributes:
        messages_total: messages the inventory left to retrieve, None before the inventory.
        octets_total: their size in octets as the server reported it; None before the inventory, and
            when the server did not report every planned message's size (an IMAP inventory is UIDs
            only: RFC822.SIZE is asked for only with ``max_message_size``).
        messages_done: messages committed to the archive in this cycle.
        octets_done: their size in octets.
        on_commit: called with each committed batch's outcome (the daemon's metrics count it at once).
        clock: monotonic seconds (injected by tests).
        started_s: when retrieval started (``clock()``), None before the inventory.
    """

    messages_total: int | None = None
    octets_total: int | None = None
    messages_done: int = 0
    octets_done: int = 0
    on_commit: Callable[[StoreOutcome], None] | None = None
    clock: Callable[[], float] = time.monotonic
    started_s: float | None = None
    _logged_s: float = field(default=0.0, repr=False)

    def planned(self, messages: int, octets: int | None) -> None:
        """Record what the inventory left to fetch: ``messages`` of ``octets`` octets in total (None:
        not every size is known)."""
        self.messages_total = messages
        self.octets_total = octets
        self.started_s = self._logged_s = self.clock()

    def committed(self, messages: int, octets: int, outcome: StoreOutcome) -> None:
        """Record a durable batch of ``messages`` retrieved messages of ``octets`` octets."""
        self.messages_done += messages
        self.octets_done += octets
        if self.on_commit is not None:
            self.on_commit(outcome)
        now = self.clock()
        if now - self._logged_s >= PROGRESS_LOG_INTERVAL_S:
            self._logged_s = now
            left = self.seconds_left()
            log.info(
                "fetch.progress",
                messages_done=self.messages_done,
                messages_total=self.messages_total,
                octets_done=self.octets_done,
                octets_total=self.octets_total,
                seconds_left=round(left) if left is not None else None,
            )

    def rate_octets_per_s(self) -> float | None:
        """Committed octets per second since retrieval started, or None before the first commit."""
        if self.started_s is None or not self.octets_done:
            return None
        elapsed = self.clock() - self.started_s
        return self.octets_done / elapsed if elapsed > 0 else None

    def seconds_left(self) -> float | None:
        """Estimated seconds until every planned message is committed, at the rate so far; None when
        nothing is committed yet or the total is unknown."""
        if self.started_s is None or not self.messages_done or self.messages_total is None:
            return None
        elapsed = self.clock() - self.started_s
        if self.octets_total and self.octets_done:
            return max(0.0, elapsed * (self.octets_total - self.octets_done) / self.octets_done)
        return max(0.0, elapsed * (self.messages_total - self.messages_done) / self.messages_done)
