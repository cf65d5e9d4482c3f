"""Where the CPU of a one-shot command goes, phase by phase: interpreter and ``site``, then each group
of imports in the order ``maild fetch`` loads them, then the command itself.

Each run is a fresh ``python3`` (the trees byte-compiled beforehand) that imports the groups of
:data:`PHASES` one after the other and then runs ``maild ARGS`` through ``maild.cli.main.main``; the
CPU (user + system of the process, ``getrusage``) is read at each mark. The first figure (interpreter
and ``site``) is the process's CPU when its first line runs. Medians of ``--repeat`` runs, trees taking
turns::

    git -C /work/main archive main | tar -x -C /tmp/maild-main
    python3 -m tests.bench.startup_phases --tree /tmp/maild-main --tree . -- -c CONFIG fetch pop

Wall times mean little on a shared machine: compare CPU, as A/B pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

#: The import groups, roughly in the order a one-shot ``maild fetch`` loads them (each counts what the
#: previous ones did not load; asyncio first, as structlog imports it).
PHASES: dict[str, tuple[str, ...]] = {
    "command line (maild.cli.main, argparse)": ("maild.cli.main",),
    "asyncio (with ssl, socket, concurrent.futures, inspect)": ("asyncio",),
    "the value types (maild.model: eleven frozen dataclasses)": ("maild.model",),
    "logging (structlog, with colorama, uuid, pickle, json)": ("maild.log",),
    "configuration (tomllib, the loader, its records)": ("maild.config.loader",),
    "archive writer (aiosqlite, sqlite3, the Store and its parts)": ("maild.archive.store",),
    "fetch cycle and the one-shot (policy, batching, runner, budgets)": ("maild.service.oneshot",),
    "protocol adapter (POP3: poplib, ssl; IMAP: aioimaplib and its modules)": (
        "maild.protocols.pop3.maildrop",
        "maild.protocols.imap.mailbox",
    ),
}

#: Runs in the child: marks after each phase, then the command; prints the marks as JSON on stderr.
CHILD = """
import importlib, json, resource, sys
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
marks = [("interpreter and site", cpu())]
phases = json.loads(sys.argv[1])
for label, modules in phases:
    for name in modules:
        if name.startswith("maild.protocols.") and sys.argv[2] not in name:
            continue
        importlib.import_module(name)
    marks.append((label, cpu()))
from maild.cli.main import main
try:
    main(sys.argv[3:])
finally:
    marks.append(("the command (config load, archive open, the cycle, close)", cpu()))
    sys.stderr.write("\\nMARKS " + json.dumps(marks) + "\\n")
"""


def run_once(tree: Path, protocol: str, argv: list[str]) -> list[tuple[str, float]]:
    """One fresh process in ``tree``; (phase, CPU seconds of that phase) in order."""
    phases = json.dumps(list(PHASES.items()))
    env = {**os.environ, "PYTHONPATH": str(tree), "MALLOC_ARENA_MAX": "2"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, phases, protocol, *argv],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    line = next((x for x in proc.stderr.splitlines() if x.startswith("MARKS ")), None)
    if line is None:
        raise RuntimeError(f"no marks from {tree}: {proc.stderr[-2000:]}")
    marks = json.loads(line[len("MARKS ") :])
    out = [(marks[0][0], marks[0][1])]
    out += [(label, at - marks[i][1]) for i, (label, at) in enumerate(marks[1:])]
    return out


def main() -> None:
    """Print a table: per phase, the median CPU milliseconds of each tree."""
    p = argparse.ArgumentParser(prog="python3 -m tests.bench.startup_phases", description=__doc__)
    p.add_argument("--tree", action="append", type=Path, required=True, help="checkout (repeatable)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--protocol", choices=("pop3", "imap"), default="pop3", help="which adapter to import")
    p.add_argument("argv", nargs="+", help="the maild command line after `--`")
    args = p.parse_args()
    trees = [t.resolve() for t in args.tree]
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "maild")], check=True)
    runs: dict[Path, list[list[tuple[str, float]]]] = {t: [] for t in trees}
    for n in range(args.repeat):
        for tree in trees if n % 2 == 0 else trees[::-1]:
            runs[tree].append(run_once(tree, args.protocol, args.argv))
    labels = [label for label, _ in runs[trees[0]][0]]
    print("| phase | " + " | ".join(f"{t.name} CPU ms" for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for i, label in enumerate(labels):
        cells = [statistics.median(r[i][1] for r in runs[t]) * 1000 for t in trees]
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    totals = [statistics.median(sum(x for _, x in r) for r in runs[t]) * 1000 for t in trees]
    print("| **whole process** | " + " | ".join(f"**{c:.1f}**" for c in totals) + " |")


if __name__ == "__main__":
    main()
