"""Adding a column in a schema step that may run on an archive which has it already.

``ALTER TABLE ... ADD COLUMN`` has no ``IF NOT EXISTS``, and a schema step can meet its column
already there (an archive whose ``user_version`` was set back, a step that was renumbered at a merge),
so the Python steps of :mod:`maild.archive.opening` look first. No RFC applies here.
"""

from __future__ import annotations

import aiosqlite


async def add_column_unless_there(
    conn: aiosqlite.Connection, table: str, column: str, declaration: str
) -> bool:
    """``ALTER TABLE table ADD COLUMN column declaration`` unless ``table`` has ``column``.

    Args:
        conn: the archive's connection, inside the migration's transaction.
        table, column, declaration: names and type from the schema's own code, never from input.

    Returns:
        True when the column was added, False when it was there.

    Raises:
        sqlite3.Error: SQLite failed (the migration is then rolled back).
    """
    async with conn.execute("SELECT name FROM pragma_table_info(?)", (table,)) as cur:
        columns = {row[0] for row in await cur.fetchall()}
    if column in columns:
        return False
    await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    return True
