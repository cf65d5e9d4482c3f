"""Delivery of archived messages into a local Maildir per account, and the Maildir format itself.

An account with ``deliver_maildir`` gets every message it fetches written there too, so that office
programs (the CRM, mutt, Thunderbird's import, Dovecot, notmuch, grep) read mail without SQLite.

Format (Maildir, https://cr.yp.to/proto/maildir.html, with the Maildir++ folder convention):

- A message is written to ``tmp/NAME``, fsync'ed, renamed to ``new/NAME``, and ``new/`` is fsync'ed;
  directories are created on demand (and their parents fsync'ed). The octets are exactly those in
  the archive (CRLF line endings as the server sent them). Files are created with mode
  :data:`FILE_MODE` (0640) and directories with :data:`DIR_MODE` (0750), whatever the umask; files
  left in ``tmp/`` by a killed write are removed at start once older than :data:`STALE_TMP_S`
  (36 hours, the Maildir convention): :func:`clean_stale_tmp`.
- ``NAME`` is ``<seconds>.M<microseconds>P<pid>Q<counter>H<sha256>.<hostname>,S=<size in octets>``:
  unique per the spec (time, process, per-process counter), with the message's SHA-256 (the ID that
  ``maild messages`` shows) as an extra field, and Dovecot's ``S=`` size. In the host name ``/``,
  ``:`` and ``,`` are written as ``\\057``, ``\\072`` and ``\\054``.
- IMAP mailboxes map to Maildir++ folders: ``INBOX`` (any case) and POP3 mail go to the top level;
  ``Archiv/2026`` goes to ``.Archiv.2026`` (``/`` is the hierarchy separator). Each name component
  is encoded in IMAP modified UTF-7 (RFC 3501 section 5.1.3, as Dovecot and Courier store folder
  names), then ``\\`` becomes ``\\5c`` and ``.`` becomes ``\\2e`` (Dovecot's listescape convention):
  ``Rechnungen 2.0`` is ``.Rechnungen 2\\2e0``. A name with an empty component (``/x``, ``a//b``) is
  kept as one folder with each ``/`` written as ``\\2f``. No mailbox name can produce ``/``, ``.``
  or ``..`` as a path component.

Never twice: the ``deliveries`` table is the "delivered" marker (one row per account and message,
written only after the file and ``new/`` are fsync'ed). A crash after the file became durable but
before its row was committed would deliver it again next time, so before writing, the folder's
``new/`` and ``cur/`` are searched for a file whose name carries the message's SHA-256; if one is
there (whatever flags a mail program added), it is recorded instead of written again. A message that
has a row is never written again, even when the office deleted or moved its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from maild.archive.store import PendingDelivery, Store
from maild.errors import DeliveryError
from maild.fsutil import fsync_dir
from maild.protocols.imap.utf7 import encode_mailbox_name

log = structlog.get_logger("maild.archive.maildir")

SUBDIRS = ("tmp", "new", "cur")
#: Mode of every message file written, whatever the umask (owner read-write, group read).
FILE_MODE = 0o640
#: Mode of every directory created, whatever the umask.
DIR_MODE = 0o750
#: Age in seconds after which a file in ``tmp/`` is a leftover of a killed write (Maildir spec: 36 h).
STALE_TMP_S = 36 * 3600.0
CHUNK_MESSAGES = 200
CHUNK_OCTETS = 32 * 2**20
_SHA_IN_NAME_RE = re.compile(r"Q\d+H([0-9a-f]{64})\.")
#: A whole base name as :func:`unique_name` makes it: the only files :func:`clean_stale_tmp` removes.
_OWN_NAME_RE = re.compile(r"\d+\.M\d+P\d+Q\d+H[0-9a-f]{64}\.[^/]*,S=\d+")
_counter = itertools.count()
_locks_guard = threading.Lock()
_folder_locks: dict[str, threading.Lock] = {}


def folder_name(mailbox: str | None) -> str:
    """Return the Maildir++ folder (``""`` for the top level) holding mail of IMAP ``mailbox``.

    Args:
        mailbox: readable mailbox name with ``/`` as hierarchy separator, or None (POP3).

    Returns:
        ``""`` for None and ``INBOX``; otherwise ``"."`` + the encoded components joined by ``"."``
        (see the module docstring for the rule).
    """
    if mailbox is None or mailbox.upper() == "INBOX":
        return ""
    parts = mailbox.split("/")
    if any(not p for p in parts):
        return "." + _escape(encode_mailbox_name(mailbox)).replace("/", "\\2f")
    return "." + ".".join(_escape(encode_mailbox_name(p)) for p in parts)


def _escape(component: str) -> str:
    return component.replace("\\", "\\5c").replace(".", "\\2e")


def _hostname() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


def unique_name(sha256: str, size_octets: int) -> str:
    """Return a new Maildir base name for a message (see the module docstring for its form)."""
    seconds, usec = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{seconds}.M{usec}P{os.getpid()}Q{next(_counter)}H{sha256}.{_hostname()},S={size_octets}"


def sha256_of_name(name: str) -> str | None:
    """Return the SHA-256 carried by a file name that :func:`unique_name` made, or None."""
    match = _SHA_IN_NAME_RE.search(name)
    return match.group(1) if match else None


def _mkdir_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsync'ing each new directory's parent."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        else:
            os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask
        fsync_dir(directory.parent)


def ensure_maildir(root: Path, folder: str = "") -> Path:
    """Create the Maildir ``root`` and its Maildir++ ``folder`` (with ``tmp``, ``new``, ``cur``) if missing.

    A subfolder also gets the empty ``maildirfolder`` file Maildir++ readers expect.

    Returns:
        the folder's directory.

    Raises:
        OSError: a directory cannot be created.
    """
    directory = root / folder if folder else root
    for sub in SUBDIRS:
        _mkdir_durable(root / sub)
        _mkdir_durable(directory / sub)
    marker = directory / "maildirfolder"
    if folder and not marker.exists():
        marker.touch(mode=FILE_MODE)
        os.chmod(marker, FILE_MODE)
        fsync_dir(directory)
    return directory


def clean_stale_tmp(root: Path, *, now_s: float | None = None, max_age_s: float = STALE_TMP_S) -> int:
    """Remove files older than ``max_age_s`` seconds (by modification time) from the ``tmp/`` of the
    Maildir ``root`` and of each of its Maildir++ folders: leftovers of writes killed before the
    rename to ``new/``. Files are never in ``new/`` or ``cur/`` before they are complete, so nothing
    delivered is touched. Only files named as :func:`unique_name` names them are removed: a
    ``deliver_maildir`` set by mistake to a directory that is not maild's Maildir (``/``, a home
    directory: its ``tmp/`` and every ``.NAME/tmp/``) loses nothing (QA of session 10: before, every
    file older than 36 hours in them was deleted).

    Args:
        root: the Maildir; a missing one is fine (nothing to clean).
        now_s: the current time in seconds since the epoch (default now).
        max_age_s: the age limit in seconds.

    Returns:
        How many files were removed. Errors on single files are skipped (logged at warning).
    """
    now = time.time() if now_s is None else now_s
    removed = 0
    tmps = [root / "tmp"]
    with contextlib.suppress(OSError):
        tmps += [entry / "tmp" for entry in root.iterdir() if entry.name.startswith(".") and entry.is_dir()]
    for tmp in tmps:
        try:
            entries = list(os.scandir(tmp))
        except OSError:
            continue
        for entry in entries:
            try:
                if (
                    _OWN_NAME_RE.fullmatch(entry.name)  # never a file maild did not write
                    and entry.is_file(follow_symlinks=False)
                    and now - entry.stat().st_mtime > max_age_s
                ):
                    os.unlink(entry.path)
                    removed += 1
            except OSError as exc:
                log.warning("maildir.tmp-clean-failed", path=entry.path, error=exc.strerror)
    if removed:
        log.info("maildir.tmp-cleaned", maildir=str(root), removed=removed)
    return removed


def present(directory: Path) -> dict[str, Path]:
    """Map SHA-256 to the file in ``directory``'s ``new/`` or ``cur/`` whose name carries it."""
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(directory / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            digest = sha256_of_name(entry.name)
            if digest is not None:
                found.setdefault(digest, Path(entry.path))
    return found


def _folder_lock(directory: Path) -> threading.Lock:
    key = str(directory.absolute())
    with _locks_guard:
        return _folder_locks.setdefault(key, threading.Lock())


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message's file in a Maildir.

    Attributes:
        sha256: the message's SHA-256, hex.
        path: its file (in ``new/`` when just written; wherever it was found otherwise).
        written: False when a file carrying the same SHA-256 was already in the folder.
    """

    sha256: str
    path: Path
    written: bool


def deliver(root: Path, folder: str, messages: Iterable[tuple[str, bytes]]) -> list[Delivered]:
    """Write each (SHA-256 hex, raw octets) into ``folder`` of the Maildir ``root`` unless already there.

    Blocking (file I/O and fsync): call it in a worker thread. Within one process, deliveries to the
    same folder are serialised, so two accounts sharing a folder never write one message twice.

    Returns:
        one :class:`Delivered` per message, in order; when this returns, every file and its
        directory entry in ``new/`` are durable (the file fsync'ed before its rename, ``new/`` after).

    Raises:
        OSError: a directory or file cannot be created or written; messages written before the error
            stay (and are found by their SHA-256 next time); the failed one leaves no file in ``new/``.
    """
    out: list[Delivered] = []
    directory = root / folder if folder else root
    with _folder_lock(directory):
        ensure_maildir(root, folder)
        there = present(directory)
        written = False
        try:
            for digest, raw in messages:
                if digest in there:
                    out.append(Delivered(digest, there[digest], written=False))
                    continue
                path = _write_new(directory, digest, raw)
                there[digest] = path
                written = True
                out.append(Delivered(digest, path, written=True))
        finally:
            if written:
                fsync_dir(directory / "new")
    return out


def _write_new(directory: Path, sha256: str, raw: bytes) -> Path:
    name = unique_name(sha256, len(raw))
    tmp = directory / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken group read away
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        final = directory / "new" / name
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


def _chunks(pending: Sequence[PendingDelivery]) -> Iterable[list[PendingDelivery]]:
    chunk: list[PendingDelivery] = []
    octets = 0
    for item in pending:
        chunk.append(item)
        octets += item.size_octets
        if len(chunk) >= CHUNK_MESSAGES or octets >= CHUNK_OCTETS:
            yield chunk
            chunk, octets = [], 0
    if chunk:
        yield chunk


def _deliver_chunk(root: Path, chunk: list[tuple[PendingDelivery, bytes]]) -> list[tuple[int, Delivered]]:
    by_folder: dict[str, list[tuple[PendingDelivery, bytes]]] = {}
    for item, raw in chunk:
        by_folder.setdefault(folder_name(item.mailbox), []).append((item, raw))
    out: list[tuple[int, Delivered]] = []
    for folder, items in by_folder.items():
        done = deliver(root, folder, ((item.sha256, raw) for item, raw in items))
        out += [(item.message, d) for (item, _raw), d in zip(items, done, strict=True)]
    return out


async def deliver_pending(store: Store, account: str, root: Path, clock: Callable[[], datetime]) -> int:
    """Deliver every message the archive links to ``account`` but has not delivered, and record each.

    Messages are read from the archive and written in chunks (200 messages / 32 MiB); after each
    chunk's files are durable, its delivery rows are committed in one transaction.

    Returns:
        the number of delivery rows recorded (written now, or found already in the folder).

    Raises:
        DeliveryError: the Maildir cannot be written; chunks recorded before stay recorded.
        StoreError: the archive failed.

    Cancellation: a chunk whose rows were not committed is delivered again next time without a
    second file (its files are found by their SHA-256).
    """
    pending = await store.undelivered(account)
    recorded = 0
    found = 0
    for chunk in _chunks(pending):
        raws = await store.raw_messages([p.message for p in chunk])
        work = [(p, raws[p.message]) for p in chunk if p.message in raws]
        try:
            done = await asyncio.to_thread(_deliver_chunk, root, work)
        except OSError as exc:
            raise DeliveryError(
                f"account {account}: cannot deliver to Maildir {root}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else ""),
                account=account,
            ) from None
        await store.record_deliveries(account, [(m, str(d.path)) for m, d in done], clock())
        recorded += len(done)
        found += sum(1 for _m, d in done if not d.written)
    if recorded:
        log.info("delivery.complete", maildir=str(root), delivered=recorded, already_present=found)
    return recorded


class CycleDelivery:
    """Delivery to one account's Maildir during one fetch cycle (used by the fetch cycle).

    A Maildir failure does not stop archiving: it is remembered in :attr:`error` (and logged once);
    later calls in the same cycle do nothing, and the cycle raises the error at its end. The messages
    stay undelivered, so a POP3 server keeps them until a later cycle delivers them.

    Attributes:
        delivered: delivery rows recorded in this cycle.
        error: the first delivery failure, or None.
    """

    def __init__(self, store: Store, account: str, root: Path, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._account = account
        self._root = root
        self._clock = clock
        self.delivered = 0
        self.error: DeliveryError | None = None

    async def catch_up(self) -> None:
        """Deliver what the archive has for the account but the Maildir lacks (see :func:`deliver_pending`).

        Raises:
            StoreError: the archive failed.
        """
        if self.error is not None:
            return
        try:
            self.delivered += await deliver_pending(self._store, self._account, self._root, self._clock)
        except DeliveryError as exc:
            self.error = exc
            log.warning("delivery.failed", maildir=str(self._root), error=str(exc))
