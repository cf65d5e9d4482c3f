"""Export of one account's whole archive into a standard format: Maildir or mboxrd.

"Whole" means every message ever linked to the account, also those no longer on its server
(archive-only). Both exports read the archive read-only (:class:`maild.archive.reader.ArchiveReader`), so
they run while the daemon fetches.

- Maildir: the same layout and file names as delivery (:mod:`maild.archive.maildir`): exact octets, IMAP
  mailboxes as Maildir++ folders, the SHA-256 in each file name. Re-running into the same directory
  adds only messages whose SHA-256 is not yet in that folder's ``new/`` or ``cur/``.
- mbox: the mboxrd variant. Each message starts with ``From SENDER DATE`` (SENDER from Return-Path,
  else ``MAILER-DAEMON``; DATE in asctime form, UTC, from the Date field or else when stored), its
  CRLF line endings become LF (as Unix mail programs expect), every line matching ``>*From `` gets
  one more ``>``, and a blank line follows it. Readers undo the quoting by removing one ``>`` from
  lines matching ``>+From ``. The file is written beside the target and renamed over it when
  complete, so an interrupted export never leaves a partial file under the target name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from maild.archive.maildir import deliver, folder_name
from maild.archive.reader import ArchivedMessage, ArchiveReader
from maild.archive.schema import parse_utc
from maild.errors import QueryError

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each message."""

_CHUNK_MESSAGES = 200
_FROM_LINE_RE = re.compile(rb"^(>*From )", re.MULTILINE)
_RETURN_PATH_RE = re.compile(rb"^Return-Path:[ \t]*<?([^\s<>]+)>?[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export did.

    Attributes:
        total: messages of the account selected for export.
        written: messages written now.
        already_present: messages skipped because the target Maildir already held them.
    """

    total: int
    written: int
    already_present: int = 0


def _selection(reader: ArchiveReader, account: str, since: datetime | None) -> list[tuple[int, str | None]]:
    if not reader.account_exists(account):
        raise QueryError(f"the archive has no account named {account!r}")
    return reader.account_messages(account, since)


def export_maildir(
    reader: ArchiveReader,
    account: str,
    target: Path,
    *,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``account``'s archive into the Maildir ``target`` (created if missing); idempotent.

    Raises:
        QueryError: no such account, or ``target`` cannot be written.
        StoreError: the archive cannot be read.
    """
    selection = _selection(reader, account, since)
    folder_of = dict(selection)
    ids = [message for message, _mailbox in selection]
    written = present = done = 0
    batch: list[ArchivedMessage] = []

    def flush() -> None:
        nonlocal written, present, done
        groups: dict[str, list[tuple[str, bytes]]] = {}
        for m in batch:
            assert m.raw is not None
            groups.setdefault(folder_name(folder_of[m.id]), []).append((m.sha256, m.raw))
        for folder, items in groups.items():
            try:
                results = deliver(target, folder, items)
            except OSError as exc:
                raise QueryError(f"cannot write Maildir {target}: {exc.strerror or exc}") from None
            written += sum(1 for r in results if r.written)
            present += sum(1 for r in results if not r.written)
            done += len(results)
            if progress is not None:
                progress(done, len(ids))
        batch.clear()

    for message in reader.iter_raw(ids):
        batch.append(message)
        if len(batch) >= _CHUNK_MESSAGES:
            flush()
    flush()
    return ExportResult(total=len(ids), written=written, already_present=present)


def mboxrd_quote(raw: bytes) -> bytes:
    """Return ``raw`` with LF line endings and mboxrd quoting: ``>`` before every ``>*From `` line."""
    return _FROM_LINE_RE.sub(rb">\1", raw.replace(b"\r\n", b"\n"))


def from_line(message: ArchivedMessage) -> bytes:
    """The mbox separator line for ``message``, without its LF: ``From SENDER Mon Nov  2 09:00:00 2026``."""
    assert message.raw is not None
    head = message.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _RETURN_PATH_RE.search(head)
    sender = match.group(1) if match else b"MAILER-DAEMON"
    moment = parse_utc(message.date or message.stored_at)
    stamp = f"{moment:%a %b} {moment.day:2d} {moment:%H:%M:%S %Y}"  # asctime(3), as time.asctime writes it
    return b"From " + sender + b" " + stamp.encode("ascii")


def export_mbox(
    reader: ArchiveReader,
    account: str,
    target: Path,
    *,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``account``'s archive as one mboxrd file ``target``, replacing it when complete.

    Raises:
        QueryError: no such account, or ``target`` cannot be written.
        StoreError: the archive cannot be read.
    """
    ids = [message for message, _mailbox in _selection(reader, account, since)]
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    done = 0
    try:
        with partial.open("xb") as out:
            for message in reader.iter_raw(ids):
                assert message.raw is not None
                body = mboxrd_quote(message.raw)
                out.write(from_line(message) + b"\n" + body + (b"\n" if body.endswith(b"\n") else b"\n\n"))
                done += 1
                if progress is not None:
                    progress(done, len(ids))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise QueryError(f"cannot write mbox {target}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(total=len(ids), written=done)
