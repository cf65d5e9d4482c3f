"""Streaming retrieval: one UID FETCH per mailbox run, messages taken while the response arrives.

:class:`~maild.protocols.imap.client.StreamingFetch` hands each complete FETCH response to
:meth:`RetrievalStream.feed` from inside the transport's ``data_received``. Here:

* :class:`RetrievalStream` feeds them to the :class:`~maild.protocols.imap.fetch.FetchAssembler` (the
  one set of FETCH rules) and holds the outcomes until the consumer takes them in the order of its
  keys, pausing the transport while more than about ``window_octets()`` octets of messages wait to be
  taken (backpressure through TCP flow control);
* :func:`stream_segments` cuts a mailbox's keys into FETCH commands;
* :func:`retrieve_segment` runs one such command on an
  :class:`~maild.protocols.imap.connection.IMAPConnection` and yields its messages (used by
  :meth:`IMAPMailbox.retrieve <maild.protocols.imap.mailbox.IMAPMailbox.retrieve>`).

Message bodies are handed on as the assembler built them: each literal is the client's receive
buffer itself, never copied here.

May import: asyncio, structlog, :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.message`, the
connection, the client's public names and the sans-I/O IMAP modules.

Standard: RFC 9051 section 6.4.5 and 6.4.9 (UID FETCH), 7.5.2 (FETCH response).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from maild.errors import ProtocolError
from maild.message import summarise
from maild.model import IMAPKey, RetrievalFailure, RetrievedMessage, SpooledBody
from maild.protocols.imap import wire
from maild.protocols.imap.client import Reply, StreamingFetch
from maild.protocols.imap.connection import SESSION_CODES, IMAPConnection, consume_outcome
from maild.protocols.imap.fetch import FetchAssembler, FetchedMessage, FetchItem, Outcome, PlainFields
from maild.protocols.imap.lex import Part, SpooledLiteral
from maild.protocols.progress import ProgressFloor
from maild.spool import SPOOL_HEAD_OCTETS, Spool, local_failure

_log = structlog.get_logger("maild.protocols.imap.mailbox")

#: Octets of parsed, not yet taken messages held when the caller gives no window (16 MiB).
DEFAULT_WINDOW_OCTETS = 16 * 2**20
#: Most UIDs in one streaming body FETCH.
MAX_UIDS_PER_STREAM = 2500
#: Longest sequence set in octets of one streaming FETCH, so that its command line stays within the
#: 8,192 octets RFC 7162 section 4 asks clients to keep to (contiguous UIDs compress to a few ranges).
MAX_UID_SET_OCTETS = 8000
#: Items of the body FETCH; ``BODY.PEEK[]`` leaves ``\\Seen`` alone (RFC 9051 section 6.4.5).
BODY_ITEMS = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
#: Items a retrieved message must carry: only the body. A message without it is a per-message failure.
BODY_REQUIRE: tuple[FetchItem, ...] = ("BODY[]",)
#: Items asked for but optional: Gmail and Exchange sometimes leave them out (or send them in a
#: second FETCH response, which the assembler merges). Missing ones are recorded in
#: :attr:`RetrievedMessage.missing <maild.model.RetrievedMessage.missing>`; INTERNALDATE falls back to
#: the Date header, else the arrival time (:func:`retrieved`), FLAGS to none.
BODY_EXPECT: tuple[FetchItem, ...] = ("FLAGS", "INTERNALDATE")
_OCTETS = (bytes, bytearray)
#: Flags that describe this session, not the message (``\\Recent``: RFC 3501 section 2.3.2, gone in
#: RFC 9051); left out of RetrievedMessage.flags.
SESSION_FLAGS = frozenset({"\\Recent"})


def _nothing() -> None:
    """Default pause and resume before :meth:`RetrievalStream.attach`."""


class RetrievalStream:
    """Outcomes of one streaming FETCH, held until taken in key order, within an octet window.

    :meth:`feed` runs inside the transport callback; :meth:`ready`, :meth:`take` and
    :meth:`waiter` are for the one consuming coroutine.

    Backpressure: after a response, when the held messages exceed ``window_octets()`` octets and the
    consumer has something to take, ``pause_reading()`` is called; after :meth:`take`, once they are
    at or below the window again (or nothing can be taken), ``resume_reading()``. Reading is never
    paused while the consumer waits for the next UID in its order, so a server answering out of
    order can make the stream hold more than the window (at most one command's messages) but never
    deadlock. A single message larger than the window is held alone.

    Args:
        order: the UIDs in the order the consumer takes them (each once).
        require: items every message must carry (see :class:`FetchAssembler`).
        window_octets: the current limit in octets; asked after every response.
        expect: items asked for but optional (see :class:`FetchAssembler`).

    Call :meth:`attach` with the connection's pause and resume functions before the first response.
    """

    def __init__(
        self,
        order: Sequence[int],
        require: Iterable[FetchItem],
        window_octets: Callable[[], int],
        expect: Iterable[FetchItem] = (),
    ) -> None:
        self._order = list(dict.fromkeys(order))
        self._next = 0
        self._assembler = FetchAssembler(self._order, require, expect=expect)
        self._held: dict[int, Outcome] = {}
        self._window = window_octets
        self._pause: Callable[[], None] = _nothing
        self._resume: Callable[[], None] = _nothing
        self._waiter: asyncio.Future[None] | None = None
        self.held_octets = 0
        """Octets of message bodies held, not yet taken."""
        self.peak_held_octets = 0
        """The most :attr:`held_octets` reached (for tests and diagnostics)."""
        self.paused = False
        """Whether reading is paused by this stream now."""
        self.pauses = 0
        """How often reading was paused."""
        self.error: BaseException | None = None
        """An unexpected error inside :meth:`feed` (a bug); the consumer raises it as ProtocolError."""
        self.finished = False
        """Whether :meth:`finish` ran: every UID of ``order`` has its outcome."""

    def attach(self, pause_reading: Callable[[], None], resume_reading: Callable[[], None]) -> None:
        """Give the functions that stop and restart reading from the connection."""
        self._pause, self._resume = pause_reading, resume_reading

    # ------------------------------------------------------------------ producer side

    def feed(self, parts: list[Part]) -> None:
        """The :data:`~maild.protocols.imap.client.FetchSink`: take one complete FETCH response.

        Never raises: it runs inside ``data_received``, where an exception would kill the transport.
        """
        try:
            self._assembler.feed(parts)
        except Exception as exc:  # a bug, not server data: report it to the consumer
            self.error = exc
        self._settled()

    def feed_plain(self, fields: PlainFields, head: bytes, literal: Part) -> None:
        """The :data:`~maild.protocols.imap.client.PlainFetchSink`: take one complete response in
        the usual body shape, read by the client's framing (:meth:`FetchAssembler.feed_plain`).

        Never raises, as :meth:`feed`.
        """
        try:
            self._assembler.feed_plain(fields, head, literal)
        except Exception as exc:  # a bug, not server data: report it to the consumer
            self.error = exc
        self._settled()

    def _settled(self) -> None:
        """After a response: hold what settled, pause reading past the window, wake the consumer."""
        try:
            while (settled := self._assembler.next_outcome()) is not None:
                self._hold(*settled)
            if not self.paused and self.held_octets > self._window() and self.ready():
                self.paused = True
                self.pauses += 1
                self._pause()
        except Exception as exc:  # a bug, not server data: report it to the consumer
            self.error = exc
        if self.error is not None or self.ready():
            self.wake()

    def finish(self, completion: str) -> None:
        """The tagged completion arrived: settle the rest; UIDs never returned fail with ``completion``.

        Args:
            completion: the completion as one line, e.g. ``"OK Fetch completed"``.
        """
        self._assembler.finish()
        while (settled := self._assembler.next_outcome()) is not None:
            self._hold(*settled)
        for uid in self._order[self._next :]:
            if uid not in self._held:
                self._held[uid] = f"not returned ({completion})"
        self.finished = True
        self.wake()

    def _hold(self, uid: int, outcome: Outcome) -> None:
        self._held[uid] = outcome
        if isinstance(outcome, FetchedMessage) and outcome.body is not None:
            self.held_octets += _held(outcome.body)
            self.peak_held_octets = max(self.peak_held_octets, self.held_octets)

    # ------------------------------------------------------------------ consumer side

    def ready(self) -> bool:
        """Whether the next UID in order has its outcome."""
        return self._next < len(self._order) and self._order[self._next] in self._held

    @property
    def exhausted(self) -> bool:
        """Whether every UID of the order has been taken."""
        return self._next >= len(self._order)

    def take(self) -> tuple[int, Outcome]:
        """Remove and return the next UID in order with its outcome; resume reading if it may.

        Raises:
            LookupError: :meth:`ready` is False (a bug in the caller).
        """
        if not self.ready():
            raise LookupError("no outcome ready")
        uid = self._order[self._next]
        self._next += 1
        outcome = self._held.pop(uid)
        if isinstance(outcome, FetchedMessage) and outcome.body is not None:
            self.held_octets -= _held(outcome.body)
        if self.paused and (self.held_octets <= self._window() or not self.ready()):
            self.resume()
        return uid, outcome

    def resume(self) -> None:
        """Resume reading if this stream paused it."""
        if self.paused:
            self.paused = False
            self._resume()

    def waiter(self, command: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Something to await until an outcome is ready or ``command`` (the FETCH) has ended.

        Returns ``command`` itself once it is done (awaiting it gives its result or raises its
        error); otherwise a fresh future resolved by :meth:`wake`. Reading is resumed first, so that
        the awaited data can arrive.
        """
        self.resume()
        if command.done():
            return command
        waiter: asyncio.Future[None] = command.get_loop().create_future()
        if self.error is not None or self.ready():
            waiter.set_result(None)
        self._waiter = waiter
        return waiter

    def wake(self, _command: object = None) -> None:
        """Resolve the pending :meth:`waiter` (also the FETCH task's done-callback)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _range_octets(first: int, last: int) -> int:
    """Octets of one sequence-set element with its comma: ``"7,"`` or ``"9:12,"``."""
    return len(str(first)) + 1 if first == last else len(str(first)) + len(str(last)) + 2


def stream_segments(keys: Sequence[IMAPKey], uidvalidity: int) -> list[list[IMAPKey]]:
    """Cut one mailbox's keys (in order) into the key lists of streaming FETCH commands.

    A segment's UIDs (of keys with the mailbox's ``uidvalidity``) ascend strictly, so that a server
    answering in sequence-number order (ordered by ascending UID, RFC 9051 section 2.3.1.2) answers
    in key order; there are at most :data:`MAX_UIDS_PER_STREAM` of them and their sequence set has at
    most :data:`MAX_UID_SET_OCTETS` octets. Keys of another UIDVALIDITY stay in place (they fail).
    Inventory keys ascend already: one segment per mailbox unless it is very large.
    """
    segments: list[list[IMAPKey]] = []
    current: list[IMAPKey] = []
    count = closed_octets = 0
    first = last = 0
    for key in keys:
        if key.uidvalidity == uidvalidity:
            uid = key.uid
            if count and uid == last + 1:
                grown = closed_octets + _range_octets(first, uid)
            else:
                grown = closed_octets + (_range_octets(first, last) if count else 0) + len(str(uid)) + 1
            if count and (uid <= last or count >= MAX_UIDS_PER_STREAM or grown > MAX_UID_SET_OCTETS):
                segments.append(current)
                current, count, closed_octets = [], 0, 0
            if count and uid == last + 1:
                last = uid
            else:
                if count:
                    closed_octets += _range_octets(first, last)
                first = last = uid
            count += 1
        current.append(key)
    if current:
        segments.append(current)
    return segments


def utc_now() -> datetime:
    """The arrival-time clock of :func:`retrieved`: now, aware, in UTC."""
    return datetime.now(UTC)


def stale_failure(key: IMAPKey, uidvalidity: int) -> RetrievalFailure:
    """The failure for a key whose UIDVALIDITY is not the selected mailbox's ``uidvalidity`` now."""
    return RetrievalFailure(
        key, f"UIDVALIDITY of {key.mailbox!r} is now {uidvalidity}, not {key.uidvalidity}"
    )


def retrieved(
    key: IMAPKey,
    outcome: Outcome | None,
    now: Callable[[], datetime] = utc_now,
    spooled: SpooledBody | str | None = None,
) -> RetrievedMessage | RetrievalFailure:
    """The item to yield for ``key``: its message (without session flags), or a failure naming why.

    Fallbacks for optional items the server left out (listed in ``RetrievedMessage.missing``):
    INTERNALDATE becomes the message's Date header (UTC), else ``now()`` (the arrival time, aware
    UTC); FLAGS become none. Only a missing body is a failure.

    Args:
        spooled: for a body that went to a spool file (a :class:`SpooledLiteral`), its awaited
            outcome: the spooled body, or why the spool could not take it (the message fails).
    """
    if isinstance(outcome, FetchedMessage) and outcome.body is not None:
        body: bytes | SpooledBody
        if isinstance(outcome.body, SpooledLiteral):
            if isinstance(spooled, str):  # this machine's spool, not the message: never set aside
                return local_failure(key, spooled)
            if spooled is None:
                return RetrievalFailure(key, "BODY[] spooled, its outcome not awaited")
            body = spooled
        else:
            body = outcome.body
        flags = (outcome.flags or frozenset()) - SESSION_FLAGS
        internaldate = outcome.internaldate
        if internaldate is None:
            head = body if isinstance(body, bytes | bytearray) else body.head
            internaldate = summarise(head).date or now()
        return RetrievedMessage(key, body, internaldate, flags, outcome.missing)
    return RetrievalFailure(key, outcome if isinstance(outcome, str) else "BODY[] missing")


def _held(body: bytes | SpooledLiteral) -> int:
    """Octets of a body held in memory: all of it; for one going to a spool file, about what it
    keeps (its head: :data:`~maild.spool.SPOOL_HEAD_OCTETS`; the parts waiting for its writer are
    bounded by :mod:`.spooling`)."""
    return len(body) if isinstance(body, _OCTETS) else min(body.size_octets, SPOOL_HEAD_OCTETS)


async def retrieve_segment(
    connection: IMAPConnection,
    keys: list[IMAPKey],
    window_octets: Callable[[], int],
    spool: Spool | None = None,
) -> AsyncGenerator[RetrievedMessage | RetrievalFailure, None]:
    """One streaming ``UID FETCH`` for ``keys`` of the selected mailbox, yielded in key order.

    The FETCH runs as a task; this generator waits through :meth:`IMAPConnection.call` (so every
    error maps as there, and the inactivity limit counts only while it waits for data, never while
    the consumer holds it at a ``yield``), and takes outcomes from a :class:`RetrievalStream`.

    Args:
        connection: an open connection with the keys' mailbox selected.
        keys: one segment from :func:`stream_segments`.
        window_octets: the current limit in octets of messages held, asked after every response.
        spool: where large bodies are written as they arrive (:mod:`.spooling`); None: in memory.

    Closed early or cancelled while the FETCH runs: the connection is discarded.

    Raises:
        ThrottledError, TransientError, ProtocolError: the completion was NO with a session code
            (RFC 5530), or BAD (RFC 9051 section 7.1).
        NetworkTimeout, ConnectError, ProtocolError, TransientError: as for
            :meth:`IMAPConnection.call`; NetworkTimeout also when the messages arrive slower than
            the account's ``min_rate_octets_per_s`` (see :mod:`maild.protocols.progress`).
    """
    uidvalidity = connection.uidvalidity
    uids = [key.uid for key in keys if key.uidvalidity == uidvalidity]
    if not uids:
        for key in keys:
            yield stale_failure(key, uidvalidity)
        return
    what = f"UID FETCH {BODY_ITEMS} for {len(uids)} UIDs"
    stream = RetrievalStream(uids, BODY_REQUIRE, window_octets, BODY_EXPECT)
    settings = connection.settings
    progress = ProgressFloor(
        settings.min_rate_octets_per_s, settings.progress_window_s, asyncio.get_running_loop().time
    )
    progress.stop()  # only the waits below count
    fetch = connection.client.streaming_fetch(
        wire.sequence_set(uids), BODY_ITEMS, stream.feed, spool, stream.feed_plain
    )
    stream.attach(fetch.pause_reading, fetch.resume_reading)
    connection.lost(what)  # raises ConnectError (and discards) when the connection is gone already
    command: asyncio.Future[Reply] = asyncio.ensure_future(fetch.run())
    command.add_done_callback(consume_outcome)
    command.add_done_callback(stream.wake)
    try:
        for key in keys:
            if key.uidvalidity != uidvalidity:
                yield stale_failure(key, uidvalidity)
                continue
            while not stream.ready():
                await _stream_wait(connection, what, fetch, command, stream, progress)
            uid, outcome = stream.take()
            assert uid == key.uid
            spooled = None
            if isinstance(outcome, FetchedMessage) and isinstance(outcome.body, SpooledLiteral):
                spooled = await outcome.body.outcome  # its last parts written (local disk only)
            yield retrieved(key, outcome, spooled=spooled)
        while not stream.finished:
            await _stream_wait(connection, what, fetch, command, stream, progress)
    finally:
        if command.done():
            stream.resume()
        else:
            command.cancel()
            connection.discard(f"{what} abandoned")
    _log.debug(
        "imap.fetch-stream.complete",
        account=connection.account,
        messages=len(uids),
        peak_held_octets=stream.peak_held_octets,
        pauses=stream.pauses,
    )


async def _stream_wait(
    connection: IMAPConnection,
    what: str,
    fetch: StreamingFetch,
    command: asyncio.Future[Reply],
    stream: RetrievalStream,
    progress: ProgressFloor,
) -> None:
    """Wait for the next outcome or the end of the FETCH; settle the stream at its completion."""
    if fetch.completed and not command.done():
        await asyncio.wait((command,))  # done at the next loop turn, even if the peer hangs up now
    if not command.done():
        await connection.call(what, lambda: stream.waiter(command), progress=progress)
    elif command.cancelled() or command.exception() is not None:
        await connection.call(what, lambda: command)  # maps the client's error and raises it
    else:
        _lines, status = connection.completion(command.result(), what)
        if status.condition == "BAD" or status.code in SESSION_CODES:
            raise connection.refused(status, what)
        stream.finish(status.describe())
    if stream.error is not None:
        connection.discard(f"{what}: internal error")
        raise connection.error(ProtocolError, f"{what}: {type(stream.error).__name__}: {stream.error}")
