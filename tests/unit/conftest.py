"""Fixtures shared by the unit tests of the scheduler and the IDLE watcher."""

from __future__ import annotations

import pytest

from maild.config.loader import AccountConfig
from maild.service import scheduler as scheduler_module
from tests.unit.fakes import FakeMaildrop, FakeServer


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeServer]:
    """Account name to its fake server; the scheduler's make_maildrop opens a session with it."""
    table: dict[str, FakeServer] = {}

    def make_maildrop(account: AccountConfig, executor: object) -> FakeMaildrop:
        return table[account.name].session()

    monkeypatch.setattr(scheduler_module, "make_maildrop", make_maildrop)
    return table
