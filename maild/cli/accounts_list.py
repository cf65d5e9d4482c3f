"""``maild accounts list``: every configured account, then every account only the archive knows,
grouped by organisation and employee; the archive's records of the accounts for ``add`` and ``remove``.

Used by :mod:`maild.cli.accounts` (which holds the parsers and the handlers), kept apart so that module
stays one job: changing the accounts' drop-in files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.cli.common import run_async
from maild.cli.table import lines_by_person
from maild.cli.units import count
from maild.errors import ControlError

if TYPE_CHECKING:
    from maild.config.loader import Config

# The archive and the control client are imported where used: start-up time (docs/performance.md).


def _daemon_states(config: Config) -> dict[str, str] | None:
    """Each running account's state, or None when the daemon cannot be asked."""
    from maild.service.control_client import ControlClient

    try:
        status = ControlClient(config.daemon.control_socket, timeout_s=10).status()
    except ControlError:
        return None
    return {a.name: a.state for a in status.accounts}


async def archive_facts(config: Config) -> tuple[dict[str, Any], dict[str, int]]:
    """The archive's record of each account it knows (by name) and its archived messages (by name);
    two empty mappings when the archive does not exist yet.

    Raises:
        StoreError: the archive cannot be read.
    """
    from maild.archive.move_queries import MigrationStore

    if not config.daemon.database.exists():
        return {}, {}
    store = await MigrationStore.open(config.daemon.database)
    try:
        return await store.account_records(), await store.message_counts()
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One line of ``maild accounts list``: a configured account, or one only the archive knows.

    Attributes:
        name, organisation, employee, protocol: the account.
        host: its server, or None when it is not configured.
        enabled: False also when it is not configured.
        configured_in: the file that defines it, or None.
        state: the running daemon's state of it, ``not running``, ``not loaded`` or ``not configured``.
        messages: archived messages linked to it.
        retired_at: when ``maild retire`` retired it (UTC), or None.
        retired_into: the account it was retired into, or None.
    """

    name: str
    organisation: str
    employee: str
    protocol: str
    host: str | None
    enabled: bool
    configured_in: str | None
    state: str
    messages: int
    retired_at: datetime | None
    retired_into: str | None

    def to_json(self) -> dict[str, Any]:
        """The row as ``accounts list --json`` prints it."""
        from maild.service.status import time_text

        row = {f.name: getattr(self, f.name) for f in fields(self)}  # keys in field order
        row["retired_at"] = time_text(self.retired_at)  # replacing a value keeps its key's place
        return row


def account_rows(config: Config) -> list[AccountRow]:
    """Every configured account, then every account only the archive knows."""
    records, counts = run_async(archive_facts(config))
    states = _daemon_states(config)
    rows: list[AccountRow] = []
    for acc in config.accounts.values():
        record = records.get(acc.name)
        rows.append(
            AccountRow(
                name=acc.name,
                organisation=acc.organisation,
                employee=acc.employee,
                protocol=acc.protocol,
                host=acc.host,
                enabled=acc.enabled,
                configured_in=str(acc.source),
                state="not running" if states is None else states.get(acc.name, "not loaded"),
                messages=counts.get(acc.name, 0),
                retired_at=record.retired_at if record else None,
                retired_into=record.retired_into if record else None,
            )
        )
    for name, record in records.items():
        if name in config.accounts:
            continue
        rows.append(
            AccountRow(
                name=name,
                organisation=record.organisation,
                employee=record.employee,
                protocol=record.protocol,
                host=None,
                enabled=False,
                configured_in=None,
                state="not configured",
                messages=counts.get(name, 0),
                retired_at=record.retired_at,
                retired_into=record.retired_into,
            )
        )
    return rows


def render_accounts(rows: list[AccountRow]) -> str:
    """Render account rows as a table grouped by organisation and employee."""

    def row_lines(r: AccountRow) -> list[str]:
        note = f"  migrated into {r.retired_into}" if r.retired_into else ""
        return [
            f"    {r.name:<20} {r.protocol:<5} {r.host or '-':<24} {r.state:<14}"
            f" {count(r.messages):>7} messages{note}"
        ]

    lines = lines_by_person(rows, row_lines)
    return "\n".join(lines) if lines else "no accounts"
