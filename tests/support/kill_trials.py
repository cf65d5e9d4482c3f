"""SIGKILL trials: `maild run` in POP3 ``delete`` mode, killed at chosen moments of its fetch cycles.

Used by ``tests/crash/test_kill_pop3_delete.py`` (at least 20 seeded trials) and by
``tests/bench/kill_soak.py`` (as many as ``MAILD_KILL_TRIALS`` says).

The daemon reaches Dovecot through a :class:`~tests.support.proxy.FaultProxy` that slows every
connection (a trickle and some latency), so one cycle takes around a second and kills land inside
it rather than at start-up or between cycles. Where each kill should land is chosen per trial, seeded:

- ``"random"``: at a uniformly random moment of the expected cycle, counted from the session's TCP
  connection (the proxy counts connections);
- ``"commit"``: as soon as the daemon logs ``fetch.commit.started``, i.e. while the batch is being
  hashed, inserted and fsync'ed;
- ``"delete"``: at a random moment within two round trips after ``fetch.delete.started`` (DELE sent,
  QUIT not yet answered);
- ``"anytime"``: at a random moment counted from the process start (start-up, login, idle included).

Where each kill did land is read back from the daemon's own log (``--log-level debug``: the
``fetch.*`` step events of ``maild/fetch.py``, written and flushed before each step) and counted per
phase (:data:`PHASES`). After every kill the invariants are checked: each message that left the
server is archived; nothing is archived twice; the archive passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemonproc import running_maild, stop_maild, wait_until_drained
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, write_config
from tests.support.proxy import FaultProxy

PHASES = (
    "start-up",  # before the daemon's first cycle began
    "login/inventory",  # session connecting, logging in, listing
    "retrieving",  # RETR windows arriving (and earlier batches committed)
    "committing",  # inside store_batch: hashing, INSERT, COMMIT with fsync
    "DELE..QUIT",  # DELE sent, no +OK to QUIT yet
    "after QUIT",  # +OK to QUIT received, deletions not yet recorded in the archive
    "between cycles",  # the cycle was complete
)
MID_CYCLE = frozenset({"retrieving", "committing", "DELE..QUIT", "after QUIT"})

_PHASE_OF_EVENT = {
    "daemon.started": "login/inventory",
    "fetch.retrieve.started": "retrieving",
    "fetch.commit.started": "committing",
    "fetch.commit.complete": "retrieving",
    "fetch.delete.started": "DELE..QUIT",
    "fetch.delete.complete": "DELE..QUIT",
    "fetch.close.started": "DELE..QUIT",
    "fetch.close.complete": "after QUIT",
    "fetch.deletions.recorded": "between cycles",
    "fetch.complete": "between cycles",
    "fetch.failed": "between cycles",
}
KINDS = ("random", "commit", "delete", "anytime")


@dataclass(frozen=True)
class KillSettings:
    """How to run the trials.

    Attributes:
        trials: number of kills.
        seed: seeds message sizes, deliveries, kinds and delays.
        initial_messages: messages in the maildrop before the first trial.
        new_per_trial: (min, max) messages delivered before each further trial.
        rate_octets_per_s: the proxy's trickle, each direction.
        latency_s: the proxy's one-way latency per chunk.
        kind_weights: relative weights of the kill kinds in :data:`KINDS` (the first trials use each
            kind once, in a seeded order, so that every kind is tried even in a short run).
        drain_timeout_s: seconds allowed for the final, unkilled run to empty the maildrop.
        large_every: every this many'th message delivered is a large one (:func:`large_message`,
            spooled to a file as it arrives: :mod:`maild.spool`); 0: none.
        protocol: ``"pop3"`` (retention ``delete``: DELE after each batch's commit) or ``"imap"``
            (retention ``delete-after`` 1 day, every archived location back-dated before each trial and
            while draining, so each cycle expunges what earlier cycles archived while it retrieves new
            mail: UID STORE \\Deleted and UID EXPUNGE where POP3 has DELE; the phase "DELE..QUIT" is
            then the deletion up to LOGOUT).
        mailboxes: the IMAP mailboxes mail is delivered to, in turn (created first; more than one
            makes the account ``mailboxes = "all"``: the daemon's kept session then polls them by
            status, :mod:`maild.fetch.folders`, and expunges in several per cycle).
    """

    trials: int = 20
    seed: int = 1
    initial_messages: int = 200
    new_per_trial: tuple[int, int] = (10, 40)
    rate_octets_per_s: float = 1_500_000.0
    latency_s: float = 0.03
    kind_weights: tuple[float, ...] = (0.4, 0.2, 0.3, 0.1)
    drain_timeout_s: float = 60.0
    protocol: str = "pop3"
    large_every: int = 0
    mailboxes: tuple[str, ...] = ("INBOX",)


@dataclass
class KillReport:
    """What the trials did.

    Attributes:
        phases: per phase of :data:`PHASES`, how many kills landed there.
        kinds: per kill kind, how many trials used it.
        delivered: messages delivered in all.
        seconds: wall-clock duration including the final drain.
    """

    phases: collections.Counter[str] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    delivered: int = 0
    seconds: float = 0.0

    @property
    def mid_cycle_fraction(self) -> float:
        """Share of kills that landed between the first RETR and the recording of the deletions."""
        total = sum(self.phases.values())
        return sum(n for phase, n in self.phases.items() if phase in MID_CYCLE) / total if total else 0.0

    def summary(self) -> str:
        """One line per phase and the mid-cycle share, for a benchmark or a failure message."""
        lines = [f"{phase:16} {self.phases.get(phase, 0):5}" for phase in PHASES]
        lines.append(f"mid-cycle {self.mid_cycle_fraction:.0%} of {sum(self.phases.values())} kills")
        lines.append(f"kinds {dict(self.kinds)}, {self.delivered} messages, {self.seconds:.1f} s")
        return "\n".join(lines)


def message(i: int) -> bytes:
    """A distinct message of roughly 6-30 KB with CRLF line endings and a unique Message-ID."""
    rng = random.Random(i)
    lines = b"".join(
        b"Absatz %d: %s\r\n" % (n, b"x" * rng.randint(20, 200)) for n in range(rng.randint(60, 160))
    )
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Nachricht %d\r\n"
        b"Message-ID: <kill-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i, i)
    ) + lines


LARGE_MESSAGE_OCTETS = 1_400_000
"""About the size of :func:`large_message`: above the spool's threshold (1 MiB), so spooled."""


def large_message(i: int) -> bytes:
    """A distinct message of about :data:`LARGE_MESSAGE_OCTETS` octets (CRLF, unique Message-ID)."""
    rng = random.Random(i)
    line = b"".join(b"%02x" % rng.randrange(256) for _ in range(38)) + b"\r\n"
    body = b"".join(b"%06d " % n + line for n in range(LARGE_MESSAGE_OCTETS // (len(line) + 7)))
    return (
        b"From: sender%d@example.org\r\nTo: anna@example.com\r\nSubject: Grosse Nachricht %d\r\n"
        b"Message-ID: <kill-large-%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        % (i, i, i)
    ) + body


def archive(db_path: Path) -> tuple[list[bytes], str]:
    """(raw of every archived message, integrity_check result); empty when the archive does not exist yet.

    Also asserts that no (account, UIDL) is linked twice (IMAP locations have no UIDL: their
    identities are unique by the schema's index).
    """
    if not db_path.exists():
        return [], "ok"
    with sqlite3.connect(db_path) as db:  # read-write open so a leftover WAL is recovered, as maild would
        raws = [r[0] for r in db.execute("SELECT raw FROM messages")]
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        dup_links = db.execute(
            "SELECT count(*) FROM (SELECT account, uidl FROM locations WHERE uidl IS NOT NULL"
            " GROUP BY account, uidl HAVING count(*) > 1)"
        ).fetchone()[0]
    assert dup_links == 0
    return raws, check


def check_invariants(
    dovecot: Dovecot,
    user: str,
    delivered: dict[str, bytes],
    db_path: Path,
    mailboxes: tuple[str, ...] = ("INBOX",),
) -> set[str]:
    """Assert: every message that left the server (all of ``mailboxes``) is archived exactly once;
    nothing is duplicated.

    Returns:
        SHA-256 digests of the messages still on the server.
    """
    on_server = set().union(*(server_digests(dovecot, user, mailbox) for mailbox in mailboxes))
    raws, check = archive(db_path)
    assert check == "ok"
    digests = [hashlib.sha256(r).hexdigest() for r in raws]
    assert len(digests) == len(set(digests)), "a message is stored twice"
    ids = [r.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for r in raws]
    assert len(ids) == len(set(ids)), "the same message is stored twice with different bytes"
    assert set(digests) <= set(delivered), "the archive holds something that was never delivered"
    gone = set(delivered) - on_server
    missing = gone - set(digests)
    assert not missing, f"{len(missing)} messages left the server but are not in the archive"
    return on_server


def server_digests(dovecot: Dovecot, user: str, mailbox: str = "INBOX") -> set[str]:
    """SHA-256 of every message in ``user``'s ``mailbox``, read consistently while Dovecot may be changing it.

    A killed session's Dovecot process can still be moving files from ``new/`` to ``cur/`` or
    expunging them; the listing is read until two listings around reading the files agree.
    """
    for _ in range(200):
        try:
            files = {f.name.split(":")[0]: f for f in dovecot.maildir_files(user, mailbox)}
            contents = [f.read_bytes() for f in files.values()]
        except FileNotFoundError:
            continue
        if {f.name.split(":")[0] for f in dovecot.maildir_files(user, mailbox)} == set(files):
            return {hashlib.sha256(raw).hexdigest() for raw in contents}
    raise AssertionError(f"the maildrop of {user} kept changing")


class _Log:
    """The daemon's stdout (JSON lines), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.events: list[str] = []

    def poll(self) -> list[str]:
        """Read what was written since the last poll; return the new event names."""
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        new = []
        for line in lines:
            try:
                new.append(str(json.loads(line)["event"]))
            except (ValueError, KeyError, TypeError):
                continue
        self.events += new
        return new

    def wait_for(self, event: str, timeout_s: float) -> bool:
        """Poll every millisecond until ``event`` appears; False after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if event in self.poll():
                return True
            time.sleep(0.001)
        return False

    def phase(self) -> str:
        """Where the process was, judged by its last step event (see :data:`PHASES`)."""
        self.poll()
        for event in reversed(self.events):
            if event in _PHASE_OF_EVENT:
                return _PHASE_OF_EVENT[event]
        return "start-up"


def run_kill_trials(
    dovecot: Dovecot,
    user: MailUser,
    directory: Path,
    settings: KillSettings,
    progress: Callable[[str], None] | None = None,
) -> KillReport:
    """Run the trials, then let the daemon empty the maildrop unkilled; assert the invariants throughout.

    Steps: deliver ``initial_messages``; per trial deliver a few more, start `maild run` (retention
    "delete", poll every second, through the slowed proxy), SIGKILL it at a moment of the trial's kind,
    check the invariants; finally lift the proxy's faults, run the daemon until the maildrop is empty,
    stop it with SIGTERM and check that every delivered message is archived exactly once.

    Returns:
        Where the kills landed.
    """
    started = time.monotonic()
    rng = random.Random(settings.seed)
    report = KillReport()
    delivered: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    counter = 0

    def deliver(n: int) -> None:
        nonlocal counter
        batch = [
            large_message(settings.seed * 1_000_000 + counter + k)
            if settings.large_every and (counter + k) % settings.large_every == settings.large_every - 1
            else message(settings.seed * 1_000_000 + counter + k)
            for k in range(n)
        ]
        counter += n
        for raw in batch:
            digest = hashlib.sha256(raw).hexdigest()
            delivered[digest], sizes[digest] = raw, len(raw)
        boxes = settings.mailboxes
        for i, mailbox in enumerate(boxes):
            if batch[i :: len(boxes)]:
                dovecot.deliver_many(user.name, batch[i :: len(boxes)], mailbox)
        report.delivered += n

    mailboxes = settings.mailboxes
    for mailbox in mailboxes:
        if mailbox != "INBOX":
            dovecot.create_mailbox(user.name, mailbox)
    deliver(settings.initial_messages)
    db_path = directory / "state" / "maild.sqlite3"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    imap = settings.protocol == "imap"
    with FaultProxy(dovecot.host, dovecot.ports.imaps if imap else dovecot.ports.pop3s) as proxy:
        proxy.trickle(settings.rate_octets_per_s)
        proxy.latency(settings.latency_s)
        retention: dict[str, object] = (
            {"retention": "delete-after", "retention_days": 1, "idle": False}
            if imap
            else {"retention": "delete"}
        )
        spec = AccountSpec(
            "kill-imap" if imap else "kill-pop",
            settings.protocol,
            user.name,
            user.password,
            extra={
                **retention,
                "poll_interval": "1s",
                "port": proxy.port,
                "timeout": "10s",
                **({"mailboxes": "all"} if mailboxes != ("INBOX",) else {}),
            },
        )
        cfg = write_config(directory, dovecot, [spec])
        cmd = [sys.executable, "-m", "maild", "-c", str(cfg), "--log-level", "debug", "run"]
        rtt = 2 * settings.latency_s
        first_kinds = rng.sample(KINDS, len(KINDS))
        for trial in range(settings.trials):
            if trial:
                deliver(rng.randint(*settings.new_per_trial))
            if imap:
                backdate(db_path)
            on_server = check_invariants(dovecot, user.name, delivered, db_path, mailboxes)
            archived = {hashlib.sha256(r).hexdigest() for r in archive(db_path)[0]}
            pending = sum(sizes[d] for d in on_server - archived)
            # TLS, greeting, USER, PASS, CAPA, UIDL+LIST, DELE, QUIT: about 8 round trips, plus the transfer
            expected_s = 8 * rtt + 0.15 + pending / settings.rate_octets_per_s
            kind = first_kinds[trial] if trial < len(KINDS) else rng.choices(KINDS, settings.kind_weights)[0]
            log = _Log(directory / f"trial-{trial:04d}.log")
            connections = proxy.connections
            with log.path.open("wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                if kind == "anytime":
                    time.sleep(rng.uniform(0.0, 0.6 + expected_s))
                else:
                    proxy.wait_until(lambda before=connections: proxy.connections > before, 20.0)
                    if kind == "random":
                        time.sleep(rng.uniform(0.0, expected_s))
                    elif kind == "commit":
                        log.wait_for("fetch.commit.started", 5 + 3 * expected_s)
                    else:
                        log.wait_for("fetch.delete.started", 5 + 3 * expected_s)
                        time.sleep(rng.uniform(0.0, 2 * rtt))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            phase = log.phase()
            report.phases[phase] += 1
            report.kinds[kind] += 1
            if progress is not None:
                progress(f"trial {trial}: {kind:8} -> {phase}")
            check_invariants(dovecot, user.name, delivered, db_path, mailboxes)
        proxy.reset()
        _drain(
            cmd, env, directory, dovecot, user, settings.drain_timeout_s, db_path if imap else None, mailboxes
        )
    assert check_invariants(dovecot, user.name, delivered, db_path, mailboxes) == set()
    raws, _ = archive(db_path)
    assert sorted(raws) == sorted(delivered.values())
    report.seconds = time.monotonic() - started
    return report


def backdate(db_path: Path) -> None:
    """Make every message archived so far look fetched in 2020 (retention ``delete-after``: due now).

    Written from this process beside the running daemon, as a CRM's writer would (WAL mode).
    """
    if not db_path.exists():
        return
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as conn, conn:
        conn.execute(
            "UPDATE locations SET first_fetched_at = '2020-01-01T00:00:00Z' WHERE deleted_at IS NULL"
        )


def _drain(
    cmd: list[str],
    env: dict[str, str],
    directory: Path,
    dovecot: Dovecot,
    user: MailUser,
    timeout_s: float,
    backdated: Path | None = None,
    mailboxes: tuple[str, ...] = ("INBOX",),
) -> None:
    """Run the daemon until the maildrop is empty and a cycle has succeeded, then stop it with SIGTERM;
    with ``backdated`` (the archive), what it archives is made due for deletion every second."""
    with running_maild(cmd, log=directory / "drain.log", env=env) as proc:
        deadline = time.monotonic() + timeout_s
        drained = False
        while not drained and time.monotonic() < deadline:
            if backdated is not None:
                backdate(backdated)
            drained = wait_until_drained(directory, dovecot, user.name, 1.0, mailboxes=mailboxes)
        assert drained, "the daemon did not empty the maildrop in time"
        assert stop_maild(proc, timeout_s=30) == 0
