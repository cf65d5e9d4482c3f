"""The move's feedback: progress lines without a terminal, and the JSON/CSV report files."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.cli.move import PROGRESS_EVERY_S, UploadMeter
from maild.move.report import COLUMNS, ReportRow, write_report


def test_without_a_terminal_progress_is_a_plain_line_every_interval_and_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a terminal: one line per PROGRESS_EVERY_S seconds with size and time left, and a last line."""
    now = [100.0]
    meter = UploadMeter(live=False, clock=lambda: now[0])
    for done, at in ((1, 101.0), (2, 105.0), (3, 100.0 + PROGRESS_EVERY_S + 1), (4, 112.0)):
        now[0] = at
        meter(done, 4, done * 1_000_000, 4_000_000)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "uploaded 3/4 (3.0 MB of 4.0 MB), about 4 s left",
        "uploaded 4/4 (4.0 MB of 4.0 MB) in 12 s",
    ]


def test_report_is_written_as_json_and_csv_under_the_state_directory(tmp_path: Path) -> None:
    """Both files name every message with the same columns; CSV quotes what needs quoting."""
    rows = [
        ReportRow(7, "a" * 64, "<m@x>", 'Re: "Angebot", Müller', "INBOX", 11, 3, "uploaded"),
        ReportRow(8, "b" * 64, None, None, "INBOX", None, None, "refused: NO [TOOBIG]"),
    ]
    json_path, csv_path = write_report(
        tmp_path, "migrate", "pop", "imap", rows, datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
    )
    assert json_path == tmp_path / "moves" / "pop-to-imap-migrate-20261206T140000Z.json"
    doc = json.loads(json_path.read_text())
    assert doc["source"] == "pop"
    assert doc["messages"][0] == {c: getattr(rows[0], c) for c in COLUMNS}
    with csv_path.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0]["subject"] == 'Re: "Angebot", Müller'
    assert table[1]["uid"] == ""
    assert json_path.stat().st_mode & 0o777 == 0o640
