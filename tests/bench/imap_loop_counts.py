"""What the event loop does per message of an IMAP retrieval, counted (not timed).

``python3 -m tests.bench.imap_loop_counts [--dir /tmp/maild-bench] [--spool DIR] [--top 25]`` uses
the Dovecot that ``python3 -m tests.bench.run`` seeded in ``DIR/full/dovecot`` (as
:mod:`tests.bench.imap_receive` does: started here if it is not running, stopped afterwards) and
retrieves user ``one``'s mailbox once (``IMAPMailbox.retrieve``, the bodies dropped as they come;
with ``--spool``, messages of at least 1 MiB go to spool files there as in a fetch cycle). During
the retrieval it counts, on the event loop's thread:

* the protocol's reads (``buffer_updated``, ``data_received``), the lines framed by the library's
  line handler, the FETCH responses handed to the stream (``StreamingFetch``'s sink);
* the loop's scheduling (``call_soon``, ``call_later``/``call_at``, ``run_in_executor``,
  ``create_future``);
* Python function calls and calls of C functions (``sys.setprofile``), in all and the most
  frequent by name;
* memory blocks left allocated by each read (``sys.getallocatedblocks`` after minus before, summed
  where positive), and the blocks allocated at the end (messages are dropped, so about none).

Every figure is printed per message. Counts do not depend on the machine's load, so two trees can
be compared on one run each (``PYTHONPATH`` pointing at each). The profiler makes the run several
times slower: time nothing here. Not collected by pytest; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild.model import ServerSettings
from maild.protocols.imap import commands, protocol
from maild.protocols.imap.mailbox import IMAPMailbox

try:
    from maild.secret import Secret
except ImportError:  # a tree before session 15 (PYTHONPATH at an older tree): Secret in maild.model
    from maild.model import Secret  # type: ignore[attr-defined,no-redef]
from maild.spool import Spool
from tests.support.dovecot import Dovecot


class _Counts:
    """Counters filled while the retrieval runs."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.blocks_kept = 0


def _counting(counts: _Counts, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` wrapped to count its calls under ``name``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts.events[name] += 1
        return function(*args, **kwargs)

    return wrapper


def _instrument(counts: _Counts, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Wrap the loop's scheduling calls and the protocol's reads; return the undo function."""
    undo: list[Callable[[], None]] = []
    for name in ("call_soon", "call_later", "call_at", "create_future"):
        setattr(loop, name, _counting(counts, f"loop.{name}", getattr(loop, name)))
        undo.append(lambda name=name: delattr(loop, name))  # type: ignore[misc]
    run_in_executor = loop.run_in_executor

    def counted_job(executor: Any, function: Callable[..., Any], *args: Any) -> Any:
        counts.events[f"loop.run_in_executor ({getattr(function, '__qualname__', function)})"] += 1
        return run_in_executor(executor, function, *args)

    loop.run_in_executor = counted_job  # type: ignore[method-assign]
    undo.append(lambda: delattr(loop, "run_in_executor"))
    fast = protocol._FastProtocol
    for name in ("buffer_updated", "data_received"):
        original = getattr(fast, name)

        def read(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            counts.events[f"protocol.{_name}"] += 1
            before = sys.getallocatedblocks()
            try:
                return _original(self, *args)
            finally:
                counts.blocks_kept += max(0, sys.getallocatedblocks() - before)

        setattr(fast, name, read)
        undo.append(lambda name=name, original=original: setattr(fast, name, original))  # type: ignore[misc]
    handle_line = fast._handle_line
    fast._handle_line = _counting(counts, "protocol._handle_line (library line handler)", handle_line)
    undo.append(lambda: setattr(fast, "_handle_line", handle_line))
    hand_over = commands._StreamingFetchCommand._hand_over

    def counted_hand_over(self: Any) -> None:
        if self._parts:
            counts.events["FETCH responses handed to the stream"] += 1
        hand_over(self)

    commands._StreamingFetchCommand._hand_over = counted_hand_over  # type: ignore[method-assign]
    undo.append(lambda: setattr(commands._StreamingFetchCommand, "_hand_over", hand_over))
    plain_tail = getattr(commands._StreamingFetchCommand, "plain_tail", None)
    if plain_tail is not None:  # the fast path (session 11)

        def counted_plain_tail(self: Any) -> None:
            counts.events["FETCH responses handed to the stream"] += 1
            plain_tail(self)

        commands._StreamingFetchCommand.plain_tail = counted_plain_tail  # type: ignore[method-assign]
        undo.append(lambda: setattr(commands._StreamingFetchCommand, "plain_tail", plain_tail))

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    return undo_all


def _profiler(counts: _Counts) -> Callable[[Any, str, Any], None]:
    """A ``sys.setprofile`` function counting Python and C calls by name."""

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts.calls[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        elif event == "c_call":
            counts.calls[f"C {getattr(arg, '__qualname__', arg)}"] += 1

    return profile


async def measure(dovecot: Dovecot, spool_dir: Path | None) -> tuple[_Counts, int, int]:
    """Retrieve user ``one``'s mailbox once while counting; return the counts, messages, octets."""
    settings = ServerSettings(
        "one", dovecot.host, dovecot.ports.imap, "none", None, "one", Secret(dovecot.users["one"]), 60.0
    )
    mailbox = IMAPMailbox(settings)
    if spool_dir is not None:
        mailbox.spool = Spool(spool_dir)
    await mailbox.open()
    keys = [entry.key for entry in await mailbox.inventory()]
    counts = _Counts()
    undo = _instrument(counts, asyncio.get_running_loop())
    count = octets = 0
    sys.setprofile(_profiler(counts))
    try:
        async for item in mailbox.retrieve(keys):
            count += 1
            raw = getattr(item, "raw", b"")
            octets += len(raw) if isinstance(raw, bytes | bytearray) else getattr(raw, "size_octets", 0)
            if hasattr(raw, "close"):
                raw.close()
    finally:
        sys.setprofile(None)
        undo()
    await mailbox.close()
    return counts, count, octets


def report(counts: _Counts, messages: int, octets: int, top: int) -> str:
    """The per-message table as text."""
    per = max(messages, 1)
    lines = [f"{messages} messages, {octets / 1e6:.1f} MB", "", "| what | per message |", "|---|---:|"]
    lines += [f"| {name} | {value / per:.3f} |" for name, value in sorted(counts.events.items())]
    python_calls = sum(v for k, v in counts.calls.items() if not k.startswith("C "))
    c_calls = sum(v for k, v in counts.calls.items() if k.startswith("C "))
    lines.append(f"| Python function calls | {python_calls / per:.1f} |")
    lines.append(f"| calls of C functions | {c_calls / per:.1f} |")
    lines.append(f"| memory blocks left allocated by the reads | {counts.blocks_kept / per:.1f} |")
    lines += ["", f"The {top} most frequent calls:", "", "| call | per message |", "|---|---:|"]
    lines += [f"| `{name}` | {value / per:.2f} |" for name, value in counts.calls.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the count; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/maild-bench", help="the benchmark's work directory")
    parser.add_argument("--spool", type=Path, default=None, help="spool large messages here")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    dovecot = Dovecot.attach(Path(args.dir) / "full" / "dovecot")
    started_here = not dovecot.running
    if started_here:
        dovecot.start(daemonize=True)
    try:
        with tempfile.TemporaryDirectory(dir=args.spool) as spool_dir:
            spool = Path(spool_dir) if args.spool is not None else None
            counts, messages, octets = asyncio.run(measure(dovecot, spool))
    finally:
        if started_here:
            dovecot.stop()
    print(report(counts, messages, octets, args.top), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
