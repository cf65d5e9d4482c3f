"""The progress floor of a transfer: a server that sends, but too slowly, is ended and named.

The inactivity limit (``timeout_s``) never fires while bytes keep coming, so a server sending one
octet per second could hold a transfer slot for days. :class:`ProgressFloor` measures the octets a
transfer receives in windows of :data:`PROGRESS_WINDOW_S` seconds while it waits for data; a window
below ``min_rate_octets_per_s`` ends the transfer ("server too slow: 1 B/s"). A message of ``S``
octets therefore gets at most about ``PROGRESS_WINDOW_S + S / min_rate_octets_per_s`` seconds.

May import: the standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Default floor on a transfer's receive rate, in octets per second (the account's
#: ``min_transfer_rate``); a slow mobile link still manages a hundred times this.
MIN_RATE_OCTETS_PER_S = 1024
#: Length of one measuring window, in seconds.
PROGRESS_WINDOW_S = 30.0


class ProgressFloor:
    """Octets received by one transfer, checked against a floor once per window of waiting time.

    Only time spent waiting for data counts (between :meth:`go` and :meth:`stop`): a consumer busy
    committing, with reading paused meanwhile, does not make the server look slow. A new floor is
    waiting already (as POP3's blocking reads always are).

    Args:
        min_rate_octets_per_s: the floor in octets per second.
        window_s: the window in seconds of waiting time.
        clock: monotonic seconds (default :func:`time.monotonic`; the event loop's time for IMAP).
    """

    def __init__(
        self,
        min_rate_octets_per_s: int = MIN_RATE_OCTETS_PER_S,
        window_s: float = PROGRESS_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_rate = min_rate_octets_per_s
        self.window_s = window_s
        self._clock = clock
        self._waited_s = 0.0
        self._since: float | None = clock()
        self._octets = 0

    def go(self, total_octets: int | None = None) -> None:
        """Waiting for data starts now (``total_octets``: the running total, if this is the first wait)."""
        if self._since is None:
            self._since = self._clock()
        if total_octets is not None and self._waited_s == 0.0:
            self._octets = total_octets

    def stop(self) -> None:
        """Waiting for data stops now (the time until the next :meth:`go` does not count)."""
        if self._since is not None:
            self._waited_s += self._clock() - self._since
            self._since = None

    def _elapsed(self) -> float:
        return self._waited_s + (self._clock() - self._since if self._since is not None else 0.0)

    def remaining_s(self) -> float:
        """Seconds of waiting until the current window ends (0 when it has)."""
        return max(0.0, self.window_s - self._elapsed())

    def check(self, total_octets: int) -> str | None:
        """At a window's end: None and a new window when ``total_octets`` grew fast enough since the
        window began, else the reason to end the transfer (``"server too slow: 12 B/s over 30 s,
        the floor is 1024 B/s"``). Before the window ends: None.

        Args:
            total_octets: the transfer's running total of octets received.
        """
        elapsed = self._elapsed()
        if elapsed < self.window_s:
            return None
        rate = (total_octets - self._octets) / elapsed
        if rate < self.min_rate:
            return f"server too slow: {rate:.0f} B/s over {elapsed:.0f} s, the floor is {self.min_rate} B/s"
        self._waited_s = 0.0
        if self._since is not None:
            self._since = self._clock()
        self._octets = total_octets
        return None
