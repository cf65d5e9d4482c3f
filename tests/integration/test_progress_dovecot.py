"""The total of a cycle's progress against the real Dovecot, POP3 and IMAP (QA finding F6 of session 8):
the count of messages to fetch is known after the inventory for both protocols (n/N in `maild status`);
the octets' total where the server reported every size (POP3's LIST; IMAP's RFC822.SIZE, asked for only
with max_message_size), else unknown (None), never a misleading 0."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.cli.status_view import progress_text
from maild.fetch.cycle import fetch_cycle, make_maildrop
from maild.fetch.progress import CycleProgress
from maild.service.status import ProgressStatus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import letter, prepare

pytestmark = pytest.mark.dovecot


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A small pool for the POP3 adapter's blocking session."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool


def _status(p: CycleProgress) -> ProgressStatus:
    return ProgressStatus(p.messages_done, p.octets_done, p.messages_total, p.octets_total, None, None)


@pytest.mark.parametrize(
    ("protocol", "overrides", "octets_known"),
    [("pop3", {}, True), ("imap", {}, False), ("imap", {"max_message_size": 10_000_000}, True)],
    ids=["pop3", "imap", "imap-max-message-size"],
)
async def test_the_total_after_the_inventory_is_shown_as_n_of_n(
    dovecot: Dovecot,
    mail_user: MailUser,
    tmp_path: Path,
    executor: concurrent.futures.ThreadPoolExecutor,
    protocol: str,
    overrides: dict[str, int],
    octets_known: bool,
) -> None:
    """Steps: deliver 5 messages; one cycle with a progress record (batches of 2); at every commit the
    total of messages is 5, so the status line reads "fetching n/5 messages"; the octets' total is
    the sum of sizes or None (shown "so far"), never 0."""
    dovecot.deliver_many(mail_user.name, [letter(n) for n in range(1, 6)])
    store = await Store.open(tmp_path / "maild.sqlite3")
    try:
        account = await prepare(store, dovecot_account(dovecot, mail_user, protocol, **overrides))  # type: ignore[arg-type]
        lines: list[str] = []
        progress = CycleProgress(on_commit=lambda _outcome: lines.append(progress_text(_status(progress))))

        await fetch_cycle(
            account, store, make_maildrop(account, executor), progress=progress, batch_messages=2
        )
    finally:
        await store.close()

    assert progress.messages_total == progress.messages_done == 5
    assert lines and all("/5 messages" in line for line in lines), lines
    if octets_known:
        assert progress.octets_total == progress.octets_done > 0
        assert re.search(r"messages \([\d.]+ \w?B/[\d.]+ \w?B\)$", lines[-1]), lines[-1]
    else:
        assert progress.octets_total is None
        assert lines[-1].endswith(" so far)"), lines[-1]
