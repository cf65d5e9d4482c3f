"""Prometheus text exposition (format 0.0.4) of maild's counters, and the node_exporter textfile.

Metric names follow Prometheus conventions: ``_total`` for counters, base units (bytes, seconds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from maild.fsutil import write_atomic
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import reported_state
from maild.service.status import AccountState, FetchMode

if TYPE_CHECKING:
    from maild.archive.checkpointer import WalSnapshot


def _number(value: float) -> str:
    """A sample value without loss: integers exactly, other floats in shortest round-trip form."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


#: Every state and mode an account can report: each gets a 0/1 sample, so no series vanishes when
#: an account changes state (an alert on ``state="auth_failed" == 1`` then also resolves cleanly).
STATES: tuple[str, ...] = get_args(AccountState)
MODES: tuple[str, ...] = get_args(FetchMode)
#: Failure classes of ``maild_fetch_failures_total`` and the cycle outcomes (see
#: :func:`~maild.service.account_runtime.outcome_label`) counted in each.
FAILURE_CLASSES: dict[str, tuple[str, ...]] = {
    "auth": ("auth",),
    "network": ("transient",),
    "throttled": ("throttled",),
    "protocol": ("protocol",),
    "storage": ("store",),
    "other": ("config", "internal"),
}


def render(
    accounts: Iterable[AccountRuntime],
    store_octets: int,
    archive_messages: int,
    *,
    now: datetime | None = None,
    started_at: datetime | None = None,
    wal: WalSnapshot | None = None,
) -> str:
    """Render the metrics of ``accounts`` and the archive as Prometheus text.

    Args:
        accounts: the scheduler's runtime records.
        store_octets: size of the archive database file (plus WAL) in octets.
        archive_messages: distinct messages in the archive.
        now: the current time (aware); None leaves out ``maild_fetch_lag_seconds``.
        started_at: when the daemon started (aware): the lag of an account that never succeeded
            counts from then; None: such an account has no lag sample.
        wal: the archive's write-ahead log (:meth:`maild.archive.store.Store.wal_snapshot`): its
            size, and whether and since when a reader holds it; None leaves those out.

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
        "maild_fetch_failures_total",
        "counter",
        "Failed fetch cycles by class (auth, network, throttled, protocol, storage, other).",
        (
            ({**lab(rt), "class": cls}, sum(rt.cycles.get(o, 0) for o in outcomes))
            for rt in accs
            for cls, outcomes in FAILURE_CLASSES.items()
        ),
    )
    if now is not None:

        def lag(rt: AccountRuntime) -> float | None:
            since = rt.last_success or started_at
            return max(0.0, round((now - since).total_seconds(), 3)) if since is not None else None

        family(
            "maild_fetch_lag_seconds",
            "gauge",
            "Seconds since the account's last successful cycle (since the daemon's start if none).",
            ((lab(rt), lagged) for rt in accs if (lagged := lag(rt)) is not None),
        )
    family(
        "maild_account_state",
        "gauge",
        "1 for the account's current state, 0 for every other state.",
        (({**lab(rt), "state": st}, int(reported_state(rt) == st)) for rt in accs for st in STATES),
    )
    family(
        "maild_account_mode",
        "gauge",
        "1 for how the account learns of new mail (idle, polling, or reconnecting its IDLE session), 0 for"
        " the others.",
        (({**lab(rt), "mode": m}, int(rt.mode == m)) for rt in accs for m in MODES),
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
    if wal is not None:
        if wal.octets is not None:
            family(
                "maild_archive_wal_bytes",
                "gauge",
                "Octets of pages in the archive's write-ahead log (not yet restarted from its beginning).",
                [({}, wal.octets)],
            )
        family(
            "maild_archive_wal_held",
            "gauge",
            "1 while a reader's long read transaction keeps the archive's write-ahead log from being"
            " copied and started again (storing goes on; the log grows), else 0.",
            [({}, int(wal.held_since is not None))],
        )
        family(
            "maild_archive_wal_held_since_timestamp_seconds",
            "gauge",
            "Since when a reader holds the archive's write-ahead log (Unix time); no sample when none does.",
            [({}, wal.held_since.timestamp())] if wal.held_since is not None else [],
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
