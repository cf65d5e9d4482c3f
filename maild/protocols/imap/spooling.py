"""A large ``BODY[]`` literal written to the spool as it arrives (:mod:`maild.spool`), never held
whole, and never written on the event loop.

aioimaplib collects a literal's octets in the command's ``_resp_literal_data`` (``extend`` per
received chunk, ``len`` to see how many are still owed) and hands the collected object to
``append_to_resp`` when the count is reached. The streaming FETCH command
(:class:`~maild.protocols.imap.commands._StreamingFetchCommand`) puts a :class:`SpoolingLiteral`
there instead for a literal of at least the spool's threshold. On the event loop (inside
``data_received``) it only gathers the received octets into parts of :data:`SPOOL_QUEUE_PART_OCTETS`;
each part is written (hashed, its marks kept, ``write(2)``) by the process's spool writer thread
(:mod:`.spool_writer`), fed by a queue: the literal is queued once :data:`SPOOL_WRITE_PARTS` parts
wait (or it is complete) and stays queued until the thread has written every part waiting (those
that come meanwhile too, in order), so
a slow or congested disk never stalls the loop that serves every account's connections, and the
loop is called back only when it must act (reading may resume, the literal is complete, the spool
failed), not after every run of parts as the executor jobs of sessions 8-12 were. The part
buffers are kept for the next literals of the loop's thread (at most :data:`SPOOL_POOL_PARTS`), not
allocated per literal. At the end it becomes a
:class:`~maild.protocols.imap.lex.SpooledLiteral` whose ``outcome`` resolves once the last part is
written; the streaming retrieval awaits it before it hands the message on
(:mod:`maild.protocols.imap.stream`).

Bounds: at most :data:`SPOOL_QUEUE_PARTS` parts wait for the writer (plus the part being gathered
and the one being written: 1.25 MiB in all; the first version held a 1 MiB pending part);
when the queue is that long, reading from the connection pauses
(``transport.pause_reading``: TCP flow control then holds the server back) until the writer has
brought it down to :data:`SPOOL_RESUME_PARTS`. The writer thread returns to its queue when a
literal has no part waiting: it never waits for the network, so one literal cannot hold up another.

When the spool cannot take the message (:class:`~maild.spool.SpoolFull`, or a write failing) the
rest of the literal is still read and dropped, and the outcome is the reason (``"local spool:
..."``): that message fails this cycle, nothing else (docs/guarantee.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable

from maild.protocols.imap import spool_writer
from maild.protocols.imap.lex import SpooledLiteral
from maild.spool import LenientSpoolWriter, Spool, SpooledBody

SPOOL_QUEUE_PART_OCTETS = 256 * 2**10
"""Octets of one part handed to the writer (256 KiB): small enough that the parts waiting stay within
what the first version held (a 1 MiB part, gathered on the loop)."""
SPOOL_QUEUE_PARTS = 5
"""Parts of :data:`SPOOL_QUEUE_PART_OCTETS` (768 KiB in all) a literal may have waiting for its
writer before reading from the connection pauses. One account's peak in the benchmark: 1 MiB parts,
four waiting, +4-5 MB; 256 KiB parts, four waiting, +2 MB; two waiting, +1 MB (docs/performance.md,
"Session 8: the spool's CPU"). One more than :data:`SPOOL_WRITE_PARTS`, so that a writer that keeps
up never pauses reading: at 2 (the hand-over) every run of parts was a pause, a resume and a call
from the writer thread into the loop; at 3 fifty accounts' c fetch: user 5.41 -> 4.85 s, wake-ups
0.561 -> 0.496 per message, peak RSS the same (docs/performance.md, "Session 13: fifty accounts'
hand-offs")."""
DROP_READ_OCTETS = 64 * 2**10
"""Octets one direct read of a literal the spool failed takes into a scratch buffer, to be dropped."""
SPOOL_RESUME_PARTS = 0
"""Parts still waiting when reading resumes after a pause: the writer thread resumes reading as it
takes the last waiting part (it writes that part while data comes). Each resume is a call into the
loop from the writer thread (a wake-up through the loop's self-pipe), so reading pauses at
:data:`SPOOL_QUEUE_PARTS` and resumes at none waiting: one wake-up per :data:`SPOOL_QUEUE_PARTS`
parts when the disk is slower than the connection (at one waiting it was one per part;
docs/performance.md, "Session 13: fifty accounts' hand-offs")."""
SPOOL_WRITE_PARTS = 4
"""Parts waiting before the literal is handed to the writer thread (or fewer once the literal is
complete): the thread then writes them and those that come meanwhile. Handing over at every part
woke the idle thread once per part (a context switch, and the thread then taking the GIL from the
loop): with fifty connections on one loop the writer keeps up and went idle after nearly every part
(docs/performance.md, "Session 13: fifty accounts' hand-offs"). At most :data:`SPOOL_QUEUE_PARTS`:
reading pauses there, and only the writer resumes it."""
SPOOL_POOL_PARTS = 4
"""Part buffers (of :data:`SPOOL_QUEUE_PART_OCTETS`, 1 MiB in all) kept per thread once a literal's
writer is done with them, for the next spooled literals: a new 256 KiB buffer is a fresh mapping
(``maild.service.memory.MMAP_THRESHOLD_OCTETS``), zero-filled page by page (64 page faults each)
and unmapped when freed. More are made when more literals spool at once; those are freed."""

assert SPOOL_WRITE_PARTS <= SPOOL_QUEUE_PARTS  # reading pauses at SPOOL_QUEUE_PARTS: the writer must run

_pools = threading.local()


def _pool() -> list[bytearray]:
    """This thread's free part buffers (at most :data:`SPOOL_POOL_PARTS`)."""
    try:
        return _pools.parts  # type: ignore[no-any-return]
    except AttributeError:
        _pools.parts = []
        return _pools.parts  # type: ignore[no-any-return]


def _take_part() -> bytearray:
    """A part buffer of :data:`SPOOL_QUEUE_PART_OCTETS` octets: a pooled one, else a new one. Its
    content is stale: only what is received into it is ever written."""
    pool = _pool()
    return pool.pop() if pool else bytearray(SPOOL_QUEUE_PART_OCTETS)


def _give_part(part: bytearray | memoryview) -> None:
    """Return a part buffer nobody uses any more (a view's underlying buffer) to the pool."""
    buffer = part.obj if isinstance(part, memoryview) else part
    pool = _pool()
    if type(buffer) is bytearray and len(buffer) == SPOOL_QUEUE_PART_OCTETS and len(pool) < SPOOL_POOL_PARTS:
        pool.append(buffer)


class SpoolingLiteral:
    """Stands in for aioimaplib's literal buffer of one large literal (``extend``, ``len``).

    Runs on the event loop; the file writes run in the spool writer thread (:mod:`.spool_writer`).

    Args:
        spool: where the octets go.
        size_octets: the literal's announced size.
        loop: the connection's event loop.
        pause_reading: stops reading from the connection (see the module docstring).
        resume_reading: reads again after ``pause_reading``.
    """

    def __init__(
        self,
        spool: Spool,
        size_octets: int,
        loop: asyncio.AbstractEventLoop,
        pause_reading: Callable[[], None],
        resume_reading: Callable[[], None],
    ) -> None:
        self._writer = LenientSpoolWriter(spool)
        self._size = size_octets
        self._loop = loop
        self._pause = pause_reading
        self._resume = resume_reading
        self._received = 0
        self._pending = _take_part()
        self._filled = 0
        self._scratch = bytearray()  # reads of a failed literal go here to be dropped (made when needed)
        # shared with the writer thread, under ``_lock``: the parts waiting, whether the literal is
        # in the writer's queue or being written (``_scheduled``), paused, finished, and which
        # call into the loop the writer has sent and the loop not yet run
        self._lock = threading.Lock()
        self._queue: deque[bytearray | memoryview] = deque()
        self._scheduled = False
        self._paused = False
        self._finished = False
        self._resume_sent = False
        self._failure_sent = False
        self._returned: deque[bytearray | memoryview] = deque()  # written: back to the loop's pool
        self._failed = False  # loop only: the spool failed, the rest of the literal is dropped
        self._completed = False  # loop only
        self._outcome: asyncio.Future[SpooledBody | str] = loop.create_future()
        self.pauses = 0
        """How often this literal paused reading (for tests and diagnostics)."""

    def __len__(self) -> int:
        """Octets received so far (what aioimaplib compares with the announced size)."""
        return self._received

    @property
    def queued_parts(self) -> int:
        """Parts waiting for the writer now (not counting the one being written)."""
        with self._lock:
            return len(self._queue)

    def extend(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next received octets (aioimaplib never passes more than are owed). ``data`` may
        be a view of a reused read buffer: it is copied into the part being gathered."""
        n = len(data)
        self._received += n
        if self._failed:
            return  # dropped: the spool failed for this message
        done = 0
        while done < n:  # into preallocated part buffers (growing a bytearray cost reallocations)
            take = min(n - done, SPOOL_QUEUE_PART_OCTETS - self._filled)
            self._pending[self._filled : self._filled + take] = data[done : done + take]
            self._filled += take
            done += take
            if self._filled == SPOOL_QUEUE_PART_OCTETS:
                self._enqueue(self._pending)

    def receive_buffer(self, owed: int) -> memoryview:
        """Where the socket reads the next octets straight into (the protocol's direct literal read,
        :class:`~maild.protocols.imap.reading.DirectSink`): the free rest of the part being
        gathered, at most ``owed`` octets, so a large literal is never copied out of the shared read
        buffer first. Once the spool failed, a scratch buffer whose octets are dropped."""
        if self._failed:
            if len(self._scratch) == 0:
                self._scratch = bytearray(DROP_READ_OCTETS)
            return memoryview(self._scratch)[: max(1, min(owed, DROP_READ_OCTETS))]
        free = SPOOL_QUEUE_PART_OCTETS - self._filled
        return memoryview(self._pending)[self._filled : self._filled + max(1, min(owed, free))]

    def received_into(self, nbytes: int) -> None:
        """``nbytes`` octets were read into the last :meth:`receive_buffer`: taken as :meth:`extend`
        takes them, without the copy."""
        self._received += nbytes
        if self._failed:
            return
        self._filled += nbytes
        if self._filled == SPOOL_QUEUE_PART_OCTETS:
            self._enqueue(self._pending)

    def finish(self) -> SpooledLiteral:
        """The literal's stand-in for the response; its outcome resolves when the writes are done."""
        last = memoryview(self._pending)[: self._filled] if self._filled and not self._failed else None
        if last is None and not self._failed:
            _give_part(self._pending)  # nothing of it to write
        self._pending, self._filled = bytearray(), 0
        with self._lock:
            self._finished = True  # the writer completes the literal when it has drained it
            if last is not None:
                self._queue.append(last)
            start = bool(self._queue) and not self._scheduled
            self._scheduled = self._scheduled or start
            now = not self._scheduled  # nothing waiting, nothing being written: complete here
        if start:
            spool_writer.submit(self)
        elif now:
            self._complete()
        return SpooledLiteral(self._size, self._outcome)

    def _enqueue(self, part: bytearray | memoryview) -> None:
        """A part is gathered (on the loop): queue it for the writer thread, which is woken only
        when it has no part of this literal waiting already; pause reading once
        :data:`SPOOL_QUEUE_PARTS` wait."""
        with self._lock:
            self._queue.append(part)
            start = not self._scheduled and len(self._queue) >= SPOOL_WRITE_PARTS
            self._scheduled = self._scheduled or start
            pause = len(self._queue) >= SPOOL_QUEUE_PARTS and not self._paused
            if pause:
                self._paused = True
        if start:
            spool_writer.submit(self)
        self._recycle()
        self._pending = _take_part()
        self._filled = 0
        if pause:
            self.pauses += 1
            self._pause()

    def write_waiting(self) -> None:
        """In the writer thread (:mod:`.spool_writer`): write the waiting parts in order until none
        is left, parts the loop adds meanwhile too. Calls back into the loop only to resume reading
        (paused, and at most :data:`SPOOL_RESUME_PARTS` left waiting as it takes a part), to report
        the spool's failure, and to complete the literal (it is finished and its last part written)."""
        while True:
            with self._lock:
                if not self._queue:
                    self._scheduled = False  # the next part the loop gathers submits it again
                    complete = self._finished
                    break
                part = self._queue.popleft()
                # resume as this part's write begins: the next parts arrive while it is written
                resume = self._paused and not self._resume_sent and len(self._queue) <= SPOOL_RESUME_PARTS
                self._resume_sent = self._resume_sent or resume
            if resume:
                self._call(self._resume_reading)
            try:
                self._writer.write(part)  # a SpoolFull is kept in the writer's error
            except Exception as exc:  # the disk refused (OSError), or a bug: that message fails
                self._writer.fail(f"writing a spool file: {exc}")
            self._returned.append(part)  # the loop gives it back to its pool (deque: atomic)
            with self._lock:
                failed = self._writer.error is not None and not self._failure_sent
                self._failure_sent = self._failure_sent or failed
            if failed:
                self._call(self._spool_failed)
        if complete:
            self._call(self._complete)

    def _call(self, callback: Callable[[], None]) -> None:
        """From the writer thread: run ``callback`` on the loop (dropped when the loop is closed:
        nobody waits for this literal any more)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def _recycle(self) -> None:
        """On the loop: the parts the writer is done with go back to the loop thread's pool."""
        while self._returned:
            _give_part(self._returned.popleft())

    def _resume_reading(self) -> None:
        """On the loop, at the writer's word: the parts waiting are few enough again."""
        with self._lock:
            self._resume_sent = False
            paused, self._paused = self._paused, False
        if paused:
            self._resume()

    def _spool_failed(self) -> None:
        """On the loop, at the writer's word: the spool cannot take this message. The parts still
        waiting are dropped (the writer may be writing one more: the lenient writer ignores it),
        the rest of the literal is read and dropped, and reading is never left paused."""
        self._failed = True
        with self._lock:
            dropped = list(self._queue)
            self._queue.clear()
            paused, self._paused = self._paused, False
        for part in dropped:
            _give_part(part)
        self._recycle()
        if len(self._pending) == SPOOL_QUEUE_PART_OCTETS:
            _give_part(self._pending)
        self._pending = bytearray()
        self._filled = 0
        if paused:
            self._resume()

    def _complete(self) -> None:
        """On the loop, once: every part is written (or dropped); the outcome is set."""
        if self._completed:
            return
        self._completed = True
        self._recycle()
        if self._outcome.done():  # cancelled: the retrieval was abandoned
            self._writer.abort()
            return
        with self._lock:
            paused, self._paused = self._paused, False
        if paused:
            self._resume()
        outcome = self._writer.finish()
        self._outcome.set_result(outcome if outcome is not None else "empty spooled literal")
