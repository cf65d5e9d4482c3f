"""IMAP adapter: :class:`IMAPMailbox`, the :class:`~maild.protocols.base.Maildrop` for IMAP accounts.

Inventory (SELECT, UID SEARCH), retrieval with ``BODY.PEEK[]`` (so ``\\Seen`` is untouched), deletion
(UID STORE, UID EXPUNGE or a guarded EXPUNGE), APPEND and header scans. The mailbox *holds* an
:class:`~maild.protocols.imap.connection.IMAPConnection` (connection, TLS, login, SELECT, guarded
commands, error mapping) and hands it to the parts that do the work:
:func:`~maild.protocols.imap.stream.retrieve_segment` (one streaming ``UID FETCH`` per mailbox run, its
responses taken one by one while they arrive, so that a 50 ms link never waits for a round trip per
batch), :mod:`~maild.protocols.imap.scan` (short UID SEARCH and FETCH commands),
:func:`~maild.protocols.imap.deletion.delete_messages`, :func:`~maild.protocols.imap.append.append_message`
and :mod:`~maild.protocols.imap.naming` (LIST, CREATE).

May import: structlog, :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.protocols.base`, the
connection, :mod:`~maild.protocols.imap.stream`, :mod:`~maild.protocols.imap.scan`,
:mod:`~maild.protocols.imap.deletion`, :mod:`~maild.protocols.imap.append`,
:mod:`~maild.protocols.imap.naming` and the sans-I/O IMAP modules. Never aioimaplib.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from maild.errors import (
    ProtocolError,
)
from maild.model import (
    IMAPKey,
    InventoryEntry,
    MessageKey,
    RetrievalFailure,
    RetrievedMessage,
    ServerSettings,
)
from maild.protocols.base import Maildrop
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap import naming, scan, status, wire
from maild.protocols.imap.append import AppendResult as AppendResult  # re-exported for maild.move
from maild.protocols.imap.append import append_message
from maild.protocols.imap.connection import IMAPConnection, SelectRefused
from maild.protocols.imap.deletion import delete_messages
from maild.protocols.imap.stream import DEFAULT_WINDOW_OCTETS, retrieve_segment, stream_segments

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SyncHint:
    """What the archive knows about one mailbox as of its last complete listing.

    Attributes:
        status: the mailbox's status when it was last listed in full (taken before that listing).
        uids: the UIDs it held then under ``status.uidvalidity``, every one of them archived.
    """

    status: imap_list.MailboxStatus
    uids: frozenset[int]


class IMAPMailbox(Maildrop):
    """The :class:`~maild.protocols.base.Maildrop` of one IMAP account and one or more mailboxes.

    Args:
        settings: server, TLS mode, credentials and ``timeout_s``, the longest silence in seconds
            tolerated during any one operation (connect, each command; a FETCH may take longer as
            long as data keeps arriving).
        mailboxes: the mailboxes :meth:`inventory` covers, as readable Unicode names (``"INBOX"``,
            ``"Entwürfe 2026"``); encoded to modified UTF-7 and quoted here.
        list_all: ignore ``mailboxes`` and cover every mailbox the server LISTs, except those
            :func:`~maild.protocols.imap.listing.choose_mailboxes` leaves out (``\\Noselect``,
            special-use ``\\Trash`` and ``\\Junk``, and ``exclude``).
        exclude: with ``list_all``, readable names left out together with the mailboxes beneath them.
        max_message_size: the account's ``max_message_size`` in octets, or None: no literal larger
            than it is read (see :class:`~.connection.IMAPConnection`); the fetch cycle skips larger
            messages by their RFC822.SIZE (:meth:`sizes`) before retrieving.

    Attributes:
        connection: the connection this mailbox holds (opened by :meth:`open`).

    Raises:
        ValueError: no mailboxes (and not ``list_all``), or a mailbox name that cannot be sent (CR,
            LF, NUL, lone surrogate).
    """

    def __init__(
        self,
        settings: ServerSettings,
        mailboxes: Sequence[str] = ("INBOX",),
        *,
        list_all: bool = False,
        exclude: Sequence[str] = (),
        max_message_size: int | None = None,
    ) -> None:
        if isinstance(mailboxes, str) or not (mailboxes or list_all):
            raise ValueError("mailboxes must be a non-empty sequence of names")
        for name in mailboxes:
            wire.mailbox_argument(name)
        self.connection = IMAPConnection(settings, max_message_size=max_message_size)
        self._mailboxes = tuple(dict.fromkeys(mailboxes))
        self._list_all = list_all
        self._exclude = tuple(exclude)
        self._listed: frozenset[str] | None = None
        self.mailbox_states: dict[str, wire.SelectInfo] = {}
        self._verified_client: object | None = None
        self._verified_keys: set[IMAPKey] = set()
        """Readable mailbox name to what SELECT reported, for each mailbox the last :meth:`inventory`
        covered, in inventory order."""
        self._mailbox_failures: dict[str, str] = {}
        """Readable mailbox name to why the last :meth:`inventory` could not select it."""
        self.sync_hints: dict[str, SyncHint] = {}
        """Set by the caller before :meth:`inventory`: readable mailbox name to what the archive knows
        of it (see :mod:`maild.fetch.folders`); a mailbox whose status still matches is not selected."""
        self.statuses: dict[str, imap_list.MailboxStatus] = {}
        """Readable mailbox name to its status as the last :meth:`inventory` found it, taken before
        its listing (so that a message arriving meanwhile makes the next status differ)."""
        self.unchanged: frozenset[str] = frozenset()
        """Mailboxes the last :meth:`inventory` left unselected: their status matched their hint."""
        self._sizes: dict[IMAPKey, int] = {}
        """RFC822.SIZE of keys that :meth:`sizes` asked for in this session (fixed per UID)."""

    # ------------------------------------------------------------------ the connection's life cycle

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper-cased (``"UIDPLUS"``, ...)."""
        return self.connection.capabilities

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version (e.g. ``"TLSv1.3"``) of an open session, None when plaintext."""
        return self.connection.tls_version

    async def open(self) -> None:
        """Connect, negotiate TLS, LOGIN; see :meth:`.connection.IMAPConnection.open` (same Raises).

        The first configured mailbox is selected right behind the sign-in, and its UIDs asked for
        (``UID SEARCH ALL``) right behind that, in the same packet (pipelined); :meth:`inventory`
        takes both answers."""
        first = None if self._list_all else self._mailboxes[0]
        await self.connection.open(preselect=first, search=first is not None)

    async def close(self) -> None:
        """LOGOUT and close: see :meth:`IMAPConnection.close <.connection.IMAPConnection.close>`."""
        await self.connection.close()

    async def abort(self) -> None:
        """Close the connection at once without LOGOUT. Never raises; safe at any time and repeatedly."""
        self.connection.abort()

    @property
    def parked(self) -> bool:
        """Whether :meth:`park` kept this session for a later cycle (and it was not taken back)."""
        return self.connection.kept.parked

    async def park(self) -> bool:
        """End a cycle but keep the authenticated connection for the next one (see :meth:`resume`).

        Nothing is pending on the server when a cycle ends (IMAP deletions took effect at EXPUNGE),
        so a kept session is just a logged-in connection. Returns True; False (and the connection is
        discarded) when it is not usable any more.
        """
        return self.connection.kept.park()

    async def resume(self, *, max_age_s: float, probe_timeout_s: float) -> bool:
        """Take a parked session back for a new cycle: True when it is ready, else it is discarded
        (call :meth:`abort`); see :meth:`KeptSession.resume <.kept.KeptSession.resume>`."""
        return await self.connection.kept.resume(max_age_s=max_age_s, probe_timeout_s=probe_timeout_s)

    async def list_mailboxes(self) -> list[imap_list.ListedMailbox]:
        """LIST every mailbox; see :func:`.naming.list_mailboxes` (same Raises)."""
        return await naming.list_mailboxes(self.connection)

    async def create_mailbox(self, mailbox: str) -> None:
        """CREATE ``mailbox``; see :func:`.naming.create_mailbox` (same Raises)."""
        await naming.create_mailbox(self.connection, mailbox)

    # ------------------------------------------------------------------ Maildrop

    @property
    def mailbox_failures(self) -> dict[str, str]:
        """See :attr:`Maildrop.mailbox_failures`: not there, or refused (``NO`` to SELECT)."""
        return self._mailbox_failures

    def covers(self, key: MessageKey) -> bool:
        """Whether the last :meth:`inventory` looked where ``key`` lives (see :class:`Maildrop`).

        True for a mailbox it selected, and, with ``list_all``, for a mailbox the server no longer
        LISTs at all (deleted there). False for a mailbox it could not select, and for one not
        configured (any more) or excluded: those keys say nothing about the server now.
        """
        if not isinstance(key, IMAPKey):
            return False
        if key.mailbox in self.mailbox_states:
            return True
        return self._listed is not None and key.mailbox not in self._listed

    async def inventory(self) -> list[InventoryEntry]:
        """Return one entry per message of each covered mailbox, in as few round trips as possible.

        The mailboxes are the configured ones, or with ``list_all`` those the server lists less those
        :func:`~maild.protocols.imap.listing.choose_mailboxes` leaves out. First the state of each
        mailbox with a :attr:`sync_hints` entry is asked for all at once (:mod:`.status`: one ``LIST
        ... RETURN (STATUS ...)`` with LIST-STATUS, which also is the listing for ``list_all``; else
        pipelined STATUS). A mailbox whose status is :func:`~.listing.unchanged` since its hint is not
        selected: its entries are the hint's UIDs (it is in :attr:`unchanged`). Every other mailbox
        costs one round trip: SELECT and ``UID SEARCH ALL`` sent together. Entries come mailbox by
        mailbox in that order, UIDs in server order; sizes are None (:meth:`retrieve` asks for them).
        Where the session enabled QRESYNC (RFC 7162), a changed mailbox with a hint is selected with
        ``(QRESYNC (...))``: the server names the UIDs expunged since (``VANISHED``) instead of maild
        listing them all.
        What SELECT reported (or, for an unchanged mailbox, its status) is kept in
        :attr:`mailbox_states`, each status in :attr:`statuses`: the status look's answer when it
        was taken before the listing, else (the mailbox selected with the sign-in, so listed first)
        only when it shows the same UIDNEXT and message count as the SELECT, otherwise the SELECT's
        (an expunge and a delivery in between keep MESSAGES but not the listing).

        A mailbox the server refuses to select (NO, e.g. ``[NONEXISTENT]`` or no permission) is
        skipped and recorded in :attr:`mailbox_failures`, so that one missing mailbox does not stop
        the others; :meth:`covers` is False for its keys, so nothing of it is recorded as gone.

        Standard: RFC 9051 section 6.3.2 (SELECT), 6.3.11 (STATUS), 6.4.4 and 6.4.9 (UID SEARCH);
        RFC 5819 (LIST-STATUS); RFC 7162 section 3.1.6 (HIGHESTMODSEQ).

        Cancelled at any await: the session is discarded; nothing has changed on the server.

        Raises:
            ProtocolError: no mailbox at all could be selected (the first refusal is raised), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        entries: list[InventoryEntry] = []
        self.connection.client  # noqa: B018 -- raises TransientError before any state below is reset
        mailboxes: Sequence[str] = self._mailboxes
        self.mailbox_states, self._mailbox_failures, self._listed = {}, {}, None
        self.statuses, self.unchanged = {}, frozenset()
        hints = self.sync_hints
        found: dict[str, imap_list.MailboxStatus] = {}
        with_status = "LIST-STATUS" in self.capabilities and (self._list_all or bool(hints))
        if self._list_all:
            if with_status:
                listed, found = await status.list_with_status(self.connection, None)
            else:
                listed = await self.list_mailboxes()
            self._listed = frozenset(m.name for m in listed)
            mailboxes = imap_list.choose_mailboxes(listed, self._exclude)
            if not mailboxes:
                raise self.connection.error(
                    ProtocolError, "LIST shows no mailbox to fetch", standard="RFC 9051 section 6.3.9"
                )
        elif with_status:
            _listed, found = await status.list_with_status(self.connection, mailboxes)
        if hints and not with_status:
            found = await status.status_many(self.connection, [m for m in mailboxes if m in hints])
        refused: SelectRefused | None = None
        unchanged: set[str] = set()
        for mailbox in mailboxes:
            now, hint = found.get(mailbox), hints.get(mailbox)
            if now is not None and hint is not None and imap_list.unchanged(hint.status, now):
                assert now.uidvalidity is not None  # by unchanged()
                assert now.messages is not None
                unchanged.add(mailbox)
                self.statuses[mailbox] = now
                self.mailbox_states[mailbox] = wire.SelectInfo(
                    now.messages, now.uidvalidity, now.uidnext, highest_modseq=now.highest_modseq
                )
                entries.extend(
                    InventoryEntry(IMAPKey(mailbox, now.uidvalidity, uid)) for uid in sorted(hint.uids)
                )
                continue
            # sent with the sign-in, so listed *before* the status look (a later status must not be
            # recorded with this listing: fetch.folders.record)
            listed_first = self.connection.selection.preselected == mailbox
            try:
                info, uids = await self._list_mailbox(mailbox, hint, now)
            except SelectRefused as exc:
                refused = refused or exc
                self._mailbox_failures[mailbox] = str(exc)
                _log.warning(
                    "imap.select-failed", account=self.connection.account, mailbox=mailbox, error=str(exc)
                )
                continue
            self.mailbox_states[mailbox] = info
            if (
                now is None
                or now.uidvalidity != info.uidvalidity
                or (listed_first and (now.uidnext, now.messages) != (info.uidnext, info.exists))
            ):  # no status from before the listing that matches it: what its SELECT said
                now = imap_list.MailboxStatus(
                    mailbox, info.exists, info.uidnext, info.uidvalidity, info.highest_modseq
                )
            self.statuses[mailbox] = now
            entries.extend(InventoryEntry(IMAPKey(mailbox, info.uidvalidity, uid)) for uid in uids)
        self.unchanged = frozenset(unchanged)
        if refused is not None and not self.mailbox_states:
            raise refused
        _log.debug(
            "imap.inventory",
            account=self.connection.account,
            mailboxes=len(self.mailbox_states),
            unchanged=len(unchanged),
            messages=len(entries),
        )
        return entries

    async def _list_mailbox(
        self, mailbox: str, hint: SyncHint | None, now: imap_list.MailboxStatus | None
    ) -> tuple[wire.SelectInfo, list[int]]:
        """SELECT ``mailbox`` and learn its UIDs in one round trip: with QRESYNC enabled and a hint
        under the same UIDVALIDITY, only the changes since the hint (:func:`.status.select_changes`;
        one more round trip, ``UID SEARCH ALL``, when its answer does not add up); else every UID
        (:func:`.status.select_and_search`). A hint whose HIGHESTMODSEQ is 0 (what STATUS says of
        a mailbox that keeps no mod-sequences, RFC 7162 section 3.1.6) takes the plain way: the
        QRESYNC parameter needs a mod-sequence of 1 or more (section 3.2.5), a strict server
        answers BAD to 0."""
        connection = self.connection
        if connection.selection.preselected == mailbox:  # SELECT and UID SEARCH went out with the sign-in
            info = await connection.selection.select(mailbox)
            uids = await connection.selection.take_search(mailbox)
            return info, (await scan.uid_search(connection, mailbox, "ALL") if uids is None else uids)
        if (
            hint is not None
            and "QRESYNC" in connection.enabled
            and hint.status.highest_modseq  # 0: a mailbox without mod-sequences (RFC 7162 s. 3.1.6)
            and (now is None or now.uidvalidity == hint.status.uidvalidity)
        ):
            info, uids = await status.select_changes(connection, mailbox, hint.status, hint.uids)
            if uids is None:
                uids = await scan.uid_search(connection, mailbox, "ALL")
            return info, uids
        return await status.select_and_search(connection, mailbox)

    async def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Retrieve messages with ``BODY.PEEK[]`` (``\\Seen`` unchanged), yielding each in key order.

        Consecutive keys of the same mailbox form a run: SELECT (if not selected), then one
        streaming ``UID FETCH <set> (UID FLAGS INTERNALDATE BODY.PEEK[])`` per segment of the run
        (:func:`~maild.protocols.imap.stream.stream_segments`: ascending UIDs, at most
        :data:`~maild.protocols.imap.stream.MAX_UIDS_PER_STREAM`; inventory keys make one segment
        per mailbox), each message yielded as soon as its response is complete, long before the
        tagged completion. At most about ``window_octets()`` octets of messages read but not yet
        yielded are held; beyond that, reading pauses until the consumer has taken enough (a
        larger message is held alone). ``timeout_s`` limits only silence while the consumer waits
        for data, never the time it spends away. No size pass is needed.

        Duplicate keys are retrieved once. Flags are the message's flags at retrieval time without
        the per-session ``\\Recent``.

        Yields :class:`RetrievalFailure` for: a key whose UIDVALIDITY differs from the mailbox's now
        (its UID may name another message), a mailbox that can no longer be selected, a UID the
        server did not return (expunged meanwhile; the reason quotes the completion), a response
        with the body NIL or items missing.

        Args:
            keys: IMAP keys, normally from :meth:`inventory` (ascending UIDs per mailbox).
            window_octets: returns the current limit in octets of messages held; asked after every
                response. None: :data:`~maild.protocols.imap.stream.DEFAULT_WINDOW_OCTETS`.

        Standard: RFC 9051 section 6.4.5 and 6.4.9 (UID FETCH), 7.5.2 (FETCH response).

        Cancelled, or closed early (``aclose()``), at any point: while a FETCH is in flight the session
        is discarded (every later call raises TransientError); messages already yielded stay valid.

        Raises:
            TypeError: a key is not an :class:`~maild.model.IMAPKey`.
            ThrottledError: the FETCH was answered NO ``[UNAVAILABLE]``, ``[LIMIT]`` or ``[INUSE]``
                (messages yielded before stay valid).
            NetworkTimeout: nothing arrived for ``timeout_s`` seconds while waiting for a message.
            ConnectError: the connection was lost.
            ProtocolError: BAD, or a response aioimaplib could not frame.
            TransientError: NO ``[SERVERBUG]``, or the session was discarded earlier; call :meth:`abort`.
        """
        ordered: list[IMAPKey] = []
        for key in dict.fromkeys(keys):
            if not isinstance(key, IMAPKey):
                raise TypeError(f"IMAPMailbox cannot retrieve {type(key).__name__}")
            ordered.append(key)
        window = window_octets if window_octets is not None else lambda: DEFAULT_WINDOW_OCTETS
        for mailbox, group in itertools.groupby(ordered, key=lambda key: key.mailbox):
            run = list(group)
            if self.connection.selected != mailbox:
                try:
                    await self.connection.selection.select(mailbox)
                except SelectRefused as exc:
                    for key in run:
                        yield RetrievalFailure(key, str(exc))
                    continue
            # aclosing: closing this generator early must close the inner one now (its finally
            # discards the session), not whenever the garbage collector finalises it
            for segment in stream_segments(run, self.connection.uidvalidity):
                segment_items = retrieve_segment(self.connection, segment, window, self.spool)
                async with contextlib.aclosing(segment_items) as items:
                    async for item in items:
                        yield item

    async def sizes(self, keys: Sequence[MessageKey]) -> dict[MessageKey, int]:
        """RFC822.SIZE of ``keys`` (IMAP keys of this session's UIDVALIDITY), in ``UID FETCH
        (RFC822.SIZE)`` commands of at most :data:`~.scan.MAX_UIDS_PER_COMMAND` UIDs per mailbox.

        Remembered for the session. A mailbox that cannot be selected, or a UID the server does not
        return, is left out (:meth:`retrieve` reports it).

        Standard: RFC 9051 section 6.4.9 (UID FETCH), 7.5.2 (RFC822.SIZE; a message's size never
        changes, section 2.3.4).

        Raises:
            ProtocolError, ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
                :meth:`inventory`.
        """
        imap_keys = [key for key in dict.fromkeys(keys) if isinstance(key, IMAPKey)]
        imap_keys.sort(key=lambda key: key.mailbox)
        for mailbox, run in itertools.groupby(imap_keys, key=lambda key: key.mailbox):
            if self.connection.selected != mailbox:
                try:
                    await self.connection.selection.select(mailbox)
                except SelectRefused:
                    continue
            by_uid = {key.uid: key for key in run if key.uidvalidity == self.connection.uidvalidity}
            wanted = sorted(uid for uid, key in by_uid.items() if key not in self._sizes)
            for chunk in scan.chunks(wanted, scan.MAX_UIDS_PER_COMMAND):
                result, _status = await scan.uid_fetch(
                    self.connection, chunk, "(RFC822.SIZE)", ("RFC822.SIZE",)
                )
                for uid, message in result.messages.items():
                    if message.size_octets is not None and uid in by_uid:
                        self._sizes[by_uid[uid]] = message.size_octets
        return {key: self._sizes[key] for key in imap_keys if key in self._sizes}

    async def delete(self, keys: Sequence[MessageKey]) -> list[MessageKey]:
        """Delete messages, expunging only those: see :func:`.deletion.delete_messages` (the rules,
        Returns, Standard, cancellation and Raises are there; ``open`` there means :meth:`open`)."""
        return await delete_messages(self.connection, keys)

    async def headers(self, mailbox: str) -> scan.MailboxHeaders:
        """Scan one mailbox without downloading bodies: see :func:`.scan.scan_headers`."""
        return await scan.scan_headers(self.connection, mailbox)

    async def append(
        self,
        mailbox: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
    ) -> AppendResult:
        """Upload one message into ``mailbox``; see :func:`.append.append_message` (same Returns and
        Raises)."""
        return await append_message(self.connection, mailbox, raw, flags=flags, internaldate=internaldate)

    async def fetch_identities(
        self, mailbox: str, uidvalidity: int, uids: Sequence[int]
    ) -> dict[int, tuple[int, bytes]]:
        """Size and Message-ID field of messages without their bodies: see :func:`.scan.fetch_identities`."""
        return await scan.fetch_identities(self.connection, mailbox, uidvalidity, uids)

    async def header_fields(self, keys: Sequence[MessageKey], *, max_octets: int) -> dict[MessageKey, bytes]:
        """Subject, From and Date lines of messages that failed to arrive, per mailbox by
        :func:`.scan.fetch_header_fields` (``BODY.PEEK``: ``\\Seen`` untouched); a reply longer than
        ``max_octets`` is left out. Keys whose mailbox's UIDVALIDITY changed are left out too.

        Standard: RFC 9051 section 6.4.5.

        Raises:
            As :func:`.scan.fetch_sizes`: the session is broken; call :meth:`abort`.
        """
        groups: dict[tuple[str, int], list[IMAPKey]] = {}
        for key in keys:
            if isinstance(key, IMAPKey):
                groups.setdefault((key.mailbox, key.uidvalidity), []).append(key)
        found: dict[MessageKey, bytes] = {}
        for (mailbox, uidvalidity), group in groups.items():
            uids = [k.uid for k in group]
            lines = await scan.fetch_header_fields(self.connection, mailbox, uidvalidity, uids)
            found.update((k, lines[k.uid]) for k in group if 0 < len(lines.get(k.uid, b"")) <= max_octets)
        return found

    def session_verified(self) -> set[IMAPKey]:
        """The keys shown in this login session to name the archived message (the UID check of
        :func:`maild.fetch.resync.verify_uid_map`, or retrieved by UID), for the caller to read and
        extend. A new login (not a kept session taken back) starts an empty set: UIDs are stable
        within a session (RFC 9051 section 2.3.1.1), so a kept session need not check them again.

        Raises:
            TransientError: the connection is not usable.
        """
        client = self.connection.client
        if client is not self._verified_client:
            self._verified_client, self._verified_keys = client, set()
        return self._verified_keys

    async def fetch_sizes(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of ``uids`` now, uncached: see :func:`.scan.fetch_sizes`."""
        return await scan.fetch_sizes(self.connection, mailbox, uidvalidity, uids)

    async def check_uids(
        self, mailbox: str, uidvalidity: int, uids: Sequence[int], header_uids: Sequence[int]
    ) -> tuple[dict[int, int], dict[int, bytes]]:
        """Sizes of ``uids`` and header sections of ``header_uids`` in one round trip: see
        :func:`.scan.check_uids`."""
        return await scan.check_uids(self.connection, mailbox, uidvalidity, uids, header_uids)

    async def fetch_header_sections(
        self, mailbox: str, uidvalidity: int, uids: Sequence[int]
    ) -> dict[int, bytes]:
        """Header sections of ``uids`` without their bodies: see :func:`.scan.fetch_header_sections`."""
        return await scan.fetch_header_sections(self.connection, mailbox, uidvalidity, uids)
