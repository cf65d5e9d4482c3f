"""Numbers for people are rendered by one helper, maild/cli/units.py, in every command (QA issue 17/18)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maild.archive.query import render_list
from maild.archive.reader import ArchivedMessage, LocationState
from maild.cli.units import count, human_size

CLI = Path(__file__).parents[2] / "maild" / "cli"


@pytest.mark.parametrize(
    ("octets", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (15_580, "15.6 kB"), (56_789_012, "56.8 MB"),
     (1_432_000_000, "1.4 GB")],
)  # fmt: skip
def test_human_size_uses_decimal_units(octets: int, text: str) -> None:
    """Sizes are shown in decimal units with one decimal from kB on."""
    assert human_size(octets) == text


@pytest.mark.parametrize(("n", "text"), [(0, "0"), (999, "999"), (1000, "1,000"), (1_234_567, "1,234,567")])
def test_count_has_thousands_separators(n: int, text: str) -> None:
    """Counts carry a comma every three digits."""
    assert count(n) == text


#: What formatting a number by hand looks like: a thousands separator, MB by division, raw octets.
HAND_MADE = re.compile(r":,\}|:,d\}|/ ?1e6|/ ?1_?000_?000|\} octets\)")


def test_no_cli_module_formats_numbers_itself() -> None:
    """Every CLI module leaves thousands separators and sizes to maild/cli/units.py."""
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(CLI.glob("*.py"))
        if path.name != "units.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HAND_MADE.search(line)
    ]
    assert offenders == []


def test_messages_list_shows_human_sizes() -> None:
    """``maild messages list`` (and search, which shares its table) shows sizes as status does."""
    message = ArchivedMessage(
        id=1,
        sha256="ab" * 32,
        size_octets=15_580,
        date="2026-03-02T09:00:00Z",
        from_header="Anna <anna@example.org>",
        to_header="office@example.org",
        subject="Rechnung",
        message_id="<1@example.org>",
        stored_at="2026-03-02T09:01:00Z",
        locations=(LocationState("anna-pop", None, "on-server"),),
    )

    table = render_list([message], human_size)

    assert table.splitlines()[0].split()[-3:] == ["SIZE", "ACCOUNTS", "STATE"]
    assert " 15.6 kB  anna-pop  on-server" in table.splitlines()[1]
