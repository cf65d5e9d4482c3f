"""Before a POP3 cycle deletes: does each known UIDL still name the archived message?

The archive links a POP3 UIDL (RFC 1939 section 7) to the message first retrieved under it. A server
that re-uses UIDLs, or an account pointed at another server (``host`` or ``username`` changed) whose
UIDLs collide with the old one's, lists another message under a known UIDL; it was taken for the
archived one, never retrieved, and with ``retention = "delete"``/``"delete-after"`` deleted
unarchived (QA of session 13). Now each deletion candidate not retrieved in this session must be
listed with the size the archive expects (:func:`maild.pop3_uidls.pop3_sizes_differ`); one that is not
has its header section read (``TOP n 0``, at most :data:`maild.pop3_uidls.MAX_POP3_HEADER_CHECKS` per
cycle) and compared with the archived message's: equal, the server's size is recorded
(``locations.server_size``) and it may be deleted; different (or unreadable), it stays on the server,
not retrieved (its UIDL is known), with a warning. The IMAP counterpart is
:func:`maild.fetch.resync.verify_uid_map`.

May import: :mod:`maild.policy`, :mod:`maild.message`, :mod:`maild.model`, the archive and the
protocols' base interface.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import structlog

from maild import pop3_uidls
from maild.archive.store import Store
from maild.message import same_header_section
from maild.model import InventoryEntry, MessageKey, POP3Key
from maild.protocols.base import Maildrop

log = structlog.get_logger("maild.fetch.pop3_check")

MAX_HEADER_SECTION_OCTETS = 2**20
"""Cap in octets on one ``TOP n 0`` reply of the checks (default 1 MiB; this and
:mod:`maild.fetch.pop3_listed`), enforced while the reply arrives: a larger reply is not a header
section, reading stops there and the session is broken (no ``QUIT``, RFC 1939 section 6), nothing is
deleted, and the cycle fails with one line naming the reply's size ("server answered TOP n 0 with
more than 1048576 octets"). 1 MiB is Exim's ``header_maxsize`` default, the largest header section
a common MTA accepts (Postfix keeps 100 KiB, ``header_size_limit``; sendmail 32 KiB,
``MaxHeadersLength``; RFC 5322 sets no total), four times the 256 KiB the archive's header summary
reads (:data:`maild.message.MAX_HEADER_OCTETS`), so spam with thousands of ``Received`` lines is
still compared (session 13's review: a cap below real header sections failed every cycle of the
account). Until session 15's bound review it was 100 MiB (``TOP_REPLY_OCTETS``), and one pipelined
window of 200 could hold 200 such replies; one window now holds at most
:data:`maild.pop3_uidls.HEADER_WINDOW_OCTETS`: the checks ask for :func:`check_window` keys at
a time."""

def check_window() -> int:
    """Keys whose header sections one call of the checks reads and holds until compared: the
    maildrop's window (:data:`maild.pop3_uidls.MAX_POP3_HEADER_CHECKS`, 200), fewer where their
    replies of up to :data:`MAX_HEADER_SECTION_OCTETS` could pass
    :data:`maild.pop3_uidls.HEADER_WINDOW_OCTETS`: 64 by default."""
    return pop3_uidls.header_window(pop3_uidls.MAX_POP3_HEADER_CHECKS, MAX_HEADER_SECTION_OCTETS)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`verify_candidates` found.

    Attributes:
        deletable: the candidates that may be deleted.
        other: left on the server: their header section was read and is not the archived one's (or
            the archive has no record of them).
        unread: left on the server: their header section could not be read (``TOP`` answered
            ``-ERR``, or not offered in CAPA); checked again in later cycles.
        waiting: not checked in this cycle, past :data:`maild.pop3_uidls.MAX_POP3_HEADER_CHECKS`;
            checked in a later one.
    """

    deletable: set[MessageKey]
    other: list[MessageKey] = field(default_factory=list)
    unread: list[MessageKey] = field(default_factory=list)
    waiting: list[MessageKey] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """The cycle's warnings for the candidates left on the server, in words."""
        out = [warning(len(self.other))] if self.other else []
        if self.unread:
            out.append(
                f"{len(self.unread)} messages to delete are listed at another size than the archived one"
                " and their header section could not be read (the server refused TOP or does not offer"
                " it): left on the server, not deleted"
            )
        if self.waiting:
            out.append(waiting_warning(len(self.waiting)))
        return out


def warning(count: int) -> str:
    """The cycle's warning for ``count`` candidates left on the server by the check."""
    return (
        f"{count} messages on the server are listed under a UIDL maild knows but differ from the archived"
        " message in size and header section (a server re-using UIDLs, or the account now pointed at"
        " another server?): left on the server, neither retrieved nor deleted"
    )


def waiting_warning(count: int) -> str:
    """The cycle's warning for ``count`` candidates not checked in this cycle because the check's
    limit (:func:`maild.pop3_uidls.header_check_bound`) was reached: not deleted yet, not suspect."""
    return (
        f"{count} messages to delete wait for their header check in a later cycle (at most"
        f" {pop3_uidls.MAX_POP3_HEADER_CHECKS} per cycle, {pop3_uidls.DELETION_CHECKS_PER_CYCLE} with"
        " PIPELINING): not deleted yet"
    )


def unchecked(candidates: Sequence[MessageKey], shown: Collection[MessageKey]) -> list[MessageKey]:
    """The POP3 deletion candidates this session did not show to be the archived message: not
    deleted in this cycle, whatever their LIST size (review of session 14: a UIDL re-used at the very
    size of the archived message was deleted unarchived).

    Args:
        candidates: from :func:`maild.policy.select_deletions`, in server order.
        shown: :func:`maild.fetch.pop3_listed.shown_in_session`.

    Returns:
        Candidates (POP3 UIDLs, not full-content identities) not in ``shown``, in server order: past
        the check's bounds (:data:`maild.pop3_uidls.MAX_POP3_HEADER_CHECKS`,
        :data:`maild.pop3_uidls.MAX_POP3_RETR_CHECKS`), unread, or due since the cycle began.
    """
    return [k for k in candidates if isinstance(k, POP3Key) and not k.exact_content and k not in shown]


async def verify_candidates(
    account: str,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    candidates: Sequence[MessageKey],
    retrieved: Collection[MessageKey],
) -> Verdict:
    """Check the POP3 deletion candidates against the archive (see the module).

    Args:
        account: the account's name.
        store: the open archive.
        maildrop: the cycle's open POP3 session (``TOP`` goes out in it, before any ``DELE``).
        inventory: this session's inventory (sizes from LIST, in octets).
        candidates: from :func:`maild.policy.select_deletions`.
        retrieved: keys retrieved in this session.

    Returns:
        The candidates that may be deleted and those left on the server, by why (:class:`Verdict`).

    Raises:
        StoreError: the archive failed (nothing is deleted).
        NetworkTimeout, ConnectError, ProtocolError: ``TOP`` broke the session (nothing is deleted:
            no QUIT follows).
    """
    unchecked = [
        k for k in candidates if isinstance(k, POP3Key) and not k.exact_content and k not in retrieved
    ]
    if not unchecked:  # the usual "delete" cycle: everything was retrieved in this session
        return Verdict(set(candidates))
    expected = await store.archived_sizes(account, unchecked)
    expected_sizes = {k: v[1] for k, v in expected.items()}
    odd = pop3_uidls.pop3_sizes_differ(unchecked, inventory, expected_sizes, retrieved)
    if not odd:
        return Verdict(set(candidates))
    known = [key for key in odd if key in expected]
    checked, waiting = known[: pop3_uidls.MAX_POP3_HEADER_CHECKS], known[pop3_uidls.MAX_POP3_HEADER_CHECKS :]
    listed = {entry.key: entry.size_octets for entry in inventory}
    matching: set[MessageKey] = set()
    topped: set[MessageKey] = set()
    step = check_window()
    for start in range(0, len(checked), step):  # one window's replies held at a time
        chunk = checked[start : start + step]
        headers = await maildrop.header_fields(chunk, max_octets=MAX_HEADER_SECTION_OCTETS)
        raws = await store.raw_messages([expected[key][0] for key in chunk if key in headers])
        topped.update(headers)
        matching.update(
            key
            for key in chunk
            if key in headers and same_header_section(raws.get(expected[key][0], b""), headers[key])
        )
        del headers, raws
    sizes = {key: size for key in matching if (size := listed.get(key)) is not None}
    await store.record_pop3_server_sizes(account, sizes)
    later = set(waiting)
    unread = [key for key in checked if key not in topped]
    other = [key for key in odd if key not in matching and key not in later and key in topped]
    other += [key for key in odd if key not in expected]
    if other or unread:
        log.warning(
            "fetch.pop3.uidl-names-another-message",
            messages=len(other),
            unread=len(unread),
            checked=len(checked),
        )
    return Verdict(set(candidates) - set(other) - set(unread) - later, other, unread, waiting)
