"""docs/guarantee.md's table "Limits on what a server may send" agrees with the code.

Each row names its constants in backticks (`` `MAX_LINE_OCTETS` ``) and the modules that hold them in
its "where" column (a path under maild/, a bare file name in the directory of the path before it, or
"same": the row above's). Every named constant must be a module-level name of one of those modules,
and its value must appear in the row as the docs write it: ``16 MiB``, ``1,024``, ``45 s``, ``5 %``.
A constant renamed, moved or given another default without the table following fails here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARANTEE = ROOT / "docs" / "guarantee.md"
HEADING = "## Limits on what a server may send"

_NAME = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")
_PATH = re.compile(r"`([\w/]+\.py)`")
_UNITS = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def limit_rows(text: str) -> list[list[str]]:
    """The table's body rows after :data:`HEADING`, as cells (limit, default, where, exceeded)."""
    lines = text.split(HEADING, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| limit |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def modules_of(where: str, above: list[str]) -> list[str]:
    """Dotted module names of a "where" cell; ``above``: the row above's (for "same")."""
    if where.startswith("same"):
        return above
    modules, directory = [], "maild"
    for path in _PATH.findall(where):
        if "/" in path:
            directory = path.rsplit("/", 1)[0]
        else:
            path = f"{directory}/{path}"
        modules.append(path.removesuffix(".py").replace("/", "."))
    return modules


def renderings(value: object) -> set[str]:
    """How the docs may write ``value``: ``16 MiB``, ``16,777,216``, ``45 s``, ``5 %``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return set()
    shown: set[str] = {f"{value:g}", f"{value:,g}"}
    if isinstance(value, float) and 0 < value < 1:
        shown.add(f"{value * 100:g} %")
    if isinstance(value, int):
        shown |= {str(value), f"{value:,}"}
        shown |= {f"{value // size} {unit}" for size, unit in _UNITS if value >= size and value % size == 0}
    return shown


def shown_in(row: str, value: object) -> bool:
    """Whether ``row`` has one of ``value``'s renderings as a figure of its own (not inside 1,024)."""
    return any(re.search(rf"(?<![\d.,]){re.escape(text)}(?![\d,])", row) for text in renderings(value))


def test_renderings_cover_the_forms_the_table_uses() -> None:
    assert shown_in("16 MiB (`X`)", 16 * 2**20)
    assert shown_in("1,024 offsets", 1024)
    assert shown_in("45 s (`X`)", 45.0)
    assert shown_in("or 5 % of", 0.05)
    assert not shown_in("1,024 offsets", 24)
    assert not shown_in("16 MiB", 17 * 2**20)
    assert not shown_in("100,000", 100)


def _cases() -> list[tuple[str, str, str]]:
    cases, above = [], ["maild"]
    for limit, _default, where, _exceeded in limit_rows(GUARANTEE.read_text(encoding="utf-8")):
        modules = modules_of(where, above)
        above = modules
        row = " | ".join((limit, _default))
        cases.extend((name, row, ",".join(modules)) for name in _NAME.findall(_default))
    return cases


CASES = _cases()


def test_the_table_is_found_and_names_the_session_14_limits() -> None:
    named = {name for name, _, _ in CASES}
    assert len(CASES) > 20
    assert {
        "COMMAND_MIN_RATE_OCTETS_PER_S",
        "COMMAND_WINDOW_TIMEOUTS",
        "TOKEN_LOCK_WAIT_S",
        "TOKEN_THREADS",
        "MIN_POLL_INTERVAL_S",
        "MAX_POP3_RETR_CHECKS",
        "MAX_POP3_RETR_CHECK_OCTETS",
        "KEEP_BATCH_MESSAGES",
        "KEEP_BATCH_OCTETS",
    } <= named


@pytest.mark.parametrize(("name", "row", "modules"), CASES, ids=[c[0] for c in CASES])
def test_each_named_limit_is_in_its_module_with_the_documented_default(
    name: str, row: str, modules: str
) -> None:
    holders = [m for m in modules.split(",") if hasattr(importlib.import_module(m), name)]
    assert holders, f"{name} is in none of {modules}"
    value = getattr(importlib.import_module(holders[0]), name)
    assert shown_in(row, value), f"{name} = {value!r} ({holders[0]}) is not what the table says: {row}"
