"""``maild.pop3_uidls.deletion_suspects`` and ``maild.fetch.pop3_check.unchecked`` (review of session 14).

Every POP3 deletion candidate not retrieved in the session must have been compared in it before
``DELE`` (a UIDL re-used at the very size of the archived message was deleted unarchived). The
suspects are computed before the cycle takes back the identities listed again; this checks, with
Hypothesis, that they hold every UIDL :func:`maild.policy.select_deletions` selects afterwards, and
nothing it never selects, at the retention cutoff -1 s, +0 and +1 s.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from maild.fetch.pop3_check import unchecked
from maild.model import IMAPKey, InventoryEntry, Location, MessageKey, POP3Key, Retention
from maild.policy import select_deletions
from maild.pop3_uidls import deletion_suspects

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
DAYS = 3

KEYS: list[MessageKey] = [
    *(POP3Key(f"uidl-{n}") for n in range(6)),
    POP3Key("hdr:" + "ab" * 32),
    POP3Key("sha256:" + "cd" * 32),
    IMAPKey("INBOX", 7, 1),
]
CUTOFF = NOW - timedelta(days=DAYS)
FIRST_FETCHED = st.sampled_from(
    [CUTOFF - timedelta(seconds=1), CUTOFF, CUTOFF + timedelta(seconds=1), NOW - timedelta(days=30), NOW]
)
RETENTIONS: list[tuple[Retention, int | None]] = [("keep", None), ("delete", None), ("delete-after", DAYS)]


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[Retention, int | None, list[InventoryEntry], dict[MessageKey, Location], set[MessageKey]]:
    retention, days = draw(st.sampled_from(RETENTIONS))
    listed = draw(st.lists(st.sampled_from(KEYS), unique=True))
    inventory = [InventoryEntry(key, 100) for key in listed]
    known: dict[MessageKey, Location] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        gone, deleted = draw(st.booleans()), draw(st.booleans())
        known[key] = Location(
            message=1,
            first_fetched_at=draw(FIRST_FETCHED),
            gone_at=NOW if gone or deleted else None,
            deleted_at=NOW if deleted else None,
            listed_size=100,
        )
    back = {key for key in listed if key in known and known[key].gone_at is not None and draw(st.booleans())}
    return retention, days, inventory, known, back


@given(cases())
def test_the_suspects_are_the_uidls_select_deletions_selects_once_the_returning_ones_are_taken_back(
    case: tuple[Retention, int | None, list[InventoryEntry], dict[MessageKey, Location], set[MessageKey]],
) -> None:
    """What deletion_suspects returns before update_presence is what select_deletions selects after it
    (gone_at cleared for ``back``), restricted to the UIDLs a check applies to, in server order."""
    retention, days, inventory, known, back = case
    after = {
        key: dataclasses.replace(loc, gone_at=None) if key in back else loc for key, loc in known.items()
    }
    selected = select_deletions(retention, days, inventory, after, NOW)
    uidls = [key for key in selected if isinstance(key, POP3Key) and not key.exact_content]

    assert deletion_suspects(retention, days, inventory, known, back, NOW) == uidls


def test_a_uidl_gone_and_not_back_is_no_suspect() -> None:
    """Recorded gone and not listed again as returning: select_deletions skips it, so does the check."""
    key = POP3Key("uidl-1")
    loc = Location(message=1, first_fetched_at=CUTOFF, gone_at=NOW, deleted_at=None, listed_size=100)
    inventory = [InventoryEntry(key, 100)]

    assert deletion_suspects("delete", None, inventory, {key: loc}, set(), NOW) == []
    assert deletion_suspects("delete", None, inventory, {key: loc}, {key}, NOW) == [key]


@given(
    st.lists(st.sampled_from(KEYS), unique=True),
    st.sets(st.sampled_from(KEYS)),
)
def test_unchecked_is_every_uidl_candidate_not_shown_in_the_session(
    candidates: list[MessageKey], shown: set[MessageKey]
) -> None:
    """Only full-content identities and IMAP keys need no check; every other key not shown stays."""
    expected = [
        key
        for key in candidates
        if key not in shown and not (isinstance(key, IMAPKey) or key == POP3Key("sha256:" + "cd" * 32))
    ]

    assert unchecked(candidates, shown) == expected
