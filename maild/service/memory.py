"""glibc allocator settings for the daemon and ``maild fetch``, applied in-process at start.

Fetching holds messages of 100 KB to many MB that are allocated in one thread (the POP3 worker, the
IMAP reader) and freed in another (after the archive's commit). With glibc's defaults these land in
the heap once its dynamic mmap threshold has risen (it follows the largest block freed, up to 32 MiB),
and freed message buffers leave the heap fragmented: the process keeps RSS it no longer uses
(docs/performance.md, "CPU and memory of the fetch path"). A fixed threshold sends every block of
:data:`MMAP_THRESHOLD_OCTETS` or more to its own mapping, returned to the kernel when freed; fixing it
also stops the dynamic adjustment. :data:`ARENA_MAX` bounds the arenas as the systemd unit's
``MALLOC_ARENA_MAX=2`` does, for runs outside the unit.

Only on glibc (``gnu_get_libc_version`` present); elsewhere nothing is done. A setting the
environment already makes (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_ARENA_MAX``, read by glibc at start)
is left as the administrator chose it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = [
    "ARENA_MAX",
    "MMAP_THRESHOLD_OCTETS",
    "TRIM_THRESHOLD_OCTETS",
    "release_free_heap",
    "tune_allocator",
]

MMAP_THRESHOLD_OCTETS = 256 * 1024
"""Blocks of at least this many octets get their own mapping (``mallopt(M_MMAP_THRESHOLD)``), handed
back to the kernel when freed instead of leaving a hole in a heap. Session 5 measured 256 and 512 KiB
alike (then a batch's bodies were held whole); since the spool (session 7) the heap's free chunks are
a larger share of the peak, and 256 KiB measured 1-2 MiB lower than 512 KiB in every row of one
account's fetch (docs/performance.md, "Session 9: memory of one account"), which keeps the IMAP
daemon under 60 MB. Its cost in session 9, up to 0.4 s more CPU per 2,000 POP3 messages in the
lead's alternating pairs ("Latest results"), came from POP3 buffers allocated afresh per read and per
reply; since the POP3 decoder reuses its receive buffer (session 10), 512 KiB measured no less CPU
than 256 KiB on the POP3 one-shot (2.53 against 2.43 s, three pairs) for half the page faults and
2 MB more peak RSS ("Session 10: the POP3 fetch's CPU"); 384 KiB put the IMAP daemon back at 60-61 MB."""

TRIM_THRESHOLD_OCTETS = 8 * 2**20
"""Free octets at the top of the heap before glibc returns them (``mallopt(M_TRIM_THRESHOLD)``).
Fixing the mmap threshold also stops glibc from raising this one with it (it stays at 128 KiB), and
the heap is then shrunk and regrown, page faults and all, many times a second while messages pass
through: measured on the 2,000-message POP3 fetch, 128 KiB cost the POP3 threads 0.1 s and the
run 0.2-0.4 s of CPU against 8 MiB, which holds 1-4 MB more at the peak."""

ARENA_MAX = 2
"""Most malloc arenas (``mallopt(M_ARENA_MAX)``): one for the event loop's thread, one shared by
the worker threads (the POP3 pool, SQLite's), instead of up to eight per core."""

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_ENV_NAMES = {
    _M_TRIM_THRESHOLD: "MALLOC_TRIM_THRESHOLD_",
    _M_MMAP_THRESHOLD: "MALLOC_MMAP_THRESHOLD_",
    _M_ARENA_MAX: "MALLOC_ARENA_MAX",
}


def _glibc() -> Any | None:
    """The C library as a ctypes handle when it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here: a few ms of import cost that the CLI's other commands skip

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a stub)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_heap() -> bool:
    """Give the free pages inside the malloc heaps back to the kernel (glibc ``malloc_trim(0)``).

    :data:`TRIM_THRESHOLD_OCTETS` only trims the top of a heap; the messages of a fetch (allocated in
    one thread, freed in another, 1 KB to 256 KiB each) leave free chunks all through it, which stay
    resident until reused: a daemon that has fetched 2,000 messages keeps 15-20 MB more than one that
    has not (docs/performance.md, "Session 6: memory of one account"). Called once when a process's
    last running fetch cycle ends after retrieving mail (:class:`maild.service.runner.CycleRunner`),
    in a worker thread: it walks every free chunk (about a millisecond here) and the pages it gives
    back are faulted in again only when the next fetch needs them.

    The POP3 sessions' idle receive buffers (:data:`maild.protocols.pop3.buffers.RECEIVE_BUFFERS`,
    mappings of their own) are dropped first, on every platform.

    Returns:
        True when glibc was asked (and returned memory or not); False elsewhere. Never raises.
    """
    from maild.protocols.pop3.buffers import RECEIVE_BUFFERS

    RECEIVE_BUFFERS.drain()
    libc = _glibc()
    if libc is None:
        return False
    import ctypes

    trim = libc.malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def tune_allocator() -> dict[str, int]:
    """Apply :data:`MMAP_THRESHOLD_OCTETS`, :data:`TRIM_THRESHOLD_OCTETS` and :data:`ARENA_MAX` with
    ``mallopt`` where glibc is the
    allocator; call once, before worker threads start (arenas already made are not merged).

    Returns:
        What was applied: the environment variable's name to the value set, e.g.
        ``{"MALLOC_MMAP_THRESHOLD_": 262144, "MALLOC_TRIM_THRESHOLD_": 8388608, "MALLOC_ARENA_MAX":
        2}``; empty when not on glibc. A
        setting present in the environment is left alone and not listed.

    Never raises: an allocator setting is an optimisation, not a condition for running.
    """
    libc = _glibc()
    if libc is None:
        return {}
    import ctypes

    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_OCTETS),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_OCTETS),
        (_M_ARENA_MAX, ARENA_MAX),
    )
    for param, value in settings:
        name = _ENV_NAMES[param]
        if name in os.environ:
            continue
        if mallopt(param, value) == 1:
            applied[name] = value
    return applied
