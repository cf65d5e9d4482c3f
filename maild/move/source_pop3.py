"""Reading a POP3 A for ``maild retire``'s check: each message it needs, whole, without RETR where
the server offers TOP, and kept in A's archive before the session ends.

Session 13's check read header sections with ``TOP n 0`` and downloaded candidates with RETR, which
Dovecot takes as a download (``\\Seen``), and which a server set to delete what POP3 downloads (a
provider's "delete after POP download" setting) may answer by deleting the message: a message the
check decided was held by nothing, gone from A's server and kept nowhere. Now:

- a message listed on A's server that A never archived is read whole once (``TOP n <lines>``, RETR
  only as a logged fallback; :meth:`maild.protocols.pop3.maildrop.POP3Maildrop.peek`), its header
  section taken from it: no ``TOP n 0`` either (a server deleting on TOP would lose it for a header);
- those the check may not read (larger than ``max_message_size``, set aside after repeated failures
  or failing at the last fetches: the fetch's own reasons) and everything past the check's bounds
  are not read at all;
- every message read whose octets A's archive does not hold already (by SHA-256, as sent or in CRLF
  form) is stored into A's archive through the fetch's store path
  (:meth:`maild.archive.store.Store.store_batch`, durable on return), in batches, *before* QUIT, so
  whatever the server does with a downloaded message, the archive holds it before the session ends.
  A message under an identity A's archive recorded earlier for another message ("came back": a UIDL
  maild deleted or saw leave, re-used) is stored under its content identity (``sha256:<hex>``,
  :func:`content_identity`), not that UIDL, which keeps naming the old message: the fetch's view of
  the UIDL is unchanged (it still leaves such a message on the server) and a server deleting what
  was read loses nothing (session 14's review; before, it was compared only, and lost there).

Storing into A's archive is what ``maild fetch A`` would do with the same message; the comparison of
A's archive with B then counts it like any other message of A (``maild migrate`` uploads it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from maild.message import header_section
from maild.model import (
    CONTENT_KEY_PREFIX,
    InventoryEntry,
    MessageKey,
    POP3Key,
    RetrievalFailure,
    RetrievedMessage,
)
from maild.move.compare import BodyDigest, body_digest
from maild.protocols.base import Maildrop

#: Messages stored into A's archive per transaction while the check reads A's server (default 64).
KEEP_BATCH_MESSAGES = 64

#: Octets stored into A's archive per transaction at most (default 32 MiB), a message at least.
KEEP_BATCH_OCTETS = 32 * 2**20

#: The fetch's reasons for not taking a message; the check does not read such a message either.
NOT_READ_REASONS = frozenset({"too large", "set aside", "failed"})

Keep = Callable[[list[RetrievedMessage]], Awaitable[object]]
"""Store a batch of messages into A's archive, durably (``store.store_batch`` for account A)."""


@dataclass(slots=True)
class POP3Read:
    """What :func:`read_and_keep` read of A's POP3 server.

    Attributes:
        headers: key to the message's header section (:func:`maild.message.header_section`: the
            check's summary of it; the octets themselves are stored or dropped as they arrive).
        bodies: key to the digests of those octets.
        stored: keys stored into A's archive by this check.
        retr_fallbacks: keys read with RETR (TOP not offered, refused or short), with why.
        unkept: keys asked for that did not come whole (the server refused RETR after a short or
            refused TOP, or the key was not in the session): the server may have served part of
            them, so the session ends without QUIT (:meth:`~maild.protocols.base.Maildrop.hang_up`).
    """

    headers: dict[MessageKey, bytes] = field(default_factory=dict)
    bodies: dict[MessageKey, BodyDigest] = field(default_factory=dict)
    stored: set[MessageKey] = field(default_factory=set)
    retr_fallbacks: list[tuple[MessageKey, str]] = field(default_factory=list)
    unkept: set[MessageKey] = field(default_factory=set)


def content_identity(digest: BodyDigest) -> POP3Key:
    """The identity a "came back" message is stored under in A's archive: ``"sha256:" + hex`` of its
    octets as sent (:attr:`POP3Key.exact_content`; the identity a POP3 server without UIDL gives
    it, :mod:`maild.protocols.pop3.identity`). A UIDL-listing server never lists it, so the fetch
    neither takes it for a listed message nor deletes by it."""
    return POP3Key(CONTENT_KEY_PREFIX + digest.sha256)


def to_read(
    listed: Sequence[InventoryEntry],
    reasons: Mapping[MessageKey, str],
    *,
    max_messages: int,
    max_octets: int,
) -> list[MessageKey] | None:
    """The messages of A's POP3 server the check reads: those listed and not archived whose reason
    (:func:`maild.move.source_check.reason_for`) is not one of :data:`NOT_READ_REASONS`, in server
    order; None when they are more than ``max_messages`` or their LIST sizes sum to more than
    ``max_octets`` (then none is read: each counts as "not verified")."""
    keys = [e.key for e in listed if reasons.get(e.key) not in NOT_READ_REASONS]
    octets = sum(e.size_octets or 0 for e in listed if reasons.get(e.key) not in NOT_READ_REASONS)
    if len(keys) > max_messages or octets > max_octets:
        return None
    return keys


async def read_and_keep(
    maildrop: Maildrop,
    keys: Sequence[MessageKey],
    *,
    archived: Callable[[BodyDigest], bool],
    not_storable: Collection[MessageKey],
    keep: Keep,
) -> POP3Read:
    """Read ``keys`` whole (:meth:`~maild.protocols.base.Maildrop.peek`) and store each one
    ``archived`` does not hold into A's archive with ``keep``, all before returning (the caller
    QUITs after): in batches of :data:`KEEP_BATCH_MESSAGES` / :data:`KEEP_BATCH_OCTETS`.

    Args:
        maildrop: A's open session, inventory taken.
        keys: from :func:`to_read`.
        archived: whether A's archive holds octets of these digests.
        not_storable: keys A's archive links to another message already ("came back"): stored
            under :func:`content_identity`, never under the key.
        keep: stores a batch durably.

    A message the server refuses (RetrievalFailure) is left out: it counts as not archived, and is
    in :attr:`POP3Read.unkept` (the caller then ends the session without QUIT).

    Cancelled, or the session failing: what was stored stays stored (each batch is one durable
    transaction); the rest of the batch being gathered is not stored, and was not deleted by QUIT.

    Raises:
        The session's errors (NetworkTimeout, ConnectError, ProtocolError); StoreError from ``keep``.
    """
    read = POP3Read()
    if not keys:
        return read
    batch: list[RetrievedMessage] = []
    read_as: list[MessageKey] = []  # the server's key of each message in ``batch``
    octets = 0
    try:
        async for item in maildrop.peek(keys):
            if isinstance(item, RetrievalFailure):
                read.unkept.add(item.key)
                continue
            raw = item.whole()
            digest = body_digest(raw)
            read.headers[item.key], read.bodies[item.key] = header_section(raw), digest
            if archived(digest):
                continue
            key = content_identity(digest) if item.key in not_storable else item.key
            batch.append(RetrievedMessage(key, raw))
            read_as.append(item.key)
            octets += len(raw)
            if len(batch) >= KEEP_BATCH_MESSAGES or octets >= KEEP_BATCH_OCTETS:
                await keep(batch)
                read.stored.update(read_as)
                batch, read_as, octets = [], [], 0
    finally:
        if batch:  # what arrived whole is kept even when the session broke afterwards
            await keep(batch)
            read.stored.update(read_as)
        read.retr_fallbacks = list(getattr(maildrop, "retr_fallbacks", ()))
    return read
