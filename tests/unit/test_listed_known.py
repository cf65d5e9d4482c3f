"""``maild.pop3_uidls.listed_known`` (session 14) against a plain reading of its rules, with Hypothesis.

The function takes the usual case (a known message listed at its expected size) first, for the cost
of every POP3 poll; this checks that the short cut decides every listing as the rules written out
one by one do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from maild.model import IMAPKey, InventoryEntry, Location, MessageKey, POP3Key
from maild.pop3_uidls import listed_known

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)

KEYS: list[MessageKey] = [
    *(POP3Key(f"uidl-{n}") for n in range(6)),
    POP3Key("hdr:" + "ab" * 32),
    POP3Key("sha256:" + "cd" * 32),
    IMAPKey("INBOX", 7, 1),
]
SIZES = st.one_of(st.none(), st.integers(99, 101))


def reference(
    inventory: Sequence[InventoryEntry], known: Mapping[MessageKey, Location], back: Collection[MessageKey]
) -> tuple[list[MessageKey], list[MessageKey]]:
    """The rules of listed_known's docstring, one at a time, without a short cut."""
    other_size: list[MessageKey] = []
    relisted: list[MessageKey] = []
    for entry in inventory:
        key, loc = entry.key, known.get(entry.key)
        if loc is None or not isinstance(key, POP3Key) or key.exact_content:
            continue
        if loc.deleted_at is not None:
            relisted.append(key)
            continue
        if loc.gone_at is not None and key not in back:
            continue
        if entry.size_octets is None or loc.listed_size is None or entry.size_octets != loc.listed_size:
            other_size.append(key)
    return other_size, relisted


@st.composite
def listings(draw: st.DrawFn) -> tuple[list[InventoryEntry], dict[MessageKey, Location], set[MessageKey]]:
    listed = draw(st.lists(st.sampled_from(KEYS), unique=True))
    inventory = [InventoryEntry(key, draw(SIZES)) for key in listed]
    known: dict[MessageKey, Location] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        gone, deleted = draw(st.booleans()), draw(st.booleans())
        known[key] = Location(
            message=1,
            first_fetched_at=NOW,
            gone_at=NOW if gone or deleted else None,
            deleted_at=NOW if deleted else None,
            listed_size=draw(SIZES),
        )
    back = set(draw(st.lists(st.sampled_from(listed), unique=True))) if listed else set()
    return inventory, known, back


@given(listings())
def test_listed_known_decides_as_its_rules_one_by_one(
    case: tuple[list[InventoryEntry], dict[MessageKey, Location], set[MessageKey]],
) -> None:
    """Every listing, known map and set of returning keys gets the lists the rules give, in server order."""
    inventory, known, back = case
    found = listed_known(inventory, known, back)

    assert (found.other_size, found.relisted) == reference(inventory, known, back)
