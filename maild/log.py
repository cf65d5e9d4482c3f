"""Logging: one structlog pipeline for maild's events and the standard-library loggers beneath it.

Where the lines go and how they look:

- Every command logs to **stderr**, so a command's own output on stdout (``--json`` replies, result
  lines) stays clean whatever the log level.
- When ``$JOURNAL_STREAM`` names stderr (systemd connected it to the journal, see systemd.exec(5)),
  each line starts with its syslog priority as an sd-daemon ``<N>`` prefix (sd-daemon(3)), so
  ``journalctl -p warning`` works, and the rest is ``key=value`` (logfmt), readable in
  ``journalctl``. The prefix needs no library: ``systemd-python`` has no wheel, and journald parses
  the prefix by default (``SyslogLevelPrefix=yes``).
- Elsewhere: a console rendering on a terminal, JSON lines otherwise (what log shippers and the
  crash tests read).
- ``log_format`` in ``[daemon]`` overrides the choice: ``"json"``, ``"logfmt"`` or ``"console"``
  (``"auto"`` is the above). The priority prefix is added whenever stderr is the journal.

Libraries whose records could carry a message body or a secret are capped at WARNING, whatever the
level: aioimaplib (every received chunk, XOAUTH2 strings), aiosqlite (every statement with its
parameters, so whole messages), asyncio. A filter on the handler drops their records below WARNING
even if someone lowers their loggers' levels. A last processor replaces any value under a key that
looks like a secret.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from maild.secret import redact_known

_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "authorization"})
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: The choices of ``log_format``.
LogFormat = Literal["auto", "json", "logfmt", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "logfmt", "console")
#: Loggers (and their children) whose records below WARNING never reach the log: their debug output
#: carries message bodies, SQL parameters or credentials. aiosqlite logs the repr of every call it
#: runs, message blobs included (a 25 MB message made ~15 copies in memory at log_level debug).
CAPPED_LIBRARIES = ("aioimaplib", "aiosqlite", "asyncio")
#: syslog priorities (RFC 5424 section 6.2.1) of the standard-library levels, for ``<N>`` prefixes.
SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
#: Keys first in a logfmt line, in this order; the others follow as logged.
_LOGFMT_FIRST = ["level", "event", "account", "logger"]


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values of secret-looking keys with ``"********"``, and the value
    of every live :class:`~maild.secret.Secret` inside any string value (a server echoing a password
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


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0 emergency … 7 debug) of a standard-library level number."""
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return SYSLOG_PRIORITY[threshold]
    return SYSLOG_PRIORITY[logging.DEBUG]


def stream_is_journal(stream: TextIO, journal_stream: str | None = None) -> bool:
    """True when ``stream`` is the journal's stream socket, as ``$JOURNAL_STREAM`` says.

    Args:
        stream: an open text stream with a file descriptor.
        journal_stream: the ``DEVICE:INODE`` value (decimal); None reads ``$JOURNAL_STREAM``.

    Standard: systemd.exec(5), ``$JOURNAL_STREAM``: compare the device and inode numbers of the
    file descriptor with the variable's, since a redirected stream inherits the variable too.
    """
    value = os.environ.get("JOURNAL_STREAM") if journal_stream is None else journal_stream
    if not value:
        return False
    try:
        dev_text, ino_text = value.split(":", 1)
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return str(st.st_dev) == dev_text.strip() and str(st.st_ino) == ino_text.strip()


class _CapLibraries(logging.Filter):
    """Drop records below WARNING from :data:`CAPPED_LIBRARIES`, whatever their loggers' levels."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in CAPPED_LIBRARIES)


class _PriorityPrefix(logging.Formatter):
    """Wrap a formatter and put the record's syslog priority ``<N>`` before every line it renders.

    A record rendered on several lines (a console traceback) gets the prefix on each, so journald
    gives every line the record's priority.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self._inner.format(record).split("\n"))


#: What :func:`visible_controls` puts in place of each terminal control character (code point ->
#: stand-in): caret notation for C0 (except TAB, LF, CR) and DEL, as ``cat -v`` and ``less`` show them
#: (ESC is ``^[``), ``\xNN`` for C1. ASCII only, so a terminal of any encoding can show them.
CONTROL_STAND_INS: dict[int, str] = {
    **{c: "^" + chr(c + 0x40) for c in range(0x20) if chr(c) not in "\t\n\r"},
    0x7F: "^?",
    **{c: f"\\x{c:02x}" for c in range(0x80, 0xA0)},
}


def visible_controls(text: str) -> str:
    """``text`` with each terminal control character shown by :data:`CONTROL_STAND_INS`.

    Mail (a Subject) and server replies (an IMAP ``[ALERT]``) come from others: written to a terminal,
    an ESC in them would be obeyed (clear the screen, set the title, recolour or hide lines).
    """
    return text.translate(CONTROL_STAND_INS)


def _console_renderer(colors: bool) -> Any:
    """structlog's console rendering, with control characters in the event's string values made
    visible first (its own colour codes, added while rendering, stay)."""
    inner = structlog.dev.ConsoleRenderer(colors=colors)

    def render(logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        shown = {k: visible_controls(v) if isinstance(v, str) else v for k, v in event.items()}
        return inner(logger, name, shown)

    return render


def _renderer(fmt: LogFormat, stream: TextIO, journal: bool) -> Any:
    if fmt == "auto":
        fmt = "logfmt" if journal else "console" if stream.isatty() else "json"
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    if fmt == "logfmt":
        return structlog.processors.LogfmtRenderer(
            key_order=_LOGFMT_FIRST, drop_missing=True, bool_as_flag=False
        )
    return _console_renderer(colors=stream.isatty() and not journal)


def configure_logging(
    level: str = "info", *, fmt: LogFormat = "auto", stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Route structlog and stdlib logging through one handler on stderr.

    Args:
        level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.
        fmt: :data:`LogFormat`; ``"auto"`` picks logfmt for the journal, console on a terminal, else
            JSON.
        stream: where lines go (default: ``sys.stderr`` at the time of the call).
        json: the older switch: True is ``fmt="json"``, False ``fmt="console"``.
    """
    if json is not None:
        fmt = "json" if json else "console"
    out = sys.stderr if stream is None else stream
    journal = stream_is_journal(out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    if journal:  # the journal stamps every entry itself
        shared.remove(shared[3])
    structlog.configure(
        # filter_by_level first: an event below the level (the fetch path's debug events, several per
        # batch) is dropped before the time stamp and the redaction run; without it every one went
        # through the whole chain to be dropped by the stdlib logger at the end (session 6: about 5 %
        # of the Python time of 50 accounts' fetch; docs/performance.md, "Session 6: fifty accounts")
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt, out, journal),
        ],
    )
    if journal:
        formatter = _PriorityPrefix(formatter)
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(_CapLibraries())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in CAPPED_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, LEVELS[level]))


def get_logger(name: str = "maild") -> Any:
    """Return a structlog logger bound to ``name``."""
    return structlog.get_logger(name)
