"""The thread that writes the IMAP adapter's spooled literals (:mod:`.spooling`), fed by a queue.

A large ``BODY[]`` literal is gathered on the event loop in parts; the parts are written (hashed,
their marks kept, ``write(2)``) off the loop. Until session 13 each run of parts was a job in the
loop's default executor: a ``ThreadPoolExecutor.submit`` (a work item, a ``concurrent.futures``
future and an asyncio future chained to it) and, when the job ended, a wake-up of the loop through
its self-pipe: with fifty accounts on one loop 0.18 jobs, 0.36 futures and 0.18 cross-thread wake-ups
per message (docs/performance.md, "Session 13: fifty accounts' hand-offs"). Here one long-lived
thread per process takes literals with parts waiting from a :class:`queue.SimpleQueue` (a ``put`` is
one lock operation and wakes the thread only when it is idle) and calls back into the loop only when
the loop needs to know: reading may resume, the literal is complete, or the spool failed (see
:class:`~maild.protocols.imap.spooling.SpoolingLiteral`).

One thread writes every literal of the process, one literal's parts at a time and in order: spool
writes are bounded by SHA-256 (1.5 GB/s) and the disk, not by the number of threads, and the loop
never waits for a write (reading pauses, by TCP flow control, when a literal's parts wait). The thread
is a daemon thread: a process ending (or killed) with parts unwritten loses only spool files, which
belong to messages not yet committed (the server still has them; the spool's own sweep removes the
files at the next start: docs/guarantee.md).

May import: the standard library and structlog.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

import structlog

__all__ = ["SPOOL_WRITER_THREAD_NAME", "WaitingParts", "submit"]

log = structlog.get_logger("maild.protocols.imap")

SPOOL_WRITER_THREAD_NAME = "maild-spool-writer"
"""The writer thread's name (``tests.bench.thread_cpu`` counts its CPU apart by it)."""


class WaitingParts(Protocol):
    """A literal with parts waiting for the writer
    (:class:`~maild.protocols.imap.spooling.SpoolingLiteral`)."""

    def write_waiting(self) -> None:
        """In the writer thread: write the parts waiting, in order, until none is left; never raises."""
        ...


class _Writer:
    """The process's writer thread, started at the first :meth:`submit` (again if it ever ended)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[WaitingParts] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, literal: WaitingParts) -> None:
        """Have ``literal``'s waiting parts written (the caller submits a literal once until the
        writer has drained it: :meth:`WaitingParts.write_waiting` returns)."""
        self._queue.put(literal)
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name=SPOOL_WRITER_THREAD_NAME, daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            literal = self._queue.get()
            try:
                literal.write_waiting()
            except Exception as exc:  # a bug: the literal handles its own write errors
                log.error("imap.spool-writer.failed", error=repr(exc))
            del literal


_WRITER = _Writer()


def submit(literal: WaitingParts) -> None:
    """Queue ``literal`` for the process's spool writer thread (see :class:`_Writer`)."""
    _WRITER.submit(literal)
