"""SIGKILL trials of ``maild migrate A --to B`` (the POP3 -> IMAP move), killed at seeded moments.

Used by ``tests/crash/test_kill_migrate.py`` (a few trials) and by ``python3 -m tests.bench.kill_soak
--protocol migrate`` (as many as ``MAILD_KILL_TRIALS`` says). Session 12's QA ran the same with a
throwaway script (docs/guarantee.md, "QA of session 12").

Set-up: a POP3 account ``pop`` (retention ``delete``) fetches ``messages`` messages, so they exist only
in the archive; it is then disabled (``migrate`` refuses while it deletes); an IMAP account ``imap``
on the same Dovecot user (its INBOX empty) is reached through a :class:`~tests.support.proxy.FaultProxy`
that adds latency to every chunk, so the uploads take a while and kills land among them. Each trial
starts ``maild migrate pop --to imap`` and SIGKILLs it at a moment of the trial's kind (seeded):

- ``"random"``: a uniformly random moment of the run's expected length, counted from its start;
- ``"upload"``: as soon as its n-th new upload record is in the archive (n random among those left);
- ``"start"``: within its first 0.5 s (start-up, reading the archive, scanning B).

After every kill the invariants are checked (:func:`check_migration`): B never holds a message twice,
nor anything that is not one of A's messages; every upload record names a message B holds; the
archive passes ``PRAGMA integrity_check`` and still holds every message of A, byte for byte. Uploads
on B without their record (killed between the server's OK and the record) are counted: the next run's
comparison finds them by content. Finally ``migrate`` runs unkilled: exit 0, B holds each of A's
messages exactly once, and ``maild compare pop imap`` exits 0.
"""

from __future__ import annotations

import collections
import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, write_config
from tests.support.proxy import FaultProxy

MIGRATE_PHASES = (
    "start-up/compare",  # no new upload on B yet
    "uploading",  # uploads made, more left
    "after uploads",  # everything on B, the run not yet ended (comparing again, the report)
    "finished",  # the run ended on its own before the kill
)
MIGRATE_MID = frozenset({"uploading"})
MIGRATE_KINDS = ("random", "upload", "start")


@dataclass(frozen=True)
class MigrateKillSettings:
    """How to run the trials.

    Attributes:
        trials: number of kills.
        seed: seeds the messages' sizes, the kinds and the moments.
        messages: messages of A, archived only, to move.
        latency_s: the proxy's one-way latency per chunk (each APPEND is a few round trips).
        kind_weights: relative weights of :data:`MIGRATE_KINDS` (the first trials use each once).
        upload_s: expected seconds per upload at that latency, for the ``"random"`` kind's window.
    """

    trials: int = 12
    seed: int = 1
    messages: int = 300
    latency_s: float = 0.004
    kind_weights: tuple[float, ...] = (0.5, 0.4, 0.1)
    upload_s: float = 0.03


@dataclass
class MigrateKillReport:
    """What the trials did.

    Attributes:
        phases: per phase of :data:`MIGRATE_PHASES`, how many kills landed there.
        kinds: per kill kind, how many trials used it.
        unrecorded_max: the most uploads found on B without their record after a kill.
        final_uploaded: what the final, unkilled run uploaded.
        seconds: wall-clock duration including the set-up and the final run.
    """

    phases: collections.Counter[str] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    unrecorded_max: int = 0
    final_uploaded: int = 0
    seconds: float = 0.0

    @property
    def mid_fraction(self) -> float:
        """Share of kills that landed while uploads were under way."""
        total = sum(self.phases.values())
        return sum(n for p, n in self.phases.items() if p in MIGRATE_MID) / total if total else 0.0

    def summary(self) -> str:
        """One line per phase, the mid-upload share and the counts."""
        lines = [f"{phase:18} {self.phases.get(phase, 0):5}" for phase in MIGRATE_PHASES]
        lines.append(f"mid-upload {self.mid_fraction:.0%} of {sum(self.phases.values())} kills")
        lines.append(
            f"kinds {dict(self.kinds)}; at most {self.unrecorded_max} uploads without their record after a"
            f" kill; the final run uploaded {self.final_uploaded}; {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def letter(i: int, rng: random.Random) -> bytes:
    """A distinct message of about 2-20 KB (CRLF) with a unique Message-ID."""
    body = b"".join(
        b"Zeile %d: %s\r\n" % (n, b"y" * rng.randint(20, 150)) for n in range(rng.randint(20, 160))
    )
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Umzug %d\r\n"
        b"Message-ID: <move-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i, i)
    ) + body


def lf_digest(raw: bytes) -> str:
    """SHA-256 of ``raw`` with CRLF as LF (Dovecot's maildir keeps what APPEND sent with LF endings)."""
    return hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()


def _target_digests(dovecot: Dovecot, user: str) -> list[str]:
    """The normalised digest of every message in B's INBOX (a list: a duplicate shows twice)."""
    for _ in range(200):
        try:
            files = dovecot.maildir_files(user)
            return [lf_digest(f.read_bytes()) for f in files]
        except FileNotFoundError:  # a file renamed from new/ to cur/ meanwhile: list again
            continue
    raise AssertionError(f"the mailbox of {user} kept changing")


def check_migration(dovecot: Dovecot, user: str, source: dict[str, bytes], db_path: Path) -> tuple[int, int]:
    """Assert the invariants after a kill (see the module docstring).

    Args:
        source: A's messages by their normalised digest.

    Returns:
        (messages of A on B, uploads on B without their record).
    """
    on_target = _target_digests(dovecot, user)
    assert len(on_target) == len(set(on_target)), "B holds a message twice"
    assert set(on_target) <= set(source), "B holds something that is not one of A's messages"
    with sqlite3.connect(db_path) as db:  # read-write: a leftover WAL is recovered, as maild would
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raws = [r[0] for r in db.execute("SELECT raw FROM messages")]
        recorded = [
            r[0]
            for r in db.execute(
                "SELECT m.raw FROM appends a JOIN messages m ON m.id = a.message WHERE a.account = 'imap'"
            )
        ]
    assert sorted(lf_digest(r) for r in raws) == sorted(source), (
        "the archive lost or changed one of A's messages"
    )
    records = [lf_digest(r) for r in recorded]
    assert len(records) == len(set(records)), "one message recorded as uploaded twice"
    assert set(records) <= set(on_target), "an upload record names a message B does not hold"
    return len(on_target), len(on_target) - len(records)


def _uploads(db_path: Path) -> int:
    """Upload records in the archive now (read-only; 0 while it cannot be read)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM appends WHERE account = 'imap'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _maild(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_migrate_kill_trials(
    dovecot: Dovecot,
    user: MailUser,
    directory: Path,
    settings: MigrateKillSettings,
    progress: Callable[[str], None] | None = None,
) -> MigrateKillReport:
    """Set up A's archive-only mail, run the trials, then a final unkilled run; assert the invariants
    after every kill and at the end (see the module docstring).

    Returns:
        Where the kills landed.
    """
    started = time.monotonic()
    rng = random.Random(settings.seed)
    report = MigrateKillReport()
    raws = [letter(settings.seed * 1_000_000 + i, rng) for i in range(settings.messages)]
    source = {lf_digest(raw): raw for raw in raws}
    dovecot.deliver_many(user.name, raws)
    pop = AccountSpec("pop", "pop3", user.name, user.password, extra={"retention": "delete"})
    cfg = write_config(directory, dovecot, [pop])
    for _ in range(2):  # the second confirms the deletions: A's mail is then in the archive only
        fetched = _maild(cfg, "fetch")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert dovecot.maildir_files(user.name) == []
    db_path = directory / "state" / "maild.sqlite3"
    with FaultProxy(dovecot.host, dovecot.ports.imaps) as proxy:
        stopped = AccountSpec(
            "pop", "pop3", user.name, user.password, extra={"retention": "keep", "enabled": False}
        )
        imap = AccountSpec(
            "imap", "imap", user.name, user.password, extra={"port": proxy.port, "idle": False}
        )
        cfg = write_config(directory, dovecot, [stopped, imap])
        cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "migrate", "pop", "--to", "imap"]
        proxy.latency(settings.latency_s)
        first_kinds = rng.sample(MIGRATE_KINDS, len(MIGRATE_KINDS))
        for trial in range(settings.trials):
            moved, _ = check_migration(dovecot, user.name, source, db_path)
            left = settings.messages - moved
            kind = (
                first_kinds[trial]
                if trial < len(MIGRATE_KINDS)
                else rng.choices(MIGRATE_KINDS, settings.kind_weights)[0]
            )
            before = _uploads(db_path)
            with (directory / f"migrate-{trial:04d}.log").open("wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            try:
                if kind == "start":
                    time.sleep(rng.uniform(0.0, 0.5))
                elif kind == "random":
                    time.sleep(rng.uniform(0.0, 0.6 + left * settings.upload_s))
                else:
                    target = before + rng.randint(1, max(1, left))
                    deadline = time.monotonic() + 30 + left * settings.upload_s * 4
                    while proc.poll() is None and _uploads(db_path) < target and time.monotonic() < deadline:
                        time.sleep(0.002)
            finally:
                ended = proc.poll() is not None
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            now_moved, unrecorded = check_migration(dovecot, user.name, source, db_path)
            if ended:
                phase = "finished"
                assert proc.returncode == 0, (directory / f"migrate-{trial:04d}.log").read_text()
            elif now_moved == moved:
                phase = "start-up/compare"
            elif now_moved < settings.messages:
                phase = "uploading"
            else:
                phase = "after uploads"
            report.phases[phase] += 1
            report.kinds[kind] += 1
            report.unrecorded_max = max(report.unrecorded_max, unrecorded)
            if progress is not None:
                progress(
                    f"trial {trial}: {kind:6} -> {phase} ({now_moved - moved} uploaded, {now_moved} of"
                    f" {settings.messages} on B, {unrecorded} without their record)"
                )
        proxy.reset()
        moved, _ = check_migration(dovecot, user.name, source, db_path)
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        assert final.returncode == 0, final.stdout + final.stderr
        assert "nothing of pop is missing in imap" in final.stdout, final.stdout
        assert f"uploaded {settings.messages - moved}, refused 0" in final.stdout, final.stdout
        report.final_uploaded = settings.messages - moved
        check_migration(dovecot, user.name, source, db_path)
        assert sorted(_target_digests(dovecot, user.name)) == sorted(source), "B lacks one of A's messages"
        compared = _maild(cfg, "compare", "pop", "imap", "--summary")
        assert compared.returncode == 0, compared.stdout + compared.stderr
    report.seconds = time.monotonic() - started
    return report
