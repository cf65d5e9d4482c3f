"""The record of a move: one report file in JSON and one in CSV per ``maild migrate`` run.

Written under ``STATE_DIR/moves/`` as ``SOURCE-to-TARGET-KIND-YYYYMMDDTHHMMSSZ.json`` and ``.csv``
(KIND: ``migrate``, ``verify``, ``undo``), each atomically and durably (:func:`maild.fsutil.write_atomic`,
mode 0640: it names subjects, not message bodies). One row per message: the archive's row id, its
SHA-256, Message-ID, subject, the target mailbox, the APPENDUID (UIDVALIDITY and UID; RFC 4315
section 3) and the outcome.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from maild.fsutil import write_atomic

#: Columns of the CSV file, in order; the JSON rows carry the same keys.
COLUMNS = ("archive_id", "sha256", "message_id", "subject", "mailbox", "uidvalidity", "uid", "outcome")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One message of a move report (see :data:`COLUMNS`)."""

    archive_id: int
    sha256: str
    message_id: str | None
    subject: str | None
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    outcome: str


def write_report(
    state_dir: Path, kind: str, source: str, target: str, rows: list[ReportRow], now: datetime
) -> tuple[Path, Path]:
    """Write the JSON and CSV report of one run and return their paths (JSON, CSV).

    Args:
        state_dir: maild's state directory (``daemon.state_dir``).
        kind: ``"migrate"``, ``"verify"`` or ``"undo"``.
        source, target: the move's accounts.
        rows: one per message.
        now: when the run ended (aware; written in UTC).

    Raises:
        OSError: the directory or a file cannot be written.
    """
    directory = state_dir / "moves"
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = directory / f"{source}-to-{target}-{kind}-{stamp}"
    records = [{c: getattr(r, c) for c in COLUMNS} for r in rows]
    doc = {
        "kind": kind,
        "source": source,
        "target": target,
        "finished_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "messages": records,
    }
    json_path, csv_path = stem.with_suffix(".json"), stem.with_suffix(".csv")
    write_atomic(json_path, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode(), mode=0o640)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(records)
    write_atomic(csv_path, text.getvalue().encode(), mode=0o640)
    return json_path, csv_path
