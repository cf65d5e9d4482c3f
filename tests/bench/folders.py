"""Benchmark scenario ``folders``: one IMAP account with 100 folders, the no-op poll and push latency.

Run with the other scenarios' command (as root)::

    python3 -m tests.bench.run --scenarios folders          # about 2-3 minutes
    python3 -m tests.bench.run --scenarios folders --folders-before <git revision>
    python3 -m tests.bench.run --scenarios folders --folders-before none   # "after" only

Two Dovecot servers of its own (in ``--dir``/folders) hold the same mail: 100 folders
(:data:`FOLDERS`) with :data:`PER_FOLDER` messages each plus INBOX. One offers what Dovecot 2.3 has
(LIST-STATUS, CONDSTORE, QRESYNC, NOTIFY), the other hides those (``imap_capability``). Every
connection goes through ``tests/support/proxy.py`` adding ``--rtt-ms`` (50 ms) of round-trip time,
which counts octets and round trips (command/response turns: each time the client sends after the
server has spoken; a pipelined batch is one turn; the TCP handshake and greeting are not a turn).

Measured, each as turns, octets up/down and seconds:

* maild's no-op poll (nothing new) in a fresh session (connect, LOGIN, poll, LOGOUT: ``maild
  fetch``) and in a kept session (what the daemon does: NOOP, poll), after (this tree) and before
  (``--folders-before``, default the merge base with ``main``, extracted with ``git archive``);
* the poll after one new message in one folder (the changed-folder cost);
* mbsync (``Patterns *``) doing the same no-op run, on the server with the extensions;
* push latency: a message APPENDed (as an MDA would, straight to Dovecot) to the 50th folder while
  maild's IDLE connection watches with NOTIFY: seconds until the push arrives, and until the message
  is archived by the cycle it triggers (kept session).

Prints a table and returns the figures for ``results.json`` (key ``folders``).
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w

REPO = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).resolve().parent / "folders_poll.py"
FOLDERS = 100
PER_FOLDER = 3
PUSH_FOLDER = 49
"""Index of the folder the push message goes to: the 50th."""
REPEAT = 3
PLAIN_CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS"
    " THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS"
    " LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH BINARY MOVE LITERAL+"
    " SPECIAL-USE"
)
USER, PASSWORD = "folders", "bench folders pw"


def folder(i: int) -> str:
    """The readable name of folder ``i`` (0-based)."""
    return f"Ordner {i:03d}"


class Site:
    """One Dovecot with the folder corpus, and a latency proxy in front of it."""

    def __init__(self, directory: Path, name: str, extra_config: str, rtt_ms: float) -> None:
        from tests.support import corpus
        from tests.support.dovecot import Dovecot
        from tests.support.proxy import FaultProxy

        if directory.exists():
            with contextlib.suppress(Exception):
                old = Dovecot.attach(directory)
                if old.running:
                    old.stop()
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        directory.chmod(0o755)
        self.name = name
        self.dovecot = Dovecot(directory, extra_config=extra_config)
        self.dovecot.start()
        self.dovecot.add_user(USER, PASSWORD)
        self.dovecot.deliver_many(USER, [corpus.make_message(subject="INBOX")], "INBOX")
        for i in range(FOLDERS):
            raws = [corpus.make_message(subject=f"{folder(i)} {n}") for n in range(PER_FOLDER)]
            self.dovecot.deliver_many(USER, raws, folder(i))
        self.proxy = FaultProxy("127.0.0.1", self.dovecot.ports.imap)
        self.proxy.start()
        self.rtt_s = rtt_ms / 1000
        self.proxy.latency(self.rtt_s / 2)

    @contextlib.contextmanager
    def no_latency(self) -> Iterator[None]:
        """Lift the latency meanwhile (to bring a tool's state up to date without measuring)."""
        self.proxy.latency(0)
        try:
            yield
        finally:
            self.proxy.latency(self.rtt_s / 2)

    def counters(self) -> tuple[int, int, int]:
        return self.proxy.client_turns, self.proxy.octets_up, self.proxy.octets_down

    def append(self, mailbox: str, subject: str) -> float:
        """APPEND a message straight to Dovecot (not through the proxy); the loop time it completed."""
        from tests.support import corpus

        with imaplib.IMAP4(self.dovecot.host, self.dovecot.ports.imap) as client:
            client.login(USER, PASSWORD)
            status, _ = client.append(f'"{mailbox}"', "", None, corpus.make_message(subject=subject))
            done = time.monotonic()
            assert status == "OK"
            client.logout()
        return done

    def stop(self) -> None:
        self.proxy.stop()
        self.dovecot.stop()


def maild_config(directory: Path, site: Site) -> Path:
    """A maild configuration with one account (``mailboxes = "all"``) through ``site``'s proxy."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    doc = {
        "daemon": {"state_dir": str(directory / "state"), "control_socket": str(directory / "control.sock")},
        "accounts": {
            "bench": {
                "organisation": "Bench",
                "employee": USER,
                "protocol": "imap",
                "host": "127.0.0.1",
                "port": site.proxy.port,
                "tls": "none",
                "username": USER,
                "password_file": str(secret),
                "mailboxes": "all",
                "poll_interval": "24h",
                "timeout": "60s",
            }
        },
    }
    config = directory / "config.toml"
    config.write_bytes(tomli_w.dumps(doc).encode())
    return config


def polls(tree: Path, config: Path, site: Site, mode: str, cycles: int) -> list[dict[str, Any]]:
    """Run the helper (:mod:`tests.bench.folders_poll`) with ``tree``'s maild; each cycle's figures."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(config), "bench", mode, str(cycles)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tree,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    before = site.counters()
    for line in proc.stdout:
        if not line.startswith("@@ "):
            continue  # a log line
        item = json.loads(line[3:])
        if "mark" in item:
            before = site.counters()
            proc.stdin.write("\n")
            proc.stdin.flush()
            continue
        after = site.counters()
        item.update(turns=after[0] - before[0], up=after[1] - before[1], down=after[2] - before[2])
        out.append(item)
    if proc.wait() != 0:
        raise RuntimeError(f"folders_poll.py with {tree} failed ({proc.returncode})")
    return out


def median_row(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over ``items``."""
    return {
        key: statistics.median(float(item[key]) for item in items)
        for key in ("turns", "up", "down", "seconds")
    }


def extract_before(revision: str, into: Path) -> Path:
    """Extract ``revision`` of this repository (``git archive``) into ``into``; return the tree."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    archive = into.with_suffix(".tar")
    with archive.open("wb") as file:
        subprocess.run(["git", "-C", str(REPO), "archive", revision, "maild"], stdout=file, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def measure_maild(work: Path, tree: Path, label: str, site: Site) -> dict[str, dict[str, Any]]:
    """No-op polls (fresh and kept session) and a changed-folder poll by ``tree``'s maild."""
    config = maild_config(work / f"maild-{label}-{site.name}", site)
    with site.no_latency():
        polls(tree, config, site, "fresh", 1)  # the initial fetch, not measured
    rows = {
        "noop fresh": median_row(polls(tree, config, site, "fresh", REPEAT)),
        "noop kept": median_row(polls(tree, config, site, "kept", REPEAT + 1)[1:]),
    }
    changed: list[dict[str, Any]] = []
    for n in range(REPEAT):
        runs = polls(tree, config, site, "kept", 2)  # the first takes the session; then one change
        del runs
        site.append(folder(10 + n), f"changed {label} {n}")
        changed.append(polls(tree, config, site, "fresh", 1)[0])
    rows["1 changed fresh"] = median_row(changed)
    return rows


def measure_mbsync(work: Path, site: Site) -> dict[str, dict[str, Any]]:
    """mbsync's no-op run over every folder (``Patterns *``)."""
    if shutil.which("mbsync") is None:
        return {}
    home = work / f"mbsync-{site.name}"
    if home.exists():
        shutil.rmtree(home)
    (home / "mail").mkdir(parents=True)
    secret = home / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    rc = home / "mbsyncrc"
    rc.write_text(
        "\n".join(
            [
                "IMAPAccount bench",
                "Host 127.0.0.1",
                f"Port {site.proxy.port}",
                f"User {USER}",
                f'PassCmd "cat {secret}"',
                "SSLType None",
                "AuthMechs LOGIN",
                "Timeout 60",
                "",
                "IMAPStore bench-far",
                "Account bench",
                "",
                "MaildirStore bench-near",
                f"Path {home / 'mail'}/",
                f"Inbox {home / 'mail' / 'INBOX'}",
                "SubFolders Verbatim",
                "",
                "Channel bench",
                "Far :bench-far:",
                "Near :bench-near:",
                "Patterns *",
                "Sync Pull",
                "Create Near",
                "Remove None",
                "Expunge None",
                "SyncState *",
                "",
            ]
        )
    )
    rc.chmod(0o600)
    argv = ["mbsync", "-q", "-c", str(rc), "--all"]
    with site.no_latency():
        subprocess.run(argv, check=True)
    runs = []
    for _ in range(REPEAT):
        before = site.counters()
        started = time.monotonic()
        subprocess.run(argv, check=True)
        seconds = time.monotonic() - started
        after = site.counters()
        runs.append(
            {
                "turns": after[0] - before[0],
                "up": after[1] - before[1],
                "down": after[2] - before[2],
                "seconds": seconds,
            }
        )
    return {"noop fresh": median_row(runs)}


async def _push_once(site: Site, account: Any, store: Any, drop: Any, n: int) -> tuple[float, float]:
    """One push: seconds from the APPEND's OK to the push, and to the message being archived."""
    from maild.fetch.cycle import fetch_cycle
    from maild.protocols.imap.idle import IMAPIdleSession

    session = IMAPIdleSession(account.server_settings(), "INBOX", None)
    await session.open()
    await session.select_mailbox()
    if not await session.notify():
        await session.abort()
        raise RuntimeError("the server does not offer NOTIFY")
    await session.idle_start()
    appended = asyncio.ensure_future(asyncio.to_thread(site.append, folder(PUSH_FOLDER), f"push {n}"))
    events = await session.idle_wait(30)
    pushed = time.monotonic()
    done = await appended
    await session.abort()
    if not events.changed:
        raise RuntimeError("no push within 30 s")
    if not await drop.resume(max_age_s=600, probe_timeout_s=30):
        raise RuntimeError("the kept session was lost")
    result = await fetch_cycle(account, store, drop, opened=True, keep_open=True)
    archived = time.monotonic()
    if result.new_messages != 1:
        raise RuntimeError(f"the cycle after the push archived {result.new_messages} messages")
    return max(pushed - done, 0.0), archived - done


async def measure_push(work: Path, site: Site) -> dict[str, float]:
    """Median push latency for a message APPENDed to the 50th folder (this tree's maild)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from maild.archive.store import Store
    from maild.config.loader import load_config
    from maild.fetch.cycle import fetch_cycle, make_maildrop
    from maild.log import configure_logging

    configure_logging("warning")  # the daemon's debug lines are not the benchmark's output
    config = maild_config(work / f"maild-push-{site.name}", site)
    loaded = load_config(config)
    account = await loaded.accounts["bench"].resolved()
    store = await Store.open(loaded.daemon.state_dir / "maild.sqlite3")
    executor = ThreadPoolExecutor(max_workers=1)
    await store.ensure_account(
        account.name, account.organisation, account.employee, "imap", datetime.now(UTC)
    )
    drop = make_maildrop(account, executor)
    try:
        with site.no_latency():
            await fetch_cycle(account, store, drop, keep_open=True)
        pushes, archived = [], []
        for n in range(REPEAT):
            push_s, archive_s = await _push_once(site, account, store, drop, n)
            pushes.append(push_s)
            archived.append(archive_s)
    finally:
        await drop.abort()
        await store.close()
        executor.shutdown(wait=False)
    return {"push_s": statistics.median(pushes), "archived_s": statistics.median(archived)}


def table(results: dict[str, Any]) -> str:
    """The scenario's figures as a plain-text table."""
    lines = [
        f"folders: one account, {FOLDERS} folders x {PER_FOLDER} messages + INBOX, {results['rtt_ms']:g} ms RTT",
        f"{'server':<11} {'tool':<14} {'poll':<16} {'turns':>6} {'up B':>8} {'down B':>8} {'seconds':>8}",
    ]
    for server, tools in results["polls"].items():
        for tool, rows in tools.items():
            for poll, row in rows.items():
                lines.append(
                    f"{server:<11} {tool:<14} {poll:<16} {row['turns']:>6.0f} {row['up']:>8.0f}"
                    f" {row['down']:>8.0f} {row['seconds']:>8.2f}"
                )
    push = results.get("push")
    if push:
        lines.append(
            f"push to folder {PUSH_FOLDER + 1} (NOTIFY, {results['rtt_ms']:g} ms RTT): arrives after"
            f" {push['push_s']:.2f} s, archived after {push['archived_s']:.2f} s (median of {REPEAT})"
        )
    lines.append("mbsync has no push: new mail waits for its next run.")
    return "\n".join(lines)


def run_scenario(directory: Path, rtt_ms: float, before: str | None) -> dict[str, Any]:
    """Run the whole scenario in ``directory``; print and return its figures."""
    work = directory / "folders"
    work.mkdir(parents=True, exist_ok=True)
    revision = (
        before
        or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    trees = [("maild after", REPO)]
    if revision != "none":
        trees.append(("maild before", extract_before(revision, work / "before-tree")))
    plain_config = f"\nprotocol imap {{\n  imap_capability = {PLAIN_CAPABILITY}\n}}\n"
    results: dict[str, Any] = {"rtt_ms": rtt_ms, "before": revision, "polls": {}}
    for name, extra in (("extensions", ""), ("plain", plain_config)):
        print(f"== (folders) {name}: seeding {FOLDERS} folders", flush=True)
        site = Site(work / f"dovecot-{name}", name, extra, rtt_ms)
        try:
            tools: dict[str, Any] = {}
            for label, tree in trees:
                print(f"   {label} on {name}", flush=True)
                tools[label] = measure_maild(work, tree, label.split()[1], site)
            if name == "extensions":
                print("   mbsync", flush=True)
                tools["mbsync"] = measure_mbsync(work, site)
                print("   push latency", flush=True)
                results["push"] = asyncio.run(measure_push(work, site))
            results["polls"][name] = tools
        finally:
            site.stop()
    report = table(results)
    print(report, flush=True)
    results["table"] = report
    return results
