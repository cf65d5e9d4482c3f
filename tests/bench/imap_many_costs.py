"""One sample of two IMAP costs that grow with a mailbox or the number of mailboxes (session 15).

    python3 -m tests.bench.imap_many_costs vanished   # VANISHED (EARLIER): 20,000 known UIDs, 10,000 ranges
    python3 -m tests.bench.imap_many_costs choose     # choose_mailboxes: 10,000 listed names, 5 polls

Run it under GNU time (``/usr/bin/time -f "%U %S"``) with ``PYTHONPATH`` set to each tree in turn,
alternating trees. A tree without ``listing.vanished_among`` (before session 15) runs what its
``status.select_changes`` did: every known UID tested against every range. Figures in
docs/performance.md ("Session 15: QA of the IMAP extensions"). Not collected by pytest.
"""

from __future__ import annotations

import sys

from maild.protocols.imap import listing

#: Messages in the mailbox at its record; every other one is expunged since.
KNOWN_UIDS = 20_000
#: Listed mailboxes for ``choose``, and how many polls choose among them.
LISTED_MAILBOXES = 10_000
POLLS = 5


def vanished() -> None:
    """The UIDs of a known set named by one VANISHED (EARLIER) line of 10,000 single UIDs."""
    known = frozenset(range(1, KNOWN_UIDS + 1))
    line = b"VANISHED (EARLIER) " + b",".join(b"%d" % uid for uid in range(2, KNOWN_UIDS + 1, 2))
    if hasattr(listing, "vanished_among"):
        gone = listing.vanished_among([line], known)
    else:  # the code of status.select_changes before session 15
        ranges = listing.parse_vanished([line])
        gone = {uid for uid in known if any(low <= uid <= high for low, high in ranges)}
    assert len(gone) == KNOWN_UIDS // 2


def choose() -> None:
    """``mailboxes = "all"``'s choice among LISTED_MAILBOXES names, POLLS times."""
    boxes = [listing.ListedMailbox(f"Kunden/Kunde {i:05d}", "/", frozenset()) for i in range(LISTED_MAILBOXES)]
    for _ in range(POLLS):
        assert len(listing.choose_mailboxes(boxes)) == LISTED_MAILBOXES


def main(argv: list[str]) -> int:
    """Run the case named by ``argv[0]`` (``vanished`` or ``choose``) once."""
    cases = {"vanished": vanished, "choose": choose}
    if len(argv) != 1 or argv[0] not in cases:
        print(__doc__, file=sys.stderr)
        return 2
    cases[argv[0]]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
