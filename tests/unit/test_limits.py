"""The shared limits of one process (maild.limits): memory budget, transfer slots, connections."""

from __future__ import annotations

from maild.limits import batch_octets_share, connection_limit, transfer_share


def test_the_memory_budget_is_split_among_transferring_cycles() -> None:
    """Each of n transferring cycles gets budget / (2 n) octets, capped by its own limit, floored at the minimum."""
    mib = 2**20
    assert batch_octets_share(32 * mib, 1, 32 * mib, mib // 4) == 16 * mib
    assert batch_octets_share(32 * mib, 4, 32 * mib, mib // 4) == 4 * mib
    assert batch_octets_share(mib, 1, 32 * mib, mib // 4) == mib
    assert batch_octets_share(32 * mib, 1000, 32 * mib, mib // 4) == mib // 4
    assert batch_octets_share(1000, 1000, 32 * mib, mib // 4) == 1000


def test_idle_connections_leave_one_connection_to_the_cycles() -> None:
    """Cycles may use every connection of a host; IDLE connections all but one."""
    assert connection_limit(8, idle=False) == 8
    assert connection_limit(8, idle=True) == 7
    assert connection_limit(1, idle=True) == 0


def test_transfer_share_is_all_slots_but_one() -> None:
    """One host may hold all transfer slots but one (at least one)."""
    assert [transfer_share(n) for n in (1, 2, 3, 4, 8)] == [1, 1, 2, 3, 7]
