"""The bounded spool: a large message written to a private file as it arrives, never held whole.

A message of at least :data:`SPOOL_THRESHOLD_OCTETS` is handed by the adapter (the POP3 decoder's
body parts, an IMAP literal) to a :class:`SpoolWriter` in parts; the writer hashes (SHA-256) and
writes each part, and keeps the first :data:`SPOOL_HEAD_OCTETS` in memory (the header section and
the start of the body: the header summary, header identities and the failed-header display read
only these) and, past them, the octets around each ``--`` (MIME boundary lines and part headers:
:mod:`maild.spool_view`), so that the store parses the message without reading its file.
:meth:`SpoolWriter.finish` returns a :class:`SpooledBody`, which the archive copies into the
message's blob in bounded parts inside the batch's transaction (:mod:`maild.archive.batches`): the
one read of the file, each part mapped from the page cache (:meth:`SpooledBody.parts`), not copied
into a buffer; the fetch cycle closes it once the batch is committed.

Both adapters' hooks write through a :class:`LenientSpoolWriter` (open at the first part; on
:class:`SpoolFull` drop the file and keep ``"local spool: ..."`` as the message's failure).

The file: created in the archive's directory with ``O_TMPFILE`` (no name at all: it disappears when
its descriptor is closed, also when the process is killed) or, where the file system lacks it, with
a private name (mode 0600, ``.maild-spool-<random>``) unlinked right after it was opened; such a name
left by a crash between the two system calls is removed by :meth:`Spool.sweep` at the next start.
Nothing of a spool file is ever needed after a crash: a message counts as retrieved only once the
batch holding it is committed, and the server still has it until then (docs/guarantee.md).

Disk: all spool files of a process together hold at most :data:`SPOOL_MAX_OCTETS`, and a message is
spooled only while the file system keeps a reserve free after it (the archive needs the room to
commit it): :data:`SPOOL_RESERVE_OCTETS` (256 MiB), or :data:`SPOOL_RESERVE_SHARE` (5 %) of the file
system's size where that is less. A spool that cannot take a message (that bound, or ``ENOSPC`` while
writing) raises :class:`SpoolFull`: the adapter reads the rest of the message off the connection,
discards it and reports that one message as not retrieved this cycle (nothing is stored, nothing
deleted; it is retried at the next cycle).

Thread safety: a writer and a body are used by one thread at a time (the POP3 worker thread; for
IMAP, executor jobs one after another, never the event loop: :mod:`maild.protocols.imap.spooling`;
then the store's worker thread); the disk count is shared and locked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from maild import model
from maild.errors import MaildError
from maild.spool_view import Kept, MarkRecorder, SpooledView

__all__ = [
    "SPOOL_FAILURE_PREFIX",
    "SPOOL_HEAD_OCTETS",
    "SPOOL_MAX_OCTETS",
    "SPOOL_NAME_PREFIX",
    "SPOOL_PART_OCTETS",
    "SPOOL_RESERVE_OCTETS",
    "SPOOL_RESERVE_SHARE",
    "SPOOL_THRESHOLD_OCTETS",
    "Kept",
    "LenientSpoolWriter",
    "Spool",
    "SpoolFull",
    "SpoolWriter",
    "SpooledBody",
    "SpooledView",
]

SPOOL_THRESHOLD_OCTETS = 2**20
"""Messages of at least this many octets are spooled to a file as they arrive (1 MiB); smaller ones
are held in memory as before. Messages from the archive's ``maild.archive.batches.LARGE_BLOB_OCTETS``
(256 KiB) on are written into the archive by incremental blob I/O, spooled or not."""
SPOOL_HEAD_OCTETS = 256 * 2**10
"""Octets of a spooled message kept in memory from its start (256 KiB): the longest header section
read anywhere (``maild.message.MAX_HEADER_OCTETS``) and what follows it, up to that size."""
SPOOL_PART_OCTETS = 2**20
"""Octets read from a spool file at a time (copying it into the archive: mapped, :meth:`SpooledBody.parts`;
reading it for the index: ``pread``)."""
SPOOL_MAX_OCTETS = 2**30
"""Most octets all spool files of one process hold at once (1 GiB). A cycle holds the spooled
messages of at most two batches (one committing, one filling), each closed at
``maild.fetch.batching.SPOOLED_BATCH_OCTETS`` (32 MiB) plus its last message, and at most
``maild.limits.MAX_TRANSFERS`` (4) cycles transfer at once: about 256 MiB with messages of a few
MB. A message that would pass it fails this cycle (:class:`SpoolFull`) and is tried again at the
next."""
SPOOL_RESERVE_OCTETS = 256 * 2**20
"""Most free octets the archive's file system must keep after a message is spooled (256 MiB): the
commit copies the message into the archive, which needs the room (and its WAL about as much again).
On a small file system the reserve is :data:`SPOOL_RESERVE_SHARE` of its size instead, whichever is
less (:meth:`Spool.reserve_for`)."""
SPOOL_RESERVE_SHARE = 0.05
"""The reserve's share of the file system's size (5 %) when that is less than
:data:`SPOOL_RESERVE_OCTETS`: 256 MiB would refuse every large message on a disk of a few GB that
earlier code (holding messages in memory) filled to the last 100 MB; 5 % of a 2 GiB disk is about
100 MiB, still several times the largest commit of a batch (32 MiB of spooled messages,
``maild.fetch.batching.SPOOLED_BATCH_OCTETS``)."""
SPOOL_FAILURE_PREFIX = "local spool: "
"""How the reason of a message the spool could not take begins (:func:`local_failure`)."""
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)
"""Linux: map a part's pages in the ``mmap`` call itself (one walk of the page cache) instead of one
page fault per 4 KiB, or per 64 KiB with the kernel's fault-around, while SQLite copies it."""
SPOOL_NAME_PREFIX = ".maild-spool-"
"""Prefix of a named spool file (file systems without ``O_TMPFILE``); swept at start."""


def local_failure(key: model.MessageKey, reason: str) -> model.RetrievalFailure:
    """The retrieval failure of a message the spool could not take (this machine's disk or bound, not
    the message's or the server's): kind ``"local"``, so it is recorded and shown like any failure
    but never sets the message aside (``maild.policy.set_aside``); it is retried at every cycle, and
    ``maild check`` and the ``local_failure`` alert name the directory to free space in.

    Args:
        key: the message's server-side identity.
        reason: the spool's words (:class:`SpoolFull`'s text), with or without
            :data:`SPOOL_FAILURE_PREFIX`; the failure's reason always starts with it.
    """
    text = reason if reason.startswith(SPOOL_FAILURE_PREFIX) else f"{SPOOL_FAILURE_PREFIX}{reason}"
    return model.RetrievalFailure(key, text, kind="local")


class SpoolFull(MaildError):
    """The spool cannot take a message now: :data:`SPOOL_MAX_OCTETS` reached, the disk short of
    :data:`SPOOL_RESERVE_OCTETS`, or a write failed (``ENOSPC``, ``EIO``). That message is not
    retrieved this cycle; nothing is lost (the server keeps it)."""


class Spool:
    """Where and how much a process spools: one per archive (:attr:`maild.archive.store.Store.spool`).

    Args:
        directory: the archive's directory (the spool files live beside the archive, on its file
            system, so that the reserve check sees the disk the commit needs).
        threshold_octets: spool messages of at least this size (:data:`SPOOL_THRESHOLD_OCTETS`).
        max_octets: the bound on all open spool files (:data:`SPOOL_MAX_OCTETS`).
        reserve_octets: the most free octets to leave on the file system (:data:`SPOOL_RESERVE_OCTETS`).
        reserve_share: the share of the file system's size to leave free when that is less
            (:data:`SPOOL_RESERVE_SHARE`, 0 to 1).
        statvfs: reads the file system's figures from a descriptor (``os.fstatvfs``; a test double
            in tests).
    """

    def __init__(
        self,
        directory: Path,
        *,
        threshold_octets: int = SPOOL_THRESHOLD_OCTETS,
        max_octets: int = SPOOL_MAX_OCTETS,
        reserve_octets: int = SPOOL_RESERVE_OCTETS,
        reserve_share: float = SPOOL_RESERVE_SHARE,
        statvfs: Callable[[int], os.statvfs_result] = os.fstatvfs,
    ) -> None:
        if threshold_octets < 1 or max_octets < 1 or reserve_octets < 0 or not 0 <= reserve_share <= 1:
            raise ValueError("spool limits must be positive (the reserve's share from 0 to 1)")
        self.directory = directory
        self.threshold_octets = threshold_octets
        self.max_octets = max_octets
        self.reserve_octets = reserve_octets
        self.reserve_share = reserve_share
        self._statvfs = statvfs
        self._lock = threading.RLock()  # a finalizer may run inside a locked block (GC)
        self._held = 0
        self._open = 0

    @property
    def held_octets(self) -> int:
        """Octets in spool files open now (written and not yet closed)."""
        return self._held

    @property
    def open_files(self) -> int:
        """Spool files open now (writers and bodies not yet closed)."""
        return self._open

    def writer(self) -> SpoolWriter:
        """A new spool file for one message.

        Raises:
            SpoolFull: the file cannot be created (directory missing or not writable, no space).
        """
        return SpoolWriter(self, self._create())

    def sweep(self) -> int:
        """Remove named spool files left by a crash (see the module docstring); return how many.

        Raises nothing: a file that cannot be removed stays (it is private and holds no state).
        """
        removed = 0
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(SPOOL_NAME_PREFIX) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _create(self) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC
        tmpfile = getattr(os, "O_TMPFILE", 0)
        try:
            if tmpfile:
                try:
                    fd = os.open(self.directory, flags | tmpfile, 0o600)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                        raise
                else:
                    self._opened()
                    return fd
            name = self.directory / f"{SPOOL_NAME_PREFIX}{os.urandom(8).hex()}"
            fd = os.open(name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with contextlib.suppress(FileNotFoundError):  # a concurrent sweep may have done it
                os.unlink(name)
        except OSError as exc:
            raise SpoolFull(f"cannot create a spool file in {self.directory}: {exc.strerror}") from None
        self._opened()
        return fd

    def _opened(self) -> None:
        with self._lock:
            self._open += 1

    def _reserve(self, octets: int) -> None:
        """Count ``octets`` more as spooled, or raise SpoolFull (the bound or the disk's reserve)."""
        with self._lock:
            if self._held + octets > self.max_octets:
                raise SpoolFull(
                    f"the spool holds {self._held} octets; {octets} more would pass its limit of"
                    f" {self.max_octets}"
                )
            self._held += octets

    def _release(self, octets: int, fd: int) -> None:
        with self._lock:
            self._held -= octets
            self._open -= 1
        with contextlib.suppress(OSError):
            os.close(fd)

    def reserve_for(self, size_octets: int) -> int:
        """The free octets to keep on a file system of ``size_octets``: the lesser of
        :attr:`reserve_octets` and :attr:`reserve_share` of its size."""
        return min(self.reserve_octets, int(size_octets * self.reserve_share))

    def _check_free(self, fd: int, more_octets: int) -> None:
        try:
            st = self._statvfs(fd)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        reserve = self.reserve_for(st.f_blocks * st.f_frsize)
        if free - more_octets < reserve:
            raise SpoolFull(
                f"{free} octets free in {self.directory}: spooling {more_octets} more would leave less"
                f" than the reserve of {reserve}"
            )


class SpoolWriter:
    """One message being written to its spool file: :meth:`write` its parts in order, then
    :meth:`finish` (or :meth:`abort`). Not thread-safe; see the module docstring."""

    def __init__(self, spool: Spool, fd: int) -> None:
        self._spool = spool
        self._fd = fd
        self._hash = hashlib.sha256()
        self._head = bytearray()
        self._marks = MarkRecorder(SPOOL_HEAD_OCTETS)
        self._size = 0
        self._checked = 0  # octets written when the free space was last checked
        self._done = False
        # an abandoned writer (a cancelled or broken receive) still closes its file and its count
        self._finalizer = weakref.finalize(self, spool._release, 0, fd)

    @property
    def size_octets(self) -> int:
        """Octets written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the file, the hash and (up to :data:`SPOOL_HEAD_OCTETS`) the head.

        Raises:
            SpoolFull: the spool's bound or the disk's reserve would be passed, or the write failed
                (``ENOSPC``, ``EIO``); the writer is aborted (its file closed).
        """
        n = len(data)
        if not n:
            return
        try:
            self._spool._reserve(n)
        except SpoolFull:
            self.abort()
            raise
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, self._spool._release, self._size + n, self._fd)
        self._size += n
        if self._size - self._checked >= SPOOL_PART_OCTETS or self._checked == 0:
            try:
                self._spool._check_free(self._fd, n)
            except SpoolFull:
                self.abort()
                raise
            self._checked = self._size
        if len(self._head) < SPOOL_HEAD_OCTETS:
            self._head += data[: SPOOL_HEAD_OCTETS - len(self._head)]
        self._hash.update(data)
        self._marks.feed(data)
        try:
            with memoryview(data) as view:
                done = 0
                while done < n:
                    done += os.write(self._fd, view[done:])
        except OSError as exc:
            self.abort()
            raise SpoolFull(f"writing a spool file in {self._spool.directory}: {exc.strerror}") from None

    def finish(self) -> SpooledBody:
        """The spooled message; the writer is done (its file now belongs to the body)."""
        self._done = True
        self._finalizer.detach()
        head = bytes(self._head)
        return SpooledBody(
            self._spool, self._fd, self._size, self._hash.hexdigest(), head, self._marks.finish(head)
        )

    def abort(self) -> None:
        """Close and forget the file (idempotent)."""
        self._done = True
        self._finalizer()


class LenientSpoolWriter:
    """One message's spool file as both adapters' hooks write it: opened at the first part; when the
    spool cannot take the message (:class:`SpoolFull`) the file is dropped, the reason kept in
    :attr:`error` (``"local spool: ..."``) and every later part ignored, so that the adapter still reads
    the message off the connection and fails that message only.

    Used by one thread at a time (the POP3 worker thread; the IMAP literal's writer jobs, one after
    another).

    Args:
        spool: where the file goes.
    """

    __slots__ = ("_spool", "_writer", "error")

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._writer: SpoolWriter | None = None
        self.error: str | None = None
        """Why the spool could not take the message (begins with :data:`SPOOL_FAILURE_PREFIX`), or None."""

    @property
    def started(self) -> bool:
        """Whether a part was written (or the spool refused one)."""
        return self._writer is not None or self.error is not None

    def write(self, part: bytes | bytearray | memoryview) -> None:
        """Append ``part``, or ignore it after a failure. Never raises :class:`SpoolFull`: see
        :attr:`error`."""
        if self.error is not None:
            return  # the spool failed for this message: read and dropped
        try:
            if self._writer is None:
                self._writer = self._spool.writer()
            self._writer.write(part)
        except SpoolFull as exc:
            self.fail(str(exc))

    def fail(self, reason: str) -> None:
        """Drop the file; the message fails with ``reason`` (prefixed with :data:`SPOOL_FAILURE_PREFIX`)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self.error is None:
            self.error = f"{SPOOL_FAILURE_PREFIX}{reason}"

    def finish(self) -> SpooledBody | str | None:
        """The spooled body; the failure's reason; or None when nothing was written."""
        if self.error is not None:
            return self.error
        writer, self._writer = self._writer, None
        return writer.finish() if writer is not None else None

    def abort(self) -> None:
        """Drop the file of a message that will not complete (idempotent)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


class SpooledBody:
    """A received message held in a spool file, not in memory.

    Attributes:
        size_octets: the message's length in octets (as :func:`len` of its octets would be).
        sha256: the SHA-256 of its octets, lower-case hex (as ``maild.message.sha256_hex``).
        head: its first :data:`SPOOL_HEAD_OCTETS` octets (all of them if shorter).
        kept: the head and the marks past it (:mod:`maild.spool_view`): what the store parses.

    The file is closed (and with it gone from the disk) by :meth:`close`, or when the body is no
    longer referenced; reading a closed body raises ``ValueError``.
    """

    __slots__ = ("__weakref__", "_fd", "_finalizer", "head", "kept", "sha256", "size_octets")

    def __init__(self, spool: Spool, fd: int, size_octets: int, sha256: str, head: bytes, kept: Kept) -> None:
        self._fd = fd
        self.size_octets = size_octets
        self.sha256 = sha256
        self.head = head
        self.kept = kept
        self._finalizer = weakref.finalize(self, spool._release, size_octets, fd)

    def __repr__(self) -> str:
        return f"SpooledBody(size_octets={self.size_octets}, sha256={self.sha256[:12]}...)"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (the file is gone)."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the file: its octets are gone from the disk (idempotent)."""
        self._finalizer()

    def read_at(self, offset: int, octets: int) -> bytes:
        """Up to ``octets`` octets from ``offset`` (fewer only at the end).

        Raises:
            ValueError: the body is closed. OSError: the read failed.
        """
        if self.closed:
            raise ValueError("the spooled body is closed")
        if offset < len(self.head) and offset + octets <= len(self.head):
            return self.head[offset : offset + octets]
        data = os.pread(self._fd, octets, offset)
        if len(data) == octets or not data:
            return data  # one read (a regular file answers whole but at its end)
        out = bytearray(data)
        while len(out) < octets:
            more = os.pread(self._fd, octets - len(out), offset + len(out))
            if not more:
                break
            out += more
        return bytes(out)

    def parts(self, part_octets: int = SPOOL_PART_OCTETS) -> Iterator[bytes | memoryview]:
        """The octets in order, ``part_octets`` at a time (the last part may be shorter), each a
        read-only view of the file's pages mapped into memory (``mmap``, populated at once): nothing
        is copied out of the page cache and no buffer is filled; the consumer (SQLite's blob write)
        copies straight from the page cache. A part is valid until the next one is asked for (copy it
        to keep it); at most one part of :data:`SPOOL_PART_OCTETS` is mapped at a time, so the
        process's resident memory grows by one part, as with a read buffer.

        The guard: a mapped page past the file's end raises ``SIGBUS`` (the process dies, not the
        message), so the file's size is checked (``fstat``) before each part is mapped, and a file
        shorter than ``size_octets`` fails the message with ``OSError`` (the batch's transaction rolls
        back: nothing stored, nothing deleted; the server keeps the message). Only this process has
        the file (``O_TMPFILE``, or a private name unlinked at once), so nothing else can shorten it
        between the check and the copy.

        Args:
            part_octets: octets per part, rounded up to a multiple of ``mmap.ALLOCATIONGRANULARITY``
                (the offset of every mapping must be one).

        Raises:
            ValueError: the body is closed (also when closed between two parts). OSError: the file
                cannot be mapped, or it is shorter than ``size_octets`` (a spool file changed
                underneath: never stored).
        """
        if self.closed:
            raise ValueError("the spooled body is closed")
        grain = mmap.ALLOCATIONGRANULARITY
        step = max(grain, -(-part_octets // grain) * grain)
        offset = 0
        while offset < self.size_octets:
            want = min(step, self.size_octets - offset)
            if self.closed:  # its descriptor's number may already name another file
                raise ValueError("the spooled body is closed")
            if os.fstat(self._fd).st_size < offset + want:
                raise OSError(errno.EIO, "spool file shorter than its message")
            mapped = mmap.mmap(
                self._fd, want, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ, offset=offset
            )
            view = memoryview(mapped)
            try:
                yield view
            finally:
                view.release()  # raises BufferError if the consumer still holds a slice of it
                mapped.close()
            offset += want

    def read_all(self) -> bytes:
        """All octets at once (for the few users that need them whole: moving a mailbox).

        Raises:
            ValueError, OSError: as for :meth:`parts`.
        """
        return b"".join([bytes(part) for part in self.parts()])
