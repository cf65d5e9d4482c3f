"""maild's own logging pipeline captured for a test: what an admin's journal would hold."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from maild.log import configure_logging


@contextlib.contextmanager
def debug_json_log() -> Iterator[io.StringIO]:
    """maild's logging pipeline at debug level, JSON lines into the buffer yielded; the root logger's
    handlers and level are put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging("debug", fmt="json", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
