"""Receive buffers of the POP3 sessions, kept between receives for reuse: :data:`RECEIVE_BUFFERS`.

A :class:`~maild.protocols.pop3.decoder.ReplyDecoder` reads the server's octets straight into its
receive buffer. A RETR body that is held in memory (below the spool's threshold,
:data:`maild.spool.SPOOL_THRESHOLD_OCTETS`) is received whole into it, so the buffer of a session
that retrieves grows to about that threshold plus one read (:data:`.session.READ_CHUNK_OCTETS`):
1.25-1.5 MiB. Allocated fresh for every receive (as it was until session 10), each such buffer
is a fresh mapping (glibc maps blocks of :data:`maild.service.memory.MMAP_THRESHOLD_OCTETS` or more
on their own), which the kernel zeroes and maps in page by page as the octets arrive: 4 KiB minor
faults, most of the 177,000 of a 2,000-message fetch (docs/performance.md, "Session 10: the POP3
fetch's CPU"). :meth:`POP3Session.receive <.session.POP3Session.receive>` borrows a buffer here for
each call and gives it back at the end, so its pages stay mapped from one receive to the next,
also across sessions and accounts, and idle sessions hold none.

Memory: the pool keeps at most :data:`POOLED_BUFFERS` idle buffers of at most
:data:`POOLED_BUFFER_MAX_OCTETS` each (4 MiB together at the very most; one account's fetch keeps
one of about 1.3 MiB); :func:`maild.service.memory.release_free_heap` empties it when a process's
last running fetch cycle ends. Thread-safe: the POP3 worker threads share it.
"""

from __future__ import annotations

import threading

__all__ = ["POOLED_BUFFERS", "POOLED_BUFFER_MAX_OCTETS", "RECEIVE_BUFFERS", "BufferPool"]

POOLED_BUFFERS = 2
"""Most idle receive buffers kept (2). One account's fetch uses one; fifty accounts transfer four
at a time (:data:`maild.limits.MAX_TRANSFERS`), whose receives rarely overlap (one GIL, two cores):
with 2 their fetch took as few page faults as with 4 (204k and 191k, against 641k with none) and
2 MB less peak RSS (docs/performance.md, "Session 10: the POP3 fetch's CPU")."""

POOLED_BUFFER_MAX_OCTETS = 2 * 2**20
"""Largest receive buffer kept for reuse, in octets (2 MiB); a larger one (a session without a
spool receives a whole large message into it) is dropped when given back."""


class BufferPool:
    """A bounded stack of idle ``bytearray`` receive buffers (most recently used first: its pages are
    the likeliest to be resident).

    Args:
        count: most buffers kept.
        max_octets: largest buffer kept, in octets.
    """

    def __init__(self, count: int, max_octets: int) -> None:
        self._count = count
        self._max_octets = max_octets
        self._idle: list[bytearray] = []
        self._lock = threading.Lock()

    @property
    def held_octets(self) -> int:
        """Octets held by the idle buffers (what the pool keeps in memory beyond the sessions)."""
        with self._lock:
            return sum(len(b) for b in self._idle)

    def take(self) -> bytearray:
        """An idle buffer, or a new empty one (it grows as the decoder needs); its contents are
        a previous session's octets, never to be read: the decoder writes before it reads."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return bytearray()

    def give(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for the next :meth:`take` if there is room and it is not too large; the
        caller must hold no reference or view to it any more."""
        if not buffer or len(buffer) > self._max_octets:
            return
        with self._lock:
            if len(self._idle) < self._count:
                self._idle.append(buffer)

    def drain(self) -> int:
        """Drop every idle buffer; return the octets they held."""
        with self._lock:
            idle, self._idle = self._idle, []
        return sum(len(b) for b in idle)


RECEIVE_BUFFERS = BufferPool(POOLED_BUFFERS, POOLED_BUFFER_MAX_OCTETS)
"""The process's pool, shared by every POP3 session."""
