"""How the shared limits of one maild process are split: transfer slots, the memory budget of the
batches, connections per host. Pure numbers and functions; :class:`maild.service.budget.Budgets` counts
against them.

Split from :mod:`maild.policy` (session 6): that module decides about messages and accounts (what to
retrieve, what may be deleted, when to try again); this one about resources shared by every cycle.
Imports nothing.
"""

from __future__ import annotations

MAX_TRANSFERS = 4
"""Cycles of one process that retrieve messages at the same time; more wait, logged in, after
their inventory (a cycle with nothing to retrieve never waits). Logins, listings and no-op cycles
run as concurrently as ``max_concurrent_fetches`` allows; the transfers, which hold the memory, do
not need to: four streams already keep two cores busy, on loopback and at 50 ms round-trip time
(README "Performance"), and every message held counts against :data:`MEMORY_BUDGET_OCTETS` split
over the cycles transferring, not over every cycle logged in. Counted by
:class:`maild.service.budget.Budgets`."""


def transfer_share(max_transfers: int) -> int:
    """The most transfer slots the cycles of one server host may hold at once: all but one (at
    least one), so that a host whose transfers crawl never holds every slot and accounts on other
    hosts still transfer, while an office whose accounts all live at one provider keeps most of its
    parallelism (3 of the default 4)."""
    return max(1, max_transfers - 1)


MEMORY_BUDGET_OCTETS = 8 * 2**20
"""About how many message octets all running cycles together hold in memory in batches, in octets
(a message of at least ``maild.spool.SPOOL_THRESHOLD_OCTETS`` waits in a spool file and counts only
its head here; its octets count against ``maild.spool.SPOOL_MAX_OCTETS`` instead) (8 MiB:
one account commits 4 MiB batches; was 32 MiB before issue 19, 16 MiB in session 4; measured in
docs/performance.md: 8 MiB saves 6-8 MB of peak RSS for one account, 28 MB for 50, at no CPU cost
the benchmark resolves; a POP3 RETR window keeps its own floor, which costs no memory). Session 6
measured 50 accounts with 8 and 16 MiB and with 2 or 3 transfer slots: the commits went from 540 to
271 and the CPU did not move beyond the noise (most batches are set by a large message, not by this
budget), so it stays 8 MiB (docs/performance.md, "Session 6: fifty accounts").

A cycle commits one batch while the adapter reads the next (see :func:`maild.fetch.cycle.fetch_cycle`),
so it holds at most two batches at a time, plus what the adapter has read and not handed over (POP3:
one part of about 1 MiB of a RETR window, ``protocols.pop3.retrieval.HAND_OFF_OCTETS``; the rest of
the window is in flight on the connection; IMAP: up to a window, the batch limit divided by
``WINDOW_SHARE``, before reading pauses). Not counted here, and bounded on their own: the receive
buffers (POP3: one of about 1.3 MiB per transferring cycle, borrowed for each receive from a pool
that keeps at most two idle ones of at most 2 MiB, ``protocols.pop3.buffers``,
emptied when the last running cycle ends). A cycle's batch limit is this budget divided by twice
the number of cycles retrieving when each batch begins, between :data:`MIN_BATCH_OCTETS` and the
cycle's own batch limit (:func:`batch_octets_share`)."""
MIN_BATCH_OCTETS = 256 * 2**10
"""The smallest batch limit a cycle gets from :func:`batch_octets_share`, in octets."""


def batch_octets_share(limit: int, transferring: int, memory_octets: int, min_octets: int) -> int:
    """The batch limit in octets for one cycle now: its share of the memory budget.

    A cycle holds up to two batches (one committing while the next is retrieved), so each of the
    ``transferring`` cycles gets ``memory_octets / (2 * transferring)``, never more than ``limit``
    and never less than ``min_octets`` (or ``limit`` if that is smaller).
    """
    share = memory_octets // (2 * max(1, transferring))
    return max(min(min_octets, limit), min(limit, share))


def connection_limit(per_host: int, *, idle: bool) -> int:
    """How many connections to one host may be open when one more is to be made.

    Fetch cycles (and the sessions kept between them) may use all ``per_host``
    (``max_connections_per_host``). IDLE connections only ``per_host - 1``: they stay open for
    hours, so one connection is always left to fetch cycles, which keeps the cycles of an account
    from waiting for its own IDLE connection (with ``per_host = 1`` IDLE is not used: the account
    polls).
    """
    return per_host - 1 if idle else per_host
