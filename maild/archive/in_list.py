"""``IN (?,?,...)`` lists padded to a few fixed lengths, so that look-ups share prepared statements.

A look-up of N keys is one SQL text per N: the writer's statement cache
(:data:`~maild.archive.opening.CACHED_STATEMENTS`, 32 statements) filled with look-ups of every
length a batch happened to have, each 10-35 KB prepared (docs/performance.md, "Session 9: memory
of one account"), and pushed out the statements that do run again. Padded to the next power of two
(at most :data:`~maild.archive.schema.QUERY_CHUNK`), a look-up of any length from 1 to 500 is one of
ten texts. The padding is SQL NULL, which no ``IN`` matches (``x IN (..., NULL)`` is never true for
a NULL it adds), whatever the column's type. Only for ``IN``: a ``NOT IN`` list must not be padded.
No RFC applies here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maild.archive.schema import QUERY_CHUNK

__all__ = ["padded_in", "padded_length"]

_MARKS: dict[int, str] = {}
"""``?,?,...`` by padded length, made once each (at most ten)."""


def padded_length(count: int) -> int:
    """The length of the ``IN`` list for ``count`` keys (1 to :data:`QUERY_CHUNK`): the next power
    of two, or :data:`QUERY_CHUNK` itself above the largest power of two below it.

    Raises:
        ValueError: ``count`` is below 1 or above :data:`QUERY_CHUNK` (callers chunk their keys).
    """
    if not 1 <= count <= QUERY_CHUNK:
        raise ValueError(f"an IN list holds 1 to {QUERY_CHUNK} keys, not {count}")
    return min(1 << (count - 1).bit_length(), QUERY_CHUNK)


def padded_in(values: Sequence[Any]) -> tuple[str, list[Any]]:
    """The placeholders and the parameters of an ``IN (...)`` list of ``values``.

    Args:
        values: 1 to :data:`QUERY_CHUNK` keys (message ids, UIDLs, UIDs, SHA-256 digests).

    Returns:
        ``("?,?,?,?", [v1, v2, v3, None])``: the placeholders to put between the parentheses, and
        ``values`` followed by NULLs up to :func:`padded_length`.

    Raises:
        ValueError: no values, or more than :data:`QUERY_CHUNK`.
    """
    size = padded_length(len(values))
    marks = _MARKS.get(size)
    if marks is None:
        marks = _MARKS[size] = ",".join("?" * size)
    return marks, [*values, *([None] * (size - len(values)))]
