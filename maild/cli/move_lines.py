"""Shared pieces of the move commands' output: one line per message, the clock, the set-up.

Used by :mod:`maild.cli.move` and :mod:`maild.cli.move_verify` (a command module may not import a
sibling command module, see tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from maild.cli.common import load_args_config

if TYPE_CHECKING:
    from maild.config.loader import Config
    from maild.move.compare import ArchiveEntry, ServerEntry

#: Characters of From and Subject shown per line in text output.
FROM_CHARS = 32
SUBJECT_CHARS = 48


def now() -> datetime:
    return datetime.now(UTC)


def setup(args: argparse.Namespace) -> Config:
    from maild.log import configure_logging  # structlog: start-up time only the move commands need

    config = load_args_config(args)
    configure_logging(args.log_level or "warning")
    return config


def date_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if moment else "(no date)       "


def clip(text: str | None, width: int) -> str:
    value = text or "-"
    return value if len(value) <= width else value[: width - 1] + "…"


def line(entry: ArchiveEntry | ServerEntry, tail: str) -> str:
    return (
        f"  {date_text(entry.date)}  {clip(entry.from_, FROM_CHARS):<{FROM_CHARS}}"
        f"  {clip(entry.subject, SUBJECT_CHARS):<{SUBJECT_CHARS}}  {tail}"
    ).rstrip()
