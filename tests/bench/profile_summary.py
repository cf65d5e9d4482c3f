"""Summarise a py-spy raw profile (``run.py --profile DIR`` writes them) by function.

``python3 -m tests.bench.profile_summary FILE [--top N]`` prints the share of samples per thread
(by what each stack runs: the thread's target function, or maild's entry point), the functions where samples
were taken (self time) and the maild functions on the stack (inclusive time), each as a percentage
of all samples. The "Where the time goes" figures of docs/performance.md come from this.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_PLUMBING = ("threading.py:", "<frozen runpy>:", "maild/__main__.py:")
"""Frames skipped when naming what a stack runs (the thread's target, or maild's entry point)."""
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``summarise (maild/message.py:87)`` -> ``maild/message.py:summarise``; other text as is."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    short = path[path.rfind("maild/") :] if "maild/" in path else Path(path).name
    return f"{short}:{match.group('func')}"


def summarise(text: str, top: int) -> str:
    """The report for the raw profile ``text`` (lines ``frame;frame;...;frame COUNT``)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        entry = [f for f in frames if not f.startswith(_PLUMBING)]
        roots[entry[0] if entry else frames[0]] += count
        self_time[frames[-1]] += count
        for name in set(frames):
            if name.startswith("maild/"):
                inclusive[name] += count
    if not total:
        return "no samples"

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title}:"]
        rows += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(top)]
        return rows

    lines = [f"{total} samples"]
    lines += table("what runs (thread target or entry point)", roots)
    lines += table("self", self_time)
    lines += table("maild functions, inclusive", inclusive)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.file.read_text(errors="replace"), args.top))


if __name__ == "__main__":
    main()
