"""Plain-text tables shared by the CLI's commands (``maild status``, ``maild accounts list``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar


class PersonRow(Protocol):
    """A row that belongs to one employee of one organisation."""

    @property
    def organisation(self) -> str:
        """The organisation's name."""
        ...

    @property
    def employee(self) -> str:
        """The employee's name."""
        ...


Row = TypeVar("Row", bound=PersonRow)


def lines_by_person(rows: Iterable[Row], row_lines: Callable[[Row], list[str]]) -> list[str]:
    """Return the lines of ``rows`` under an organisation heading and an indented employee heading.

    Organisations and employees are sorted; rows keep their order within an employee. ``row_lines``
    renders one row (already indented by the caller).
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.organisation, row.employee), []).append(row)
    lines: list[str] = []
    last_org = None
    for (org, emp), members in sorted(groups.items()):
        if org != last_org:
            lines.append(org)
            last_org = org
        lines.append(f"  {emp}")
        for row in members:
            lines.extend(row_lines(row))
    return lines
