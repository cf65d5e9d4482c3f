"""Sans-I/O parsing of FETCH responses (RFC 9051 section 7.5.2) and of INTERNALDATE.

One broken or incomplete message in a FETCH response becomes a per-message failure, so that the rest
of a batch still arrives. Input parts as described in :mod:`maild.protocols.imap.wire`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, cast

from maild.protocols.imap.lex import (
    FETCH_START,
    MESSAGE_EVENT,
    SYSTEM_FLAGS,
    LexError,
    Part,
    Token,
    excerpt,
    flag_set,
    group_lines,
    lex,
    parse_number,
    strip_untagged,
)

_RFC_FETCH = "RFC 9051 section 7.5.2"
TAKE_LITERAL_OCTETS = 2**20
"""A ``BODY[]`` literal of at least this many octets is passed on as the received buffer, not copied."""
_DATE_TIME = re.compile(
    r"\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\Z",
)
#: Month names of ``date-month``, fixed English (never the locale's, unlike ``calendar.month_abbr``).
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}


def parse_internaldate(value: str | bytes | bytearray) -> datetime:
    """Parse an INTERNALDATE such as ``17-Jul-1996 02:44:25 -0700`` into an aware UTC datetime.

    The day may be space-padded (``" 7-Jul-1996"``, ``date-day-fixed``); month names match
    case-insensitively.

    Standard: RFC 9051 section 9 (``date-time``); RFC 3501 section 9.

    Raises:
        ValueError: not in that form or not a valid date.
    """
    text = value if isinstance(value, str) else bytes(value).decode("ascii", "replace")
    match = _DATE_TIME.match(text)
    if match is None:
        raise ValueError(f"not an IMAP date-time: {text[:40]!r}")
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    month_number = _MONTHS.get(month.upper())
    if month_number is None:
        raise ValueError(f"unknown month in IMAP date-time: {text[:40]!r}")
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
    local = datetime(  # noqa: DTZ001 -- the zone is given on the next line
        int(year), month_number, int(day), int(hour), int(minute), int(second)
    )
    return local.replace(tzinfo=timezone(offset)).astimezone(UTC)


#: Items a caller may require in :func:`parse_fetch`, by their response name.
FetchItem = Literal[
    "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]", "BODY[HEADER]", "BODY[HEADER.FIELDS]"
]


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """The data items one message's FETCH responses carried, merged.

    Attributes:
        uid: the message's UID.
        seq: its message sequence number in this session (RFC 9051 section 2.3.1.2).
        flags: its flags, or None when not sent.
        internaldate: INTERNALDATE in UTC, or None when not sent.
        size_octets: RFC822.SIZE in octets, or None when not sent.
        body: ``BODY[]`` (or ``RFC822``) octets exactly as sent, or None when not sent.
        header: ``BODY[HEADER]`` (or ``RFC822.HEADER``) octets exactly as sent (the header section
            with its terminating empty line, RFC 9051 section 6.4.5), or None when not sent.
        header_fields: ``BODY[HEADER.FIELDS (...)]`` octets as sent (the named fields and the empty
            line), or None when not sent. Whatever fields were asked for, the item is stored under
            this one name.
    """

    uid: int
    seq: int
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    size_octets: int | None = None
    body: bytes | None = None
    header: bytes | None = None
    header_fields: bytes | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Everything a FETCH command's untagged responses said.

    Attributes:
        messages: complete messages by UID (every required item present and valid).
        failures: messages the server answered incompletely, by UID: a short reason such as
            ``"BODY[] is NIL"``. The caller retries them later.
        exists: the last ``* n EXISTS`` seen, or None.
        expunged: sequence numbers from ``* n EXPUNGE`` lines, in arrival order.
        ignored: FETCH responses without a UID or for a UID not requested (for example the highest
            UID that ``UID FETCH n:*`` returns when n is beyond it), plus unknown lines.
        malformed: excerpts of FETCH lines that broke the grammar and could not be tied to a UID.
    """

    messages: dict[int, FetchedMessage] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    exists: int | None = None
    expunged: tuple[int, ...] = ()
    ignored: int = 0
    malformed: tuple[str, ...] = ()


#: RFC822 is the IMAP4rev1 name of the same octets as BODY[] (RFC 3501 section 6.4.5).
_ITEM_ALIASES = {"RFC822": "BODY[]", "RFC822.HEADER": "BODY[HEADER]"}


def _fetch_items(tokens: list[Token]) -> dict[str, Token]:
    """Turn ``(NAME value NAME value ...)`` into a mapping of upper-cased names to values."""
    if len(tokens) != 1 or not isinstance(tokens[0], list):
        raise LexError("FETCH data is not one parenthesised list")
    items = tokens[0]
    if len(items) % 2:
        raise LexError("FETCH data has a name without a value")
    result: dict[str, Token] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(name, str):
            raise LexError("FETCH item name is not an atom")
        key = name.upper()
        if key.startswith("BODY[HEADER.FIELDS "):  # the field list as the server echoes it
            key = "BODY[HEADER.FIELDS]"
        result[_ITEM_ALIASES.get(key, key)] = value
    return result


@dataclass(frozen=True, slots=True)
class FetchLine:
    """One FETCH response line (RFC 9051 section 7.5.2), lexed.

    Attributes:
        seq: the message sequence number it names.
        items: data item name (upper-case, aliases resolved, e.g. ``"BODY[]"``) to its value. When
            ``error`` is set, only ``"UID"`` (its digits) if it could still be read, else empty.
        error: None, or why the line broke the grammar (``"malformed FETCH response: ..."``; with an
            excerpt of the line when no UID could be read).
    """

    seq: int
    items: dict[str, Token]
    error: str | None = None


def read_fetch_line(logical: Sequence[Part], head: bytes | None = None) -> FetchLine | None:
    """Lex one logical line (from :func:`~maild.protocols.imap.lex.group_lines`) as a FETCH response.

    Args:
        logical: the line's text parts and literals.
        head: its first part with ``* `` stripped, if the caller has it already.

    Returns:
        The FETCH response, or None when the line is not ``n FETCH ...`` at all. Never raises for
        server data: a line that breaks the grammar comes back with ``error`` set.
    """
    if head is None:
        head = strip_untagged(logical[0])
    start = FETCH_START.match(head)
    if start is None:
        return None
    seq = int(start.group(1))
    try:
        return FetchLine(seq, _fetch_items(lex([head[start.end() :], *logical[1:]])))
    except LexError as exc:
        text_parts = b" ".join(bytes(p) for p in logical[::2])  # odd positions hold literals
        uid_match = re.search(rb"[( ]UID (\d+)", text_parts, re.IGNORECASE)
        reason = f"malformed FETCH response: {exc}"
        if uid_match is not None:
            return FetchLine(seq, {"UID": uid_match.group(1).decode("ascii")}, reason)
        return FetchLine(seq, {}, f"{reason}: {excerpt(head)}")


def build_message(seq: int, uid: int, items: dict[str, Token], require: Iterable[str]) -> FetchedMessage:
    """Validate the merged items of one message into a :class:`FetchedMessage`.

    Raises:
        LexError: a required item is missing or NIL, or an item has the wrong type; the text is the
            per-message failure reason (``"BODY[] is NIL"``).
    """
    for name in require:
        if name not in items:
            raise LexError(f"{name} missing")
        if items[name] is None:
            raise LexError(f"{name} is NIL")
    flags = flag_set(items["FLAGS"], SYSTEM_FLAGS) if items.get("FLAGS") is not None else None
    internaldate: datetime | None = None
    raw_date = items.get("INTERNALDATE")
    if raw_date is not None:
        if not isinstance(raw_date, bytes | bytearray):
            raise LexError("INTERNALDATE is not a string")
        try:
            internaldate = parse_internaldate(raw_date)
        except ValueError as exc:
            raise LexError(str(exc)) from None
    size = items.get("RFC822.SIZE")
    size_octets = parse_number(size, "RFC822.SIZE") if size is not None else None
    raw_body = items.get("BODY[]")
    body: bytes | None = None
    if raw_body is not None:
        if not isinstance(raw_body, bytes | bytearray):
            raise LexError("BODY[] is not a string")
        if isinstance(raw_body, bytes) or len(raw_body) >= TAKE_LITERAL_OCTETS:
            # a large literal is aioimaplib's own buffer, owned by this response alone and never
            # written again: handed on as it is (typed bytes), not copied
            body = cast(bytes, raw_body)
        else:
            body = bytes(raw_body)
    raw_header = items.get("BODY[HEADER]")
    if raw_header is not None and not isinstance(raw_header, bytes | bytearray):
        raise LexError("BODY[HEADER] is not a string")
    header = bytes(raw_header) if raw_header is not None else None
    raw_fields = items.get("BODY[HEADER.FIELDS]")
    if raw_fields is not None and not isinstance(raw_fields, bytes | bytearray):
        raise LexError("BODY[HEADER.FIELDS] is not a string")
    header_fields = bytes(raw_fields) if raw_fields is not None else None
    return FetchedMessage(uid, seq, flags, internaldate, size_octets, body, header, header_fields)


def parse_fetch(
    lines: Sequence[Part],
    *,
    requested: Iterable[int] | None = None,
    require: Iterable[FetchItem] = (),
) -> FetchResult:
    """Parse the untagged lines of a (UID) FETCH response (tagged completion excluded).

    Data items may come in any order, with UID before or after the body literal, and spread over
    several FETCH responses for the same message sequence number (they are merged, later values
    win). ``* n EXISTS`` and ``* n EXPUNGE`` lines in between are reported, not fatal.

    Args:
        lines: aioimaplib's parts, see the module docstring.
        requested: the UIDs asked for; responses for other UIDs are counted in ``ignored``.
            None accepts every UID.
        require: items every message must carry non-NIL; a message lacking one becomes a failure.

    Returns:
        Messages and per-message failures keyed by UID. A UID that appears in neither was not
        returned by the server at all (expunged meanwhile, or the server's NO).

    Standard: RFC 9051 section 7.5.2 (FETCH response), section 6.4.9 (UID FETCH always includes UID);
    RFC 3501 section 7.4.2.

    This function never raises for server data: a FETCH line it cannot parse becomes a failure of
    its UID when the UID can still be read, otherwise an entry in ``malformed``.
    """
    wanted = None if requested is None else set(requested)
    required = tuple(dict.fromkeys(("UID", *require)))
    merged: dict[int, dict[str, Token]] = {}
    broken: dict[int, str] = {}
    exists: int | None = None
    expunged: list[int] = []
    ignored = 0
    malformed: list[str] = []
    for logical in group_lines(lines):
        head = strip_untagged(logical[0])
        event = MESSAGE_EVENT.match(head) if len(logical) == 1 else None
        if event is not None:
            kind = event.group(2).upper()
            if kind == b"EXISTS":
                exists = int(event.group(1))
            elif kind == b"EXPUNGE":
                expunged.append(int(event.group(1)))
            continue
        line = read_fetch_line(logical, head)
        if line is None:
            ignored += 1
            continue
        if line.error is not None:
            if "UID" in line.items:
                broken[line.seq] = line.error
                merged.setdefault(line.seq, {})["UID"] = line.items["UID"]
            else:
                malformed.append(line.error)
            continue
        merged.setdefault(line.seq, {}).update(line.items)
    messages: dict[int, FetchedMessage] = {}
    failures: dict[int, str] = {}
    for seq, items in merged.items():
        raw_uid = items.get("UID")
        try:
            uid = parse_number(raw_uid, "UID") if raw_uid is not None else None
        except LexError:
            uid = None
        if uid is None or uid == 0 or (wanted is not None and uid not in wanted):
            ignored += 1
            continue
        if seq in broken:
            failures[uid] = broken[seq]
            continue
        try:
            messages[uid] = build_message(seq, uid, items, required)
        except LexError as exc:
            failures[uid] = str(exc)
    return FetchResult(messages, failures, exists, tuple(expunged), ignored, tuple(malformed))
