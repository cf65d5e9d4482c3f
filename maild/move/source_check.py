"""What A's server still holds that A never archived: the check ``maild retire`` makes before retiring A.

``maild compare``/``retire`` compare A's *archive* with B's server. Mail still on A's server that A
never archived (it arrived after A's last fetch, was set aside after repeated failures, is larger than
``max_message_size``) is not in A's archive; when A and B are different mailboxes it would stay on the
old server, never fetched once A is retired. So before retiring, :func:`check_source` logs in to A's
server through the adapter the fetch uses, read only (POP3 UIDL, LIST and ``TOP n <lines>``; IMAP
SELECT, ``UID SEARCH ALL`` and ``BODY.PEEK[HEADER]`` of the configured mailboxes: never DELE, STORE
or EXPUNGE; a POP3 session ends with QUIT and no DELE sent), takes A's inventory and compares it
with A's locations in the archive.

A listed message whose server identity A's archive does not hold is *not archived* unless its
content is held elsewhere, by :mod:`maild.move.compare`'s rules:

- by the SHA-256 of its octets (as sent or in CRLF form) only. A POP3 A: every such message the
  fetch would take is read whole with ``TOP n <lines>`` (RETR only as a logged fallback) and, when
  A's archive lacks its octets, stored there before QUIT (:mod:`maild.move.source_pop3`: a server
  may delete what is downloaded). An IMAP A: its octets are downloaded (``BODY.PEEK[]``) when its
  Message-ID, Date (UTC) and size
  (rule 3 of :mod:`maild.move.compare`) equal those of a message of A's archive or of B's scan (then
  B's messages of that identity are downloaded too), or when it has no Message-ID and its header
  section equals an archived one's (rule 4). Rule 3 alone is not trusted here: two different
  messages can share Message-ID, Date and size (a resent or crafted one), and a wrong match would
  leave a message on A's server that is never fetched once A is retired. This covers the same
  mailbox reached as POP3 and IMAP (what ``migrate`` uploaded shows up on A's server under new
  UIDLs, and what arrived after A's last fetch is in B) and an IMAP mailbox whose UIDVALIDITY
  changed. At most :data:`CONTENT_CHECK_MESSAGES` messages and :data:`CONTENT_CHECK_OCTETS` octets
  are downloaded; beyond, the matches count as "not verified" and the refusal says so.

Anything else counts as not archived: the way forward (``maild fetch A``) archives it, after which
the comparison decides by its octets. Erring this way can only refuse a retire, never lose mail.

:func:`not_archived`, :func:`reason_for` and :class:`~maild.move.source_index.ContentIndex` (what
A's archive and B hold) are pure; :mod:`maild.move.source_server` reads A's server;
:func:`check_source` decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from maild.archive.failures import failure_records
from maild.archive.move_queries import MigrationStore
from maild.config.loader import Config
from maild.config.maildrop import make_maildrop
from maild.errors import MaildError
from maild.message import summarise
from maild.model import FailureRecord, IMAPKey, InventoryEntry, MessageKey, POP3Key, RetrievedMessage
from maild.move.compare import ArchiveEntry, BodyDigest, ServerEntry
from maild.move.source_index import ContentIndex, body_wanted, held_by
from maild.move.source_pop3 import POP3Read, read_and_keep, to_read
from maild.move.source_server import is_imap, list_source, read_bodies, read_headers
from maild.policy import set_aside
from maild.protocols.base import Maildrop

__all__ = [
    "CONTENT_CHECK_MESSAGES",
    "CONTENT_CHECK_OCTETS",
    "REASON_WORDS",
    "ContentIndex",
    "Reason",
    "SourceCheck",
    "Unarchived",
    "body_wanted",
    "check_source",
    "held_by",
    "not_archived",
    "reason_for",
]

#: Why a message on A's server is not in A's archive.
Reason = Literal[
    "never fetched", "set aside", "failed", "too large", "not verified", "duplicate UIDL", "came back"
]

#: Reasons in the order the refusal names them, with their words.
REASON_WORDS: tuple[tuple[Reason, str], ...] = (
    ("never fetched", "never fetched (arrived after its last fetch?)"),
    ("set aside", "set aside after repeated failures"),
    ("failed", "failed to arrive at its last fetches"),
    ("too large", "larger than its max_message_size"),
    (
        "not verified",
        "matched only by Message-ID, Date and size, or not read: too many or too large to download"
        " and compare their octets",
    ),
    ("duplicate UIDL", "sharing their UIDL with another message (the fetch leaves them out)"),
    (
        "came back",
        "listed again under the identity of an archived message that had left the server, or listed"
        " there at another size than recorded (a re-used UIDL?), and not equal to it",
    ),
)

#: At most this many messages of A's server (default 5,000) are downloaded to compare their octets
#: (SHA-256) with A's archive and B; beyond it, or beyond :data:`CONTENT_CHECK_OCTETS`, a match by
#: Message-ID, Date and size alone is not trusted and the message counts as "not verified".
CONTENT_CHECK_MESSAGES = 5_000

#: At most this many octets (default 512 MiB), summed over A's server and B, are downloaded for the
#: comparison of octets (see :data:`CONTENT_CHECK_MESSAGES`).
CONTENT_CHECK_OCTETS = 512 * 1024 * 1024

TargetBodies = Callable[[Sequence[IMAPKey]], Awaitable[Mapping[IMAPKey, BodyDigest]]]
"""Download B's messages ``keys`` and digest them (a message that fails is left out)."""

#: POP3 worker threads of the check's own pool: one session, one thread.
CHECK_THREADS = 1


@dataclass(frozen=True, slots=True)
class Unarchived:
    """A message on A's server that A's archive does not hold.

    Attributes:
        key: its server identity (POP3 UIDL, or IMAP mailbox, UIDVALIDITY, UID).
        size_octets: its size in octets as the server reports it (LIST, RFC822.SIZE), or None.
        reason: why A did not archive it (see :func:`reason_for`).
        message_id, date, from_, subject: from its header section (None when not read or absent).
        stored: the check read it (POP3) and stored it into A's archive (see
            :mod:`maild.move.source_pop3`): A's archive holds it now, B does not.
    """

    key: MessageKey
    size_octets: int | None
    reason: Reason
    message_id: str | None = None
    date: datetime | None = None
    from_: str | None = None
    subject: str | None = None
    stored: bool = False


@dataclass(slots=True)
class SourceCheck:
    """What :func:`check_source` found on A's server.

    Attributes:
        source: account A's name.
        host: A's server host name ("" when A is not configured).
        listed: messages A's server lists (all its configured mailboxes for IMAP).
        unarchived: messages not in A's archive and held neither there nor in B by content.
        held: messages not archived under their identity but held by content: in A's archive or B.
        error: why A's server could not be checked (None when it was).
        keys: the server identities A's server listed (duplicated UIDLs included): the set checked,
            which :mod:`maild.move.source_recheck` lists again just before the retirement is recorded.
        sizes: identity to the size in octets A's server listed it with (POP3 LIST, IMAP
            RFC822.SIZE when the inventory had it): the second listing refuses an identity listed
            at another size (a UIDL re-used for another message during the check).
        stored: messages of a POP3 A the check read and stored into A's archive (its archive lacked
            their octets; :mod:`maild.move.source_pop3`), held by B or not.
        retr_fallbacks: messages of a POP3 A read with RETR, not TOP (not offered, refused or short):
            the server may have marked them read, or deleted them (they were stored first).
    """

    source: str
    host: str = ""
    listed: int = 0
    unarchived: list[Unarchived] = field(default_factory=list)
    held: int = 0
    error: str | None = None
    keys: frozenset[MessageKey] = frozenset()
    sizes: dict[MessageKey, int] = field(default_factory=dict)
    stored: int = 0
    retr_fallbacks: int = 0

    @property
    def checked(self) -> bool:
        """True when A's server was reached and listed."""
        return self.error is None

    def counts(self) -> dict[Reason, int]:
        """Not-archived messages by reason (reasons with none left out), in :data:`REASON_WORDS` order."""
        out: dict[Reason, int] = {}
        for reason, _words in REASON_WORDS:
            n = sum(1 for u in self.unarchived if u.reason == reason)
            if n:
                out[reason] = n
        return out

    def summary(self) -> str:
        """How many were not archived and why: ``"2 never fetched (...), 1 set aside after repeated
        failures"`` (:data:`REASON_WORDS`); empty when none."""
        words = dict(REASON_WORDS)
        return ", ".join(f"{n} {words[reason]}" for reason, n in self.counts().items())


def reason_for(
    key: MessageKey,
    size_octets: int | None,
    records: Mapping[MessageKey, FailureRecord],
    aside: Collection[MessageKey],
    max_message_size: int | None,
) -> Reason:
    """Why A's fetch did not archive the message ``key``, from what the archive and config know.

    ``"too large"`` when its reported size exceeds ``max_message_size`` (octets; the fetch skips it),
    else ``"set aside"`` when it is in ``aside`` (:func:`maild.policy.set_aside`), else ``"failed"``
    when it has a failure record, else ``"never fetched"``.
    """
    if max_message_size is not None and size_octets is not None and size_octets > max_message_size:
        return "too large"
    if key in aside:
        return "set aside"
    if key in records:
        return "failed"
    return "never fetched"


def not_archived(
    inventory: Iterable[InventoryEntry], archived: Collection[MessageKey]
) -> list[InventoryEntry]:
    """The entries of A's ``inventory`` whose server identity is not among A's ``archived`` keys
    (every location row of A, whether seen gone or deleted since or not), in server order."""
    return [entry for entry in inventory if entry.key not in archived]


def _identity(
    entry: InventoryEntry, headers: Mapping[MessageKey, bytes], sizes: Mapping[MessageKey, int]
) -> tuple[str | None, datetime | None, int | None]:
    """(Message-ID, Date, size) of a listed message from its header section and reported size."""
    size = entry.size_octets if entry.size_octets is not None else sizes.get(entry.key)
    header = headers.get(entry.key)
    summary = summarise(header) if header is not None else None
    return (summary.message_id if summary else None, summary.date if summary else None, size)


def _wanted(
    listed: Sequence[InventoryEntry],
    headers: Mapping[MessageKey, bytes],
    sizes: Mapping[MessageKey, int],
    index: ContentIndex,
    *,
    with_target: bool,
) -> list[MessageKey] | None:
    """The messages of A's server to download: those whose identity matches A's archive or B
    (``with_target``), and those without Message-ID whose header is archived; None when they (with
    B's copies) exceed :data:`CONTENT_CHECK_MESSAGES` or :data:`CONTENT_CHECK_OCTETS`."""
    keys: list[MessageKey] = []
    octets = 0
    for entry in listed:
        mid, date, size = _identity(entry, headers, sizes)
        if index.body_wanted(headers.get(entry.key)):
            keys.append(entry.key)
            octets += size or 0
            continue
        if mid is None or size is None:
            continue
        identity = (mid, date, size)
        b_keys = index.target_keys.get(identity, []) if with_target else []
        if identity in index.archive_ids or b_keys:
            keys.append(entry.key)
            octets += size + sum(index.target_sizes[k] for k in b_keys)
            if len(keys) + len(b_keys) > CONTENT_CHECK_MESSAGES or octets > CONTENT_CHECK_OCTETS:
                return None
    if len(keys) > CONTENT_CHECK_MESSAGES or octets > CONTENT_CHECK_OCTETS:
        return None
    return keys


def _target_wanted(
    listed: Sequence[InventoryEntry],
    headers: Mapping[MessageKey, bytes],
    sizes: Mapping[MessageKey, int],
    index: ContentIndex,
    bodies: Mapping[MessageKey, BodyDigest],
) -> list[IMAPKey]:
    """B's messages to download: those sharing the identity of a downloaded message of A's server
    that A's archive does not hold by octets, each once."""
    out: dict[IMAPKey, None] = {}
    for entry in listed:
        body = bodies.get(entry.key)
        if body is None or index.held_by_octets(body) is not None:
            continue
        mid, date, size = _identity(entry, headers, sizes)
        if mid is not None and size is not None:
            out.update(dict.fromkeys(index.target_keys.get((mid, date, size), ())))
    return list(out)


async def check_source(
    config: Config,
    store: MigrationStore,
    source: str,
    *,
    archive: Sequence[ArchiveEntry],
    target_entries: Sequence[ServerEntry],
    clock: Callable[[], datetime],
    maildrop_factory: Callable[..., Maildrop] | None = None,
    target_bodies: TargetBodies | None = None,
) -> SourceCheck:
    """Take A's inventory and find what A never archived that neither A's archive nor B holds.

    Args:
        config: the configuration; A's server settings and ``max_message_size`` come from it.
        store: the open archive (A's locations and failure records; what a POP3 A's check reads
            and the archive lacks is stored into it).
        source: account A.
        archive: every distinct archived message of A (as :func:`maild.move.compare.compare` got).
        target_entries: B's scanned messages.
        clock: now, aware (UTC): decides which failed messages are set aside.
        maildrop_factory: ``(account, executor) -> Maildrop``; default
            :func:`maild.config.maildrop.make_maildrop` (the fetch's own).
        target_bodies: downloads and digests B's messages (called after A's session is closed);
            None: nothing is held by B (only by A's archive).

    A message matching by Message-ID, Date and size is held only when its octets' SHA-256 is found
    in A's archive or in B's message of that identity (two different messages can share all three:
    a resent or crafted one; a wrong match would leave a message on A's retired server, never
    fetched). Up to :data:`CONTENT_CHECK_MESSAGES` / :data:`CONTENT_CHECK_OCTETS` are downloaded
    (A's server: POP3 ``TOP n <lines>``, RETR only as a logged fallback, every message the fetch
    would take; IMAP ``BODY.PEEK[]`` of the candidates); beyond, such messages count as "not
    verified". What is read of a POP3 A and A's archive lacks is stored into A's archive (``store``,
    the fetch's store path) before A's session ends (:mod:`maild.move.source_pop3`).

    Returns:
        The check; its ``error`` says why A's server could not be checked (A not configured, a
        password that cannot be obtained, a connection, TLS or sign-in failure, a timeout, a reply
        that breaks the protocol). It never raises a server's error.

    Raises:
        StoreError: the archive failed.
    """
    account = config.accounts.get(source)
    if account is None:
        return SourceCheck(
            source, error=f"account {source} is not in the configuration, so its server is unknown"
        )
    check = SourceCheck(source, host=account.host)
    if maildrop_factory is None:
        maildrop_factory = make_maildrop
    records = await failure_records(store, source)
    aside = set_aside(records, clock())
    index = ContentIndex(archive, target_entries)
    pop3: POP3Read | None = None
    executor = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="maild-retire-check")
    maildrop: Maildrop | None = None
    try:
        maildrop = maildrop_factory(account, executor)
        # POP3: messages sharing a UIDL are left out of the inventory and the fetch never takes them;
        # IMAP: a configured mailbox the server refused to SELECT is left out: its mail is unknown
        listing = await list_source(maildrop)
        inventory, duplicates = listing.inventory, listing.duplicate_uidls
        locations = await store.locations(source)
        # an identity recorded as gone or deleted that the server lists again may be another message
        # (a POP3 server re-using UIDLs; the fetch then leaves it there): decided by content
        returned = {
            k for k, loc in locations.items() if loc.gone_at is not None or loc.deleted_at is not None
        }
        # a UIDL listed at another size than the server's own recorded for it names another message
        returned |= resized_identities(inventory, await store.pop3_server_sizes(source))
        listed = not_archived(inventory, locations.keys() - returned)
        if is_imap(maildrop):
            headers, sizes = await read_headers(maildrop, listed)
            wanted = _wanted(listed, headers, sizes, index, with_target=target_bodies is not None)
            bodies = await read_bodies(maildrop, wanted) if wanted is not None else {}
        else:  # POP3: read whole without RETR where possible, and keep before QUIT (source_pop3)
            reasons = {
                e.key: reason_for(e.key, e.size_octets, records, aside, account.max_message_size)
                for e in listed
            }
            wanted = to_read(
                listed, reasons, max_messages=CONTENT_CHECK_MESSAGES, max_octets=CONTENT_CHECK_OCTETS
            )

            listed_sizes = {e.key: e.size_octets for e in listed if e.size_octets is not None}

            async def keep(batch: list[RetrievedMessage]) -> None:
                await store.store_batch(source, batch, clock())
                # the server's size of each (resized_identities compares the next check's LIST with it)
                await store.record_pop3_server_sizes(
                    source, {m.key: listed_sizes[m.key] for m in batch if m.key in listed_sizes}
                )

            pop3 = await read_and_keep(
                maildrop,
                wanted or [],
                archived=lambda d: bool({d.sha256, d.sha256_crlf} & index.archive_digests),
                not_storable=returned,
                keep=keep,
            )
            headers, sizes, bodies = pop3.headers, {}, pop3.bodies
        if pop3 is not None and pop3.unkept:  # served in part, not kept: no UPDATE state
            await maildrop.hang_up()
        else:
            await maildrop.close()
    except MaildError as exc:
        if maildrop is not None:
            await _end_failed(maildrop)
        check.error = str(exc) or type(exc).__name__
        return check
    except BaseException:
        if maildrop is not None:
            await _end_failed(maildrop)
        raise
    finally:
        executor.shutdown(wait=False)
    check.listed = len(inventory) + len(duplicates)
    check.keys = frozenset(e.key for e in inventory) | {POP3Key(u) for u in duplicates}
    check.sizes = {e.key: e.size_octets for e in inventory if e.size_octets is not None}
    check.unarchived.extend(Unarchived(POP3Key(u), None, "duplicate UIDL") for u in sorted(duplicates))
    stored = pop3.stored if pop3 is not None else set()
    if pop3 is not None:
        check.stored, check.retr_fallbacks = len(stored), len(pop3.retr_fallbacks)
    b_keys = _target_wanted(listed, headers, sizes, index, bodies) if wanted is not None else []
    b_over = pop3 is not None and _over_bounds(listed, bodies, b_keys, index)
    b_digests: Mapping[IMAPKey, BodyDigest] = {}
    if b_keys and target_bodies is not None and not b_over:
        b_digests = await target_bodies(b_keys)
    for entry in listed:
        size = entry.size_octets if entry.size_octets is not None else sizes.get(entry.key)
        header = headers.get(entry.key)
        summary = summarise(header) if header is not None else None
        mid = summary.message_id if summary else None
        date = summary.date if summary else None
        body = bodies.get(entry.key)
        b_same: list[BodyDigest] = []
        if mid is not None and size is not None:
            b_same = [b_digests[k] for k in index.target_keys.get((mid, date, size), ()) if k in b_digests]
        if index.held_by_octets(body, b_same) is not None:
            check.held += 1
            continue
        reason = reason_for(entry.key, size, records, aside, account.max_message_size)
        if reason == "never fetched" and (
            (wanted is None and (pop3 is not None or index.candidate(mid, date, size)))
            or (b_over and index.candidate(mid, date, size))
        ):
            reason = "not verified"
        elif reason == "never fetched" and entry.key in returned:
            reason = "came back"
        record = records.get(entry.key)  # a message not read: what the fetch's header read found
        check.unarchived.append(
            Unarchived(
                entry.key,
                size,
                reason,
                mid,
                date if summary else (record.date if record else None),
                summary.from_ if summary else (record.from_ if record else None),
                summary.subject if summary else (record.subject if record else None),
                stored=entry.key in stored,
            )
        )
    return check


def resized_identities(
    inventory: Sequence[InventoryEntry], recorded: Mapping[MessageKey, int]
) -> set[MessageKey]:
    """POP3 keys listed at another size in octets than the server size recorded for the archived
    message (``locations.server_size``, :meth:`~maild.archive.store.Store.pop3_server_sizes`):
    another message under that UIDL (re-used), decided by content like one that came back. Keys
    without a recorded size are not compared (the archived octets' length may differ from LIST's on
    a server counting line ends as one octet: session 13's open item, still open for them)."""
    return {
        e.key
        for e in inventory
        if e.size_octets is not None and e.key in recorded and recorded[e.key] != e.size_octets
    }


async def _end_failed(maildrop: Maildrop) -> None:
    """End A's session after a failure: a POP3 check may have read messages it did not store (the
    store failed, or the session broke mid-window), so no QUIT (:meth:`Maildrop.hang_up`: a server
    deleting downloaded mail at UPDATE would remove them, RSET or not); IMAP: :meth:`Maildrop.abort`
    (read only, nothing is removed)."""
    if is_imap(maildrop):
        await maildrop.abort()
    else:
        await maildrop.hang_up()


def _over_bounds(
    listed: Sequence[InventoryEntry],
    bodies: Mapping[MessageKey, BodyDigest],
    b_keys: Sequence[IMAPKey],
    index: ContentIndex,
) -> bool:
    """Whether B's copies to download (``b_keys``), with what was read of A's POP3 server, exceed
    :data:`CONTENT_CHECK_MESSAGES` or :data:`CONTENT_CHECK_OCTETS` (then B's are not downloaded)."""
    octets = sum(e.size_octets or 0 for e in listed if e.key in bodies)
    octets += sum(index.target_sizes[k] for k in b_keys)
    return len(bodies) + len(b_keys) > CONTENT_CHECK_MESSAGES or octets > CONTENT_CHECK_OCTETS
