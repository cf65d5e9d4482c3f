"""Pure decisions about POP3 UIDLs the archive knows: which of them, listed in this session, may name
another message than the archived one and need their header section (``TOP n 0``) or content
(``RETR``) compared before they are taken for it or deleted, and how many such checks one cycle makes.

RFC 1939 section 7 lets a server give the UIDL of a deleted message to a new one. LIST sizes catch a
re-use at another size (:func:`listed_known`, session 14); a re-use at the very same size is caught,
for deletions, by checking every deletion candidate not retrieved in the session
(:func:`deletion_suspects`, review of session 14). :mod:`maild.fetch.pop3_listed` and
:mod:`maild.fetch.pop3_check` do the I/O these decisions call for; the general deletion rules are
:mod:`maild.policy`'s. Split from :mod:`maild.policy` (623 lines) in the review of session 14, with no
change of behaviour.

Nothing here does I/O; the clock is a parameter. May import :mod:`maild.model` only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.model import InventoryEntry, Location, MessageKey, POP3Key, Retention


def deletion_suspects(
    retention: Retention,
    retention_days: int | None,
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    back: Collection[MessageKey],
    now: datetime,
) -> list[MessageKey]:
    """POP3 identities that may become deletion candidates in this cycle: each needs its header
    section compared (``TOP n 0``; without TOP the content, by ``RETR``) in this session before
    ``DELE``, whatever its LIST size (review of session 14).

    A UIDL re-used for a new message at the very size of the archived one is not caught by the LIST
    sizes (:func:`listed_known`); with ``"delete"``/``"delete-after"`` the new message was deleted
    unarchived once the archived one became due. Messages retrieved in this session are the
    archived ones by construction, but a known identity is never retrieved: every one listed here is
    checked (:mod:`maild.fetch.pop3_listed`) or not deleted in this cycle.

    Args:
        retention, retention_days: as for :func:`~maild.policy.select_deletions` (``"keep"``: none).
        inventory: what the server holds now.
        known: the account's recorded identities, as read before :func:`~maild.policy.presence_changes` was
            applied.
        back: keys recorded gone that are listed again (:func:`~maild.policy.presence_changes`): they become
            candidates once taken back.
        now: the current time (aware, UTC).

    Returns:
        POP3 keys (not full-content identities, not deleted by maild, present or in ``back``) that
        :func:`~maild.policy.select_deletions` would select once present, in server order.

    Raises:
        ValueError: ``"delete-after"`` without days (as :func:`~maild.policy.select_deletions`).
    """
    if retention == "keep":
        return []
    cutoff: datetime | None = None
    if retention == "delete-after":
        if retention_days is None:
            raise ValueError("delete-after needs retention_days")
        cutoff = now - timedelta(days=retention_days)
    out: list[MessageKey] = []
    for entry in inventory:
        key = entry.key
        loc = known.get(key)
        if loc is None or not isinstance(key, POP3Key) or key.exact_content or loc.deleted_at is not None:
            continue
        if loc.gone_at is not None and key not in back:
            continue
        if cutoff is None or loc.first_fetched_at <= cutoff:
            out.append(key)
    return out


MAX_POP3_HEADER_CHECKS = 200
"""Most known POP3 identities whose header section one cycle reads (``TOP n 0``) to compare with
the archived message (listed at another size, or due for deletion) on a server without PIPELINING,
where each ``TOP`` is a round trip; the others are not deleted (nor taken for the archived message)
in that cycle and wait for a later one. With PIPELINING see :data:`DELETION_CHECKS_PER_CYCLE`."""
DELETION_CHECKS_PER_CYCLE = 2_000
"""Most such header sections one cycle reads when the session pipelines (RFC 2449 section 6.6):
windows of ``TOP n 0`` of 64 (:data:`HEADER_WINDOW_OCTETS` / 1 MiB; the maildrop's 200 before
session 15's bound review), one round trip each, so 32 round trips; a backlog of 10,000 due messages
(an account switched from ``"keep"`` to ``"delete"``) drains in 5 polls, not 50 (session 15)."""
DELETION_CHECK_OCTETS = 32 * 2**20
"""Most octets the ``TOP n 0`` replies of one cycle's checks may add up to, 32 MiB (headers of about
3 kB: the 2,000 need 6 MiB); checked after each window, so the last window may pass it by at most
one window of replies. The rest wait for a later cycle; the first window is always read."""


HEADER_WINDOW_OCTETS = 64 * 2**20
"""Cap in octets on the ``TOP n 0`` replies one window holds at once (default 64 MiB): a window sends
at most ``HEADER_WINDOW_OCTETS // max_octets`` commands (at least one), each reply capped at
``max_octets`` while it arrives, so whatever a server sends, one window never holds more (plus the
decoder's receive buffer: one reply being read and one read of
:data:`maild.protocols.pop3.session.READ_CHUNK_OCTETS`). With the checks' 1 MiB header sections
(:data:`maild.fetch.pop3_check.MAX_HEADER_SECTION_OCTETS`) 64 commands a round trip, and the checks
ask the maildrop for 64 keys at a time (the replies of one call are held together until compared);
with the 64 KiB of a failed message's headers the maildrop's whole window of 200. Before session 15's bound
review one window held up to 200 replies of 100 MiB."""


def header_window(window: int, max_octets: int) -> int:
    """Commands of one ``TOP n 0`` window: ``window``, fewer where ``window`` replies of
    ``max_octets`` octets each could exceed :data:`HEADER_WINDOW_OCTETS`; at least 1."""
    return max(1, min(window, HEADER_WINDOW_OCTETS // max(max_octets, 1)))


def header_check_bound(pipelining: bool) -> int:
    """How many header sections (``TOP n 0``) one cycle's checks read at most.

    Args:
        pipelining: the session sends commands in windows (one round trip per window).

    Returns:
        :data:`DELETION_CHECKS_PER_CYCLE` with pipelining, else :data:`MAX_POP3_HEADER_CHECKS`.
    """
    return DELETION_CHECKS_PER_CYCLE if pipelining else MAX_POP3_HEADER_CHECKS
MAX_POP3_RETR_CHECKS = 20
"""Most messages listed at another size than the archived one (:func:`listed_known`) that
one POP3 cycle downloads (``RETR``) to compare by SHA-256 because their header section could not be
read (``TOP`` not offered or refused); the others wait for later cycles. Each is downloaded once: a
match records the server's size, so that later cycles compare by LIST alone (session 14)."""
MAX_POP3_RETR_CHECK_OCTETS = 64 * 2**20
"""Most octets (by LIST size) those downloads may add up to in one cycle, 64 MiB; the first one is
always made, whatever its size, so that a large message does not wait for ever."""


def pop3_sizes_differ(
    candidates: Sequence[MessageKey],
    inventory: Sequence[InventoryEntry],
    expected: Mapping[MessageKey, int],
    retrieved: Collection[MessageKey],
) -> list[MessageKey]:
    """POP3 deletion candidates whose server size is not the one the archive expects.

    A UIDL names the archived message only as long as the server does not hand it to another one: a
    server re-using UIDLs, or an account pointed at another server (a changed ``host`` or
    ``username``) whose UIDLs collide with the old one's. Before session 13 such a message was taken
    for the archived one, never retrieved, and with ``retention = "delete"`` deleted unarchived.
    These keys need their header section compared (``TOP n 0``) before they may be deleted.

    Args:
        candidates: from :func:`~maild.policy.select_deletions`, in server order.
        inventory: what the server holds now; POP3 sizes in octets from LIST (RFC 1939 section 5).
        expected: the size in octets the server should list for each key (the archived octets', or
            the server's own recorded earlier for the same header section).
        retrieved: keys retrieved in this session (they are the archived message by construction).

    Returns:
        Those candidates (POP3, not full-content identities, not retrieved in this session) whose
        listed size differs from ``expected`` or is missing, in server order.
    """
    listed = {entry.key: entry.size_octets for entry in inventory}
    out: list[MessageKey] = []
    for key in candidates:
        if not isinstance(key, POP3Key) or key.exact_content or key in retrieved:
            continue
        size = listed.get(key)
        if size is None or size != expected.get(key):
            out.append(key)
    return out


@dataclass(frozen=True, slots=True)
class ListedKnown:
    """Known POP3 identities whose listing asks for more than taking them for the archived message.

    Attributes:
        other_size: linked to an archived message and listed at another size than the archive
            expects (:attr:`Location.listed_size <maild.model.Location.listed_size>`): each may name
            another message now, and needs its header section or content compared before it is taken
            for the archived one (:mod:`maild.fetch.pop3_listed`).
        relisted: maild deleted them on the server and the server lists them again: other messages,
            to archive as new ones.
    """

    other_size: list[MessageKey]
    relisted: list[MessageKey]


def listed_known(
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    back: Collection[MessageKey],
) -> ListedKnown:
    """Which known POP3 identities of the listing may name another message than the archived one.

    A UIDL names the archived message only as long as the server does not give it to another one
    (RFC 1939 section 7 lets a server re-use the UIDL of a deleted message): another client deleted
    the message and the server re-used its UIDL between two polls (never seen gone; session 14: with
    ``retention = "keep"`` the new message was never archived), the UIDL left and came back (QA of
    session 13), or the account now points at another server whose UIDLs collide with the old one's.

    ``other_size``: keys recorded present, and keys of ``back`` (recorded gone, listed again), whose
    LIST size is not the expected one. A re-use at the very same size is not caught here (it would
    need every header section read in every cycle).

    ``relisted``: after ``+OK`` to QUIT the server has removed the message (RFC 1939 section 6), so
    a UIDL maild deleted and the server lists again names another message. Until session 14 it was
    left on the server, never archived (:func:`~maild.policy.reappeared`); now its UIDL is freed and the cycle
    archives it as a new message. Were the server not to have deleted it after all, the archive
    already holds its octets and links the UIDL to them again.

    Exempt from both: full-content identities (``"sha256:"``, the octets themselves) and IMAP keys
    (:mod:`maild.fetch.resync`). One pass over the listing, the usual case first (a known message
    listed at its expected size costs one look-up and two comparisons): every POP3 poll runs it
    for every message on the server.

    Args:
        inventory: what the server holds now; POP3 sizes in octets from LIST (RFC 1939 section 5).
        known: the account's recorded server identities (:meth:`Store.locations`, with their
            ``listed_size``).
        back: keys recorded gone that are listed again (:func:`~maild.policy.presence_changes`).

    Returns:
        Both lists, in server order. A key whose listed or expected size is unknown is in
        ``other_size``.
    """
    other_size: list[MessageKey] = []
    relisted: list[MessageKey] = []
    for entry in inventory:
        loc = known.get(entry.key)
        if loc is None:
            continue
        size = entry.size_octets
        deleted = loc.deleted_at is not None
        if size == loc.listed_size and size is not None and not deleted:
            continue  # the usual case
        key = entry.key
        if not isinstance(key, POP3Key) or key.exact_content:
            continue
        if deleted:
            relisted.append(key)
        elif loc.gone_at is None or key in back:
            other_size.append(key)
    return ListedKnown(other_size, relisted)
