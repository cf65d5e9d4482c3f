"""What maild's own features cost a one-shot fetch: the same ``maild fetch`` with some of them switched
off (for measuring only, never in maild), in alternating runs, user and system CPU apart.

    python3 -m tests.bench.feature_cost --dir /tmp/maild-bench --protocol imap --pairs 5
    python3 -m tests.bench.feature_cost --variant none --variant sha,fts,parse --mbsync

Uses the Dovecot that ``python3 -m tests.bench.run`` seeded in ``DIR/full/dovecot`` (scenario a, the
2,000-message account; started here if it is not running, stopped again afterwards). Each run is a
fresh ``python3`` of this tree (``maild fetch`` through ``maild.cli.main.console``, as
``python -m maild`` runs it, in a wrapper that patches before the command starts; a fresh archive;
GNU time ``%U %S %M`` of the whole process). The variants name what is switched off:

- ``sha``: SHA-256 of every message (the archive's identity of a message): a counter's value stands in
  for the digest, in memory (``maild.archive.batches.sha256_hex``) and in the spool
  (``maild.spool.hashlib``); every message stays distinct;
- ``fts``: the full-text index and its text: the index text is not extracted and the FTS5 insert is a
  statement that binds the same parameters and writes nothing;
- ``parse``: the header summary and the MIME walk (``maild.archive.parse.parse`` returns an empty
  summary and no parts; the index then holds no body text either);
- ``wal``: the write-ahead log: the archive in SQLite's rollback-journal mode (``journal_mode =
  DELETE``, still ``synchronous = FULL``), so each new page is written once, into the database
  file, as a Maildir writes each message once (no checkpoint copies the log into the file); the
  archive's check that its ``-wal`` file is still its own is skipped (there is none);
- ``none``: maild as it is.

``--mbsync`` adds a run of mbsync (its Maildir, the benchmark's configuration) to every round, for
the same-run comparison. ``--noop`` adds a second ``maild fetch`` on the same archive after the full
one (nothing new: the one-shot's start-up and its no-op cycle). Not collected by pytest; speed is never
asserted in tests. Figures go to docs/performance.md ("Session 12: IMAP CPU of one account").
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from tests.bench.maildrun import Maild
from tests.bench.peers import Login, Mbsync
from tests.bench.thread_cpu import _answers
from tests.support.dovecot import Dovecot

REPO = Path(__file__).resolve().parents[2]
TIME = "/usr/bin/time"

WRAPPER = r"""
import gc
gc.disable()  # as maild/__main__.py: until the command's imports are done
import itertools, os, sys
off = set(filter(None, os.environ.get("MAILD_FEATURES_OFF", "").split(",")))
counter = itertools.count(1)
if "sha" in off:
    import maild.archive.batches as batches
    import maild.spool as spool
    batches.sha256_hex = lambda data: format(next(counter), "064x")
    class _NoHash:
        def update(self, data):
            pass
        def hexdigest(self):
            return format(next(counter) + (1 << 200), "064x")
    class _Hashlib:
        @staticmethod
        def sha256(*args):
            return _NoHash()
    spool.hashlib = _Hashlib()
if "parse" in off:
    import maild.archive.parse as parse
    from maild.model import HeaderSummary
    empty = parse.ParsedMessage(HeaderSummary(None, None, None, None, None), (), [])
    parse.parse = lambda raw, summary=None: empty
if "fts" in off:
    import maild.archive.batches as batches
    import maild.archive.index_text as index_text
    blank = index_text.IndexText("", "", "", "", "")
    index_text.index_text = lambda raw, parsed=None: blank
    batches._INSERT_FTS = (
        "UPDATE messages SET size_octets = size_octets WHERE 0 AND ?1 IS ?2 AND ?3 IS ?4 AND ?5 IS ?6"
    )
if "wal" in off:
    from maild.archive.store import Store
    real_open = Store.open.__func__
    async def open_without_wal(cls, path):
        store = await real_open(cls, path)
        await store.db._conn.execute("PRAGMA journal_mode = DELETE")
        return store
    Store.open = classmethod(open_without_wal)
    from maild.archive.connection import ArchiveConnection
    async def same_archive(self):  # its check of the -wal file's identity: there is none now
        return None
    ArchiveConnection.verify_identity = same_archive
from maild.cli.main import console
sys.argv = ["maild", *sys.argv[1:]]
console()
"""


def _timed(argv: list[str], env: dict[str, str], out: Path) -> tuple[float, float, float]:
    """User s, system s and peak RSS MB of ``argv`` (GNU time)."""
    subprocess.run(
        [TIME, "-q", "-f", "%U %S %M", "-o", str(out), "--", *argv],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    user, system, rss = out.read_text().split()[-3:]
    return float(user), float(system), int(rss) / 1024


def main(argv: list[str] | None = None) -> int:
    """Run the variants (and mbsync) in rounds; print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/maild-bench", help="the benchmark's work directory")
    parser.add_argument("--protocol", choices=("pop3", "imap"), default="imap")
    parser.add_argument("--variant", action="append", help="features off, comma-separated, or none")
    parser.add_argument("--pairs", type=int, default=5, help="rounds (each variant once per round)")
    parser.add_argument("--mbsync", action="store_true", help="mbsync once per round")
    parser.add_argument("--noop", action="store_true", help="also a no-op maild fetch per round")
    args = parser.parse_args(argv)
    variants = args.variant or ["none", "sha", "fts", "parse,fts", "sha,parse,fts"]
    compileall.compile_dir(str(REPO / "maild"), quiet=1)
    directory = Path(args.dir) / "full"
    dovecot = Dovecot.attach(directory / "dovecot")
    port = dovecot.ports.pop3 if args.protocol == "pop3" else dovecot.ports.imap
    started_here = not dovecot.running and not _answers(port)
    if started_here:
        dovecot.start(daemonize=True)
    logins = [Login("one", "one", dovecot.users["one"], directory / "secrets" / "one")]
    runs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            maild = Maild(work / "maild", args.protocol, port, logins, daemon_settings={})
            mbsync = Mbsync(work / "mbsync", "imap", dovecot.ports.imap, logins) if args.mbsync else None
            for i in range(args.pairs):
                order = variants if i % 2 == 0 else variants[::-1]
                for variant in order:
                    maild.reset()
                    off = "" if variant == "none" else variant
                    env = {**maild.env(), "PYTHONPATH": str(REPO), "MAILD_FEATURES_OFF": off}
                    command = [sys.executable, "-c", WRAPPER, "fetch", "-c", str(maild.config)]
                    row = _timed(command, env, work / "time.txt")
                    fetched = maild.fetched()
                    runs[variant].append(row)
                    print(
                        f"round {i + 1} {variant}: user {row[0]:.2f} sys {row[1]:.2f} rss {row[2]:.0f} MB,"
                        f" {fetched} messages, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    if args.noop and variant == "none":
                        row = _timed(command, env, work / "time.txt")
                        runs["no-op"].append(row)
                        print(f"round {i + 1} no-op: user {row[0]:.2f} sys {row[1]:.2f}", flush=True)
                if mbsync is not None:
                    mbsync.reset()
                    mbsync.configure()
                    row = _timed(mbsync.argv(), mbsync.env(), work / "time.txt")
                    runs["mbsync"].append(row)
                    print(
                        f"round {i + 1} mbsync: user {row[0]:.2f} sys {row[1]:.2f},"
                        f" {mbsync.fetched()} messages",
                        flush=True,
                    )
    finally:
        if started_here:
            dovecot.stop()
    print("\n| variant (off) | user s | sys s | user range | sys range |\n|---|---:|---:|---|---|")
    for name, rows in runs.items():
        users, systems = [r[0] for r in rows], [r[1] for r in rows]
        print(
            f"| {name} | {statistics.median(users):.2f} | {statistics.median(systems):.2f} |"
            f" {min(users):.2f}-{max(users):.2f} | {min(systems):.2f}-{max(systems):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
