"""The spool's CPU at function level, on the benchmark corpus's spooled messages (docs/performance.md,
"Session 8: the spool's CPU").

    python3 -m tests.bench.spool_cpu parse     # the store's parse of spooled messages: kept octets
                                               # against a view that keeps only the head (the old way)
    python3 -m tests.bench.spool_cpu literal   # a large IMAP literal fed as data_received does (64 KiB
                                               # views of a reused buffer): CPU of the loop's thread
                                               # and of the process (run it with PYTHONPATH of each tree)

The messages of at least ``SPOOL_THRESHOLD_OCTETS`` of the 2,000-message corpus (seed 1, the
benchmark's mix: 64 messages, 174 MB) are generated once and cached in ``--cache``. Speed is measured
here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from maild.archive.document_kind import has_documents
from maild.archive.index_text import index_text
from maild.archive.parse import parse
from maild.protocols.imap import spooling
from maild.spool import SPOOL_THRESHOLD_OCTETS, Spool, SpooledBody
from tests.bench.run import bench_mix
from tests.support import corpus


def spooled_messages(cache: Path) -> list[bytes]:
    """The corpus's messages of at least the spool's threshold (cached in ``cache``)."""
    if cache.exists():
        return list(pickle.loads(cache.read_bytes()))
    found = [
        m for m in corpus.generate(2000, seed=1, size_mix=bench_mix()) if len(m) >= SPOOL_THRESHOLD_OCTETS
    ]
    cache.write_bytes(pickle.dumps(found))
    return found


class HeadOnly:
    """A spooled body as the first version's view saw it: only the head kept, the rest read."""

    def __init__(self, body: SpooledBody) -> None:
        from maild.spool_view import Kept

        self._body = body
        self.size_octets = body.size_octets
        self.kept = Kept(((0, body.head),), len(body.head))

    def read_at(self, offset: int, octets: int) -> bytes:
        """Read from the spool file."""
        return self._body.read_at(offset, octets)


def bench_parse(messages: list[bytes], directory: Path, repeat: int) -> None:
    """Parse every spooled message through each view; print CPU, file reads and equality."""
    from maild.spool_view import SpooledView

    spool = Spool(directory)
    bodies = []
    for raw in messages:
        writer = spool.writer()
        for start in range(0, len(raw), 65_553):
            writer.write(raw[start : start + 65_553])
        bodies.append(writer.finish())
    expected = [(parse(m).summary, has_documents(parse(m).leaves), index_text(m).row()) for m in messages]
    for _ in range(repeat):
        for name, make in (("head only (before)", HeadOnly), ("kept (after)", lambda b: b)):
            reads = 0
            got = []
            started = time.process_time()
            for body in bodies:
                view: Any = SpooledView(make(body))
                parsed = parse(view)
                got.append((parsed.summary, has_documents(parsed.leaves), index_text(view, parsed).row()))
                reads += view.file_reads
            cpu = time.process_time() - started
            print(f"{name}: {cpu * 1000:.1f} ms CPU, {reads} file reads, equal={got == expected}")


async def feed_literals(messages: list[bytes], directory: Path) -> tuple[float, float]:
    """Feed each message as one literal; return (loop thread, process) CPU seconds."""
    loop = asyncio.get_running_loop()
    spool = Spool(directory)
    new_api = "loop" in inspect.signature(spooling.SpoolingLiteral).parameters
    buffer = bytearray(65536)
    view = memoryview(buffer)
    loop_started, process_started = time.thread_time(), time.process_time()
    for raw in messages:
        literal: Any = (
            spooling.SpoolingLiteral(spool, len(raw), loop, lambda: None, lambda: None)
            if new_api
            else spooling.SpoolingLiteral(spool, len(raw))  # type: ignore[call-arg]
        )
        for start in range(0, len(raw), 65536):
            chunk = raw[start : start + 65536]
            buffer[: len(chunk)] = chunk
            literal.extend(view[: len(chunk)])
            await asyncio.sleep(0)
        marker = literal.finish()
        body = (await marker.outcome) if new_api else marker.spooled
        body.close()
    return time.thread_time() - loop_started, time.process_time() - process_started


def main() -> None:
    """Run the chosen measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["parse", "literal"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "maild-spool-cpu.pickle")
    args = parser.parse_args()
    messages = spooled_messages(args.cache)
    print(f"{len(messages)} spooled messages, {sum(map(len, messages))} octets")
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "parse":
            bench_parse(messages, Path(tmp), args.repeat)
            return
        for _ in range(args.repeat):
            loop_s, process_s = asyncio.run(feed_literals(messages, Path(tmp)))
            print(f"loop thread {loop_s:.3f} s CPU, process {process_s:.3f} s CPU")


if __name__ == "__main__":
    main()
