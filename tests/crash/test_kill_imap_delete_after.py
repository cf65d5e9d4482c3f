"""Kill test: `maild run` on IMAP with retention ``delete-after``, SIGKILLed while it expunges and
retrieves, loses and duplicates nothing.

The trials are :mod:`tests.support.kill_trials`' (``protocol="imap"``); ``python3 -m
tests.bench.kill_soak --protocol imap`` runs many more. The number of trials and the seed come from
``MAILD_KILL_IMAP_TRIALS`` (default 12) and ``MAILD_KILL_SEED`` (default 1).
"""

from __future__ import annotations

import os

import pytest

from tests.support.dovecot import Dovecot, MailUser
from tests.support.kill_trials import MID_CYCLE, KillSettings, run_kill_trials
from tests.support.maildconf import short_dir

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TRIALS = int(os.environ.get("MAILD_KILL_IMAP_TRIALS", "12"))
SEED = int(os.environ.get("MAILD_KILL_SEED", "1"))


def test_sigkill_while_expunging_and_fetching_loses_nothing(dovecot: Dovecot, mail_user: MailUser) -> None:
    """SIGKILL mid-FETCH, mid-commit and between UID STORE/EXPUNGE and LOGOUT never loses or
    duplicates a message.

    Steps: deliver 200 messages; per trial deliver 10-40 more, make everything archived so far due
    (its locations back-dated to 2020: ``retention_days = 1``), start `maild run` (poll every second,
    no IDLE) through a proxy that trickles 1.5 MB/s with 30 ms latency and SIGKILL it at a seeded
    moment (random, as a commit starts, just after the deletion starts, any time); after each kill
    every message gone from the server is archived exactly once and the archive passes
    integrity_check; finally maild runs unkilled (due messages back-dated every second) until the
    mailbox is empty, and every delivered message is archived once.

    Measured with seed 1 and 8 trials (session 12, 22 s): 1 mid-FETCH, 2 mid-commit, 3 in the
    deletion, 2 between cycles (75 % mid-cycle).
    """
    settings = KillSettings(trials=TRIALS, seed=SEED, protocol="imap")
    report = run_kill_trials(dovecot, mail_user, short_dir("maildkilli-"), settings)

    assert sum(report.phases.values()) == TRIALS
    assert report.mid_cycle_fraction >= 0.5, report.summary()
    if TRIALS >= 12:  # the deletion and the commit were each hit at least once
        assert {"committing", "DELE..QUIT"} <= set(report.phases), report.summary()
    assert set(report.phases) <= MID_CYCLE | {"start-up", "login/inventory", "between cycles"}


def test_sigkill_while_spooling_large_messages_loses_nothing(dovecot: Dovecot, mail_user: MailUser) -> None:
    """SIGKILL while large messages are being spooled (parts gathered and not yet written, a literal
    complete and waiting for its batch's commit) and while expunging never loses or duplicates a
    message, and every large message archived is byte-exact.

    Steps: as above, with every 15th message delivered a large one (about 1.4 MB: spooled to a file
    as it arrives, its parts written off the loop) and fewer trials
    (``MAILD_KILL_IMAP_TRIALS`` // 2, at least 4); the trickle then spends most of each trial inside
    a large literal.
    """
    settings = KillSettings(
        trials=max(4, TRIALS // 2), seed=SEED, protocol="imap", initial_messages=60, large_every=15
    )
    report = run_kill_trials(dovecot, mail_user, short_dir("maildkills-"), settings)

    assert sum(report.phases.values()) == settings.trials
    assert report.delivered // settings.large_every >= 5, report.summary()  # large messages were fetched


def test_sigkill_with_several_mailboxes_loses_nothing(dovecot: Dovecot, mail_user: MailUser) -> None:
    """With ``mailboxes = "all"`` (three mailboxes, mail delivered to each in turn), SIGKILL while
    the kept session polls them by status, fetches and expunges in several of them never loses or
    duplicates a message (QA of session 15: the sync records of :mod:`maild.fetch.folders` are
    written before the deletions and a killed cycle's changed statuses list the mailboxes again).

    Steps: as the first test, with 90 initial messages, 30 in each mailbox, and
    ``MAILD_KILL_IMAP_TRIALS`` // 2 trials (at least 6); the final unkilled run empties all three.
    """
    settings = KillSettings(
        trials=max(6, TRIALS // 2),
        seed=SEED,
        protocol="imap",
        initial_messages=90,
        mailboxes=("INBOX", "Kunden/Meier", "Projekte"),
    )
    report = run_kill_trials(dovecot, mail_user, short_dir("maildkillm-"), settings)

    assert sum(report.phases.values()) == settings.trials
    # three mailboxes make the login and inventory longer: more kills land there (seed 2, 20 trials:
    # 8 of 20, mid-cycle 45 %; seeds 1 to 3 held every invariant)
    assert report.mid_cycle_fraction >= 0.3, report.summary()
