"""The worker process that extracts attachment text, and :class:`DocumentWorker`, the daemon's handle on it.

A crafted PDF can make a parser loop or allocate without end; in the daemon's process that would
stall the event loop or the fetch, or exhaust memory. So extraction (:mod:`maild.archive.document_text`)
runs in a separate Python process that limits its own address space (:data:`WORKER_MEMORY_OCTETS`,
``RLIMIT_AS``) and CPU time (:data:`WORKER_CPU_S`, ``RLIMIT_CPU``); the daemon waits for each document
at most :data:`DOCUMENT_TIMEOUT_S` seconds without blocking its loop, then kills the worker and starts
a new one for the next document. A worker is replaced after :data:`WORKER_MAX_DOCUMENTS` documents, so
its CPU limit is never reached by honest work.

Protocol on the worker's stdin/stdout, one request at a time: the request is the line
``<kind> <octets>\\n`` followed by that many octets of the document; the reply is the line
``ok <octets>\\n`` followed by the UTF-8 text, or ``error <octets>\\n`` (the document is at fault) or
``fault <octets>\\n`` (the extractor is: missing, out of memory, crashed) followed by a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import get_args

from maild.archive.document_text import (
    MAX_DOCUMENT_CHARS,
    MAX_DOCUMENT_OCTETS,
    DocumentError,
    DocumentKind,
    extract,
)

DOCUMENT_TIMEOUT_S = 30.0
"""Seconds one document may take in the worker (start-up included) before the worker is killed and
the attachment's text given up (counted as a failure)."""
WORKER_MEMORY_OCTETS = 768 * 2**20
"""Address space of the worker process (``RLIMIT_AS``, 768 MiB): Python with pypdf needs ~60 MiB,
a 20 MiB PDF a few hundred more; beyond it allocation fails (MemoryError) and the attachment's text is
given up."""
WORKER_CPU_S = 600
"""CPU seconds of one worker process (``RLIMIT_CPU``): a backstop should the timeout not fire."""
WORKER_MAX_DOCUMENTS = 100
"""Documents one worker extracts before it is replaced by a fresh process."""
MAX_REPLY_OCTETS = MAX_DOCUMENT_CHARS * 4 + 1024
"""Largest reply read from the worker (UTF-8 of :data:`~maild.archive.document_text.MAX_DOCUMENT_CHARS`)."""
MAX_REPLY_LINE_OCTETS = 64
"""Longest reply header line read from the worker."""
_KINDS = frozenset(get_args(DocumentKind))
_ROOT = str(Path(__file__).resolve().parents[2])


class DocumentWorker:
    """One extraction worker process, started on first use, replaced after a failure or a timeout.

    Use :meth:`extract` from the event loop; :meth:`close` when done. Not for concurrent use (one
    request at a time): the indexer extracts one document after the other.
    """

    def __init__(self, timeout_s: float = DOCUMENT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._served = 0
        self.started = 0
        """Worker processes started so far (for the benchmark and the tests)."""

    async def _start(self) -> asyncio.subprocess.Process:
        if self._proc is not None and (
            self._proc.returncode is not None or self._served >= WORKER_MAX_DOCUMENTS
        ):
            await self.close()
        if self._proc is None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]);"
                " from maild.archive.document_worker import main; main()",
                _ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                close_fds=True,
            )
            self._served = 0
            self.started += 1
        return self._proc

    async def extract(self, kind: DocumentKind, data: bytes) -> str:
        """The text of one document (see :func:`maild.archive.document_text.extract`), from the worker.

        Args:
            kind: the document's format.
            data: its decoded octets.

        Returns:
            Its text, at most :data:`~maild.archive.document_text.MAX_DOCUMENT_CHARS` characters.

        Raises:
            DocumentError: the worker could not read it, ran out of time (it is killed) or memory, or
                died; the next call starts a fresh worker.

        If cancelled, the worker is killed (a half-read reply would put the pipe out of step).
        """
        if len(data) > MAX_DOCUMENT_OCTETS:
            raise DocumentError(f"larger than {MAX_DOCUMENT_OCTETS} octets")
        try:
            async with asyncio.timeout(self.timeout_s):
                proc = await self._start()
                return await self._ask(proc, kind, data)
        except TimeoutError:
            await self.close()
            raise DocumentError(
                f"took longer than {self.timeout_s:g} s (the worker was stopped)", actionable=True
            ) from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            raise DocumentError(
                f"the extraction worker failed ({type(exc).__name__})", actionable=True
            ) from None
        except DocumentError:
            raise
        except BaseException:
            await self.close()
            raise

    async def _ask(self, proc: asyncio.subprocess.Process, kind: DocumentKind, data: bytes) -> str:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(f"{kind} {len(data)}\n".encode() + data)
        await proc.stdin.drain()
        self._served += 1
        line = await proc.stdout.readuntil(b"\n")
        if len(line) > MAX_REPLY_LINE_OCTETS:
            raise ValueError("reply line too long")
        status, _, size_text = line.decode("ascii").strip().partition(" ")
        size = int(size_text)
        if not 0 <= size <= MAX_REPLY_OCTETS or status not in ("ok", "error", "fault"):
            raise ValueError("malformed reply")
        body = (await proc.stdout.readexactly(size)).decode("utf-8", "replace")
        if status != "ok":  # "error": the document's fault; "fault": the extractor's (see DocumentError)
            raise DocumentError(body, actionable=status == "fault")
        return body

    async def close(self) -> None:
        """Stop the worker process (kill it and reap it). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()


def _limit_self() -> None:
    import resource

    for which, value in ((resource.RLIMIT_AS, WORKER_MEMORY_OCTETS), (resource.RLIMIT_CPU, WORKER_CPU_S)):
        soft, hard = resource.getrlimit(which)
        wanted = value if hard == resource.RLIM_INFINITY else min(value, hard)
        if soft == resource.RLIM_INFINITY or soft > wanted:
            resource.setrlimit(which, (wanted, hard))


def _reply(out: object, status: str, text: str) -> None:
    data = text.encode("utf-8", "replace")
    out.write(f"{status} {len(data)}\n".encode() + data)  # type: ignore[attr-defined]
    out.flush()  # type: ignore[attr-defined]


def main() -> None:
    """The worker process: limit itself, then answer requests on stdin until it closes."""
    import logging
    import warnings

    _limit_self()
    logging.disable(logging.CRITICAL)  # pypdf logs what it repairs; nobody reads the worker's output
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):  # import once, before the first document's timer matters
        import pypdf  # noqa: F401
    source, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing but replies may reach the pipe
    while True:
        line = source.readline(MAX_REPLY_LINE_OCTETS)
        if not line:
            return
        kind, _, size_text = line.decode("ascii", "replace").strip().partition(" ")
        size = int(size_text) if size_text.isdigit() else -1
        if kind not in _KINDS or not 0 <= size <= MAX_DOCUMENT_OCTETS:
            _reply(out, "fault", "malformed request")
            return
        data = source.read(size)
        try:
            _reply(out, "ok", extract(kind, data))  # type: ignore[arg-type]
        except DocumentError as exc:
            _reply(out, "fault" if exc.actionable else "error", str(exc))
        except MemoryError:
            _reply(out, "fault", f"needs more than {WORKER_MEMORY_OCTETS // 2**20} MiB of memory")
        except RecursionError:
            _reply(out, "error", "nested too deeply")
        except Exception as exc:
            _reply(out, "fault", f"{type(exc).__name__}: {str(exc)[:120]}")
