"""The archive's write-ahead log checked against SQLite's own index of it: cut or overwritten in place.

The archive guard (:meth:`maild.archive.connection.ArchiveConnection.verify_identity`) notices a
``-wal`` deleted or replaced by its device and inode. A log cut in place (``: > maild.sqlite3-wal``,
``truncate -s 0``, a clean-up that empties large files) keeps both, and SQLite does not notice either:
it goes on appending after the frames its index (the ``-shm`` file) still lists, behind a log header
that is gone. Every commit since the last checkpoint is then lost at the next start, and a checkpoint
copies zeros into the database file (QA of session 12: the archive became "not a database", with the
messages already deleted on the server). So the guard also compares the log with the index that this
process's SQLite connection uses (read through a descriptor opened with the archive, so a ``-shm``
removed meanwhile does not matter): while the index lists committed frames, the log must be at least
that long and its header must carry the index's salts (SQLite's file format, "The WAL-Index Format").

And the index must still be the file at the ``-shm`` path (:func:`index_replaced`). SQLite keeps its
locks (the writer's, the readers', the checkpointer's) in that file and deletes it only when the last
connection closes, which no other process can do while the daemon's is open. One removed under the
daemon (QA of session 12: ``rm maild.sqlite3-shm``) is made again, empty, by the next process to open
the archive (a CRM's read, ``maild messages``, ``maild accounts``): that process rebuilds its own index
from the log and sees none of the daemon's locks, so a command that writes (and checkpoints with
``TRUNCATE`` at its close) copies and cuts the log behind the daemon's back: the daemon's next
commits went into a log without its header and were lost at the next start (10 of 40 messages in
the QA's run; a commit between that process's open and its close is lost the same way, and the log
looks intact to :func:`wal_problem` if the daemon deletes right after it).

May import: the standard library only. No SQL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "INDEX_READS",
    "WAL_FRAME_HEADER_OCTETS",
    "WAL_HEADER_OCTETS",
    "index_replaced",
    "unrecovered_log",
    "unrecovered_log_refusal",
    "wal_problem",
]

WAL_HEADER_OCTETS = 32
"""The log's header: magic, format version, page size, checkpoint sequence, two salts, checksum."""
WAL_FRAME_HEADER_OCTETS = 24
"""Each frame's header before its page."""
INDEX_READS = 3
"""Attempts to read the index unchanged around the log's header (a commit or a restart of the log
between the two reads makes the pair inconclusive; after this many, the check passes this time)."""

_INDEX_HEADER_OCTETS = 48  # WalIndexHdr, twice at the start of the -shm file
_BACKFILL_OFFSET = 2 * _INDEX_HEADER_OCTETS  # WalCkptInfo.nBackfill: frames already copied into the file
_MAGICS = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")  # big-endian magic: checksums little- or big-endian


def _index_header(shm_fd: int) -> bytes | None:
    """The index's header (its 48 octets) when both copies agree and it is initialised, else None."""
    try:
        data = os.pread(shm_fd, 2 * _INDEX_HEADER_OCTETS, 0)
    except OSError:
        return None
    first, second = data[:_INDEX_HEADER_OCTETS], data[_INDEX_HEADER_OCTETS:]
    if len(second) < _INDEX_HEADER_OCTETS or first != second or first[12] != 1:  # isInit
        return None
    return first


def wal_problem(wal: Path, shm_fd: int, when: str = " under the running daemon") -> str | None:
    """What is wrong with the log ``wal`` against the index read through ``shm_fd``, or None.

    None also when nothing can be told for sure: the index lists no frame (nothing to lose), the
    index changed while the log was read (a commit, a checkpoint: asked again up to
    :data:`INDEX_READS` times), or the log cannot be read (its deletion is the identity check's).
    SQLite writes frames before it lists them, and empties the index before it cuts the log, so a log
    shorter than the listed frames, or with a header of other salts, was changed by someone else.

    Args:
        wal: the archive's ``-wal`` path (the file whose identity the guard has just checked).
        shm_fd: a read-only descriptor of the ``-shm`` file this process's connection opened.
        when: the end of the phrase (``" under the running daemon"``; :func:`unrecovered_log`: ``""``).

    Returns:
        A phrase for :class:`~maild.archive.store.ArchiveReplaced` ("had its write-ahead log ..."), or None.
    """
    for _ in range(INDEX_READS):
        before = _index_header(shm_fd)
        if before is None:
            return None
        frames = int.from_bytes(before[16:20], sys.byteorder)
        if frames == 0:
            return None
        try:
            with open(wal, "rb") as fh:
                octets = os.fstat(fh.fileno()).st_size
                head = fh.read(WAL_HEADER_OCTETS)
        except OSError:
            return None
        if _index_header(shm_fd) != before:
            continue
        page = int.from_bytes(before[14:16], sys.byteorder)
        page = 65536 if page == 1 else page
        listed = WAL_HEADER_OCTETS + frames * (WAL_FRAME_HEADER_OCTETS + page)
        if octets < listed:
            return (
                f"had its write-ahead log {wal.name} cut to {octets} octets{when}"
                f" ({frames} committed frames, {listed} octets, not yet in the archive file)"
            )
        if head[:4] not in _MAGICS or head[16:24] != before[32:40]:  # the salts, as SQLite copies them
            return f"had its write-ahead log {wal.name} overwritten{when} (its header)"
        return None
    return None


def index_replaced(shm: Path, shm_fd: int) -> str | None:
    """What happened to the log's index at ``shm`` if it is no longer the file ``shm_fd`` has open, or None.

    Args:
        shm: the archive's ``-shm`` path.
        shm_fd: a descriptor of the ``-shm`` file this process's connection opened with the archive.

    Returns:
        A phrase for :class:`~maild.archive.store.ArchiveReplaced` ("lost the index ..."), or None when
        the path still names that file.
    """
    try:
        opened = os.fstat(shm_fd)
        current = os.stat(shm)
    except FileNotFoundError:
        return f"lost the index of its write-ahead log {shm.name} under the running daemon (deleted)"
    except OSError as exc:
        return f"cannot be checked: {shm.name}: {exc.strerror}"
    if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
        return f"had the index of its write-ahead log {shm.name} replaced under the running daemon"
    return None


def unrecovered_log(wal: Path, shm: Path) -> str | None:
    """Before a process opens the archive: what is wrong with its log ``wal`` against the index ``shm``
    that the last writer left (killed, or still running), when commits listed there are not yet in the
    archive file; else None.

    SQLite's first connection rebuilds the index from whatever log it finds: a log deleted or cut
    after the daemon was killed (``rm maild.sqlite3-wal``, a clean-up, a copy of the main file and its
    index alone) made every commit since the last checkpoint vanish without a word, in the daemon, in
    ``maild backup`` and in a reader alike, and the first of them destroyed the evidence (QA of
    session 14: 33 of 293 committed messages gone, the backup "integrity ok"). Nothing is lost while
    the index lists no frame beyond those copied into the archive file (``nBackfill``): a clean stop,
    a checkpoint just done, no index at all.

    Args:
        wal: the archive's ``-wal`` path.
        shm: the archive's ``-shm`` path.

    Returns:
        A phrase after the archive's name ("lost its write-ahead log ..."), or None.
    """
    try:
        fd = os.open(shm, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for _ in range(INDEX_READS):
            header = _index_header(fd)
            if header is None:
                return None
            frames = int.from_bytes(header[16:20], sys.byteorder)
            try:
                backfilled = int.from_bytes(os.pread(fd, 4, _BACKFILL_OFFSET), sys.byteorder)
            except OSError:
                return None
            if frames <= backfilled:
                return None
            if os.path.lexists(wal):
                return wal_problem(wal, fd, when="")
            if _index_header(fd) == header:  # not a log restarted by a running writer meanwhile
                return (
                    f"lost its write-ahead log {wal.name}: its index {shm.name} lists"
                    f" {frames - backfilled} committed frames not yet in the archive file"
                )
        return None
    finally:
        os.close(fd)


def unrecovered_log_refusal(path: Path) -> str | None:
    """One line refusing to open the archive at ``path`` when :func:`unrecovered_log` finds commits
    that opening it would lose, naming the two ways on; else None."""
    shm = path.with_name(path.name + "-shm")
    problem = unrecovered_log(path.with_name(path.name + "-wal"), shm)
    if problem is None:
        return None
    return (
        f"archive {path} {problem}; opening it would lose those commits for good: put the log back"
        f" (from where it was moved or copied), or, to go on without them, remove {shm.name}"
        ' (docs/archive.md, "A lost write-ahead log")'
    )
