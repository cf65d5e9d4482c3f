"""The daemon's record of its stops for a restart after a failed ``ROLLBACK``
(:mod:`maild.service.restart_record`): a repeat within the window is told apart, at the window's edge
too; an unreadable record counts as none and an unwritable one never refuses the restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.service.restart_record import (
    RECORD_MAX_OCTETS,
    RECORD_NAME,
    REPEAT_WINDOW_S,
    last_stop,
    stop_for_restart,
)

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def test_the_first_stop_is_not_a_repeat_and_is_recorded(tmp_path: Path) -> None:
    """No record: a restart (False), and the moment is written for the next one."""
    assert stop_for_restart(tmp_path, "archive x: left open", NOW) is False
    assert last_stop(tmp_path) == NOW


@pytest.mark.parametrize(
    ("after_s", "repeated"),
    [
        (0, True),
        (1, True),
        (REPEAT_WINDOW_S - 1, True),
        (REPEAT_WINDOW_S, False),
        (REPEAT_WINDOW_S + 1, False),
    ],
)
def test_a_second_stop_is_a_repeat_only_within_the_window(
    tmp_path: Path, after_s: float, repeated: bool
) -> None:
    """Within :data:`REPEAT_WINDOW_S` of the last stop: a repeat (exit 74); from the window's end on: a
    restart again."""
    stop_for_restart(tmp_path, "first", NOW)
    assert stop_for_restart(tmp_path, "second", NOW + timedelta(seconds=after_s)) is repeated
    assert last_stop(tmp_path) == NOW + timedelta(seconds=after_s)


def test_a_record_from_the_future_is_not_a_repeat(tmp_path: Path) -> None:
    """A clock set back (the record later than now) does not keep the daemon from restarting."""
    stop_for_restart(tmp_path, "first", NOW + timedelta(seconds=10))
    assert stop_for_restart(tmp_path, "second", NOW) is False


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b'{"at": "yesterday"}', b'{"at": "2026-12-07T20:59:00"}', b"[]", b'{"when": 1}'],
)
def test_an_unreadable_record_counts_as_none(tmp_path: Path, content: bytes) -> None:
    """Garbage, a naive time or another shape: no last stop, so a restart."""
    (tmp_path / RECORD_NAME).write_bytes(content)
    assert last_stop(tmp_path) is None
    assert stop_for_restart(tmp_path, "x", NOW) is False


def test_a_record_above_the_read_bound_counts_as_none(tmp_path: Path) -> None:
    """Only :data:`RECORD_MAX_OCTETS` are read: one octet more and the record is ignored."""
    at = f'{{"at": "{NOW.isoformat()}", "reason": "'.encode()
    fitting = at + b"x" * (RECORD_MAX_OCTETS - len(at) - 2) + b'"}'
    assert len(fitting) == RECORD_MAX_OCTETS
    (tmp_path / RECORD_NAME).write_bytes(fitting)
    assert last_stop(tmp_path) == NOW
    (tmp_path / RECORD_NAME).write_bytes(fitting[:-2] + b'x"}')
    assert last_stop(tmp_path) is None


def test_an_unwritable_state_dir_still_restarts(tmp_path: Path) -> None:
    """The record cannot be written (its directory is gone): still a restart (False), never a refused
    one."""
    assert stop_for_restart(tmp_path / "gone", "x", NOW) is False
    assert not (tmp_path / "gone").exists()


def test_a_deeply_nested_record_counts_as_none_and_is_rewritten(tmp_path: Path) -> None:
    """A record of nested brackets within the read bound (json's decoder raises RecursionError, not a
    ValueError) counts as none: a restart, and the record is rewritten so the next stop within the
    window is a repeat (before the review of session 15 the error escaped: ``maild run`` ended with a
    traceback, exit 1, restarted every RestartSec with the record never rewritten, so never 74)."""
    (tmp_path / RECORD_NAME).write_bytes(b"[" * (RECORD_MAX_OCTETS - 1))
    assert last_stop(tmp_path) is None
    assert stop_for_restart(tmp_path, "x", NOW) is False
    assert last_stop(tmp_path) == NOW
    assert stop_for_restart(tmp_path, "y", NOW + timedelta(seconds=10)) is True


def test_a_fifo_in_the_records_place_counts_as_none_without_blocking(tmp_path: Path) -> None:
    """A named pipe at the record's path (nothing writes it): read as no record, at once, and replaced
    by the record (before the review of session 15 its open blocked the daemon's stop for ever)."""
    import os
    import threading

    os.mkfifo(tmp_path / RECORD_NAME)
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(stop_for_restart(tmp_path, "x", NOW)), daemon=True)
    thread.start()
    thread.join(10.0)
    if thread.is_alive():  # unblock the open (a writer end), so the thread ends with the test
        os.close(os.open(tmp_path / RECORD_NAME, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10.0)
        pytest.fail("reading a FIFO at the record's path blocked")
    assert seen == [False]
    assert last_stop(tmp_path) == NOW
