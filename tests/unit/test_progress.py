"""Progress of a long cycle (:mod:`maild.fetch.progress`): the total after the inventory, committed
batches counted as they commit (not at the cycle's end), rate and time left, the status line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive.store import Store
from maild.cli.status_view import progress_text
from maild.errors import ConnectError
from maild.fetch.cycle import fetch_cycle
from maild.fetch.progress import PROGRESS_LOG_INTERVAL_S, CycleProgress
from maild.model import StoreOutcome
from maild.service.status import ProgressStatus
from tests.support.accounts import pop3_account
from tests.unit.fakes import FakeServer, make_message
from tests.unit.test_fetch_cycle import T0, Clock


class Seconds:
    """A settable monotonic clock in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open archive in a temporary directory."""
    s = await Store.open(tmp_path / "maild.sqlite3")
    try:
        yield s
    finally:
        await s.close()


async def test_cycle_reports_its_plan_and_each_committed_batch(store: Store) -> None:
    """The plan is the inventory's new messages and sizes; each batch of two counts once committed,
    and the callback sees every batch before the cycle ends."""
    account = pop3_account()
    await store.ensure_account(account.name, account.organisation, account.employee, account.protocol, T0)
    server = FakeServer.with_pop3(5)
    seen: list[int] = []
    progress = CycleProgress(on_commit=lambda outcome: seen.append(outcome.new_links))

    result = await fetch_cycle(
        account, store, server.session(), clock=Clock(), batch_messages=2, progress=progress
    )

    sizes = sum(len(make_message(n)) for n in range(1, 6))
    assert (progress.messages_total, progress.octets_total) == (5, sizes)
    assert (progress.messages_done, progress.octets_done) == (5, sizes)
    assert seen == [2, 2, 1]
    assert result.new_links == 5


async def test_a_failed_cycle_counts_what_it_committed(store: Store) -> None:
    """A cycle cut after three messages reports the two committed ones as done, out of five."""
    account = pop3_account()
    await store.ensure_account(account.name, account.organisation, account.employee, account.protocol, T0)
    server = FakeServer.with_pop3(5)
    server.plan(faults={"retrieve": ConnectError("reset", account=account.name)}, retrieve_point_after=3)
    progress = CycleProgress()

    with pytest.raises(ConnectError):
        await fetch_cycle(
            account, store, server.session(), clock=Clock(), batch_messages=2, progress=progress
        )

    assert (progress.messages_done, progress.messages_total) == (2, 5)


def test_rate_and_time_left_follow_the_committed_octets() -> None:
    """After 10 s and a quarter of the octets, the rate is octets/10 s and 30 s are left."""
    clock = Seconds()
    progress = CycleProgress(clock=clock)
    assert (progress.rate_octets_per_s(), progress.seconds_left()) == (None, None)

    progress.planned(100, 4_000_000)
    clock.now += 10
    progress.committed(25, 1_000_000, StoreOutcome(25, 25, 1_000_000))

    assert progress.rate_octets_per_s() == 100_000
    assert progress.seconds_left() == 30


def test_progress_is_logged_at_most_once_a_minute() -> None:
    """Batches within a minute log nothing; the first batch after a minute logs fetch.progress at info."""
    clock = Seconds()
    progress = CycleProgress(clock=clock)
    progress.planned(10, 10_000)
    with capture_logs() as logs:
        clock.now += 1
        progress.committed(1, 1000, StoreOutcome(1, 1, 1000))
        clock.now += PROGRESS_LOG_INTERVAL_S
        progress.committed(1, 1000, StoreOutcome(1, 1, 1000))

    assert [(e["event"], e["log_level"], e["messages_done"]) for e in logs] == [("fetch.progress", "info", 2)]


def test_progress_line_in_status() -> None:
    """The status line shows done/total messages and sizes, the rate and the time left."""
    text = progress_text(ProgressStatus(1200, 240_000_000, 5000, 1_000_000_000, 3_200_000.0, 238.0))

    assert text == "fetching 1,200/5,000 messages (240.0 MB/1.0 GB), 3.2 MB/s, about 4 min left"
    assert progress_text(ProgressStatus(0, 0, None, None, None, None)) == "fetching: taking the inventory"


def test_without_the_octets_total_the_status_line_says_how_much_so_far() -> None:
    """An IMAP cycle's progress has the messages' total but not the octets' (None, never 0): the line
    reads n/N messages and the octets fetched so far."""
    line = progress_text(ProgressStatus(120, 2_400_000, 500, None, 1_000_000.0, 8.0))

    assert line == "fetching 120/500 messages (2.4 MB so far), 1.0 MB/s, about 8 s left"
