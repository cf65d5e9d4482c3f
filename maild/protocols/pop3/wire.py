"""Sans-I/O POP3 reply parsing: bytes in, typed values or :class:`~maild.errors.ProtocolError` out.

Nothing here touches a socket. The session (:mod:`.session`) reads bytes from the server, feeds
them to a :class:`ReplyDecoder`, and turns the resulting :class:`Reply` values into maild's model; the
bodies of listings (UIDL, LIST, CAPA) are parsed by :mod:`.listings`.

Standards: RFC 1939 (POP3: status indicators section 3, byte-stuffing section 3, LIST section 5, UIDL
section 7), RFC 2449 (CAPA section 5, response codes section 8, PIPELINING section 6.6), RFC 3206 (the
``AUTH`` and ``SYS/TEMP``/``SYS/PERM`` response codes).

Errors raised here carry no account name (this layer does not know it); the adapter adds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from maild.errors import ProtocolError
from maild.model import SpooledBody

__all__ = [
    "DEFAULT_MAX_REPLY_OCTETS",
    "MAX_STATUS_LINE_OCTETS",
    "MAX_STUFFED_LINES",
    "TERMINATOR",
    "Reply",
    "ReplyDecoder",
    "StatusLine",
    "parse_status_line",
]

TERMINATOR = b"\r\n.\r\n"
"""End of a multi-line reply: CRLF, a line holding a single ".", CRLF (RFC 1939 section 3)."""

MAX_STATUS_LINE_OCTETS = 8192
"""Longest status line accepted, in octets without CRLF. RFC 2449 section 4 allows 512 octets including
CRLF; real servers stay below it, so 16 times that is lenient and still bounds the buffer on garbage."""

DEFAULT_MAX_REPLY_OCTETS = 100 * 2**20
"""Default cap on one reply, in octets (status line, body and terminator, before un-stuffing)."""

_CRLF = b"\r\n"
_STUFFED = b"\r\n.."
TAKE_BUFFER_OCTETS = 2**20
"""A multi-line body of at least this many octets, with less than this after it in the receive buffer,
is handed out as the receive buffer itself instead of a copy (see ``ReplyDecoder._take_body``)."""
_UNSTUFFED = b"\r\n."
MAX_STUFFED_LINES = 1024
"""Most byte-stuffed lines of one body whose dots are remembered while it is scanned (their offsets,
about 36 KiB at most), so that un-stuffing copies the body once (a small body) or moves it within its
own buffer (a large one); a body with more is un-stuffed by one ``replace``, a second copy."""
# RFC 2449 section 8: resp-code = "[" resp-level *("/" resp-level) "]", rchar = %x21-2E / %x30-5C / %x5E-7F.
_RESP_CODE_RE = re.compile(r"\[([\x21-\x2e\x30-\x5c\x5e-\x7e]+(?:/[\x21-\x2e\x30-\x5c\x5e-\x7e]+)*)\]")
_STATUS_RE = re.compile(rb"(\+OK|-ERR)(?:[ \t]+(.*))?", re.IGNORECASE | re.DOTALL)


DENSE_DOTS_OCTETS = 64
"""The scan for lines starting with "." (:func:`_line_dot`) looks for the dot alone (``memchr``, several
GB/s) and checks the two octets before it; when more than :data:`DENSE_DOTS_MISSES` dots in a row are
not at a line start and they come closer than one per this many octets, it finishes the search with
the slower three-octet ``find`` (about 1.2 GB/s), so text full of dots costs no more than before."""

DENSE_DOTS_MISSES = 16
"""See :data:`DENSE_DOTS_OCTETS`."""


def _line_dot(buf: bytearray, pos: int) -> int:
    """Index of the next ``CRLF "."`` in ``buf`` at or after ``pos``, or -1; as ``buf.find(b"\\r\\n.", pos)``.

    Most mail has few dots and fewer at a line start: finding each dot with ``memchr`` and looking
    back two octets is several times faster than the general search for three octets, which is
    used instead where dots are dense (see :data:`DENSE_DOTS_OCTETS`).
    """
    start = pos
    misses = 0
    while True:
        dot = buf.find(b".", pos + 2)
        if dot < 0:
            return -1
        if buf[dot - 1] == 10 and buf[dot - 2] == 13:  # LF and CR before it
            return dot - 2
        misses += 1
        pos = dot - 1
        if misses > DENSE_DOTS_MISSES and dot - start < misses * DENSE_DOTS_OCTETS:
            return buf.find(_UNSTUFFED, pos)


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


def _show(line: bytes) -> str:
    """Render a reply line for an error message: decoded leniently, at most 200 characters."""
    return line[:200].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class StatusLine:
    """A POP3 status line (RFC 1939 section 3) with its optional response code (RFC 2449 section 8).

    Attributes:
        ok: True for ``+OK``, False for ``-ERR``.
        code: the response code without brackets, upper-cased, levels separated by ``/``, e.g.
            ``"SYS/TEMP"``, ``"AUTH"``, ``"IN-USE"``, ``"LOGIN-DELAY"``; None when the line has none. A server
            that did not announce RESP-CODES may still send one; it is parsed the same way.
        text: the human-readable text after the indicator and code, stripped; may be empty.
    """

    ok: bool
    code: str | None
    text: str

    def has_code(self, code: str) -> bool:
        """Whether the response code is ``code`` or one of its sub-levels.

        ``has_code("SYS")`` is true for ``SYS/TEMP``; RFC 2449 section 8 makes codes hierarchical so that
        clients can act on the levels they know.

        Args:
            code: an upper-case code such as ``"SYS/TEMP"``.
        """
        return self.code is not None and (self.code == code or self.code.startswith(code + "/"))

    def render(self) -> str:
        """Return the line as the server sent it, normalised, e.g. ``"-ERR [SYS/TEMP] try later"``."""
        parts = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            parts.append(f"[{self.code}]")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def parse_status_line(line: bytes) -> StatusLine:
    """Parse one status line.

    Args:
        line: the line, with or without its trailing CRLF, e.g. ``b"-ERR [IN-USE] locked\\r\\n"``. The
            indicator is matched case-insensitively (lenient); text is decoded as UTF-8 with replacement.

    Returns:
        The parsed status line.

    Standard: RFC 1939 section 3 (``+OK``/``-ERR``), RFC 2449 section 8 (response codes), RFC 3206.

    Raises:
        ProtocolError: the line does not start with ``+OK`` or ``-ERR`` followed by whitespace or its end.
    """
    if line.endswith(_CRLF):
        line = line[:-2]
    match = _STATUS_RE.fullmatch(line)
    if match is None:
        raise ProtocolError("malformed POP3 status line", line=_show(line), standard="RFC 1939 section 3")
    ok = match.group(1).upper() == b"+OK"
    text = (match.group(2) or b"").decode("utf-8", "replace").strip()
    code: str | None = None
    code_match = _RESP_CODE_RE.match(text)
    if code_match is not None:
        code = code_match.group(1).upper()
        text = text[code_match.end() :].strip()
    return StatusLine(ok=ok, code=code, text=text)


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete server reply.

    Attributes:
        status: the status line.
        body: for a multi-line ``+OK`` reply, the data lines after un-stuffing (RFC 1939 section 3): every
            line keeps its CRLF, the terminating ``.`` line is removed, octets are otherwise exactly as
            sent; ``b""`` for an empty listing or message. None for single-line replies and for ``-ERR``
            (which is always single-line), and for a body spooled or dropped (below).
        spooled: the body written to a spool file instead (:mod:`maild.spool`: a large RETR reply,
            :mod:`.spooling`), else None.
        spool_error: why a body that was to be spooled was read and dropped instead (the spool was
            full: the message is not retrieved this time), else None.
    """

    status: StatusLine
    body: bytes | None = None
    spooled: SpooledBody | None = None
    spool_error: str | None = None


class ReplyDecoder:
    """Incremental decoder for a stream of POP3 replies, single- and multi-line, pipelined or not.

    Feed it bytes in chunks of any size with :meth:`feed`; pull replies with :meth:`next_reply`, telling it
    whether the command the next reply answers has a multi-line reply (RETR, UIDL, LIST, CAPA without
    argument) or not. Replies come out in the order they were sent (RFC 2449 section 6.6).

    Efficiency: one :meth:`bytearray.find` pass per body finds every line starting with "." (resuming
    where the last search ended), which tells the terminator and whether the body is byte-stuffed,
    and remembers where the stuffing dots are (up to :data:`MAX_STUFFED_LINES`): un-stuffing leaves
    them out while the body is copied out of the receive buffer (no second copy), or moves the octets
    within the buffer handed out as a large body; one :meth:`bytes.replace` only for bodies with more
    stuffed lines. No per-line Python loop; lines of any length work.

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
        self._max_reply = max_reply_octets
        self._max_status = max_status_line_octets
        # State for the reply at the head of the buffer; reset when it is consumed.
        self._status: StatusLine | None = None
        self._status_end = 0  # index just after the status line's CRLF
        self._scan_from = 0  # where the next terminator search starts
        self._stuffed = False  # a line of the reply at the head of the buffer is byte-stuffed
        self._dots: list[int] | None = []  # offsets of the stuffing dots; None: more than the cap
        self._taken = 0  # octets of the reply at the head of the buffer handed out by take_body_part

    @property
    def buffered_octets(self) -> int:
        """Octets received but not yet returned as part of a reply."""
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
        self._buf += data

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
        status = self._status
        if status is None:
            eol = buf.find(_CRLF, 0, self._max_status + 2)
            if eol < 0:
                if len(buf) >= self._max_status + 2:
                    raise ProtocolError(
                        f"POP3 status line longer than {self._max_status} octets",
                        line=_show(bytes(buf[:200])),
                        standard="RFC 2449 section 4",
                    )
                return None
            status = parse_status_line(bytes(buf[:eol]))
            self._status = status
            self._status_end = eol + 2
            self._scan_from = eol
        if not (multiline and status.ok):
            self._consume(self._status_end)
            return Reply(status)
        term = self._find_terminator(buf)
        if term < 0:
            if len(buf) + self._taken > self._max_reply:
                raise self._too_large()
            return None
        end = term + len(TERMINATOR)
        if end + self._taken > self._max_reply:
            raise self._too_large()
        body_start = self._status_end
        if term < body_start:
            # The terminator's leading CRLF is the status line's own: an empty body.
            self._consume(end)
            return Reply(status, b"")
        if buf.startswith(b"..", body_start):
            body_start += 1  # the first line has no preceding CRLF for replace() to see
        if term + 2 - body_start >= TAKE_BUFFER_OCTETS and len(buf) - end < TAKE_BUFFER_OCTETS:
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
        return len(self._buf) - self._status_end if self._status is not None else 0

    def take_body_part(self, write: Callable[[memoryview], object]) -> bool:
        """Hand the start of the body being received, un-stuffed, to ``write``; keep only the rest.

        For a body too large to hold whole (the spool, :mod:`maild.spool`): call after
        :meth:`next_reply` (``multiline=True``) returned None. The part ends after a line's CRLF
        that the terminator search has passed, so each line is un-stuffed in one piece: a line
        that begins with ``..`` right after the cut is still recognised (its dot offset is kept,
        rebased), and the terminator can never be taken for data. The rest of the reply is then
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
        cut = buf.rfind(_CRLF, start, self._scan_from + 2)
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
        del buf[:cut]
        self._taken += cut
        self._status_end = 2
        self._scan_from -= cut
        if dots is not None:
            rest = [d - cut for d in dots if d >= stop]
            self._dots = rest
            self._stuffed = bool(rest)
        return True

    def _find_terminator(self, buf: bytearray) -> int:
        """Index of the terminator's CRLF in ``buf``, or -1 when it has not arrived yet.

        One pass over the body: every line starting with "." is found once (its CRLF and dot), and
        classified as the terminator or a stuffed line (RFC 1939 section 3), so that un-stuffing is
        only done for bodies that need it. The search resumes where it stopped, across feeds.
        """
        pos = self._scan_from
        while True:
            hit = _line_dot(buf, pos)
            if hit < 0:
                self._scan_from = max(pos, len(buf) - len(_UNSTUFFED) + 1)
                return -1
            after = buf[hit + 3 : hit + 5]
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
        self._buf = buf[end:]  # a slice of a bytearray is a new bytearray: one copy of the rest
        self._status = None
        self._status_end = 0
        self._scan_from = 0
        self._stuffed = False
        self._dots = []
        self._taken = 0
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
        del self._buf[:end]
        self._status = None
        self._status_end = 0
        self._scan_from = 0
        self._stuffed = False
        self._dots = []
        self._taken = 0

    def _too_large(self) -> ProtocolError:
        return ProtocolError(
            f"POP3 reply larger than the cap of {self._max_reply} octets", standard="RFC 1939 section 3"
        )
