"""Benchmark maild against mpop, mbsync, fetchmail and getmail6 on the same Dovecot and the same mail.

Usage (as root, from the repository root)::

    python3 -m tests.bench.run                 # everything (about 30-40 minutes on 2 cores)
    python3 -m tests.bench.run --quick         # fewer messages, for a sanity run (a few minutes)
    python3 -m tests.bench.run --scenarios a,d --tools maild,mpop --repeat 3

It installs what is missing (Dovecot through ``.ci/install``; ``apt-get install fetchmail getmail6 mpop
isync``), starts a private Dovecot on loopback (``tests/support/dovecot.py``) whose mail is seeded once
from the deterministic corpus and kept in ``--dir`` for later runs, and measures:

(a) one account, initial fetch and no-op fetch, POP3 and IMAP, on loopback;
(b) the same through ``tests/support/proxy.py`` adding ``--rtt-ms`` (50 ms) of round-trip time;
(c) many accounts (50 x 200), initial and no-op, on loopback and at that round-trip time;
(d) one 25 MB message: peak memory;
(e) IMAP only: one account through the proxy at ``--rtt-ms`` and ``--bandwidth-mbit`` (20 Mbit/s),
    maild with ``compress = "never"`` and ``"always"`` (COMPRESS=DEFLATE, RFC 4978; Dovecot offers it
    during this scenario only, since mbsync uses it whenever offered) beside the peers, initial only;
(folders) one account with 100 folders: the no-op poll in round trips, octets and time at that
round-trip time, beside mbsync, and push latency for a message in the 50th folder (``folders.py``).

Through the proxy, each row also gives the round trips the tool's connections made (client turns:
sends after having received something) and the octets the server sent.

For maild both the one-shot ``maild fetch`` and a cycle inside a running daemon are measured (see
``maildrun.py``); ``--repeat`` applies to both (the daemon's initial fetch: a fresh daemon and archive
per run). Peers keep all mail on the server; their local state is removed before each initial
run. Peers fetch accounts one after another, so for (c) the slow ones (fetchmail, getmail6) run a
subset of the accounts and their times are scaled to all accounts (marked ``est``). A run that exceeds
``--budget-s`` is stopped, its time extrapolated from the messages it had fetched (``cut``) and its
state completed without measurement before the no-op run.

Prints a table and writes JSON (``--json``, default ``tests/bench/results.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PEER_PACKAGES = {"mpop": "mpop", "mbsync": "isync", "fetchmail": "fetchmail", "getmail": "getmail6"}


# ---------------------------------------------------------------------------------------------- install


def ensure_installed() -> None:
    """Install Dovecot (``.ci/install``, which also installs maild's test extras) and the peers if missing."""
    if os.geteuid() != 0:
        sys.exit("the benchmark runs Dovecot and installs packages: run it as root")
    need_ci = shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists()
    try:
        import tomli_w  # noqa: F401
        import trustme  # noqa: F401

        import maild  # noqa: F401
    except ImportError:
        need_ci = True
    if need_ci:
        print("== installing Dovecot and maild's test extras (.ci/install)", flush=True)
        subprocess.run(["bash", str(REPO / ".ci" / "install")], check=True)
    missing = [pkg for binary, pkg in PEER_PACKAGES.items() if shutil.which(binary) is None]
    if not Path("/usr/bin/time").exists():
        missing.append("time")  # GNU time measures each command (see measure.py)
    if missing:
        print(f"== installing {' '.join(missing)} (apt-get)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
        )


# ---------------------------------------------------------------------------------------------- sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much mail each scenario uses."""

    one_messages: int
    many_accounts: int
    many_messages: int
    large_octets: int
    budget_s: float
    subset_loopback: int
    subset_rtt: int


FULL = Sizes(2000, 50, 200, 25_000_000, 150.0, 10, 5)
QUICK = Sizes(200, 10, 20, 25_000_000, 40.0, 3, 2)


def bench_mix() -> Any:
    """The size mix: the corpus kinds weighted so 2,000 messages are about 270-280 MB (~138 KB each)."""
    from tests.support import corpus

    return corpus.SizeMix(text=0.80, html=0.10, attachment=0.105, large=0.0085)


# ---------------------------------------------------------------------------------------------- server


@dataclasses.dataclass
class Server:
    """The Dovecot sandbox and the logins of each scenario."""

    dovecot: Any
    one: list[Any]
    many: list[Any]
    large: list[Any]
    octets: dict[str, int]


def _seed_stamp(sizes: Sizes) -> dict[str, Any]:
    return {
        "version": 1,
        "one": sizes.one_messages,
        "many": [sizes.many_accounts, sizes.many_messages],
        "large": sizes.large_octets,
        "mix": dataclasses.asdict(bench_mix()),
    }


def start_server(directory: Path, sizes: Sizes) -> Server:
    """Start the Dovecot sandbox in ``directory``, seeding it when its corpus is missing or different."""
    from tests.bench.peers import Login
    from tests.support import corpus
    from tests.support.dovecot import Dovecot

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    stamp_file = directory / "seed.json"
    stamp = _seed_stamp(sizes)
    dovecot_dir = directory / "dovecot"
    reuse = stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp
    if reuse:
        dovecot = Dovecot.attach(dovecot_dir)
        if dovecot.running:
            dovecot.stop()
    else:
        if dovecot_dir.exists():
            with contextlib.suppress(Exception):
                old = Dovecot.attach(dovecot_dir)
                if old.running:
                    old.stop()
            shutil.rmtree(dovecot_dir)
        stamp_file.unlink(missing_ok=True)
        dovecot = Dovecot(dovecot_dir)
    dovecot.imap_compress = False  # COMPRESS=DEFLATE only for scenario e (mbsync uses it when offered)
    dovecot.start()
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)

    def login(user: str, name: str) -> Login:
        if reuse:
            password = dovecot.users[user]
        else:
            password = secrets.token_urlsafe(12)
            dovecot.add_user(user, password)
        path = secrets_dir / user
        path.write_text(password + "\n")
        path.chmod(0o600)
        return Login(name, user, password, path)

    mix = bench_mix()
    octets: dict[str, int] = {}
    one = [login("one", "one")]
    many = [login(f"m{i:02d}", f"m{i:02d}") for i in range(sizes.many_accounts)]
    large = [login("big", "big")]
    if not reuse:
        started = time.monotonic()
        print(f"== seeding the corpus into {dovecot_dir} (once; kept for later runs)", flush=True)
        dovecot.deliver_many("one", corpus.generate(sizes.one_messages, seed=1, size_mix=mix))
        for i, item in enumerate(many):
            dovecot.deliver_many(item.user, corpus.generate(sizes.many_messages, seed=100 + i, size_mix=mix))
        dovecot.deliver_many("big", [corpus.large_message(sizes.large_octets, seed=7)])
        print(f"   seeded in {time.monotonic() - started:.0f} s", flush=True)
        stamp_file.write_text(json.dumps(stamp))
    for name, users in (("one", one), ("many", many), ("large", large)):
        octets[name] = sum(f.stat().st_size for item in users for f in dovecot.maildir_files(item.user))
    return Server(dovecot, one, many, large, octets)


# ---------------------------------------------------------------------------------------------- rows


@dataclasses.dataclass
class Row:
    """One measured (or estimated) run."""

    scenario: str
    protocol: str
    phase: str
    tool: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    messages: int
    expected: int
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float:
        return self.expected / self.wall_s if self.wall_s > 0 and self.phase == "initial" else 0.0

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["msgs_per_s"] = round(self.msgs_per_s, 1)
        return out


class Bench:
    """Runs the scenarios and collects rows."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, server: Server) -> None:
        self.args = args
        self.sizes = sizes
        self.server = server
        self.work = Path(args.dir) / "runs"
        self.rows: list[Row] = []
        self.proxies: dict[str, Any] = {}
        self.logs = Path(args.dir) / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.settings_used: dict[str, dict[str, Any]] = {}
        self.proxy: Any = None

    # -- helpers ---------------------------------------------------------------------------------------

    def port(self, protocol: str, rtt: bool, mbit: float | None = None) -> int:
        ports = self.server.dovecot.ports
        direct = ports.pop3 if protocol == "pop3" else ports.imap
        self.proxy = None
        if not rtt:
            return direct
        key = protocol if mbit is None else f"{protocol} {mbit:g} Mbit/s"
        if key not in self.proxies:
            from tests.support.proxy import FaultProxy

            proxy = FaultProxy("127.0.0.1", direct)
            proxy.start()
            proxy.latency(self.args.rtt_ms / 2000)
            if mbit is not None:  # the bandwidth cap: each direction paced to mbit (proxy "trickle")
                proxy.trickle(mbit * 1e6 / 8)
            self.proxies[key] = proxy
        self.proxy = self.proxies[key]
        return int(self.proxies[key].port)

    def traffic(self) -> tuple[int, int]:
        """The current proxy's client turns (round trips) and octets sent by the server so far."""
        return (self.proxy.client_turns, self.proxy.octets_down) if self.proxy is not None else (0, 0)

    def with_traffic(self, row: Row, before: tuple[int, int], after: tuple[int, int], runs: int) -> Row:
        """``row`` with the round trips and server octets per run between two :meth:`traffic` readings."""
        if self.proxy is not None and runs:
            row.extra["round_trips"] = (after[0] - before[0]) // runs
            row.extra["octets_down"] = (after[1] - before[1]) // runs
        return row

    @contextlib.contextmanager
    def no_latency(self, protocol: str, rtt: bool) -> Iterator[None]:
        """Lift the proxy's latency and bandwidth cap meanwhile (to complete a peer's state unmeasured)."""
        proxy = self.proxy if rtt else None
        rate = proxy._trickle_octets_per_s if proxy is not None else None
        if proxy is not None:
            proxy.latency(0)
            proxy.trickle(None)
        try:
            yield
        finally:
            if proxy is not None:
                proxy.latency(self.args.rtt_ms / 2000)
                proxy.trickle(rate)

    def wanted(self, tool: str) -> bool:
        return not self.args.tools or tool.split()[0] in self.args.tools

    def record(self, row: Row) -> None:
        self.rows.append(row)
        mark = f" [{row.note}]" if row.note else ""
        err = f"  ERROR {row.error[:200]}" if row.error else ""
        print(
            f"   {row.scenario:<14} {row.protocol:<4} {row.phase:<7} {row.tool:<22} {row.wall_s:8.2f} s"
            f" {row.cpu_s:7.2f} cpu ({user_sys(row)}) {row.rss_mb:6.0f} MB  {row.messages}/{row.expected}{mark}{err}",
            flush=True,
        )

    def clear_seen(self, logins: Sequence[Any]) -> None:
        """Remove ``\\Seen`` on the server (fetchmail's IMAP mode fetches unseen mail only)."""
        for item in logins:
            self.server.dovecot.doveadm(
                "flags", "remove", "-u", item.user, "\\Seen", "mailbox", "INBOX", "ALL"
            )

    # -- one scenario ----------------------------------------------------------------------------------

    def scenario(
        self,
        label: str,
        protocol: str,
        logins: list[Any],
        *,
        rtt: bool,
        phases: Sequence[str] = ("initial", "noop"),
        maild_settings: dict[str, int] | None = None,
        subset: int | None = None,
        mbit: float | None = None,
        maild_variants: Sequence[tuple[str, dict[str, Any]]] = (("", {}),),
        daemon: bool = True,
    ) -> None:
        expected = sum(len(self.server.dovecot.maildir_files(item.user)) for item in logins)
        port = self.port(protocol, rtt, mbit)
        settings = maild_settings or {}
        if settings:
            self.settings_used[label] = settings
        if self.wanted("maild"):
            for suffix, account_settings in maild_variants:
                account = dict(account_settings)
                if protocol == "imap" and self.args.compress and "compress" not in account:
                    account["compress"] = self.args.compress
                if account:
                    self.settings_used[f"{label}{suffix}"] = {**settings, **account}
                self.run_maild(
                    label,
                    protocol,
                    port,
                    logins,
                    expected,
                    phases,
                    settings,
                    rtt,
                    suffix=suffix,
                    account_settings=account,
                    daemon=daemon,
                )
            if "noop" in phases and len(logins) == 1:
                self.run_floor(label, protocol, port, logins[0], expected)
        from tests.bench.peers import PEERS

        for name, cls in PEERS.items():
            if protocol not in cls.protocols or not self.wanted(name):
                continue
            if not cls.available():
                print(f"   {name} is not installed: skipped", flush=True)
                continue
            used = logins
            if subset is not None and name in ("fetchmail", "getmail6") and subset < len(logins):
                used = logins[:subset]
            self.run_peer(label, protocol, port, cls, used, len(logins), expected, phases, rtt)

    def run_maild(
        self,
        label: str,
        protocol: str,
        port: int,
        logins: list[Any],
        expected: int,
        phases: Sequence[str],
        settings: dict[str, int],
        rtt: bool,
        *,
        suffix: str = "",
        account_settings: dict[str, Any] | None = None,
        daemon: bool = True,
    ) -> None:
        from tests.bench import measure
        from tests.bench.maildrun import Daemon, Maild

        work = self.work / f"maild-{protocol}"
        maild = Maild(
            work, protocol, port, logins, daemon_settings=settings, account_settings=account_settings or {}
        )
        argv = maild.fetch_argv()
        runs: dict[str, list[Any]] = {"initial": [], "noop": []}
        traffic: dict[str, list[tuple[int, int]]] = {"initial": [], "noop": []}
        fetched = 0
        for attempt in range(self.args.repeat):
            maild.reset()
            prof = self.args.profile
            cmd = argv
            if prof and attempt == 0:
                out = Path(prof) / f"{label}-{protocol}-initial.txt".replace(" ", "_")
                out.parent.mkdir(parents=True, exist_ok=True)
                cmd = [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--subprocesses",
                    "-o",
                    str(out),
                    "--",
                    *argv,
                ]
            before = self.traffic()
            run = measure.run(
                cmd, budget_s=self.sizes.budget_s * 2, env=maild.env(), log=self.logs / "maild.log"
            )
            traffic["initial"] += [before, self.traffic()]
            fetched = maild.fetched()
            runs["initial"].append(run)
            if "noop" in phases:
                before = self.traffic()
                runs["noop"].append(
                    measure.run(
                        argv, budget_s=self.sizes.budget_s, env=maild.env(), log=self.logs / "maild-noop.log"
                    )
                )
                traffic["noop"] += [before, self.traffic()]
        for phase in phases:
            if runs[phase]:
                row = self._median_row(
                    label,
                    protocol,
                    phase,
                    f"maild fetch{suffix}",
                    runs[phase],
                    fetched if phase == "initial" else 0,
                    expected,
                )
                self.record(self.with_traffic(row, traffic[phase][-2], traffic[phase][-1], 1))
        if not daemon:
            return
        # inside a running daemon: --repeat initial fetches, each by a fresh daemon into a fresh archive,
        # medians as for the one-shot (a single run moved by +-0.4 s of CPU on the shared machine:
        # docs/performance.md, "Session 7: the POP3 one-shot"); the no-op cycles in the last daemon
        initial: list[dict[str, Any]] = []
        for _ in range(self.args.repeat - 1):  # the earlier daemons: their initial fetch only
            maild.reset(with_accounts=False)
            earlier = Daemon(maild, self.logs / f"maild-daemon-{protocol}.log")
            try:
                initial.append(earlier.initial(self.sizes.budget_s * 2))
            finally:
                earlier.stop()
        maild.reset(with_accounts=False)
        running = Daemon(maild, self.logs / f"maild-daemon-{protocol}.log")
        try:
            before = self.traffic()
            initial.append(running.initial(self.sizes.budget_s * 2))
            after = self.traffic()
            fetched = maild.fetched()
            errors = [r["error"] for r in initial if r["error"]]
            self.record(
                self.with_traffic(
                    Row(
                        label,
                        protocol,
                        "initial",
                        f"maild daemon{suffix}",
                        statistics.median(r["wall_s"] for r in initial),
                        statistics.median(r["cpu_s"] for r in initial),
                        max(r["rss_mb"] for r in initial),
                        fetched,
                        expected,
                        "cut" if any(r["cut"] for r in initial) else "",
                        errors[0] if errors else None,
                        {
                            "cycle_s_max": statistics.median(r["cycle_s_max"] for r in initial),
                            "runs": len(initial),
                            "user_s": statistics.median(r["user_s"] for r in initial),
                            "sys_s": statistics.median(r["sys_s"] for r in initial),
                        },
                    ),
                    before,
                    after,
                    1,
                )
            )
            if "noop" in phases:
                before = self.traffic()
                result = running.noop(self.args.noop_repeat)
                after = self.traffic()
                cli = running.cli_fetch_now_s()
                row = Row(
                    label,
                    protocol,
                    "noop",
                    f"maild daemon{suffix}",
                    result["wall_s"],
                    result["cpu_s"],
                    result["rss_mb"],
                    0,
                    expected,
                    "",
                    result["error"],
                    {
                        "cycle_s_max": result["cycle_s_max"],
                        "user_s": result["user_s"],
                        "sys_s": result["sys_s"],
                        "wall_s_min": result["wall_s_min"],
                        "cli_fetch_now_s": cli,
                    },
                )
                self.record(self.with_traffic(row, before, after, self.args.noop_repeat))
        finally:
            running.stop()

    def run_floor(self, label: str, protocol: str, port: int, login: Any, expected: int) -> None:
        """Rows for the server's own no-op floor (``tests/bench/floor.py``); not peers."""
        from tests.bench import floor

        note = "raw client: server time and round trips only"
        if protocol == "pop3":
            wall = floor.pop3_floor_s("127.0.0.1", port, login.user, login.password)
            self.record(Row(label, protocol, "noop", "floor (raw client)", wall, 0.0, 0.0, 0, expected, note))
            return
        fresh, kept = floor.imap_floor_s("127.0.0.1", port, login.user, login.password)
        self.record(Row(label, protocol, "noop", "floor (raw client)", fresh, 0.0, 0.0, 0, expected, note))
        self.record(
            Row(
                label,
                protocol,
                "noop",
                "floor, kept session",
                kept,
                0.0,
                0.0,
                0,
                expected,
                "raw client: NOOP, SELECT, UID SEARCH on a logged-in connection",
            )
        )

    def _median_row(
        self,
        label: str,
        protocol: str,
        phase: str,
        tool: str,
        runs: list[Any],
        fetched: int,
        expected: int,
        ok_codes: tuple[int, ...] = (0,),
    ) -> Row:
        errors = [r.output[-300:] for r in runs if r.returncode not in ok_codes and not r.cut]
        return Row(
            label,
            protocol,
            phase,
            tool,
            statistics.median(r.wall_s for r in runs),
            statistics.median(r.cpu_s for r in runs),
            max(r.rss_mb for r in runs),
            fetched,
            expected,
            "cut" if any(r.cut for r in runs) else "",
            errors[0] if errors else None,
            {
                "runs": len(runs),
                "user_s": statistics.median(r.user_s for r in runs),
                "sys_s": statistics.median(r.sys_s for r in runs),
            },
        )

    def run_peer(
        self,
        label: str,
        protocol: str,
        port: int,
        cls: Any,
        logins: list[Any],
        all_logins: int,
        expected_all: int,
        phases: Sequence[str],
        rtt: bool,
    ) -> None:
        from tests.bench import measure

        peer = cls(self.work / f"{cls.name}-{protocol}", protocol, port, logins)
        expected = sum(len(self.server.dovecot.maildir_files(item.user)) for item in logins)
        scale = all_logins / len(logins)
        note_scale = f"est. from {len(logins)} of {all_logins} accounts" if scale != 1 else ""
        initial: list[Any] = []
        noop: list[Any] = []
        traffic: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        fetched = 0
        cut_note = ""
        for _attempt in range(self.args.repeat):
            peer.reset()
            if cls.name == "fetchmail" and protocol == "imap":
                self.clear_seen(logins)
            log = self.logs / f"{cls.name}-{protocol}.log"
            before = self.traffic()
            run = measure.run(peer.argv(), budget_s=self.sizes.budget_s, env=peer.env(), log=log)
            traffic["initial"] = (before, self.traffic())
            fetched = peer.fetched()
            if run.cut and 0 < fetched < expected:
                # extrapolate by messages; then complete the state without measuring
                factor = expected / fetched
                run.wall_s *= factor
                run.cpu_s *= factor
                run.user_s *= factor
                run.sys_s *= factor
                cut_note = f"cut at {self.sizes.budget_s:.0f} s after {fetched} msgs, extrapolated"
                with self.no_latency(protocol, rtt):
                    measure.run(peer.argv(), budget_s=1800, env=peer.env(), log=log)
                fetched = peer.fetched()
            initial.append(run)
            if "noop" in phases:
                before = self.traffic()
                noop.append(
                    measure.run(
                        peer.argv(),
                        budget_s=self.sizes.budget_s,
                        env=peer.env(),
                        log=self.logs / f"{cls.name}-{protocol}-noop.log",
                    )
                )
                traffic["noop"] = (before, self.traffic())
        for phase, runs in (("initial", initial), ("noop", noop)):
            if not runs:
                continue
            # fetchmail exits 1 for "no mail": that is a no-op's success
            ok_codes = (0, 1) if cls.name == "fetchmail" else (0,)
            row = self._median_row(
                label,
                protocol,
                phase,
                cls.name,
                runs,
                fetched if phase == "initial" else 0,
                expected,
                ok_codes,
            )
            if scale != 1:
                row.wall_s *= scale
                row.cpu_s *= scale
                for key in ("user_s", "sys_s"):
                    row.extra[key] *= scale
                row.messages = int(row.messages * scale)
                row.expected = expected_all
            notes = [n for n in (note_scale, cut_note if phase == "initial" else "") if n]
            row.note = "; ".join(notes)
            if phase in traffic and scale == 1 and not cut_note:
                self.with_traffic(row, *traffic[phase], 1)
            self.record(row)


# ---------------------------------------------------------------------------------------------- report


def user_sys(row: Row) -> str:
    """``"U user + S sys"``: the row's CPU split (medians of its runs, seconds), or ``"-"`` where the
    split was not measured (an estimated row)."""
    user, system = row.extra.get("user_s"), row.extra.get("sys_s")
    if user is None or system is None:
        return "-"
    return f"{user:.2f} user + {system:.2f} sys"


def ratios(rows: list[Row]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """For each (scenario, protocol, phase): the best peer by wall time and maild's ratios to it."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.scenario, row.protocol, row.phase), []).append(row)
    for key, group in groups.items():
        peers = [r for r in group if not r.tool.startswith(("maild", "floor")) and not r.error]
        best = min(peers, key=lambda r: r.wall_s) if peers else None
        entry: dict[str, Any] = {
            "best_peer": best.tool if best else None,
            "best_wall_s": best.wall_s if best else None,
        }
        for r in group:
            if r.tool.startswith("maild") and best is not None and best.wall_s > 0:
                entry[r.tool] = r.wall_s / best.wall_s
        out[key] = entry
    return out


def table(rows: list[Row], machine: dict[str, Any]) -> str:
    """The results as a Markdown table (also readable on a terminal)."""
    ratio = ratios(rows)
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; {machine['python']};"
        f" {machine['dovecot']}; {machine['date']}",
        "",
        "| scenario | proto | phase | tool | wall s | CPU s | user + sys s | peak RSS MB | msg/s | maild / best peer"
        " | note |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        key = (row.scenario, row.protocol, row.phase)
        entry = ratio.get(key, {})
        r = entry.get(row.tool)
        best = entry.get("best_peer") == row.tool
        tool = f"**{row.tool}**" if best else row.tool
        note = row.note
        if row.error:
            # the failing account's line, not the closing `all N accounts:` total of `maild fetch`
            lines = row.error.strip().splitlines()
            shown = next((line for line in reversed(lines) if ": FAILED: " in line), lines[-1] if lines else "")
            note = (note + "; " if note else "") + "FAILED: " + shown[:80]
        if row.phase == "initial" and row.messages != row.expected and not row.error:
            note = (note + "; " if note else "") + f"fetched {row.messages} of {row.expected}"
        trips = row.extra.get("round_trips")
        if trips is not None:
            octets = row.extra.get("octets_down", 0)
            note = (note + "; " if note else "") + f"{trips} round trips, {octets / 1e6:.1f} MB from server"
        if row.tool.startswith("maild daemon"):
            cyc = row.extra.get("cycle_s_max")
            if cyc is not None:
                note = (note + "; " if note else "") + f"cycle {cyc * 1000:.0f} ms"
            cli = row.extra.get("cli_fetch_now_s")
            if cli is not None:
                note += f"; CLI fetch-now {cli:.2f} s"
        lines.append(
            f"| {row.scenario} | {row.protocol.upper()} | {row.phase} | {tool} | {row.wall_s:.3f} | {row.cpu_s:.2f} |"
            f" {user_sys(row).replace(' user + ', ' + ').replace(' sys', '')} | {row.rss_mb:.0f} | {row.msgs_per_s:.0f} | {f'{r:.2f}x' if r is not None else ''} | {note} |"
        )
    return "\n".join(lines)


def precompile() -> None:
    """Byte-compile maild's modules into ``__pycache__`` before anything is measured.

    An installed maild runs from byte-compiled modules (Debian's packaging compiles them at install
    time). A shell with ``PYTHONDONTWRITEBYTECODE=1`` (this machine's sessions set it) would otherwise
    compile the 80-odd modules a one-shot ``maild fetch`` imports in every measured run: 0.1-0.15 s of
    CPU that no installed system spends (docs/performance.md, "Session 6: POP3 CPU"). The compiled
    files are read whatever the variable says; ``py_compile`` writes them whatever it says.
    """
    import compileall

    compileall.compile_dir(str(REPO / "maild"), quiet=1)


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20
    versions = {}
    for binary, args in (
        ("dovecot", ["--version"]),
        ("mpop", ["--version"]),
        ("mbsync", ["--version"]),
        ("fetchmail", ["--version"]),
        ("getmail", ["--version"]),
    ):
        with contextlib.suppress(Exception):
            out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
            text = (out.stdout or out.stderr).strip().splitlines()
            versions[binary] = next(
                (t for t in text if "version" in t.lower() or "release" in t.lower()), text[0] if text else ""
            )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem, 1),
        "python": f"Python {platform.python_version()}",
        "dovecot": f"Dovecot {versions.get('dovecot', '?')}",
        "versions": versions,
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d"),
    }


# ---------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and accounts, shorter budgets")
    parser.add_argument(
        "--scenarios", default="a,b,c,d,e,folders", help="comma-separated subset of a,b,c,d,e,folders"
    )
    parser.add_argument(
        "--folders-before",
        default=None,
        help="git revision measured as 'maild before' in the folders scenario (default: merge base with main;"
        " 'none': skip it)",
    )
    parser.add_argument("--protocols", default="pop3,imap")
    parser.add_argument(
        "--tools", default="", help="comma-separated subset of maild,mpop,mbsync,fetchmail,getmail6"
    )
    parser.add_argument("--repeat", type=int, default=1, help="initial runs per tool (median)")
    parser.add_argument("--noop-repeat", type=int, default=5, help="daemon no-op cycles (median)")
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="round-trip time added by the proxy")
    parser.add_argument(
        "--bandwidth-mbit", type=float, default=20.0, help="bandwidth cap of scenario e, Mbit/s per direction"
    )
    parser.add_argument(
        "--compress",
        choices=("auto", "always", "never"),
        default="",
        help="maild's IMAP compress setting in scenarios a-d (default: maild's own, auto)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="longest single run (default 150, quick 40)"
    )
    parser.add_argument(
        "--dir", default="/tmp/maild-bench", help="work directory (the seeded Dovecot is kept here)"
    )
    parser.add_argument("--json", default=str(REPO / "tests" / "bench" / "results.json"))
    parser.add_argument(
        "--profile", default="", help="directory: record maild's initial runs with py-spy (raw)"
    )
    parser.add_argument("--no-install", action="store_true", help="do not install anything")
    args = parser.parse_args(argv)
    args.tools = [t for t in args.tools.split(",") if t]
    scenarios = [s for s in args.scenarios.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ["PYTHONPATH"] = str(REPO) + (
        ":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
    )
    if not args.no_install:
        ensure_installed()
    precompile()
    sizes = QUICK if args.quick else FULL
    if args.budget_s:
        sizes = dataclasses.replace(sizes, budget_s=args.budget_s)
    directory = Path(args.dir) / ("quick" if args.quick else "full")
    args.dir = str(directory)
    machine = machine_info()
    print(f"== {machine['cpu']}, {machine['cores']} cores; work directory {directory}", flush=True)
    folders_result = None
    if "folders" in scenarios:
        from tests.bench import folders

        folders_result = folders.run_scenario(directory, args.rtt_ms, args.folders_before)
        scenarios.remove("folders")
        if not scenarios:
            Path(args.json).write_text(
                json.dumps({"machine": machine, "folders": folders_result}, indent=2) + "\n"
            )
            print(f"\nJSON: {args.json}")
            return 0
    server = start_server(directory, sizes)
    bench = Bench(args, sizes, server)
    many_settings = {
        "max_concurrent_fetches": sizes.many_accounts,
        "max_connections_per_host": sizes.many_accounts,
        "pop3_threads": sizes.many_accounts,
    }
    rtt = f"{args.rtt_ms:g} ms"
    started = time.monotonic()
    try:
        for protocol in protocols:
            if "a" in scenarios:
                print(f"== (a) one account, {sizes.one_messages} messages, loopback, {protocol}", flush=True)
                bench.scenario(f"a 1x{sizes.one_messages} lo", protocol, server.one, rtt=False)
            if "b" in scenarios:
                print(f"== (b) one account, {sizes.one_messages} messages, {rtt} RTT, {protocol}", flush=True)
                bench.scenario(f"b 1x{sizes.one_messages} {rtt}", protocol, server.one, rtt=True)
            if "c" in scenarios:
                n, m = sizes.many_accounts, sizes.many_messages
                print(
                    f"== (c) {n} accounts x {m} messages, loopback, {protocol}; maild {many_settings}",
                    flush=True,
                )
                bench.scenario(
                    f"c {n}x{m} lo",
                    protocol,
                    server.many,
                    rtt=False,
                    maild_settings=many_settings,
                    subset=sizes.subset_loopback,
                )
                print(
                    f"== (c) {n} accounts x {m} messages, {rtt} RTT, {protocol}; maild {many_settings}",
                    flush=True,
                )
                bench.scenario(
                    f"c {n}x{m} {rtt}",
                    protocol,
                    server.many,
                    rtt=True,
                    maild_settings=many_settings,
                    subset=sizes.subset_rtt,
                )
            if "d" in scenarios:
                print(
                    f"== (d) one {sizes.large_octets / 1e6:.0f} MB message, loopback, {protocol}", flush=True
                )
                bench.scenario(
                    f"d 1x{sizes.large_octets // 1_000_000}MB lo",
                    protocol,
                    server.large,
                    rtt=False,
                    phases=("initial",),
                )
            if "e" in scenarios and protocol == "imap":
                mbit = args.bandwidth_mbit
                print(
                    f"== (e) one account, {sizes.one_messages} messages, {rtt} RTT, {mbit:g} Mbit/s, {protocol};"
                    " Dovecot offers COMPRESS=DEFLATE (mbsync uses it)",
                    flush=True,
                )
                server.dovecot.imap_compress = True
                server.dovecot.restart()
                bench.scenario(
                    f"e 1x{sizes.one_messages} {rtt} {mbit:g} Mbit/s",
                    protocol,
                    server.one,
                    rtt=True,
                    phases=("initial",),
                    mbit=mbit,
                    maild_variants=(
                        (", compress never", {"compress": "never"}),
                        (", compress always", {"compress": "always"}),
                    ),
                    daemon=False,
                )
                server.dovecot.imap_compress = False
                server.dovecot.restart()
    finally:
        for proxy in bench.proxies.values():
            proxy.stop()
        server.dovecot.stop()
    report = table(bench.rows, machine)
    print()
    print(report)
    if bench.settings_used:
        print()
        for label, used in bench.settings_used.items():
            print(f"maild settings for {label}: " + ", ".join(f"{k} = {v}" for k, v in used.items()))
    result = {
        "machine": machine,
        "sizes": dataclasses.asdict(sizes),
        "corpus_octets": server.octets,
        "rtt_ms": args.rtt_ms,
        "maild_settings": bench.settings_used,
        "seconds": round(time.monotonic() - started, 1),
        "rows": [r.to_json() for r in bench.rows],
        "ratios": [
            {"scenario": k[0], "protocol": k[1], "phase": k[2], **v} for k, v in ratios(bench.rows).items()
        ],
        "table": report,
        "folders": folders_result,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {args.json}; total {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
