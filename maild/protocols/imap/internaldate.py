"""Sans-I/O reading of an IMAP ``date-time`` (INTERNALDATE, RFC 9051 section 9) into an aware UTC
datetime, straight from the received octets in the usual case.

Split from :mod:`maild.protocols.imap.fetch` (which re-exports :func:`parse_internaldate`).

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["parse_internaldate"]

_DATE_TIME = re.compile(
    r"\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\Z",
)
#: :data:`_DATE_TIME` over the octets as received, without decoding them first: it accepts a subset
#: of what that accepts (ASCII digits, the six ASCII blanks before the day), read the same way;
#: anything else (``\x1c``, which ``\s`` also takes; bytes that are not ASCII) goes the decoding path.
_DATE_TIME_OCTETS = re.compile(
    rb"[ \t\n\r\f\v]?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})\Z",
)
#: Month names of ``date-month``, fixed English (never the locale's, unlike ``calendar.month_abbr``).
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_MONTHS_OCTETS = {name.encode("ascii"): number for name, number in _MONTHS.items()}


def parse_internaldate(value: str | bytes | bytearray) -> datetime:
    """Parse an INTERNALDATE such as ``17-Jul-1996 02:44:25 -0700`` into an aware UTC datetime.

    The day may be space-padded (``" 7-Jul-1996"``, ``date-day-fixed``); month names match
    case-insensitively.

    Standard: RFC 9051 section 9 (``date-time``); RFC 3501 section 9.

    Raises:
        ValueError: not in that form or not a valid date.
    """
    if not isinstance(value, str):  # the usual case: the octets as received, read without decoding
        found = _DATE_TIME_OCTETS.match(value)
        if found is not None:
            day_o, month_o, year_o, hour_o, minute_o, second_o, sign_o, zh_o, zm_o = found.groups()
            month_number = _MONTHS_OCTETS.get(month_o.upper())
            if month_number is not None:
                zone = _zone(sign_o.decode(), zh_o.decode(), zm_o.decode())
                moment = datetime(
                    int(year_o),
                    month_number,
                    int(day_o),
                    int(hour_o),
                    int(minute_o),
                    int(second_o),
                    tzinfo=zone,
                )
                return moment if zone is UTC else moment.astimezone(UTC)
    text = value if isinstance(value, str) else bytes(value).decode("ascii", "replace")
    match = _DATE_TIME.match(text)
    if match is None:
        raise ValueError(f"not an IMAP date-time: {text[:40]!r}")
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    month_number = _MONTHS.get(month.upper())
    if month_number is None:
        raise ValueError(f"unknown month in IMAP date-time: {text[:40]!r}")
    zone = _zone(sign, zh, zm)
    moment = datetime(int(year), month_number, int(day), int(hour), int(minute), int(second), tzinfo=zone)
    return moment if zone is UTC else moment.astimezone(UTC)


@functools.lru_cache(maxsize=64)
def _zone(sign: str, hours: str, minutes: str) -> timezone:
    """The fixed zone of a ``zone`` field (``+0000`` is :data:`datetime.UTC` itself), made once.

    Raises:
        ValueError: an offset of 24 hours or more.
    """
    offset = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
    return timezone(offset)
