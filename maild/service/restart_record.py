"""The daemon's own record of its last stop for a restart after a failed ``ROLLBACK``: the guard
against a restart loop.

When a transaction on the archive is left open (:class:`~maild.errors.ArchiveNeedsRestart`), the
daemon stops and asks systemd for a restart (exit 75, ``EX_TEMPFAIL``). The unit's start limit cannot
tell such a loop apart: with ``RestartSec=10s`` systemd's default ``StartLimitBurst=5`` in
``StartLimitIntervalSec=10s`` is never reached. So the daemon writes the moment of that stop to
:data:`RECORD_NAME` in its state directory, and when it happens again within
:data:`REPEAT_WINDOW_S` of the last one it exits 74 (``EX_IOERR``) instead, which the unit's
``RestartPreventExitStatus=`` names: the disk keeps failing, and the admin looks at it
(docs/service.md, "Restarts after an archive failure").
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from maild.fsutil import write_atomic

log = structlog.get_logger("maild.service.restart_record")

RECORD_NAME = "restart-after-archive-failure.json"
"""The record's file name in ``[daemon] state_dir``: ``{"at": ISO 8601 UTC, "reason": text}``."""

REPEAT_WINDOW_S = 3600.0
"""A transaction left open again within this many seconds (1 hour) of the last stop for one is not
restarted (exit 74): once is a passing I/O error, twice within an hour a failing disk."""

RECORD_MAX_OCTETS = 4096
"""At most this much of the record is read (it is one short JSON line; a larger file is ignored)."""


def last_stop(state_dir: Path) -> datetime | None:
    """When the daemon last stopped for a restart after a failed ``ROLLBACK`` (aware, UTC), or None
    (no record, or one that cannot be read or parsed: treated as none)."""
    try:
        # O_NONBLOCK: a FIFO put in its place would block the open, and so the daemon's stop, for
        # ever; only a regular file is read (review of session 15)
        fd = os.open(state_dir / RECORD_NAME, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            data = file.read(RECORD_MAX_OCTETS + 1)
        if len(data) > RECORD_MAX_OCTETS:
            return None
        at = datetime.fromisoformat(json.loads(data)["at"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        # RecursionError: nested brackets within the bound (json's decoder); before the review of
        # session 15 it escaped, ``maild run`` exited 1 and the record was never rewritten
        return None
    return at if at.tzinfo is not None else None


def stop_for_restart(state_dir: Path, reason: str, now: datetime) -> bool:
    """Record this stop and say whether it repeats one within :data:`REPEAT_WINDOW_S`.

    Args:
        state_dir: the daemon's state directory.
        reason: why the archive's transaction stays open (logged, recorded).
        now: the current time, aware (UTC).

    Returns:
        True when the last such stop was less than :data:`REPEAT_WINDOW_S` before ``now`` (the caller
        exits 74 and is not restarted); False otherwise (exit 75, restarted). A record that cannot be
        written is logged (``daemon.restart-record.failed``) and the stop is still a restart: the
        window is then not kept, never the restart refused.
    """
    before = last_stop(state_dir)
    repeated = before is not None and timedelta(0) <= now - before < timedelta(seconds=REPEAT_WINDOW_S)
    try:
        record = json.dumps({"at": now.isoformat(), "reason": reason}).encode() + b"\n"
        write_atomic(state_dir / RECORD_NAME, record)
    except OSError as exc:
        log.warning("daemon.restart-record.failed", path=str(state_dir / RECORD_NAME), error=str(exc))
    return repeated
