"""Kill soak: many more SIGKILL trials than CI runs, against a private Dovecot.

Usage (as root, from the repository root; not collected by pytest)::

    MAILD_KILL_TRIALS=500 python3 -m tests.bench.kill_soak
    MAILD_KILL_TRIALS=200 MAILD_KILL_SEED=7 python3 -m tests.bench.kill_soak --json /tmp/kill.json
    MAILD_KILL_TRIALS=50 python3 -m tests.bench.kill_soak --protocol imap
    MAILD_KILL_TRIALS=48 python3 -m tests.bench.kill_soak --protocol migrate

Runs :func:`tests.support.kill_trials.run_kill_trials` (the same trials as
``tests/crash/test_kill_pop3_delete.py``) with ``MAILD_KILL_TRIALS`` trials (default 200) from
``MAILD_KILL_SEED`` (default 1), in batches of ``--batch`` trials (each batch ends with an unkilled run
that empties the maildrop, so the maildrop stays a few hundred messages), each batch with the next
seed. ``--protocol imap``: the same trials on an IMAP account with retention ``delete-after``, every
archived message made due before each trial (UID STORE/EXPUNGE while new mail is retrieved).
``--protocol migrate``: :func:`tests.support.migrate_kill_trials.run_migrate_kill_trials`, SIGKILLs of
``maild migrate pop --to imap`` (the POP3 -> IMAP move of archive-only mail, ``--messages`` per batch,
default 300; ``--batch`` defaults to 12 kills per move), each followed by its checks (B never holds a
message twice nor a stranger, every upload record names a message on B, the archive intact), and a
final unkilled run per batch that must upload the rest. Prints where each kill landed and a summary;
exits 1 on the first broken invariant (the assertion says which). Roughly 1.4 s per trial (migrate:
about 1 s per kill and a few seconds per batch's set-up).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.support.dovecot import Dovecot
from tests.support.kill_trials import PHASES, KillReport, KillSettings, run_kill_trials
from tests.support.maildconf import short_dir
from tests.support.migrate_kill_trials import (
    MIGRATE_PHASES,
    MigrateKillReport,
    MigrateKillSettings,
    run_migrate_kill_trials,
)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when every invariant held."""
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.bench.kill_soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--batch", type=int, help="trials per maildrop (default 50; migrate: kills per move, default 12)"
    )
    parser.add_argument(
        "--messages", type=int, default=300, help="migrate: archive-only messages per move (default 300)"
    )
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    parser.add_argument(
        "--protocol",
        choices=("pop3", "imap", "migrate"),
        default="pop3",
        help="pop3: retention delete (default); imap: delete-after, every archived message made due;"
        " migrate: SIGKILL `maild migrate` (POP3 -> IMAP)",
    )
    args = parser.parse_args(argv)
    trials = int(os.environ.get("MAILD_KILL_TRIALS", "200"))
    seed = int(os.environ.get("MAILD_KILL_SEED", "1"))
    if args.protocol == "migrate":
        return _soak_migrate(trials, seed, args.batch or 12, args.messages, args.quiet, args.json)
    args.batch = args.batch or 50
    total = KillReport()
    server = Dovecot(tempfile.mkdtemp(prefix="maild-soak-", dir="/tmp"))
    server.start()
    try:
        done = 0
        while done < trials:
            n = min(args.batch, trials - done)
            user = server.add_user(f"soak{seed + done}")
            directory = short_dir("maildsoak-")
            settings = KillSettings(trials=n, seed=seed + done, protocol=args.protocol)
            report = run_kill_trials(server, user, directory, settings, None if args.quiet else print)
            shutil.rmtree(directory, ignore_errors=True)
            total.phases.update(report.phases)
            total.kinds.update(report.kinds)
            total.delivered += report.delivered
            total.seconds += report.seconds
            done += n
            print(f"-- {done}/{trials} trials, all invariants held", flush=True)
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    print(total.summary())
    if args.json is not None:
        counts = collections.OrderedDict((phase, total.phases.get(phase, 0)) for phase in PHASES)
        args.json.write_text(
            json.dumps(
                {
                    "trials": trials,
                    "seed": seed,
                    "phases": counts,
                    "kinds": dict(total.kinds),
                    "mid_cycle_fraction": round(total.mid_cycle_fraction, 3),
                    "messages": total.delivered,
                    "seconds": round(total.seconds, 1),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


def _soak_migrate(
    trials: int, seed: int, batch: int, messages: int, quiet: bool, json_path: Path | None
) -> int:
    """``--protocol migrate``: moves of ``messages`` archive-only messages, ``batch`` kills each."""
    total = MigrateKillReport()
    server = Dovecot(tempfile.mkdtemp(prefix="maild-soak-", dir="/tmp"))
    server.start()
    try:
        done = 0
        while done < trials:
            n = min(batch, trials - done)
            user = server.add_user(f"move{seed + done}")
            directory = short_dir("maildsoakm-")
            settings = MigrateKillSettings(trials=n, seed=seed + done, messages=messages)
            report = run_migrate_kill_trials(server, user, directory, settings, None if quiet else print)
            shutil.rmtree(directory, ignore_errors=True)
            total.phases.update(report.phases)
            total.kinds.update(report.kinds)
            total.unrecorded_max = max(total.unrecorded_max, report.unrecorded_max)
            total.final_uploaded += report.final_uploaded
            total.seconds += report.seconds
            done += n
            print(
                f"-- {done}/{trials} kills, all invariants held; the final run uploaded the rest", flush=True
            )
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    print(total.summary())
    if json_path is not None:
        counts = collections.OrderedDict((phase, total.phases.get(phase, 0)) for phase in MIGRATE_PHASES)
        summary = {
            "protocol": "migrate",
            "trials": trials,
            "seed": seed,
            "messages_per_move": messages,
            "phases": counts,
            "kinds": dict(total.kinds),
            "mid_upload_fraction": round(total.mid_fraction, 3),
            "unrecorded_max": total.unrecorded_max,
            "seconds": round(total.seconds, 1),
        }
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
