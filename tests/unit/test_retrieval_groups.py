"""How a fetch cycle splits what it retrieves into groups that each fill one commit batch."""

from __future__ import annotations

from maild.fetch import retrieval_groups
from maild.model import MessageKey, POP3Key


def k(n: int) -> POP3Key:
    return POP3Key(f"uidl-{n}")


def test_groups_respect_message_count_and_octets() -> None:
    """Groups close at the batch's message count or before its octet limit would be passed, in order."""
    keys = [k(n) for n in range(1, 8)]
    sizes: dict[MessageKey, int] = dict.fromkeys(keys, 40)

    assert retrieval_groups(keys, sizes, 3, 100) == [[k(1), k(2)], [k(3), k(4)], [k(5), k(6)], [k(7)]]
    assert retrieval_groups(keys, sizes, 3, 1000) == [keys[0:3], keys[3:6], keys[6:]]


def test_large_message_gets_a_group_of_its_own() -> None:
    """A message above the octet limit is retrieved alone, so nothing else is held while it arrives."""
    sizes: dict[MessageKey, int] = {k(1): 10, k(2): 500, k(3): 10}

    assert retrieval_groups([k(1), k(2), k(3)], sizes, 200, 100) == [[k(1)], [k(2)], [k(3)]]


def test_unknown_sizes_count_as_zero_and_nothing_gives_no_groups() -> None:
    """Keys without a reported size group by count only; no keys give no groups."""
    assert retrieval_groups([k(1), k(2), k(3)], {}, 2, 1) == [[k(1), k(2)], [k(3)]]
    assert retrieval_groups([], {}, 2, 1) == []
