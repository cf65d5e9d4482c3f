"""SIGKILL of ``maild retire --accept-unfetched`` once its acceptance is on disk, then a re-run.

``--accept-unfetched`` records what A's server still holds unarchived (table ``unfetched_accepted``)
and the retirement (``accounts.retired_at``). Before session 14 these were two transactions: a kill
between them left an acceptance of a retirement that did not happen, and the re-run recorded the same
messages a second time. Now they are one transaction: after a kill there is all of it or none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_migration import letter
from tests.support.daemonproc import maild_cli
from tests.support.dovecot import Dovecot, MailUser
from tests.support.move_setup import pop_moved_into_imap, run_killed

pytestmark = pytest.mark.dovecot

#: Runs maild, killing it right after the first durable write that records an acceptance of unfetched
#: mail returns (the commit is on disk; whatever the command would write next is not).
KILLING_MAILD = """
import os, signal, sys
import maild.archive.connection as connection
real = connection.ArchiveConnection._write
async def _write(self, statements, **kwargs):
    todo = list(statements)
    await real(self, todo, **kwargs)
    if any("unfetched_accepted" in sql for sql, _params, _many in todo):
        os.kill(os.getpid(), signal.SIGKILL)
connection.ArchiveConnection._write = _write
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _state(directory: Path) -> tuple[str | None, int]:
    """(``retired_into`` of ``pop``, rows of ``unfetched_accepted``)."""
    with sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        into = db.execute("SELECT retired_into FROM accounts WHERE name = 'pop'").fetchone()[0]
        rows = int(db.execute("SELECT count(*) FROM unfetched_accepted").fetchone()[0])
    return into, rows


def test_kill_after_the_acceptance_is_recorded_leaves_all_or_nothing(
    dovecot: Dovecot, mail_user_factory: Callable[..., MailUser]
) -> None:
    """A kill once the acceptance of unfetched mail is committed leaves it only with the retirement;
    a re-run (when needed) ends with one acceptance row for the one message, not two.

    Steps: pop (user 1) archives 3 and is disabled (max_message_size 20 kB); migrate uploads them into
    imap (user 2); a 4th message of 60 kB arrives at user 1 (too large: not read, kept nowhere; a
    message the check can read it stores, and ``--accept-unfetched`` does not retire past that); ``retire --accept-unfetched`` runs in a wrapper that SIGKILLs it right
    after the commit recording the acceptance; then either pop is retired with 1 row, or it is not
    retired and there is no row; a re-run of the same command (if not retired) exits 0; at the end pop
    is retired into imap with exactly 1 row.
    """
    old, new = mail_user_factory(), mail_user_factory()
    messages = [letter(i) for i in range(3)]
    directory, cfg = pop_moved_into_imap(
        dovecot, old, new, messages, prefix="maildkillret-", max_message_size=20_000
    )
    dovecot.deliver_many(old.name, [letter(50, octets=60_000)])

    command = ["-c", str(cfg), "retire", "pop", "--into", "imap", "--accept-unfetched"]
    run_killed(KILLING_MAILD, *command)
    into, rows = _state(directory)
    assert (into, rows) in {("imap", 1), (None, 0)}, "an acceptance without its retirement"
    if into is None:
        again = maild_cli(cfg, "retire", "pop", "--into", "imap", "--accept-unfetched", timeout_s=120)
        assert again.returncode == 0, again.stdout + again.stderr
    assert _state(directory) == ("imap", 1)
