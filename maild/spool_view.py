"""What the store reads of a spooled message, kept while it was written: the spool is read once.

A spooled message (:mod:`maild.spool`) is parsed at commit for its header summary, MIME parts,
``has_documents`` and index text (:func:`maild.archive.parse.parse`,
:func:`maild.archive.index_text.index_text`). Those functions read a message through ``find``,
slices and ``startswith``; this module makes those calls answer from memory, so that the store's
only read of the spool file is the copy into the blob.

What is kept (:class:`MarkRecorder`, fed every written part in order):

* the head, the first :data:`~maild.spool.SPOOL_HEAD_OCTETS` (the writer keeps it): the top-level
  header section and, in most mail, the text parts;
* past the head, a *mark*: each occurrence of ``--`` (where every MIME boundary delimiter begins,
  RFC 2046 section 5.1.1) with the :data:`SPOOL_MARK_OCTETS` that follow it and the
  :data:`SPOOL_MARK_BEFORE_OCTETS` before it. A delimiter line and
  the part header section after it (the part's Content-Type, Content-Disposition and file name: what
  ``has_documents`` and the attachment names read) lie in it. Base64 (RFC 2045 section 6.8) has no
  ``-``, so an attachment's body keeps nothing; a run of dashes (``------``) is one mark.
  All marks of a message together keep at most :data:`SPOOL_MARKS_MAX_OCTETS`; past that bound the
  rest of the message keeps none (:attr:`Kept.marks_to` says where it stopped).

How :class:`SpooledView` answers, exactly as the same call on the whole ``bytes`` would:

* a slice or index inside a kept range: from memory;
* ``find(sub, start, end)``: from memory when the kept range holding ``start`` holds the first
  occurrence (nothing before it can be missing), or when ``sub`` begins with ``--`` and is at most
  :data:`SPOOL_MARK_OCTETS` long: every occurrence of such a ``sub`` starts with a mark, so it lies
  wholly in kept octets (below :attr:`Kept.marks_to`), and the kept ranges alone say where the first
  one is, or that there is none;
* anything else reads the spool file (``pread``, in parts of at most
  :data:`~maild.spool.SPOOL_PART_OCTETS`) and counts it in :attr:`SpooledView.file_reads`. What
  still does, by construction: a part header section longer than :data:`SPOOL_MARK_OCTETS` past the
  head; a text part shown inline that lies past the head (its first octets up to the index's limits,
  ``maild.archive.index_text``); a boundary longer than :data:`SPOOL_MARK_OCTETS`; a message with
  more than :data:`SPOOL_MARKS_MAX_OCTETS` of marks, for searches past where they stopped.
  The benchmark corpus's large messages read nothing (tests/unit/test_spool_view.py).

Thread safety: a recorder belongs to its writer; a view to the one thread parsing the message.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Protocol

SPOOL_MARK_OCTETS = 8 * 2**10
"""Octets kept from each ``--`` past a spooled message's head (8 KiB): a delimiter line and a part
header section are far shorter (RFC 2046 section 5.1.1 caps a boundary at 70 characters; a part
header section is a few hundred octets). A longer part header section is read from the file."""
SPOOL_MARKS_MAX_OCTETS = 256 * 2**10
"""Most octets one spooled message keeps in marks past its head (256 KiB): about thirty parts'
worth of whole marks; a message with more dashes past its head (a long text part of ``---``
rules) keeps no more, and its later boundaries are sought in the file."""

SPOOL_MARK_BEFORE_OCTETS = 2
"""Octets kept before each ``--`` past the head: the line break a delimiter must follow and that
belongs to it (RFC 2046 section 5.1.1), which the MIME walk reads."""

_DASH = ord("-")
_DASH_RUN = re.compile(rb"-+")
_TAIL_OCTETS = SPOOL_MARK_BEFORE_OCTETS + 1  # a mark across two writes starts one octet early


@dataclass(frozen=True, slots=True)
class Kept:
    """The octets of a spooled message kept in memory: the head and the marks, merged.

    Attributes:
        ranges: (offset, octets) of each kept range, sorted, disjoint and not adjacent; the head
            is the first (offset 0).
        marks_to: every ``--`` starting before this offset lies in ``ranges`` with the
            :data:`SPOOL_MARK_OCTETS` that follow it (or the message's end): the message's size
            unless :data:`SPOOL_MARKS_MAX_OCTETS` was reached.
    """

    ranges: tuple[tuple[int, bytes], ...]
    marks_to: int

    @property
    def octets(self) -> int:
        """Octets held in memory (the head and the marks)."""
        return sum(len(data) for _, data in self.ranges)


class MarkRecorder:
    """Finds the marks of a message written in parts and keeps their octets (see the module docstring).

    Args:
        head_octets: octets the writer keeps from the start (marks wholly inside are not kept twice).
        mark_octets: octets kept from each ``--`` (:data:`SPOOL_MARK_OCTETS`).
        max_octets: the bound on all marks (:data:`SPOOL_MARKS_MAX_OCTETS`).
    """

    __slots__ = ("_accepted", "_head", "_islands", "_mark", "_max", "_size", "_stopped_at", "_tail")

    def __init__(
        self,
        head_octets: int,
        mark_octets: int = SPOOL_MARK_OCTETS,
        max_octets: int = SPOOL_MARKS_MAX_OCTETS,
    ) -> None:
        self._head = head_octets
        self._mark = mark_octets
        self._max = max_octets
        self._islands: list[tuple[int, int, bytearray]] = []  # (start, wanted end, octets so far)
        self._accepted = 0
        self._size = 0
        self._tail = b""  # the last octets written before the current part (what a mark may start in)
        self._stopped_at: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next written octets (in order): fill the open mark, find and keep new ones."""
        n = len(data)
        if not n:
            return
        base = self._size
        if self._islands:  # the last mark still wants octets: they start here
            start, wanted, octets = self._islands[-1]
            filled = start + len(octets)
            if filled < wanted:
                octets += data[: wanted - filled]
        if self._stopped_at is None:
            if self._tail[-1:] == b"-" and data[0] == _DASH:  # a "--" across two writes
                self._keep(base - 1, base - 1 + self._mark, data, base)
            if self._stopped_at is None:
                self._scan(data, base)
        self._size = base + n
        self._tail = (self._tail + bytes(data[-_TAIL_OCTETS:]))[-_TAIL_OCTETS:]

    def _scan(self, data: bytes | bytearray | memoryview, base: int) -> None:
        # bytes.find of one octet is memchr (0.03 ms per MiB; base64 has no "-" at all), where a
        # regular expression or find(b"--") took 0.4-1 ms per MiB: as much as the read it saves.
        # A view (POP3 hands over views of its receive buffer) is copied first (0.05 ms per MiB).
        raw = data if not isinstance(data, memoryview) else data.tobytes()
        n = len(raw)
        pos = raw.find(b"-")
        while 0 <= pos < n - 1:
            if raw[pos + 1] != _DASH:  # a hyphen
                pos = raw.find(b"-", pos + 2)
                continue
            run = _DASH_RUN.match(raw, pos)
            assert run is not None
            end = run.end()
            # occurrences of "--" at pos .. end - 2: each wants its mark_octets
            if not self._keep(base + pos, base + end - 2 + self._mark, raw, base):
                return
            pos = raw.find(b"-", end)

    def _keep(self, at: int, wanted: int, data: bytes | bytearray | memoryview, base: int) -> bool:
        """Keep [at, wanted) (merged with the last mark when they touch); False once the bound is hit."""
        if wanted <= self._head:
            return True
        if self._islands and at <= self._islands[-1][1]:
            start, old, octets = self._islands[-1]
            if wanted <= old:
                return True
            if self._accepted + wanted - old > self._max:
                self._stopped_at = at
                return False
            self._accepted += wanted - old
            self._islands[-1] = (start, wanted, octets)
            filled = start + len(octets)
            octets += data[max(0, filled - base) : wanted - base]
            return True
        start = max(0, at - SPOOL_MARK_BEFORE_OCTETS)
        if self._accepted + wanted - start > self._max:
            self._stopped_at = at
            return False
        self._accepted += wanted - start
        octets = bytearray(self._tail[len(self._tail) - (base - start) :] if start < base else b"")
        octets += data[max(0, start - base) : wanted - base]
        self._islands.append((start, wanted, octets))
        return True

    def finish(self, head: bytes) -> Kept:
        """The kept octets, ``head`` (the writer's first octets) merged with the marks."""
        ranges: list[tuple[int, bytes]] = [(0, head)]
        for start, _, octets in self._islands:
            last_start, last = ranges[-1]
            last_end = last_start + len(last)
            if start <= last_end:
                if start + len(octets) > last_end:
                    ranges[-1] = (last_start, last + bytes(octets[last_end - start :]))
            else:
                ranges.append((start, bytes(octets)))
        marks_to = self._size if self._stopped_at is None else self._stopped_at
        return Kept(tuple(ranges), marks_to)


class _Body(Protocol):
    """What a view reads: ``maild.model.SpooledBody`` (not imported: the model names :class:`Kept`)."""

    @property
    def size_octets(self) -> int: ...
    @property
    def kept(self) -> Kept: ...
    def read_at(self, offset: int, octets: int) -> bytes: ...


_VIEW_FIRST_OCTETS = 64 * 2**10
"""Octets a :class:`SpooledView` search reads first from the file (a line end, a boundary close by);
it reads :data:`~maild.spool.SPOOL_PART_OCTETS` at a time after that."""
_VIEW_PART_OCTETS = 2**20
"""Octets a :class:`SpooledView` reads from the file at a time after the first, and the largest
read it keeps for the next call (the same as ``maild.spool.SPOOL_PART_OCTETS``)."""


class SpooledView:
    """A read-only, bytes-like view of a spooled message for the archive's parsers.

    Supports exactly what :mod:`maild.message`, :mod:`maild.archive.mime` and
    :mod:`maild.archive.index_text` do with a message's octets: ``len``, an index, a slice (a copy
    of that range), ``find(sub, start, end)`` and ``startswith(prefix, start)``; each answers as the
    same call on the whole ``bytes`` would (tests/unit/test_spool.py and test_spool_view.py compare
    them). Kept octets (:class:`Kept`) answer from memory; the rest is read with ``pread`` in parts of
    at most a mebibyte, the last one kept, so a walk over the parts holds about a megabyte, never the
    message.

    Attributes:
        file_reads: how many times the spool file was read (0 when the kept octets answered all).
    """

    __slots__ = ("_body", "_cache", "_cache_at", "_marks_to", "_ranges", "_starts", "file_reads")

    def __init__(self, body: _Body) -> None:
        self._body = body
        kept = body.kept
        self._ranges = kept.ranges
        self._starts = [start for start, _ in kept.ranges]
        self._marks_to = kept.marks_to
        self._cache = b""
        self._cache_at = 0
        self.file_reads = 0

    def __len__(self) -> int:
        return self._body.size_octets

    def _range_at(self, pos: int) -> int:
        """Index of the kept range holding offset ``pos``, or -1."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0:
            start, data = self._ranges[i]
            if pos < start + len(data):
                return i
        return -1

    def _read(self, start: int, stop: int) -> bytes:
        size = self._body.size_octets
        start, stop = max(0, min(start, size)), max(0, min(stop, size))
        if stop <= start:
            return b""
        i = self._range_at(start)
        if i >= 0:
            at, data = self._ranges[i]
            if stop <= at + len(data):
                return data[start - at : stop - at]
        at, cache = self._cache_at, self._cache
        if at <= start and stop <= at + len(cache):
            return cache[start - at : stop - at]
        self.file_reads += 1
        data = self._body.read_at(start, stop - start)
        if len(data) <= _VIEW_PART_OCTETS:
            self._cache, self._cache_at = data, start
        return data

    def __getitem__(self, index: int | slice) -> int | bytes:
        size = self._body.size_octets
        if isinstance(index, slice):
            start, stop, step = index.indices(size)
            if step != 1:
                raise ValueError("a spooled view is sliced with step 1 only")
            return self._read(start, stop)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("spooled view index out of range")
        return self._read(index, index + 1)[0]

    def startswith(self, prefix: bytes | tuple[bytes, ...], start: int = 0) -> bool:
        """As :meth:`bytes.startswith` with a start offset."""
        prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
        if start < 0:
            start = max(0, start + self._body.size_octets)
        return any(self._read(start, start + len(p)) == p for p in prefixes)

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """As :meth:`bytes.find` (``start``/``end`` offsets, negative ones counted from the end)."""
        size = self._body.size_octets
        start, end, _ = slice(start, end).indices(size)
        if not sub:
            return start if start <= end else -1
        if start + len(sub) > end:
            return -1
        i = self._range_at(start)
        if i >= 0:  # the kept range at start holds the first occurrence, or ends past `end`
            at, data = self._ranges[i]
            stop = min(end, at + len(data))
            hit = data.find(sub, start - at, stop - at)
            if hit >= 0:
                return at + hit
            if stop == end:
                return -1
        if sub.startswith(b"--") and len(sub) <= SPOOL_MARK_OCTETS:
            found = self._find_marked(sub, start, end)
            if found is not None:
                return found
        return self._find_in_file(sub, start, end)

    def _find_marked(self, sub: bytes, start: int, end: int) -> int | None:
        """``find`` of a ``sub`` beginning with ``--`` from the kept ranges alone; None when they cannot
        say (past :attr:`Kept.marks_to`)."""
        first = max(0, bisect.bisect_right(self._starts, start) - 1)
        for at, data in self._ranges[first:]:
            if at >= end:
                break
            lo, hi = max(start, at), min(end, at + len(data))
            if hi - lo < len(sub):
                continue
            hit = data.find(sub, lo - at, hi - at)
            if hit >= 0:
                return at + hit if at + hit < self._marks_to else None
        return -1 if end - len(sub) < self._marks_to else None

    def _find_in_file(self, sub: bytes, start: int, end: int) -> int:
        overlap = len(sub) - 1
        pos = start
        step = _VIEW_FIRST_OCTETS
        while pos + len(sub) <= end:
            stop = min(end, pos + step + overlap)
            chunk = self._read(pos, stop)
            hit = chunk.find(sub)
            if hit >= 0:
                return pos + hit
            if stop >= end:
                return -1
            pos = stop - overlap
            step = _VIEW_PART_OCTETS
        return -1
