"""Numbers for people, the same in every command: counts with thousands separators, sizes in
decimal units.

``maild status``, ``accounts list``, ``messages list``/``show``/``search``, ``fetch``/``fetch-now``,
``backup`` and ``migrate`` use these two functions and nothing else for the numbers they show a
person. ``--json`` output keeps plain integers (``size_octets``); tab-separated output meant for
scripts (``messages attachment --all``) keeps exact octets.
"""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
#: The step between :data:`_UNITS`: decimal (SI) units, as ``df -H`` and the providers' quotas show them.
_STEP = 1000


def count(n: int) -> str:
    """``n`` with a comma every three digits: ``1,234,567`` (``0`` for 0, ``-5`` for -5)."""
    return f"{n:,}"


def human_size(octets: int | float) -> str:
    """``octets`` in decimal units, one decimal from kB on: ``512 B``, ``15.6 kB``, ``1.4 GB``.

    Args:
        octets: a size in octets (>= 0; a rate in octets per second is shown the same way).
    """
    size = float(octets)
    for unit in _UNITS:
        if abs(size) < _STEP or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= _STEP
    raise AssertionError("unreachable")
