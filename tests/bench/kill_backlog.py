"""Kill soak of the POP3 deletion backlog: SIGKILL `maild fetch` while it checks up to 2,000 due
messages in pipelined windows of ``TOP n 0`` (session 15's review).

Usage::

    MAILD_KILL_TRIALS=60 python3 -m tests.bench.kill_backlog [--backlog 2200] [--json out.json]

Per trial: refill the private Dovecot maildrop to ``--backlog`` messages and archive the new ones
with retention ``"keep"`` (one unkilled `maild fetch`: they stay on the server, known, so the next
cycle with ``"delete"`` must check each by its header section before ``DELE``); then run
`maild fetch` with ``"delete"`` through a proxy adding ``--latency`` seconds each way and SIGKILL it
at a uniformly random moment of ``--window`` seconds after its connection. After every kill: every
message that left the server is archived, none twice, ``PRAGMA integrity_check`` ok
(:func:`tests.support.kill_trials.check_invariants`). At the end unkilled `maild fetch` runs with
``"delete"`` until the maildrop is empty and the archive must hold every delivered message once.

Where a kill landed is judged from the client's octets sent upstream since its connection (the
proxy counts them) and the log: ``checks`` = more than :data:`CHECKS_UP_OCTETS` sent and no
``fetch.delete.started`` (a window of 200 ``TOP n 0`` is about 2 kB); approximate under TLS.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.dovecot import Dovecot
from tests.support.kill_trials import _Log, archive, check_invariants
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.proxy import FaultProxy

CHECKS_UP_OCTETS = 6_000
"""Octets sent upstream past which a session without ``fetch.delete.started`` is counted in its
checks (TLS handshake, login, CAPA, UIDL, LIST stay under it)."""


SETTLE_TRIES = 40
"""Reads of a maildrop that kept changing before the check is made without retry."""
SETTLE_PAUSE_S = 0.5
"""Pause between them, seconds."""


def small_message(i: int) -> bytes:
    """A distinct message of about 0.5-2 kB, CRLF, unique Message-ID."""
    rng = random.Random(i)
    body = b"".join(b"Zeile %d %s\r\n" % (n, b"y" * rng.randint(10, 80)) for n in range(rng.randint(5, 25)))
    return (
        b"From: s%d@example.org\r\nTo: anna@example.com\r\nSubject: Rueckstand %d\r\n"
        b"Message-ID: <backlog-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i, i)
    ) + body


def settled_invariants(server: Dovecot, user: str, delivered: dict[str, bytes], db_path: Path) -> set[str]:
    """:func:`check_invariants` once the maildrop holds still: a killed session's Dovecot process
    may still be expunging up to 2,000 files (``server_digests`` gives up after 200 quick reads)."""
    for _ in range(SETTLE_TRIES):
        try:
            return check_invariants(server, user, delivered, db_path)
        except AssertionError as exc:
            if "kept changing" not in str(exc):
                raise
            time.sleep(SETTLE_PAUSE_S)
    return check_invariants(server, user, delivered, db_path)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print one line per trial and a summary; 0 when every invariant held."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.bench.kill_backlog", description=__doc__)
    parser.add_argument("--backlog", type=int, default=2_200, help="messages due at each trial (2,200)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added each way (0.02)")
    parser.add_argument("--window", type=float, default=3.0, help="kill within this many s of connecting")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    args = parser.parse_args(argv)
    trials = int(os.environ.get("MAILD_KILL_TRIALS", "60"))
    seed = int(os.environ.get("MAILD_KILL_SEED", "1"))
    rng = random.Random(seed)
    server = Dovecot(tempfile.mkdtemp(prefix="maild-backlog-", dir="/tmp"))
    server.start()
    directory = short_dir("maildbl-")
    phases: collections.Counter[str] = collections.Counter()
    delivered: dict[str, bytes] = {}
    counter = 0
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    db_path = directory / "state" / "maild.sqlite3"
    try:
        user = server.add_user("backlog")
        with FaultProxy(server.host, server.ports.pop3s) as proxy:

            def config(retention: str, port: int) -> Path:
                extra = {"retention": retention, "port": port, "timeout": "20s"}
                spec = AccountSpec("backlog-pop", "pop3", user.name, user.password, extra=extra)
                return write_config(directory, server, [spec])

            def fetch(retention: str, port: int, log: Path) -> subprocess.Popen[bytes]:
                cmd = [sys.executable, "-m", "maild", "-c", str(config(retention, port))]
                with log.open("wb") as out:
                    return subprocess.Popen([*cmd, "--log-level", "debug", "fetch"], stdout=out,
                                            stderr=subprocess.STDOUT, env=env)

            for trial in range(trials):
                on_server = settled_invariants(server, user.name, delivered, db_path)
                refill = max(0, args.backlog - len(on_server))
                batch = [small_message(seed * 1_000_000 + counter + k) for k in range(refill)]
                counter += refill
                for raw in batch:
                    delivered[hashlib.sha256(raw).hexdigest()] = raw
                if batch:
                    server.deliver_many(user.name, batch)
                keep = fetch("keep", server.ports.pop3s, directory / f"keep-{trial:03d}.log")
                assert keep.wait(timeout=300) == 0, "the unkilled keep fetch failed"
                proxy.latency(args.latency)
                before_conn, before_up = proxy.connections, proxy.octets_up
                log_path = directory / f"trial-{trial:03d}.log"
                proc = fetch("delete", proxy.port, log_path)
                try:
                    proxy.wait_until(lambda n=before_conn: proxy.connections > n, 30.0)
                    time.sleep(rng.uniform(0.0, args.window))
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                up = proxy.octets_up - before_up
                log = _Log(log_path)
                log.poll()
                if "fetch.close.complete" in log.events:
                    phase = "after QUIT"
                elif "fetch.delete.started" in log.events:
                    phase = "DELE..QUIT"
                elif up > CHECKS_UP_OCTETS:
                    phase = "checks"
                else:
                    phase = "login/inventory"
                phases[phase] += 1
                left = settled_invariants(server, user.name, delivered, db_path)
                print(f"trial {trial}: {phase:16} up={up:7d} on server {len(left)}", flush=True)
                proxy.reset()
            for _ in range(10):  # drain unkilled
                done = fetch("delete", server.ports.pop3s, directory / "drain.log")
                assert done.wait(timeout=300) == 0, "the unkilled delete fetch failed"
                if not settled_invariants(server, user.name, delivered, db_path):
                    break
        assert settled_invariants(server, user.name, delivered, db_path) == set()
        raws, _ = archive(db_path)
        assert sorted(raws) == sorted(delivered.values()), "the archive is not every delivered message once"
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    seconds = time.monotonic() - started
    print(f"{trials} SIGKILLs, phases {dict(phases)}, {len(delivered)} messages, {seconds:.0f} s: all held")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"trials": trials, "seed": seed, "phases": dict(phases), "messages": len(delivered)})
            + "\n"
        )
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
