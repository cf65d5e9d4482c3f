"""A spool whose file writes wait for a gate: the test double for a slow or congested disk (the
write only; everything else is the real spool); and one whose writes fail as a broken disk's do."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

from maild.spool import Spool, SpoolWriter

GATE_TIMEOUT_S = 20.0
"""Longest a held write waits for its gate (a test that never opens it fails, not hangs)."""


class GatedWriter(SpoolWriter):
    """A spool writer whose file writes wait for ``gate`` (the test double: the write only)."""

    def __init__(self, spool: GatedSpool, fd: int) -> None:
        super().__init__(spool, fd)
        self._gated = spool

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Record the thread, signal ``blocked``, wait for the gate, then write as usual."""
        self._gated.threads.add(threading.get_ident())
        self._gated.blocked.set()
        if not self._gated.gate.wait(GATE_TIMEOUT_S):
            raise AssertionError("the gate was never opened")
        super().write(data)


class GatedSpool(Spool):
    """A spool whose writers are :class:`GatedWriter`."""

    def __init__(self, directory: Path, **limits: int) -> None:
        super().__init__(directory, **limits)
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.threads: set[int] = set()

    def writer(self) -> SpoolWriter:
        """A gated writer on a new spool file."""
        return GatedWriter(self, self._create())


class FailingSpool(Spool):
    """A spool whose writers raise ``OSError(EIO)`` (a disk error, not the spool's own bound) from
    write ``fail_at`` (0-based) of each file on; everything else is the real spool."""

    def __init__(self, directory: Path, fail_at: int, **limits: int) -> None:
        super().__init__(directory, **limits)
        self.fail_at = fail_at

    def writer(self) -> SpoolWriter:
        """A writer on a new spool file that fails from its ``fail_at``-th write on."""
        writer = super().writer()
        real = writer.write
        written = [0]

        def write(data: bytes | bytearray | memoryview) -> None:
            written[0] += 1
            if written[0] > self.fail_at:
                raise OSError(errno.EIO, "Input/output error")
            real(data)

        writer.write = write  # type: ignore[method-assign]
        return writer
