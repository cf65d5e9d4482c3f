"""Prometheus text exposition (format 0.0.4) of maild's counters, and the node_exporter textfile.

Metric names follow Prometheus conventions: ``_total`` for counters, base units (bytes, seconds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from maild.fsutil import write_atomic
from maild.service.scheduler import AccountRuntime


def _number(value: float) -> str:
    """A sample value without loss: integers exactly, other floats in shortest round-trip form."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(accounts: Iterable[AccountRuntime], store_octets: int, archive_messages: int) -> str:
    """Render the metrics of ``accounts`` and the archive as Prometheus text.

    Args:
        accounts: the scheduler's runtime records.
        store_octets: size of the archive database file (plus WAL) in octets.
        archive_messages: distinct messages in the archive.

    Returns:
        The exposition text, ending with a newline.
    """
    accs = list(accounts)
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, rows: Iterable[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")

    def lab(rt: AccountRuntime) -> dict[str, str]:
        return {
            "account": rt.config.name,
            "organisation": rt.config.organisation,
            "protocol": rt.config.protocol,
        }

    family(
        "maild_fetched_messages_total",
        "counter",
        "Messages newly archived for the account.",
        ((lab(rt), rt.fetched_messages) for rt in accs),
    )
    family(
        "maild_new_messages_total",
        "counter",
        "Of the messages newly archived for the account, those new to the archive (the rest were"
        " already archived through another account).",
        ((lab(rt), rt.new_messages) for rt in accs),
    )
    family(
        "maild_fetched_bytes_total",
        "counter",
        "Octets of messages newly archived for the account.",
        ((lab(rt), rt.fetched_octets) for rt in accs),
    )
    family(
        "maild_fetch_cycles_total",
        "counter",
        "Fetch cycles by outcome.",
        (({**lab(rt), "outcome": o}, n) for rt in accs for o, n in sorted(rt.cycles.items())),
    )
    family(
        "maild_last_success_timestamp_seconds",
        "gauge",
        "End of the last successful cycle (Unix time).",
        ((lab(rt), rt.last_success.timestamp()) for rt in accs if rt.last_success),
    )
    family(
        "maild_account_state",
        "gauge",
        "1 for the account's current state.",
        (({**lab(rt), "state": rt.state}, 1) for rt in accs),
    )
    family(
        "maild_account_mode",
        "gauge",
        "1 for how the account learns of new mail (idle, polling, or reconnecting its IDLE session).",
        (({**lab(rt), "mode": rt.mode}, 1) for rt in accs),
    )
    family(
        "maild_consecutive_failures",
        "gauge",
        "Failed cycles since the last success.",
        ((lab(rt), rt.consecutive_failures) for rt in accs),
    )
    family("maild_archive_messages", "gauge", "Distinct messages in the archive.", [({}, archive_messages)])
    family(
        "maild_store_bytes",
        "gauge",
        "Size of the archive database and its WAL in octets.",
        [({}, store_octets)],
    )
    return "\n".join(out) + "\n"


def database_octets(path: Path) -> int:
    """Size in octets of the SQLite file plus its ``-wal`` file (0 for missing files)."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (temp file in the same directory, fsync, rename, 0644).

    Raises:
        OSError: the directory is missing or not writable.
    """
    write_atomic(path, text.encode("utf-8"), mode=0o644)
