"""Fixtures shared by the unit tests of the scheduler and the IDLE watcher."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeServer


@pytest.fixture
def servers() -> dict[str, FakeServer]:
    """Account name to its fake server; the scheduler's maildrop factory (see
    :func:`tests.unit.fakes.maildrops_of`) opens a session with it."""
    return {}
