"""Reading a control reply's JSON into typed values: the one place that checks its types.

Each reader takes the reply object and a key and returns the value in its Python type, or raises
:class:`~maild.errors.ControlError` ``bad-reply`` with one line naming the key. Times are the
``YYYY-MM-DDTHH:MM:SSZ`` text of the status JSON, read as aware datetimes in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast, get_args

from maild.errors import ControlError

#: The form of every time in the control JSON: UTC, whole seconds, e.g. ``2026-03-02T09:00:00Z``.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def bad_reply(what: str) -> ControlError:
    """The ``bad-reply`` error for a reply that does not fit: ``what`` says where."""
    return ControlError("bad-reply", f"maild sent a reply this client cannot read: {what}")


def read_object(value: object, what: str) -> Mapping[str, Any]:
    """``value`` as a JSON object; ``what`` names it in the error."""
    if not isinstance(value, dict):
        raise bad_reply(f"{what} is not a JSON object")
    return cast("Mapping[str, Any]", value)


def read_field(data: Mapping[str, Any], key: str) -> object:
    """The value of ``key``, which must be present."""
    if key not in data:
        raise bad_reply(f"missing {key!r}")
    return data[key]


def read_str(data: Mapping[str, Any], key: str) -> str:
    """A string."""
    value = read_field(data, key)
    if not isinstance(value, str):
        raise bad_reply(f"{key!r} is not a string")
    return value


def read_opt_str(data: Mapping[str, Any], key: str) -> str | None:
    """A string, or None when null or absent."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_reply(f"{key!r} is not a string")
    return value


def read_int(data: Mapping[str, Any], key: str) -> int:
    """An integer (not a boolean)."""
    value = read_field(data, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_reply(f"{key!r} is not an integer")
    return value


def read_opt_int(data: Mapping[str, Any], key: str) -> int | None:
    """An integer, or None when null or absent."""
    return None if data.get(key) is None else read_int(data, key)


def read_float(data: Mapping[str, Any], key: str) -> float:
    """A number, as a float."""
    value = read_field(data, key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise bad_reply(f"{key!r} is not a number")
    return float(value)


def read_bool(data: Mapping[str, Any], key: str) -> bool:
    """``true`` or ``false``."""
    value = read_field(data, key)
    if not isinstance(value, bool):
        raise bad_reply(f"{key!r} is not true or false")
    return value


def read_strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list of strings, as a tuple."""
    value = read_field(data, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_reply(f"{key!r} is not a list of strings")
    return tuple(value)


def read_objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A list of JSON objects."""
    value = read_field(data, key)
    if not isinstance(value, list):
        raise bad_reply(f"{key!r} is not a list")
    return [read_object(v, key) for v in value]


def read_choice(data: Mapping[str, Any], key: str, choices: Any) -> Any:
    """A string that is one of the ``Literal`` type ``choices``."""
    value = read_str(data, key)
    if value not in get_args(choices):
        raise bad_reply(f"{key!r} is {value!r}, not one of {', '.join(get_args(choices))}")
    return value


def read_time(data: Mapping[str, Any], key: str) -> datetime | None:
    """A time (UTC), or None when null or absent."""
    text = read_opt_str(data, key)
    if text is None:
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise bad_reply(f"{key!r} is not a time like 2026-03-02T09:00:00Z") from None


def read_required_time(data: Mapping[str, Any], key: str) -> datetime:
    """A time (UTC) that must be present."""
    moment = read_time(data, key)
    if moment is None:
        raise bad_reply(f"missing {key!r}")
    return moment
