"""CPU of two small start-up costs, A/B across checkouts: ``maild --version`` and opening an archive
whose schema is current (the writer's ``Store.open`` and ``close``, as every ``maild fetch`` does).

Each run is a fresh interpreter (``python3 -X frozen_modules=on``, byte-compiled beforehand); CPU is
user + system of the child from its rusage; the trees take turns run by run, medians of ``--repeat``::

    git -C /work/main archive main maild | tar -x -C /tmp/maild-main
    python3 -m tests.bench.small_startup --tree /tmp/maild-main --tree .

Wall times mean little on a shared machine: compare CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: Opens and closes the archive named by argv[1] with the writer.
OPEN_ARCHIVE = """
import asyncio, sys
from pathlib import Path
from maild.archive.store import Store

async def main():
    store = await Store.open(Path(sys.argv[1]))
    await store.close()

asyncio.run(main())
"""

#: What is measured, by label: the arguments after ``python3``; ``{archive}`` is the archive's path.
CASES: dict[str, list[str]] = {
    "maild --version": ["-m", "maild", "--version"],
    "open a current archive": ["-c", OPEN_ARCHIVE, "{archive}"],
}


def cpu_of(tree: Path, argv: list[str]) -> float:
    """User + system CPU seconds of ``python3 ARGV`` run with ``tree`` first on the path."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Print, per case and tree, the median CPU in milliseconds over ``--repeat`` runs."""
    p = argparse.ArgumentParser(prog="python3 -m tests.bench.small_startup", description=__doc__)
    p.add_argument("--tree", action="append", type=Path, required=True, help="checkout (repeatable)")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    trees = [t.resolve() for t in args.tree]
    with tempfile.TemporaryDirectory(prefix="maild-small-") as tmp:
        archive = Path(tmp) / "maild.sqlite3"
        sys.path.insert(0, str(trees[-1]))
        from maild.archive.store import Store

        async def create() -> None:
            await (await Store.open(archive)).close()

        asyncio.run(create())
        for tree in trees:  # byte-compile, and warm the page cache
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "maild")], check=True)
        for label, template in CASES.items():
            argv = [str(archive) if a == "{archive}" else a for a in template]
            runs: dict[Path, list[float]] = {t: [] for t in trees}
            for _ in range(args.repeat):
                for tree in trees:
                    runs[tree].append(cpu_of(tree, argv))
            for tree in trees:
                print(
                    f"{label:24} {tree!s:40} {statistics.median(runs[tree]) * 1000:7.1f} ms CPU (median of {args.repeat})"
                )


if __name__ == "__main__":
    main()
