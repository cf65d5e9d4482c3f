"""Sans-I/O POP3 reply decoding: :class:`ReplyDecoder` cuts the received stream into replies.

Nothing here touches a socket. The session (:mod:`.session`) reads the server's octets straight into
the decoder's receive buffer (:meth:`ReplyDecoder.receive_into`, or :meth:`ReplyDecoder.feed` for
octets already read), and takes :class:`~maild.protocols.pop3.wire.Reply` values out. The receive
buffer is a ``bytearray`` with a fill mark, reused from reply to reply and lent from a pool between
sessions (:mod:`.buffers`): a POP3 fetch then allocates (and the kernel zeroes and maps) no fresh
memory per read or per message, only per message body it hands out.

Standards: RFC 1939 section 3 (status indicators, multi-line responses, byte-stuffing), RFC 2449
section 6.6 (PIPELINING: replies in the order of the commands).

Errors raised here carry no account name (this layer does not know it); the adapter adds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from maild.errors import SHOWN_REPLY_OCTETS, ProtocolError
from maild.protocols.pop3.wire import (
    DEFAULT_MAX_REPLY_OCTETS,
    MAX_STATUS_LINE_OCTETS,
    TERMINATOR,
    Reply,
    StatusLine,
    parse_status_line,
    show_line,
)

__all__ = ["MAX_STUFFED_LINES", "TAKE_BUFFER_OCTETS", "ReplyDecoder"]

_CRLF = b"\r\n"
_STUFFED = b"\r\n.."
_UNSTUFFED = b"\r\n."
_GROW_STEP_OCTETS = 16 * 2**10  # the receive buffer grows in multiples of this
_ZEROS = bytes(64 * 2**10)  # what it grows by, at most this at a time

TAKE_BUFFER_OCTETS = 2**20
"""A multi-line body of at least this many octets, with less than this after it in the receive buffer,
is handed out as the receive buffer itself instead of a copy (see ``ReplyDecoder._take_body``)."""
MAX_STUFFED_LINES = 1024
"""Most byte-stuffed lines of one body whose dots are remembered while it is scanned (their offsets,
about 36 KiB at most), so that un-stuffing copies the body once (a small body) or moves it within its
own buffer (a large one); a body with more is un-stuffed by one ``replace``, a second copy."""
DENSE_DOTS_OCTETS = 64
"""The scan for lines starting with "." (:func:`_line_dot`) looks for the dot alone (``memchr``, several
GB/s) and checks the two octets before it; when more than :data:`DENSE_DOTS_MISSES` dots in a row are
not at a line start and they come closer than one per this many octets, it searches the next
:data:`DENSE_DOTS_WINDOW_OCTETS` with the slower three-octet ``find`` (about 1.2 GB/s) and then goes
back to the dots; each further such window of the same search is twice as long, so text full of dots
costs about what that ``find`` alone would."""

DENSE_DOTS_MISSES = 16
"""See :data:`DENSE_DOTS_OCTETS`."""

DENSE_DOTS_WINDOW_OCTETS = 2**10
"""How far (1 KiB) the three-octet ``find`` of :func:`_line_dot` first searches where dots are dense
before the search goes back to finding dots alone (doubled for each further dense stretch of the
same search). Dense dots are mostly a header section's (host names, addresses, message-ids: one
fallback per message of the benchmark's corpus); searching on to the end of the buffer, as until
session 11, took the slow ``find`` over 40 MB of the 273 MB of a 2,000-message fetch, windows of
1 KiB over 2 MB (4 KiB: 7 MB) for 2,600 more dots found one by one (docs/performance.md, "Session
11: the POP3 fetch's user time")."""


def _line_dot(buf: bytearray, pos: int, end: int | None = None) -> int:
    """Index of the next ``CRLF "."`` in ``buf[:end]`` at or after ``pos``, or -1; as
    ``buf.find(b"\\r\\n.", pos, end)`` (``end``: the fill mark of a reused buffer, None for its length).

    Most mail has few dots and fewer at a line start: finding each dot with ``memchr`` and looking
    back two octets is several times faster than the general search for three octets, which is
    used instead where dots are dense (see :data:`DENSE_DOTS_OCTETS`).
    """
    limit = len(buf) if end is None else end
    start = pos
    misses = 0
    window = DENSE_DOTS_WINDOW_OCTETS
    while True:
        dot = buf.find(b".", pos + 2, limit)
        if dot < 0:
            return -1
        if buf[dot - 1] == 10 and buf[dot - 2] == 13:  # LF and CR before it
            return dot - 2
        misses += 1
        pos = dot - 1
        if misses > DENSE_DOTS_MISSES and dot - start < misses * DENSE_DOTS_OCTETS:
            stop = min(limit, pos + window)
            hit = buf.find(_UNSTUFFED, pos, stop)
            if hit >= 0 or stop == limit:
                return hit
            # every CRLF "." starting before stop - 2 was searched; one that starts later has its
            # dot at stop or beyond, where the dot search resumes
            pos = start = stop - 2
            misses = 0
            window *= 2


def _kept_spans(start: int, stop: int, dots: list[int]) -> list[tuple[int, int]]:
    """The spans ``[a, b)`` of ``start:stop`` that remain when the octets at the offsets ``dots``
    (ascending; those outside ``start:stop`` are ignored) are left out: un-stuffing by offsets."""
    spans: list[tuple[int, int]] = []
    a = start
    for dot in dots:
        if start <= dot < stop:
            spans.append((a, dot))
            a = dot + 1
    spans.append((a, stop))
    return spans


class ReplyDecoder:
    """Incremental decoder for a stream of POP3 replies, single- and multi-line, pipelined or not.

    Put received octets in with :meth:`receive_into` (the socket reads straight into the decoder's
    buffer) or :meth:`feed` (a copy), in chunks of any size; pull replies with :meth:`next_reply`,
    telling it whether the command the next reply answers has a multi-line reply (RETR, UIDL, LIST,
    CAPA without argument) or not. Replies come out in the order they were sent (RFC 2449 section 6.6).

    Efficiency: one :meth:`bytearray.find` pass per body finds every line starting with "." (resuming
    where the last search ended), which tells the terminator and whether the body is byte-stuffed,
    and remembers where the stuffing dots are (up to :data:`MAX_STUFFED_LINES`): un-stuffing leaves
    them out while the body is copied out of the receive buffer (no second copy), or moves the octets
    within the buffer handed out as a large body; one :meth:`bytes.replace` only for bodies with more
    stuffed lines. No per-line Python loop; lines of any length work.

    The receive buffer: octets ``[head, fill)`` of one ``bytearray`` are received and not yet handed
    out; a reply handed out only moves ``head`` (to 0 with ``fill`` when nothing is left), and the
    octets still waiting are moved to the front only when a read needs the room at the end. What lies
    beyond the fill mark (a previous reply's octets, in a reused buffer) is never searched or handed
    out: every search stops at the fill mark. The buffer grows only when a reply (or the part of a
    spooled body not yet handed out) does not fit; :meth:`lend_buffer` and :meth:`use_buffer` let the
    session hand it to a pool between calls (:mod:`.buffers`).

    Memory: while a reply of N octets is decoded, at most about 2N octets are held (the receive buffer
    and the extracted body); a body handed out as the buffer itself, about N, also when un-stuffed.

    Args:
        max_reply_octets: cap on one reply, in octets (status line, body, terminator, before un-stuffing).
        max_status_line_octets: cap on a status line, in octets without CRLF.
    """

    def __init__(
        self,
        *,
        max_reply_octets: int = DEFAULT_MAX_REPLY_OCTETS,
        max_status_line_octets: int = MAX_STATUS_LINE_OCTETS,
    ) -> None:
        if max_reply_octets < 1 or max_status_line_octets < 1:
            raise ValueError("caps must be positive")
        self._buf = bytearray()
        self._head = 0  # start of the reply being decoded (or of the rest of a body handed out in parts)
        self._fill = 0  # end of the octets received; beyond it the buffer holds nothing of ours
        self._max_reply = max_reply_octets
        self._max_status = max_status_line_octets
        # State for the reply at the head; offsets are indices into _buf. Reset when it is consumed.
        self._status: StatusLine | None = None
        self._status_end = 0  # index just after the status line's CRLF
        self._scan_from = 0  # where the next terminator search starts
        self._stuffed = False  # a line of the reply at the head is byte-stuffed
        self._dots: list[int] | None = []  # indices of the stuffing dots; None: more than the cap
        self._taken = 0  # octets of the reply at the head handed out by take_body_part
        #: Octets of the reply at the head received when it broke ``max_reply_octets`` (None before).
        self.over_cap_octets: int | None = None

    @property
    def buffered_octets(self) -> int:
        """Octets received but not yet returned as part of a reply."""
        return self._fill - self._head

    @property
    def buffer_octets(self) -> int:
        """Size of the receive buffer in octets (what it holds in memory, used or not)."""
        return len(self._buf)

    @property
    def max_reply_octets(self) -> int:
        """The cap on one reply, in octets; may be lowered for replies known to be small (``TOP n 0``)."""
        return self._max_reply

    @max_reply_octets.setter
    def max_reply_octets(self, value: int) -> None:
        if value < 1:
            raise ValueError("caps must be positive")
        self._max_reply = value

    def feed(self, data: bytes | memoryview) -> None:
        """Append received bytes (copied: ``data`` may be reused afterwards); chunk boundaries may fall
        anywhere, also inside the terminator.

        Args:
            data: the next bytes from the server, possibly empty.
        """
        octets = len(data)
        if octets:
            self._make_room(octets)
            self._buf[self._fill : self._fill + octets] = data  # same length: copied in place
            self._fill += octets

    def receive_into(self, recv_into: Callable[[memoryview], int], octets: int) -> int:
        """Read at most ``octets`` octets straight into the receive buffer at its fill mark (no copy).

        Args:
            recv_into: a socket's ``recv_into``: fills a prefix of the view it is given and returns
                how many octets it wrote (0: the peer closed the connection).
            octets: the most to read, at least 1.

        Returns:
            The octets read, as ``recv_into`` returned them.

        Raises:
            Whatever ``recv_into`` raises (``OSError``, timeouts); nothing is added then.
        """
        self._make_room(octets)
        start = self._fill
        with memoryview(self._buf) as view, view[start : start + octets] as room:
            got = recv_into(room)
        self._fill = start + got
        return got

    def lend_buffer(self) -> bytearray:
        """Give up the receive buffer (for a pool, :mod:`.buffers`), keeping the octets still waiting
        in a new buffer of their size (usually none: then an empty one). The lent buffer's contents
        are no longer the decoder's: nothing is read from it again."""
        lent = self._buf
        kept = lent[self._head : self._fill]  # a slice of a bytearray is a new bytearray
        self._rebase(self._head)
        self._buf = kept
        return lent

    def use_buffer(self, buffer: bytearray) -> None:
        """Receive into ``buffer`` from now on (one from a pool, see :mod:`.buffers`; its contents are
        ignored), moving the octets still waiting into it; the old buffer is dropped."""
        waiting = self._fill - self._head
        if len(buffer) < waiting:
            buffer += bytes(waiting - len(buffer))
        with memoryview(buffer) as view:
            view[:waiting] = self._buf[self._head : self._fill]
        self._rebase(self._head)
        self._buf, self._fill = buffer, waiting

    def _rebase(self, shift: int) -> None:
        """Move every index of the reply being decoded down by ``shift`` octets (its octets moved)."""
        if not shift:
            return
        self._head -= shift
        self._fill -= shift
        if self._status is not None:
            self._status_end -= shift
            self._scan_from -= shift
            if self._dots:
                self._dots = [d - shift for d in self._dots]

    def _make_room(self, octets: int) -> None:
        """Have ``octets`` free at the fill mark: move the waiting octets to the front if that is
        enough (a ``memmove`` of what has not been handed out yet), else grow the buffer to what is
        needed (in steps of 16 KiB; a reused buffer rarely grows again)."""
        buf = self._buf
        if len(buf) - self._fill >= octets:
            return
        head = self._head
        if head:
            waiting = self._fill - head
            if waiting:
                with memoryview(buf) as view:
                    view[:waiting] = view[head : self._fill]  # overlapping: memmove
            self._rebase(head)
            if len(buf) - self._fill >= octets:
                return
        need = -(-(self._fill + octets) // _GROW_STEP_OCTETS) * _GROW_STEP_OCTETS
        with memoryview(_ZEROS) as zeros:
            while len(buf) < need:  # no temporary object of the growth's size
                buf += zeros[: need - len(buf)]

    def next_reply(self, *, multiline: bool) -> Reply | None:
        """Return the next complete reply, or None when more bytes are needed.

        Args:
            multiline: True when the command this reply answers has a multi-line ``+OK`` reply. A ``-ERR``
                reply is single-line in either case (RFC 1939 section 3).

        Returns:
            The reply, removed from the buffer; or None (call :meth:`feed`, then ask again).

        Standard: RFC 1939 section 3 (status indicators, multi-line responses, byte-stuffing).

        Raises:
            ProtocolError: the status line is malformed or longer than ``max_status_line_octets``, or the
                reply is larger than ``max_reply_octets``. The decoder is unusable afterwards.
        """
        buf = self._buf
        head, fill = self._head, self._fill
        status = self._status
        if status is None:
            eol = buf.find(_CRLF, head, min(fill, head + self._max_status + 2))
            if eol < 0:
                if fill - head >= self._max_status + 2:
                    raise ProtocolError(
                        f"POP3 status line longer than {self._max_status} octets",
                        line=show_line(bytes(buf[head : min(fill, head + SHOWN_REPLY_OCTETS)])),
                        standard="RFC 2449 section 4",
                    )
                return None
            status = parse_status_line(bytes(buf[head:eol]))
            self._status = status
            self._status_end = eol + 2
            self._scan_from = eol
        if not (multiline and status.ok):
            self._consume(self._status_end)
            return Reply(status)
        term = self._find_terminator(buf)
        if term < 0:
            if fill - head + self._taken > self._max_reply:
                raise self._too_large(fill - head + self._taken)
            return None
        end = term + len(TERMINATOR)
        if end - head + self._taken > self._max_reply:
            raise self._too_large(end - head + self._taken)
        body_start = self._status_end
        if term < body_start:
            # The terminator's leading CRLF is the status line's own: an empty body.
            self._consume(end)
            return Reply(status, b"")
        if buf.startswith(b"..", body_start):
            body_start += 1  # the first line has no preceding CRLF for replace() to see
        if term + 2 - body_start >= TAKE_BUFFER_OCTETS and fill - end < TAKE_BUFFER_OCTETS:
            return Reply(status, self._take_body(body_start, term + 2, end))
        stuffed, dots = self._stuffed, self._dots
        with memoryview(buf) as view:
            if not stuffed:
                raw = view[body_start : term + 2].tobytes()
            elif dots is not None:  # one copy, leaving out each stuffing dot
                parts = [view[a:b] for a, b in _kept_spans(body_start, term + 2, dots)]
                raw = b"".join(parts)
                del parts
            else:
                raw = view[body_start : term + 2].tobytes().replace(_STUFFED, _UNSTUFFED)
        self._consume(end)
        return Reply(status, raw)

    @property
    def body_octets_buffered(self) -> int:
        """Octets of the multi-line ``+OK`` body being received that wait in the buffer (0 when no
        such reply has begun): after :meth:`next_reply` returned None, what :meth:`take_body_part`
        could hand out."""
        return self._fill - self._status_end if self._status is not None else 0

    def take_body_part(self, write: Callable[[memoryview], object]) -> bool:
        """Hand the start of the body being received, un-stuffed, to ``write``; keep only the rest.

        For a body too large to hold whole (the spool, :mod:`maild.spool`): call after
        :meth:`next_reply` (``multiline=True``) returned None. The part ends after a line's CRLF
        that the terminator search has passed, so each line is un-stuffed in one piece: a line
        that begins with ``..`` right after the cut is still recognised (its dot offset is kept),
        and the terminator can never be taken for data. The rest of the reply is then
        decoded as if the part's last CRLF ended its status line, so :meth:`next_reply` returns
        the reply with only the remainder of the body; everything written and that remainder,
        concatenated, are exactly the body :meth:`next_reply` would have returned.
        ``max_reply_octets`` still caps the whole reply.

        Args:
            write: called once or more with consecutive pieces of the part: views of the receive
                buffer, valid only during the call (no copy is made here).

        Returns:
            Whether anything was handed out: False when no multi-line reply has begun, or no
            complete line past the status line has been passed by the search yet.

        Standard: RFC 1939 section 3 (multi-line responses, byte-stuffing).
        """
        if self._status is None:
            return False
        buf = self._buf
        start = self._status_end
        # a CRLF at or before where the search resumes: every line start before it is classified
        cut = buf.rfind(_CRLF, start, min(self._scan_from + 2, self._fill))
        if cut < start:
            return False
        stop = cut + 2
        dots = self._dots
        with memoryview(buf) as view:
            if not self._stuffed:
                write(view[start:stop])
            elif dots is not None:
                for a, b in _kept_spans(start, stop, dots):
                    if b > a:
                        write(view[a:b])
            else:  # more stuffed lines than remembered: the part begins a line, so replace() sees all
                part = view[start:stop].tobytes()
                if part.startswith(b".."):
                    part = part[1:]
                with memoryview(part.replace(_STUFFED, _UNSTUFFED)) as unstuffed:
                    write(unstuffed)
        # the part's last CRLF stays, as the status line's did: the rest decodes unchanged
        self._taken += cut - self._head
        self._head = cut
        self._status_end = stop
        if dots is not None:
            rest = [d for d in dots if d >= stop]
            self._dots = rest
            self._stuffed = bool(rest)
        return True

    def _find_terminator(self, buf: bytearray) -> int:
        """Index of the terminator's CRLF in ``buf``, or -1 when it has not arrived yet.

        One pass over the body: every line starting with "." is found once (its CRLF and dot), and
        classified as the terminator or a stuffed line (RFC 1939 section 3), so that un-stuffing is
        only done for bodies that need it. The search resumes where it stopped, across reads, and
        never looks past the fill mark.
        """
        pos = self._scan_from
        fill = self._fill
        while True:
            hit = _line_dot(buf, pos, fill)
            if hit < 0:
                self._scan_from = max(pos, fill - len(_UNSTUFFED) + 1)
                return -1
            after = buf[hit + 3 : min(hit + 5, fill)]
            if after == _CRLF:
                return hit
            if len(after) < 2 and _CRLF.startswith(after):  # not classifiable before more arrives
                self._scan_from = hit
                return -1
            if after[:1] == b".":
                self._stuffed = True
                dots = self._dots
                if dots is not None:
                    if len(dots) < MAX_STUFFED_LINES:
                        dots.append(hit + 2)
                    else:
                        self._dots = None
            pos = hit + 3

    def _take_body(self, start: int, stop: int, end: int) -> bytes:
        """Hand out the receive buffer itself as the body ``buf[start:stop]`` (no copy of a large
        message), keeping what follows ``end`` (the start of the next reply) in a new buffer.

        Cutting the head off a bytearray only moves its start; cutting the tail shrinks it in place.
        Returns a bytearray (typed ``bytes``: it supports everything the consumers use and is
        never modified afterwards). Un-stuffing moves the octets after each stuffing dot down within
        the same buffer (one pass, no second buffer of the message's size), unless the body had more
        than :data:`MAX_STUFFED_LINES` stuffed lines (then one ``replace``, a copy).
        """
        buf = self._buf
        stuffed, dots = self._stuffed, self._dots
        self._buf = buf[end : self._fill]  # a slice of a bytearray is a new bytearray: one copy of the rest
        self._head, self._fill = 0, len(self._buf)
        self._reset()
        del buf[stop:]
        del buf[:start]
        if stuffed and dots is None:
            buf = buf.replace(_STUFFED, _UNSTUFFED)
        elif stuffed and dots:
            spans = _kept_spans(0, len(buf), [d - start for d in dots])
            write = spans[0][1]
            with memoryview(buf) as view:
                for a, b in spans[1:]:
                    view[write : write + b - a] = view[a:b]  # overlapping: memmove
                    write += b - a
            del buf[write:]
        return cast(bytes, buf)

    def replies(self, *, multiline: bool) -> Iterator[Reply]:
        """Yield every reply that is complete in the buffer now, all of the same kind.

        Args:
            multiline: as for :meth:`next_reply`.

        Raises:
            ProtocolError: as for :meth:`next_reply`.
        """
        while (reply := self.next_reply(multiline=multiline)) is not None:
            yield reply

    def _consume(self, end: int) -> None:
        """The reply ending at index ``end`` has been handed out: the next one starts there."""
        if end >= self._fill:
            self._head = self._fill = 0  # nothing waits: the next read starts at the front
        else:
            self._head = end
        self._reset()

    def _reset(self) -> None:
        self._status = None
        self._status_end = 0
        self._scan_from = 0
        self._stuffed = False
        self._dots = []
        self._taken = 0

    def _too_large(self, received: int) -> ProtocolError:
        self.over_cap_octets = received
        return ProtocolError(
            f"POP3 reply larger than the cap of {self._max_reply} octets", standard="RFC 1939 section 3"
        )
