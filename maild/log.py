"""Logging: one structlog pipeline for maild's events and the standard-library loggers beneath it.

JSON lines when stdout is not a terminal (journald stores each line as MESSAGE), a readable console
rendering on a terminal. aioimaplib's logger is held at WARNING: at DEBUG it writes whole messages
and credentials. A last processor removes any value under a key that looks like a secret.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from maild.model import redact_known

_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "authorization"})
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Libraries whose debug output carries message bodies or credentials. aiosqlite logs the repr of every
# call it runs, message blobs included (a 25 MB message made ~15 copies in memory at log_level debug).
_QUIET_LIBRARIES = ("aioimaplib", "aioimaplib.aioimaplib", "aiosqlite")


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values of secret-looking keys with ``"********"``, and the value
    of every live :class:`~maild.model.Secret` inside any string value (a server echoing a password
    in its reply, say) with the same mask."""
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "********"
        else:
            value = event[key]
            if isinstance(value, str):
                event[key] = redact_known(value)
            elif isinstance(value, BaseException):
                text = redact_known(str(value))
                if text != str(value):
                    event[key] = f"{type(value).__name__}: {text}"
    return event


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Route structlog and stdlib logging through one handler on stdout.

    Args:
        level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.
        json: force JSON (True) or console (False) rendering; None picks JSON unless stdout is a TTY.
    """
    if json is None:
        json = not sys.stdout.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, LEVELS[level]))


def get_logger(name: str = "maild") -> Any:
    """Return a structlog logger bound to ``name``."""
    return structlog.get_logger(name)
