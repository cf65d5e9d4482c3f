"""What the control socket's server and client share: the protocol version and the line encoding.

Kept apart from :mod:`maild.service.control` (the asyncio server, with structlog) so that the
blocking client of every CLI command loads neither asyncio nor structlog: start-up time that
``maild status`` would otherwise pay on every call (docs/performance.md, session 5).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
"""The ``version`` field of a request; the server rejects any other."""

DAEMON_PROBE_TIMEOUT_S = 1.0
"""Seconds :func:`daemon_answers` waits for the connection to the socket."""


def encode(obj: dict[str, Any]) -> bytes:
    """One request or reply as a line of compact UTF-8 JSON."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def daemon_answers(path: Path) -> bool:
    """True when something listens on the Unix socket ``path`` (a running maild)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DAEMON_PROBE_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            return True  # listening, with a full backlog: alive
        except OSError:
            return False
    return True
