"""Every POP3 cycle: does each known UIDL listed at another size still name the archived message?

RFC 1939 section 7 lets a server give the UIDL of a deleted message to a new one. When another client
deletes a message and the server re-uses its UIDL before maild's next poll, maild never sees the UIDL
gone and took the new message for the archived one: with ``retention = "keep"`` it was never archived
(session 14; with ``"delete"``/``"delete-after"`` session 13's :mod:`maild.fetch.pop3_check` only kept
it from being deleted). The same holds for a UIDL that left and came back, and for an account pointed
at another server whose UIDLs collide with the old one's. And a UIDL maild deleted itself (after
``+OK`` to QUIT) that the server lists again names another message without a doubt: it was left on
the server, never archived; now it is freed at once (:func:`maild.pop3_uidls.listed_known`).

So every POP3 cycle compares the LIST size of each known identity (LIST is sent every cycle anyway:
no round trip is added) with the size the archive expects for it
(:func:`maild.pop3_uidls.listed_known`). Only a difference costs round trips, and only after the cycle's
retrieval committed (a check that breaks the session then costs that cycle's deletions, never its
new mail):

1. :func:`check_headers`: ``TOP n 0`` of at most
   :data:`maild.pop3_uidls.MAX_POP3_HEADER_CHECKS` of them (with PIPELINING
   :data:`maild.pop3_uidls.DELETION_CHECKS_PER_CYCLE` in windows of 64,
   :func:`~maild.fetch.pop3_check.check_window`, and :data:`maild.pop3_uidls.DELETION_CHECK_OCTETS`
   of replies), compared with the archived message's header
   section (:func:`maild.message.same_header_section`). Equal: the server lists this message at
   another size (an LF-stored maildrop counts one octet less per line than RETR sends); that size is
   recorded (``locations.server_size``) and later cycles compare with it. Different: another message;
   the UIDL is freed (:meth:`Store.release_pop3_keys`: the archived message and the account's link to
   it stay, recorded gone under a name no server lists) and the cycle retrieves the new message
   (:attr:`ListedCheck.to_retrieve`) and archives it before any deletion.
2. :func:`check_contents`, before any deletion, for
   those whose header section could not be read (``TOP`` not offered or refused): ``RETR`` of at most
   :data:`maild.pop3_uidls.MAX_POP3_RETR_CHECKS` messages and
   :data:`maild.pop3_uidls.MAX_POP3_RETR_CHECK_OCTETS`, compared by SHA-256 with the archived message.
   Equal: its size is recorded, so it is downloaded once. Different: the UIDL is freed and the
   downloaded message archived under it.

A key neither step could decide (past the bounds, ``RETR`` refused, set aside after breaking the
session :data:`maild.policy.SET_ASIDE_AFTER_FAILURES` times) is *unresolved*: not deleted, not taken
back when it had left, and checked again in the next cycle. A re-use at the very same size is not
caught (that would need every header section read in every cycle); the deletion path's own checks
then apply as before.

May import: :mod:`maild.policy`, :mod:`maild.message`, :mod:`maild.model`, the archive and the
protocols' base interface.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from maild import policy, pop3_uidls
from maild.archive import failures as failures_store
from maild.archive.store import Store
from maild.errors import ConnectError, NetworkTimeout, ProtocolError, StoreError
from maild.fetch.pop3_check import MAX_HEADER_SECTION_OCTETS, check_window
from maild.message import same_header_section, sha256_hex
from maild.model import (
    InventoryEntry,
    Location,
    MessageKey,
    RetrievalFailure,
    RetrievedMessage,
    StoreOutcome,
)
from maild.protocols.base import Maildrop

log = structlog.get_logger("maild.fetch.pop3_listed")


@dataclass(frozen=True, slots=True)
class ListedCheck:
    """What the checks found for the keys listed at another size than the archive expects.

    Attributes:
        same: the archived message, listed at another size (the size is recorded now).
        other: another message under the UIDL: freed; :func:`check_headers`' are retrieved by the
            cycle, :func:`check_contents`' were archived by it.
        untopped: :func:`check_headers` could not read their header section (``TOP`` not offered or
            refused): for :func:`check_contents`.
        unread: could not be compared in this cycle (``RETR`` refused, or set aside).
        waiting: past this cycle's bounds; checked in a later one.
        stored: what archiving :func:`check_contents`' other messages did, or None.
        archived: the keys of ``other`` whose new message :func:`check_contents` archived itself.
        read: the keys whose message the checks read from the server (``TOP n 0`` answered, or
            ``RETR`` served, also one the spool then could not take): a server deleting
            downloaded mail removes them at ``QUIT`` unless they are kept (:func:`read_unkept`).
    """

    same: list[MessageKey] = field(default_factory=list)
    other: list[MessageKey] = field(default_factory=list)
    untopped: list[MessageKey] = field(default_factory=list)
    unread: list[MessageKey] = field(default_factory=list)
    waiting: list[MessageKey] = field(default_factory=list)
    stored: StoreOutcome | None = None
    archived: list[MessageKey] = field(default_factory=list)
    read: list[MessageKey] = field(default_factory=list)

    @property
    def to_retrieve(self) -> list[MessageKey]:
        """The keys of ``other`` whose new message the cycle still has to retrieve and archive."""
        done = set(self.archived)
        return [key for key in self.other if key not in done]

    @property
    def unresolved(self) -> frozenset[MessageKey]:
        """Keys not shown to be the archived message nor another one: never deleted in this cycle,
        and, when they had left the server, still recorded gone."""
        return frozenset([*self.untopped, *self.unread, *self.waiting])

    def warnings(self) -> list[str]:
        """The cycle's warnings for the unresolved keys, in words (none for resolved ones)."""
        out: list[str] = []
        if self.unread:
            out.append(
                f"{len(self.unread)} messages are listed under a UIDL maild knows (at another size than the"
                " archived message, or due for deletion), and neither TOP nor RETR could compare them"
                " (refused, or set aside after breaking the session): not deleted, not taken for the"
                " archived message; tried again next cycle"
            )
        if self.waiting:
            out.append(
                f"{len(self.waiting)} messages are listed under a UIDL maild knows (at another size than the"
                f" archived message, or due for deletion) and wait for their check in a later cycle (at"
                f" most {pop3_uidls.MAX_POP3_HEADER_CHECKS} TOP, {pop3_uidls.DELETION_CHECKS_PER_CYCLE} with"
                f" PIPELINING, and {pop3_uidls.MAX_POP3_RETR_CHECKS} RETR per cycle): not deleted yet"
            )
        return out


def read_unkept(listed: ListedCheck | None, stored: Collection[MessageKey]) -> frozenset[MessageKey]:
    """The keys whose message the checks read (:attr:`ListedCheck.read`) and this session neither
    showed to be the archived message nor stored: another message under a known UIDL, read by
    ``TOP n 0`` or ``RETR`` and then not archived (too large, set aside, unresolved, a spool with no
    room). The archived location of such a UIDL names the message maild holds, not this one, so it
    must not count as kept: the session then ends without ``QUIT`` (RFC 1939 section 6), else a
    server deleting downloaded mail would remove it there.

    Args:
        listed: the cycle's checks, or None when it made none.
        stored: the keys whose commit returned in this cycle.

    Returns:
        Those keys; empty when every message the checks read is kept.
    """
    if listed is None or not listed.read:
        return frozenset()
    return frozenset(listed.read).difference(listed.same, listed.archived, stored)


def still_known(
    listed: ListedCheck | None, known: Mapping[MessageKey, Location]
) -> Collection[MessageKey]:
    """The cycle's known identities (its snapshot, taken before the checks) whose archived location
    names the message the server lists: ``known`` without the UIDLs the checks freed for the cycle
    to retrieve (:attr:`ListedCheck.to_retrieve`, relisted ones included; those
    :func:`check_contents` archived itself are kept by that). A freed UIDL names another message,
    so one the session served under it (the cycle's own ``RETR`` of it, then not stored: the spool
    had no room) is not kept by the old location (review of session 15: it counted kept, ``QUIT``,
    and a server deleting downloaded mail removed it unarchived).

    Args:
        listed: the cycle's checks, or None when it made none.
        known: the account's recorded identities as the cycle read them.

    Returns:
        ``known`` itself when nothing was freed, else a set of its keys without the freed ones.
    """
    freed = listed.to_retrieve if listed is not None else []
    if not freed:
        return known
    return known.keys() - set(freed)


def shown_in_session(listed: ListedCheck | None, retrieved: Collection[MessageKey]) -> frozenset[MessageKey]:
    """The keys this session showed to name the message the archive links them to: retrieved in it,
    compared by :func:`check_headers` or :func:`check_contents` and found to be the archived message,
    or freed and their new message archived by :func:`check_contents`.

    Args:
        listed: the cycle's checks, or None when it made none.
        retrieved: keys retrieved (and committed) in this session.
    """
    if listed is None:
        return frozenset(retrieved)
    return frozenset([*retrieved, *listed.same, *listed.archived])


async def check_headers(
    account: str,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    suspects: Sequence[MessageKey],
    known: Mapping[MessageKey, Location],
    now: datetime,
    relisted: Sequence[MessageKey] = (),
) -> ListedCheck:
    """Step 1 of the module: ``TOP n 0`` of the ``suspects``, after the cycle's retrieval committed.

    Identities maild deleted itself and the server lists again (``relisted``) name other messages
    without a doubt (RFC 1939 section 6): freed with the others, without ``TOP``.

    Args:
        account: the account's name.
        store: the open archive.
        maildrop: the cycle's open POP3 session.
        inventory: this session's inventory (sizes from LIST, in octets).
        suspects: ``other_size`` of :func:`maild.pop3_uidls.listed_known`, in server order.
        known: the account's recorded identities (each suspect is among them).
        now: the current time, aware, UTC (when freed UIDLs are recorded gone).
        relisted: ``relisted`` of :func:`maild.pop3_uidls.listed_known`.

    Returns:
        ``same``, ``other`` (freed: to retrieve), ``untopped`` (for :func:`check_contents`) and
        ``waiting`` (past :func:`maild.pop3_uidls.header_check_bound`: 2,000 in windows of 64
        with PIPELINING, 200 without, or past :data:`maild.pop3_uidls.DELETION_CHECK_OCTETS` of
        replies).

    Raises:
        StoreError: the archive failed (``ArchiveFull``: the disk is full); nothing was freed.
        NetworkTimeout, ConnectError, ProtocolError: ``TOP`` broke the session (nothing is deleted).

    Cancelled: sizes recorded and UIDLs freed before the await stay so; each is right on its own.
    """
    if not suspects and not relisted:
        return ListedCheck()
    bound = pop3_uidls.header_check_bound(maildrop.pipelining)
    window = check_window()  # one pipelined round trip, at most HEADER_WINDOW_OCTETS of replies held
    same: list[MessageKey] = []
    read: list[MessageKey] = []
    untopped: list[MessageKey] = []
    octets, checked = 0, 0
    # window by window, each compared before the next is read: one window's header sections and
    # archived messages in memory at a time
    while checked < min(bound, len(suspects)) and (checked == 0 or octets < pop3_uidls.DELETION_CHECK_OCTETS):
        chunk = list(suspects[checked : min(checked + window, bound)])
        checked += len(chunk)
        headers = await maildrop.header_fields(chunk, max_octets=MAX_HEADER_SECTION_OCTETS)
        octets += sum(len(h) for h in headers.values())
        got = [key for key in chunk if key in headers]
        raws = await store.raw_messages(sorted({known[key].message for key in got}))
        same += [key for key in got if same_header_section(raws.get(known[key].message, b""), headers[key])]
        read += got
        untopped += [key for key in chunk if key not in headers]
        del headers, raws
    waiting = list(suspects[checked:])
    matched = set(same)
    other = [*relisted, *(key for key in read if key not in matched)]
    await _record(account, store, inventory, same, other, now)
    return ListedCheck(same, other, untopped, [], waiting, read=read)


async def check_contents(
    account: str,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    early: ListedCheck,
    known: Mapping[MessageKey, Location],
    skip: Collection[MessageKey],
    now: datetime,
) -> ListedCheck:
    """Step 2 of the module: ``RETR`` of ``early.untopped``, after every commit of the cycle returned.

    Each message is compared by the SHA-256 of its octets with the archived message's. A message the
    server refuses (``-ERR``) or one in ``skip`` stays unresolved; one that breaks the session counts
    one failure in a row (:mod:`maild.archive.failures`), so that after
    :data:`maild.policy.SET_ASIDE_AFTER_FAILURES` it is set aside like any message and no longer
    stops the account's deletions each cycle.

    Args:
        account, store, maildrop, inventory, known, now: as for :func:`check_headers`.
        early: :func:`check_headers`' answer.
        skip: keys set aside (:func:`maild.policy.set_aside`).

    Returns:
        ``early`` with its ``untopped`` decided: ``same`` (size recorded), ``other`` (freed and the
        downloaded message archived under the UIDL), ``unread``, ``waiting``.

    Raises:
        StoreError: the archive failed (``ArchiveFull``: the disk is full).
        NetworkTimeout, ConnectError, ProtocolError: ``RETR`` broke the session (nothing is deleted).
    """
    if not early.untopped:
        return early
    listed = {entry.key: entry.size_octets or 0 for entry in inventory}
    todo: list[MessageKey] = []
    waiting, unread, total = list(early.waiting), list[MessageKey](), 0
    for key in early.untopped:
        if key in skip:
            unread.append(key)
        elif len(todo) < pop3_uidls.MAX_POP3_RETR_CHECKS and (
            not todo or total + listed.get(key, 0) <= pop3_uidls.MAX_POP3_RETR_CHECK_OCTETS
        ):
            todo.append(key)
            total += listed.get(key, 0)
        else:
            waiting.append(key)
    digests = await store.message_column("sha256", sorted({known[key].message for key in todo}))
    same: list[MessageKey] = []
    others: list[RetrievedMessage] = []
    arrived: set[MessageKey] = set()
    # read whole by RETR: a refused one was not, one the spool could not take was (a ``local``
    # failure: served, then dropped; review of session 15)
    served: list[MessageKey] = []
    maildrop.spool = store.spool  # a large message goes to a file beside the archive, not to memory
    try:
        async for item in maildrop.retrieve(todo):
            arrived.add(item.key)
            if isinstance(item, RetrievalFailure):
                unread.append(item.key)
                if item.kind == "local":
                    served.append(item.key)
                continue
            served.append(item.key)
            spooled = item.spooled
            digest = spooled.sha256 if spooled is not None else sha256_hex(item.whole())
            if digest == digests.get(known[item.key].message):
                same.append(item.key)
                item.release()
            else:
                others.append(item)
    except BaseException as exc:
        for message in others:  # spool files closed at once, also when cancelled
            message.release()
        broken = policy.in_flight(todo, arrived)
        if broken is not None and isinstance(exc, ConnectError | NetworkTimeout | ProtocolError):
            with contextlib.suppress(StoreError):  # the session's error is what matters
                reason = f"session failed while it was being compared with the archive: {exc}"
                await failures_store.record_failures(store, account, [RetrievalFailure(broken, reason)], now)
        raise
    stored: StoreOutcome | None = None
    # the other messages' LIST sizes that differ from their octets, recorded as for any retrieval
    off = {m.key: size for m in others if (size := listed.get(m.key)) and size != m.size_octets}
    try:
        await _record(account, store, inventory, same, [m.key for m in others], now)
        await failures_store.clear_failures(store, account, same)  # one that broke a session before
        if others:
            stored = await store.store_batch(account, others, now)
            await store.record_pop3_server_sizes(account, off)
    finally:
        for message in others:
            message.release()
    archived = [m.key for m in others]
    return ListedCheck(
        [*early.same, *same],
        [*early.other, *archived],
        [],
        unread,
        waiting,
        stored,
        [*early.archived, *archived],
        [*early.read, *served],
    )


async def _record(
    account: str,
    store: Store,
    inventory: Sequence[InventoryEntry],
    same: Sequence[MessageKey],
    other: Sequence[MessageKey],
    now: datetime,
) -> None:
    """Record the LIST sizes of ``same`` and free the UIDLs of ``other`` (one transaction each)."""
    listed = {entry.key: entry.size_octets for entry in inventory}
    await store.record_pop3_server_sizes(
        account, {key: size for key in same if (size := listed.get(key)) is not None}
    )
    if other:
        log.warning("fetch.pop3.uidl-names-another-message", account=account, messages=len(other))
        await store.release_pop3_keys(account, other, now)
