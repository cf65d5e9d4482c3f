"""Value parsing for the configuration: durations, typed TOML tables, Maildir path templates.

Every function here raises :class:`~maild.errors.ConfigError` naming the dotted key (``where``) and the
expected form; :mod:`maild.config.loader` builds its dataclasses from them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, cast

from maild.errors import ConfigError
from maild.model import is_loopback as is_loopback  # re-exported for the account tables

_DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
_DURATION_FULL_RE = re.compile(r"\d+|(?:\d+\s*[smhd]\s*)+")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Upper bound of any duration in the configuration: one year, in seconds.
MAX_DURATION_S = 365 * 86400.0
#: Keys whose values are never repeated in error messages: a command is where an admin may have put
#: the secret itself (``client_secret_command = "abc123"`` was echoed until session 15's QA).
SECRET_KEYS = frozenset({"password", "password_command", "client_secret_command", "token", "token_command"})
#: Key names shown as they are: TOML's bare keys, and the dot of an account name (``anna.pop``) kept
#: as the loader's dotted paths always showed it.
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_.-]+")
#: Unicode categories :func:`toml_key` writes as escapes: controls (CR, LF, ESC, DEL, C1), format
#: characters (bidirectional overrides, zero-width ones), line and paragraph separators, surrogates.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def toml_key(name: str) -> str:
    """``name`` as a TOML key, for an error message: bare when TOML allows it (``anna-pop``, also
    ``anna.pop``, see :data:`_BARE_KEY_RE`), else a
    quoted key with every control, format and separator character escaped (``"a\\nb"``, ``"../x"``).

    Key names come from the admin's file as written: echoed raw, a key holding a line feed split an
    error into two lines and an ESC reached the terminal (QA of session 15). The quoted form is
    how the key is written in TOML (TOML 1.0, "Keys" and "String"), so the admin can search for it.
    """
    return name if _BARE_KEY_RE.fullmatch(name) else toml_string(name)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (TOML 1.0, "String"): in double quotes, with ``"`` and ``\\``
    escaped and every control, format and separator character written as ``\\uXXXX``."""
    import unicodedata  # only for an odd key, an error's case: 0.3-0.4 ms off every command's start-up

    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif unicodedata.category(char) in _ESCAPED_CATEGORIES:
            code = ord(char)
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def parse_duration(value: object, where: str) -> float:
    """Parse ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or an integer number of seconds.

    Returns:
        The duration in seconds, > 0.

    Raises:
        ConfigError: the value has another form or is not positive; the message names ``where``.
    """
    if isinstance(value, bool):
        raise ConfigError(f'{where}: expected a duration such as "90s", "5m", "1h", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_FULL_RE.fullmatch(value.strip().lower()):
        text = value.strip().lower()
        seconds = (
            float(text)
            if text.isdigit()
            else sum(int(n) * _UNITS_S[unit] for n, unit in _DURATION_RE.findall(text))
        )
    else:
        raise ConfigError(f'{where}: expected a duration such as "90s", "5m", "1h", got {value!r}')
    if seconds <= 0:
        raise ConfigError(f"{where}: duration must be positive, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ConfigError(f"{where}: duration must be at most 365 days, got {value!r}")
    return seconds


class Table:
    """Typed access to one TOML table that remembers which keys were read, to reject the rest."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """The dotted path of ``name`` in this table, ``name`` written as :func:`toml_key` does."""
        return f"{self.where}.{toml_key(name)}"

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = None, *, form: str = "") -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        bad_bool = isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
        if bad_bool or not isinstance(value, kinds):
            expected = form or (
                kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
            )
            shown = (
                "a value of another type (not shown: it is a secret)" if name in SECRET_KEYS else repr(value)
            )
            raise ConfigError(f"{self.key(name)}: expected {expected}, got {shown}")
        if (inner := _nul_at(value)) is not None:  # no path, name, command or password may: os refuses it
            raise ConfigError(
                f"{self.key(name)}{inner}: contains a NUL character (\\u0000), which no value may contain"
            )
        return value

    def require(self, name: str, kinds: type | tuple[type, ...], *, form: str = "") -> Any:
        if name not in self.data:
            raise ConfigError(f"{self.key(name)}: required key is missing")
        return self.get(name, kinds, form=form)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key"
                + (f" (also: {', '.join(map(toml_key, unknown[1:]))})" if len(unknown) > 1 else "")
            )


def _nul_at(value: object) -> str | None:
    """Where a string, or a string inside a list or table, contains U+0000: ``""`` for the value itself,
    ``.KEY`` (dotted, as :func:`toml_key` writes it) for a key or value inside a table; None when
    nowhere. Before session 13 a NUL in a path reached ``os.open`` as a traceback, and ``maild run``
    exited 1 instead of 78; until session 15 a NUL in a key of a sub-table (``oauth2``) was reported
    as the sub-table's, without naming the key."""
    if isinstance(value, str):
        return "" if "\x00" in value else None
    if isinstance(value, list):
        return next((p for item in value if (p := _nul_at(item)) is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            inner = "" if "\x00" in key else _nul_at(item)
            if inner is not None:
                return f".{toml_key(key)}{inner}"
    return None


def positive_int(table: Table, name: str, default: int | None, maximum: int | None = None) -> int | None:
    """A positive integer, at most ``maximum`` when given (a named constant of the caller's).

    Raises:
        ConfigError: not an integer, not positive, or above ``maximum``: one line naming the key, the
            value and the range (``expected an integer 1-256, got 100000000000``).
    """
    form = "a positive integer" if maximum is None else f"an integer 1-{maximum}"
    value = table.get(name, int, default, form=form)
    if value is not None and (value <= 0 or (maximum is not None and value > maximum)):
        raise ConfigError(f"{table.key(name)}: expected {form}, got {value!r}")
    return cast("int | None", value)


#: Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): shown on a
#: terminal or in the journal they reorder the rest of the line (``maild status``'s rows).
_BIDI_CONTROLS = frozenset(map(chr, (*range(0x202A, 0x202F), *range(0x2066, 0x206A))))


def unsafe_char(text: str) -> str | None:
    """The first character of ``text`` that must not reach a terminal or the journal, else None: a
    C0 control (CR, LF, TAB, ESC, ...), DEL, a C1 control (U+0080-U+009F) or a bidirectional control
    (:data:`_BIDI_CONTROLS`)."""
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or char in _BIDI_CONTROLS:
            return char
    return None


def required_text(table: Table, name: str, max_chars: int | None = None) -> str:
    """A required, non-empty string without control characters (:func:`unsafe_char`), of at most
    ``max_chars`` characters when given.

    Raises:
        ConfigError: one line naming the key: missing, not a string, empty, too long, or holding a
            control character (shown as ``\\uXXXX``, never raw).
    """
    value = cast(str, table.require(name, str))
    if not value.strip():
        raise ConfigError(f"{table.key(name)}: must not be empty")
    if (char := unsafe_char(value)) is not None:
        raise ConfigError(
            f"{table.key(name)}: must not contain control characters (CR, LF, TAB, C1, bidirectional"
            f" overrides, ...): found \\u{ord(char):04X}"
        )
    if max_chars is not None and len(value) > max_chars:
        raise ConfigError(f"{table.key(name)}: longer than {max_chars} characters ({len(value)})")
    return value


def shown_path(path: object) -> str:
    """``path`` (a file name) for an error line: as it is when every character is printable, else
    as :func:`toml_string` quotes a key (``"/etc/maild/accounts.d/a\\u000Ab.toml"``), so a line
    feed, an ESC or a bidirectional override in a drop-in's name cannot split or rewrite the line
    (QA of session 15). A name that is not UTF-8 shows its octets' surrogate escapes (``\\uDCFF``)."""
    text = str(path)
    return text if text.isprintable() else toml_string(text)


def choice(table: Table, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = table.get(name, str, default, form=" or ".join(f'"{c}"' for c in choices))
    if value not in choices:
        raise ConfigError(f"{table.key(name)}: expected one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


MAILDIR_FIELDS = ("organisation", "employee", "account")


def maildir_component(value: str) -> str:
    """Make ``value`` safe as one path component: "/" and NUL become "_", a leading "." becomes "_".

    So a value can never add a directory level or climb one (no "/", never "." or "..").
    """
    safe = value.replace("/", "_").replace("\0", "_")
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return safe or "_"


def expand_maildir(template: str, where: str, **values: str) -> str:
    """Expand ``{organisation}``, ``{employee}`` and ``{account}`` in a ``deliver_maildir`` template.

    Each value is made safe with :func:`maildir_component` first; the template's own text is the
    admin's and kept as written.

    Raises:
        ConfigError: the template is empty or has another placeholder, a format spec or a conversion.
    """
    if not template.strip():
        raise ConfigError(f"{where}: expected a directory path, got an empty string")
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template {template!r}: {exc}") from None
    for literal, field_name, spec, conversion in parts:
        out.append(literal)
        if field_name is None:
            continue
        if field_name not in MAILDIR_FIELDS or spec or conversion:
            raise ConfigError(
                f"{where}: unknown placeholder {{{field_name}}} in {template!r};"
                " use {organisation}, {employee}, {account}"
            )
        out.append(maildir_component(values[field_name]))
    return "".join(out)
