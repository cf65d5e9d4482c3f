"""Kill test: ``maild migrate pop --to imap`` (the POP3 -> IMAP move of archive-only mail), SIGKILLed
at seeded moments, moves nothing twice and loses nothing.

The trials are :mod:`tests.support.migrate_kill_trials`'; ``python3 -m tests.bench.kill_soak
--protocol migrate`` runs many more. The number of kills and the seed come from
``MAILD_KILL_MIGRATE_TRIALS`` (default 6) and ``MAILD_KILL_SEED`` (default 1).
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import short_dir
from tests.support.migrate_kill_trials import (
    MIGRATE_PHASES,
    MigrateKillSettings,
    check_migration,
    lf_digest,
    run_migrate_kill_trials,
)

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TRIALS = int(os.environ.get("MAILD_KILL_MIGRATE_TRIALS", "6"))
SEED = int(os.environ.get("MAILD_KILL_SEED", "1"))


def test_sigkill_of_migrate_moves_nothing_twice_and_loses_nothing(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """SIGKILL of `maild migrate` at the start, at random moments and right after an upload's record
    never leaves a message twice on B, a stranger there, or a record of an upload B lacks, and the
    archive intact; an unkilled run then uploads the rest and `compare` finds nothing missing.

    Steps: 120 messages fetched by POP3 with retention delete (archive only); the POP3 account
    disabled; an IMAP account on the same (empty) mailbox through a proxy adding 4 ms per chunk; per
    trial `maild migrate pop --to imap` is started and SIGKILLed at a seeded moment, then the
    invariants are checked; finally `migrate` runs unkilled (exit 0, "nothing of pop is missing in
    imap", it uploads exactly what was left) and B holds each of the 120 once.

    Measured with seed 1 and 6 kills (session 13, 8 s): 5 while uploading, 1 before the first upload.
    """
    settings = MigrateKillSettings(trials=TRIALS, seed=SEED, messages=120)
    directory = short_dir("maildkillm-")
    report = run_migrate_kill_trials(dovecot, mail_user, directory, settings)

    assert sum(report.phases.values()) == TRIALS
    assert set(report.phases) <= set(MIGRATE_PHASES)
    assert report.phases["uploading"] >= TRIALS // 2, report.summary()

    # the checks can fail: a message B holds twice is caught
    db_path = directory / "state" / "maild.sqlite3"
    with sqlite3.connect(db_path) as db:
        source = {lf_digest(raw): raw for (raw,) in db.execute("SELECT raw FROM messages")}
    check_migration(dovecot, mail_user.name, source, db_path)
    first = dovecot.maildir_files(mail_user.name)[0]
    shutil.copy(first, first.parent.parent / "new" / f"{first.name.split(':')[0]}.copy")
    with pytest.raises(AssertionError, match="B holds a message twice"):
        check_migration(dovecot, mail_user.name, source, db_path)
