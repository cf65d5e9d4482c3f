"""SIGKILL of ``maild retire`` while its check stores what it read of a POP3 A, then the way forward.

Retire's check reads each message A's server lists and A never archived (``TOP n <lines>``) and
stores those A's archive lacks, in batches, before QUIT (:mod:`maild.move.source_pop3`). A kill just
before or just after a batch's commit must lose nothing on A's server (no QUIT: no UPDATE state, RFC
1939 section 6), duplicate nothing in the archive, and leave every location under the UIDL of the
message it names; the re-run, ``maild migrate`` and the retire then end with each message once. This
is a test of what held in session 14's review (it passes on ``main`` as well).
"""

from __future__ import annotations

import hashlib
import poplib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_migration import letter
from tests.support.daemonproc import maild_cli
from tests.support.dovecot import Dovecot, MailUser
from tests.support.move_setup import pop_moved_into_imap, run_killed

pytestmark = pytest.mark.dovecot

#: Runs maild with one message per batch of the check's store, killing it just before (``before``) or
#: just after (``after``) the first batch's durable commit (the only ``store_batch`` of a retire).
KILLING_MAILD = """
import os, signal, sys
import maild.archive.store as store
import maild.move.source_pop3 as source_pop3
source_pop3.KEEP_BATCH_MESSAGES = 1
when = sys.argv.pop(1)
real = store.Store.store_batch
async def store_batch(self, account, batch, now):
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    outcome = await real(self, account, batch, now)
    os.kill(os.getpid(), signal.SIGKILL)
    return outcome
store.Store.store_batch = store_batch
from maild.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _server(dovecot: Dovecot, user: MailUser) -> dict[str, str]:
    """UIDL to the SHA-256 of the message's octets on the server (RETR; QUIT without DELE)."""
    client = poplib.POP3_SSL(dovecot.host, dovecot.ports.pop3s, context=dovecot.client_ssl_context(), timeout=20)
    try:
        client.user(user.name)
        client.pass_(user.password)
        out: dict[str, str] = {}
        for line in client.uidl()[1]:
            number, uidl = line.split()
            lines = client.retr(int(number))[1]
            out[uidl.decode()] = hashlib.sha256(b"".join(x + b"\r\n" for x in lines)).hexdigest()
        return out
    finally:
        client.quit()


def _archive(directory: Path) -> list[tuple[str, str]]:
    """(UIDL, SHA-256 of the linked message) of every location of ``pop``."""
    with sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT l.uidl, m.sha256 FROM locations l JOIN messages m ON m.id = l.message"
            " WHERE l.account = 'pop' ORDER BY l.uidl"
        ).fetchall()
    return [(str(u), str(s)) for u, s in rows]


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_at_the_checks_store_loses_and_duplicates_nothing(
    dovecot: Dovecot, mail_user_factory: Callable[..., MailUser], when: str
) -> None:
    """Steps: pop (user 1) archives 3, is disabled and moved into imap (user 2); 2 messages arrive at
    user 1; ``retire`` runs with one message per store batch and is SIGKILLed just before / after the
    first batch's commit; A's server still lists all 5 (nothing deleted); pop's archive holds 3 or 4
    locations, each under the UIDL of the very message it links; the plain re-run refuses (exit 1),
    ``migrate`` uploads what is missing, ``retire`` exits 0; pop's archive then holds exactly the 5
    messages of A's server, each once, each under its own UIDL.
    """
    old, new = mail_user_factory(), mail_user_factory()
    messages = [letter(i) for i in range(3)]
    directory, cfg = pop_moved_into_imap(dovecot, old, new, messages, prefix="maildkillchk-")
    dovecot.deliver_many(old.name, [letter(60), letter(61)])
    server = _server(dovecot, old)
    assert len(server) == 5

    run_killed(KILLING_MAILD, when, "-c", str(cfg), "retire", "pop", "--into", "imap")
    assert _server(dovecot, old) == server  # nothing deleted, nothing changed
    after = _archive(directory)
    assert len(after) == {"before": 3, "after": 4}[when]
    assert all(server[uidl] == sha for uidl, sha in after)

    refusals = 0
    while (again := maild_cli(cfg, "retire", "pop", "--into", "imap", timeout_s=120)).returncode == 1:
        refusals += 1  # missing in imap (what the killed check stored), then what this check stores
        assert refusals <= 2, again.stderr
        assert "maild migrate pop --to imap" in again.stderr
        done = maild_cli(cfg, "migrate", "pop", "--to", "imap", timeout_s=120)
        assert done.returncode == 0, done.stdout + done.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert refusals >= 1
    assert sorted(_archive(directory)) == sorted(server.items())
