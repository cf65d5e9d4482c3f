"""Kill test: `maild fetch` and `maild run` SIGKILLed in the middle of an IMAP body FETCH, whose
responses the fast path frames (session 11: ``_FastProtocol._handle_responses``), lose nothing, store
nothing twice and store no octet the server did not serve.

Steps: deliver small, mid-size (read straight into their own buffer) and spooled messages; start a
one-shot fetch or the daemon (alternately) through the fault proxy trickling 3 MB/s; SIGKILL it at a
seeded moment after its body retrieval began; after every kill, every archived message is one that
was delivered (so no truncated or shifted body), none twice, the archive passes its integrity check;
deliver more; finally one unkilled one-shot fetch archives exactly what was delivered.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.kill_trials import _Log, archive, check_invariants, message
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

TRIALS = 8
RATE_OCTETS_PER_S = 3_000_000


def test_sigkill_mid_fetch_on_the_fast_path_loses_and_duplicates_nothing(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Eight seeded kills mid-FETCH (one-shot and daemon alternately; at a random moment of the
    retrieval, or soon after a batch was committed), then one unkilled fetch."""
    rng = random.Random(19)
    directory = short_dir("maildkillimap-")
    db_path = directory / "state" / "maild.sqlite3"
    delivered: dict[str, bytes] = {}
    counter = 0

    def deliver(n: int) -> None:
        nonlocal counter
        batch = []
        for _ in range(n):
            counter += 1
            if counter % 40 == 0:
                raw = corpus.large_message(rng.choice([200_000, 1_300_000]), seed=counter)
            else:
                raw = message(900_000 + counter)
            batch.append(raw)
            delivered[hashlib.sha256(raw).hexdigest()] = raw
        dovecot.deliver_many(mail_user.name, batch)

    deliver(450)  # more than BATCH_MESSAGES: batches are committed while the FETCH goes on
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FaultProxy(dovecot.host, dovecot.ports.imap) as proxy:
        proxy.trickle(RATE_OCTETS_PER_S)
        spec = AccountSpec(
            "kill-imap",
            "imap",
            mail_user.name,
            mail_user.password,
            tls="none",
            extra={"retention": "keep", "poll_interval": "1s", "port": proxy.port, "timeout": "10s"},
        )
        cfg = write_config(directory, dovecot, [spec])
        base = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "debug"]
        mid_fetch = 0
        for trial in range(TRIALS):
            if trial:
                deliver(rng.randint(150, 250))
            log = _Log(directory / f"trial-{trial}.log")
            with log.path.open("wb") as out:
                proc = subprocess.Popen(
                    [*base, "fetch" if trial % 2 == 0 else "run"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            try:
                if trial % 4 < 2:  # at a random moment of the retrieval
                    landed = log.wait_for("fetch.retrieve.started", 30)
                    time.sleep(rng.uniform(0.0, 1.5))
                else:  # soon after a batch was committed, the FETCH still going on
                    landed = log.wait_for("fetch.commit.complete", 30)
                    time.sleep(rng.uniform(0.0, 0.3))
                log.poll()
                mid_fetch += landed and "fetch.close.started" not in log.events
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            on_server = check_invariants(dovecot, mail_user.name, delivered, db_path)
            assert on_server == set(delivered)  # retention "keep"
        assert mid_fetch == TRIALS, "a kill did not land after the retrieval began"
        proxy.reset()
        done = subprocess.run([*base, "fetch"], env=env, capture_output=True, timeout=180, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    check_invariants(dovecot, mail_user.name, delivered, db_path)
    assert sorted(archive(db_path)[0]) == sorted(delivered.values())
    shutil.rmtree(directory)  # kept only when the test fails, for its logs
