"""maild under measurement: the one-shot ``maild fetch`` and cycles inside a running ``maild run``.

The daemon is started with no accounts; the accounts are then added with a drop-in file and a
``reload`` over the control socket, which starts each account's first cycle at once: that is the
daemon's initial fetch, timed from the reload request to the last ``fetch.complete`` (or
``fetch.failed``) log event. The no-op cycle is ``fetch-now all`` over the control socket, timed by
its round trip (the CLI ``maild fetch-now all`` adds a Python start-up of its own, reported apart).
The daemon's CPU comes from ``/proc`` (every thread's schedstat), its peak RSS from ``VmHWM`` after
resetting it (``clear_refs``) at the start of each phase.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

from maild.service.control_client import request
from tests.bench import measure
from tests.bench.peers import HOST, Login

REPO = Path(__file__).resolve().parents[2]


class Maild:
    """maild configured in ``work`` for ``logins`` on one port."""

    def __init__(
        self,
        work: Path,
        protocol: str,
        port: int,
        logins: Sequence[Login],
        *,
        daemon_settings: dict[str, Any],
        account_settings: dict[str, Any] | None = None,
    ) -> None:
        self.work = work
        self.account_settings = account_settings or {}
        self.protocol = protocol
        self.port = port
        self.logins = list(logins)
        self.daemon_settings = daemon_settings
        self.config = work / "config.toml"

    def _daemon_table(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.work / "state"),
            "control_socket": str(self.work / "control.sock"),
            "log_level": "info",
            **self.daemon_settings,
        }

    def _accounts(self) -> dict[str, Any]:
        accounts: dict[str, Any] = {}
        for login in self.logins:
            table: dict[str, Any] = {
                "organisation": "Bench",
                "employee": login.user,
                "protocol": self.protocol,
                "host": HOST,
                "port": self.port,
                "tls": "none",
                "username": login.user,
                "password_file": str(login.password_file),
                "poll_interval": "24h",
                "timeout": "60s",
            }
            if self.protocol == "imap":
                table["mailboxes"] = ["INBOX"]
                table["idle"] = False
            table.update(self.account_settings)
            accounts[login.name] = table
        return accounts

    def reset(self, *, with_accounts: bool = True) -> None:
        """Remove the archive and write the configuration (accounts in the main file, or none)."""
        subprocess.run(["rm", "-rf", str(self.work)], check=True)
        (self.work / "accounts.d").mkdir(parents=True)
        doc: dict[str, Any] = {"daemon": self._daemon_table()}
        if with_accounts:
            doc["accounts"] = self._accounts()
        self.config.write_bytes(tomli_w.dumps(doc).encode())

    def fetch_argv(self) -> list[str]:
        """The one-shot fetch of every account."""
        return [sys.executable, "-m", "maild", "fetch", "-c", str(self.config)]

    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        # as systemd/maild.service runs it: two malloc arenas, not one per POP3 thread
        return {
            **os.environ,
            "PYTHONPATH": f"{REPO}:{path}" if path else str(REPO),
            "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
        }

    def fetched(self) -> int:
        """Locations recorded in the archive (one per message fetched for an account)."""
        database = self.work / "state" / "maild.sqlite3"
        if not database.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM locations").fetchone()[0])


class Daemon:
    """A running ``maild run`` started by the benchmark (only its own PID is ever signalled)."""

    def __init__(self, maild: Maild, log: Path) -> None:
        self.maild = maild
        self.socket = maild.work / "control.sock"
        self._log_path = log
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maild", "run", "-c", str(maild.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=maild.env(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"maild run exited {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(Exception):
                if request(self.socket, {"command": "version"}, timeout_s=2).get("ok"):
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("maild run did not answer on its control socket within 30 s")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self._log_path.open("wb") as log:
            for line in self.proc.stdout:
                log.write(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                with self._changed:
                    self._events.append(event)
                    self._changed.notify_all()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self._log_path.read_text(errors="replace")[-3000:]
        return ""

    def _cycles_done(self, since: int) -> list[dict[str, Any]]:
        return [e for e in self._events[since:] if e.get("event") in ("fetch.complete", "fetch.failed")]

    def initial(self, budget_s: float) -> dict[str, Any]:
        """Add the accounts (drop-in + reload) and time their first cycles."""
        pid = self.proc.pid
        drop_in = self.maild.work / "accounts.d" / "bench.toml"
        drop_in.write_bytes(tomli_w.dumps({"accounts": self.maild._accounts()}).encode())
        count = len(self.maild.logins)
        with self._changed:
            since = len(self._events)
        measure.reset_peak_rss(pid)
        cpu0 = measure.process_cpu_s(pid)
        user0, sys0 = measure.process_user_sys_s(pid)
        started = time.monotonic()
        reply = request(self.socket, {"command": "reload"}, timeout_s=60)
        if not reply.get("ok"):
            raise RuntimeError(f"reload failed: {reply}")
        deadline = started + budget_s
        with self._changed:
            while len(self._cycles_done(since)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    break
                self._changed.wait(min(remaining, 1.0))
            done = self._cycles_done(since)
        wall = time.monotonic() - started
        failed = [e for e in done if e.get("event") == "fetch.failed"]
        user1, sys1 = measure.process_user_sys_s(pid)
        return {
            "wall_s": wall,
            "cpu_s": measure.process_cpu_s(pid) - cpu0,
            "user_s": user1 - user0,
            "sys_s": sys1 - sys0,
            "rss_mb": measure.peak_rss_mb(pid),
            "cut": len(done) < count,
            "error": "; ".join(str(e.get("error")) for e in failed[:3]) or None,
            "cycle_s_max": max((float(e.get("seconds", 0)) for e in done), default=0.0),
        }

    def noop(self, repeat: int) -> dict[str, Any]:
        """``fetch-now all`` over the control socket, ``repeat`` times; medians."""
        pid = self.proc.pid
        walls: list[float] = []
        cpus: list[float] = []
        users: list[float] = []
        systems: list[float] = []
        cycle: list[float] = []
        measure.reset_peak_rss(pid)
        error = None
        for _ in range(repeat):
            cpu0 = measure.process_cpu_s(pid)
            user0, sys0 = measure.process_user_sys_s(pid)
            started = time.monotonic()
            reply = request(
                self.socket, {"command": "fetch-now", "account": "all", "wait": True}, timeout_s=600
            )
            walls.append(time.monotonic() - started)
            cpus.append(measure.process_cpu_s(pid) - cpu0)
            user1, sys1 = measure.process_user_sys_s(pid)
            users.append(user1 - user0)
            systems.append(sys1 - sys0)
            results = reply.get("results") or {}
            bad = [f"{k}: {v.get('error')}" for k, v in results.items() if not v.get("ok")]
            if not reply.get("ok") or bad:
                error = str(reply.get("error") or bad[:3])
            cycle.append(max((float(v.get("seconds", 0)) for v in results.values()), default=0.0))
        return {
            "wall_s": statistics.median(walls),
            "wall_s_min": min(walls),
            "cpu_s": statistics.median(cpus),
            "user_s": statistics.median(users),
            "sys_s": statistics.median(systems),
            "rss_mb": measure.peak_rss_mb(pid),
            "cut": False,
            "error": error,
            "cycle_s_max": statistics.median(cycle),
        }

    def cli_fetch_now_s(self) -> float:
        """Wall seconds of the command ``maild fetch-now all`` (Python start-up included)."""
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "maild", "fetch-now", "all", "-c", str(self.maild.config)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.maild.env(),
            timeout=600,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM our daemon and wait for it (SIGKILL after 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
