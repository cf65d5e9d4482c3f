"""A large ``BODY[]`` literal written to the spool as it arrives (:mod:`maild.spool`), never held
whole, and never written on the event loop.

aioimaplib collects a literal's octets in the command's ``_resp_literal_data`` (``extend`` per
received chunk, ``len`` to see how many are still owed) and hands the collected object to
``append_to_resp`` when the count is reached. The streaming FETCH command
(:class:`~maild.protocols.imap.commands._StreamingFetchCommand`) puts a :class:`SpoolingLiteral`
there instead for a literal of at least the spool's threshold. On the event loop (inside
``data_received``) it only gathers the received octets into parts of :data:`SPOOL_QUEUE_PART_OCTETS`;
each part is written (hashed, its marks kept, ``write(2)``) by a job in the loop's default executor
(one job at a time, started once :data:`SPOOL_JOB_PARTS` parts wait or the literal is complete,
writing the parts waiting and those that come while it runs, in order), so a slow or congested disk
never stalls the loop that serves every account's connections. The part buffers are kept for the
next literals of the thread (at most :data:`SPOOL_POOL_PARTS`), not allocated per literal. At the
end it becomes a
:class:`~maild.protocols.imap.lex.SpooledLiteral` whose ``outcome`` resolves once the last part is
written; the streaming retrieval awaits it before it hands the message on
(:mod:`maild.protocols.imap.stream`).

Bounds: at most :data:`SPOOL_QUEUE_PARTS` parts wait for the writer (plus the part being gathered
and the one being written: 1 MiB in all, what the first version held in its one pending part);
when the queue is that long, reading from the connection pauses
(``transport.pause_reading``: TCP flow control then holds the server back) until the writer has
brought it down to :data:`SPOOL_RESUME_PARTS`. A job returns when no part is waiting: no thread
ever waits for the network, so the writers cannot hold up each other or the rest of the executor.

When the spool cannot take the message (:class:`~maild.spool.SpoolFull`, or a job failing) the
rest of the literal is still read and dropped, and the outcome is the reason (``"local spool:
..."``): that message fails this cycle, nothing else (docs/guarantee.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from maild.protocols.imap.lex import SpooledLiteral
from maild.spool import LenientSpoolWriter, Spool, SpooledBody

SPOOL_QUEUE_PART_OCTETS = 256 * 2**10
"""Octets of one part handed to the writer (256 KiB): small enough that the parts waiting stay within
what the first version held (a 1 MiB part, gathered on the loop). A hand-off to the executor costs
about 0.3 ms of CPU, so a job writes a run of parts, not one (:meth:`SpoolingLiteral._drain`)."""
SPOOL_QUEUE_PARTS = 2
"""Parts of :data:`SPOOL_QUEUE_PART_OCTETS` (512 KiB in all) a literal may have waiting for its
writer before reading from the connection pauses. One account's peak in the benchmark: 1 MiB parts,
four waiting, +4-5 MB; 256 KiB parts, four waiting, +2 MB; two waiting, +1 MB (docs/performance.md,
"Session 8: the spool's CPU")."""
DROP_READ_OCTETS = 64 * 2**10
"""Octets one direct read of a literal the spool failed takes into a scratch buffer, to be dropped."""
SPOOL_RESUME_PARTS = 1
"""Parts still waiting when reading resumes after a pause (the writer has work while data comes)."""
SPOOL_JOB_PARTS = 2
"""Parts waiting before a writer job starts (or fewer once the literal is complete): each job is a
hand-off to the executor (about 0.1-0.3 ms of CPU), and with fifty connections on one loop the parts
of a literal come slower than a job writes them, so a job per part was the rule (docs/performance.md,
"Session 10: the IMAP fetch's CPU"). At most :data:`SPOOL_QUEUE_PARTS`: reading pauses there, and
only a job resumes it."""
SPOOL_POOL_PARTS = 4
"""Part buffers (of :data:`SPOOL_QUEUE_PART_OCTETS`, 1 MiB in all) kept per thread once a literal's
writer is done with them, for the next spooled literals: a new 256 KiB buffer is a fresh mapping
(``maild.service.memory.MMAP_THRESHOLD_OCTETS``), zero-filled page by page (64 page faults each)
and unmapped when freed. More are made when more literals spool at once; those are freed."""

assert SPOOL_JOB_PARTS <= SPOOL_QUEUE_PARTS  # reading pauses at SPOOL_QUEUE_PARTS: a job must run then

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

    Runs on the event loop; the file writes run in the loop's default executor.

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
        self._queue: deque[bytearray | memoryview] = deque()
        self._writing = False
        self._failed = False
        self._finished = False
        self._paused = False
        self._outcome: asyncio.Future[SpooledBody | str] = loop.create_future()
        self.pauses = 0
        """How often this literal paused reading (for tests and diagnostics)."""

    def __len__(self) -> int:
        """Octets received so far (what aioimaplib compares with the announced size)."""
        return self._received

    @property
    def queued_parts(self) -> int:
        """Parts waiting for the writer now (not counting the one being written)."""
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
        self._finished = True  # from now on a job starts for any part waiting (SPOOL_JOB_PARTS)
        if self._filled and not self._failed:
            self._queue.append(memoryview(self._pending)[: self._filled])
        elif not self._failed:
            _give_part(self._pending)  # nothing of it to write
        self._pending, self._filled = bytearray(), 0
        self._next()
        if not self._writing:
            self._complete()
        return SpooledLiteral(self._size, self._outcome)

    def _enqueue(self, part: bytearray | memoryview) -> None:
        self._queue.append(part)
        self._pending = _take_part()
        self._filled = 0
        self._next()
        if len(self._queue) >= SPOOL_QUEUE_PARTS and not self._paused:
            self._paused = True
            self.pauses += 1
            self._pause()

    def _next(self) -> None:
        """Start a writer job for the waiting parts once :data:`SPOOL_JOB_PARTS` wait or the literal
        is complete (one job at a time: the parts stay in order)."""
        if self._writing or not self._queue or (len(self._queue) < SPOOL_JOB_PARTS and not self._finished):
            return
        self._writing = True
        try:
            job = self._loop.run_in_executor(None, self._drain)
        except RuntimeError as exc:  # the executor is shut down (the loop is closing)
            job = self._loop.create_future()
            job.set_exception(exc)
        job.add_done_callback(self._written)

    def _drain(self) -> list[bytearray | memoryview]:
        """In the worker thread: write the waiting parts in order until none is left, parts the loop
        adds meanwhile too (``deque`` appends and pops are atomic): one hand-off for a run of parts,
        since each cost about 0.3 ms of CPU (docs/performance.md, "Session 8: the spool's CPU").
        Returns the parts written, for the loop to fill again."""
        written: list[bytearray | memoryview] = []
        while True:
            try:
                part = self._queue.popleft()
            except IndexError:
                return written
            self._writer.write(part)
            written.append(part)

    def _written(self, job: asyncio.Future[list[bytearray | memoryview]]) -> None:
        """A writer job ended (on the loop): write what came meanwhile, resume reading, or complete."""
        self._writing = False
        if not job.cancelled() and job.exception() is None:
            for part in job.result():
                _give_part(part)  # the writer is done with it: filled again (this or the next literal)
        error = None if job.cancelled() else job.exception()
        if job.cancelled() or error is not None:  # the executor refused or the job broke: drop it
            self._writer.fail(f"writing a spool file: {error or 'cancelled'}")
        if self._writer.error is not None:
            self._failed = True
            while self._queue:  # never written: no job holds them (this one ended)
                _give_part(self._queue.popleft())
            if len(self._pending) == SPOOL_QUEUE_PART_OCTETS:
                _give_part(self._pending)
            self._pending = bytearray()
            self._filled = 0
        if self._paused and len(self._queue) <= SPOOL_RESUME_PARTS:
            self._paused = False
            self._resume()
        if self._queue:
            self._next()
        elif self._finished:
            self._complete()

    def _complete(self) -> None:
        if self._outcome.done():  # cancelled: the retrieval was abandoned
            self._writer.abort()
            return
        if self._paused:
            self._paused = False
            self._resume()
        outcome = self._writer.finish()
        self._outcome.set_result(outcome if outcome is not None else "empty spooled literal")
