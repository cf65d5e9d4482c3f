"""An alert channel for tests of the running daemon: an ``[alerts] command`` (a small Python script)
that appends every alert's JSON object to a file the test reads back."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class AlertRecorder:
    """Writes ``alert.py`` into ``directory`` and appends ``[alerts] command = [python, alert.py]``
    (and ``extra``, further lines of that table, e.g. ``disk_free_percent = 0``) to ``config``; each
    alert the daemon sends lands as one JSON line in ``directory / "events.jsonl"``."""

    def __init__(self, directory: Path, config: Path, extra: str = "") -> None:
        self.events = directory / "events.jsonl"
        script = directory / "alert.py"
        script.write_text(
            f"import sys\nwith open({str(self.events)!r}, 'a') as f:\n    f.write(sys.stdin.read())\n"
        )
        with config.open("a") as fh:
            fh.write(f"\n[alerts]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n{extra}")

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        """The alerts of this ``kind`` (e.g. ``"local_failure"``) sent so far, in order."""
        text = self.events.read_text() if self.events.exists() else ""
        return [e for e in map(json.loads, text.splitlines()) if e["kind"] == kind]

    def states(self, kind: str) -> list[str]:
        """Their states (``"firing"``, ``"recovered"``), in order."""
        return [e["state"] for e in self.alerts(kind)]
