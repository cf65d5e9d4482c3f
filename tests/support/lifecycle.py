"""``with`` support for the test servers: enter starts, exit stops, then reports what went wrong unseen."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """Mixin: ``with server:`` calls :meth:`start`, and :meth:`stop` then :meth:`check` on the way out."""

    def start(self) -> None:
        """Start serving; returns once ready."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving and release everything (idempotent)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise what went wrong in the background during a block that otherwise succeeded; nothing by default."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self.check()
