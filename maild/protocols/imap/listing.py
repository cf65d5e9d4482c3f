"""Sans-I/O parsing of LIST responses (RFC 9051 section 7.3.1) and the choice of mailboxes to fetch.

Special-use attributes follow RFC 6154; names arrive as modified UTF-7 (RFC 3501 section 5.1.3) unless
the server accepted UTF-8. Input parts as described in :mod:`maild.protocols.imap.wire`.

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib), :mod:`maild.errors`,
:mod:`maild.protocols.imap.lex`, :mod:`maild.protocols.imap.utf7`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from maild.errors import ProtocolError
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap.utf7 import decode_mailbox_name


@dataclass(frozen=True, slots=True)
class ListedMailbox:
    """One mailbox from a LIST response.

    Attributes:
        name: the name as readable Unicode (modified UTF-7 decoded); ``"INBOX"`` in any case becomes
            ``"INBOX"`` (RFC 9051 section 5.1).
        delimiter: the hierarchy delimiter, e.g. ``"/"`` or ``"."``, or None for a flat name space.
        attributes: name attributes in RFC spelling, e.g. ``{"\\\\HasNoChildren", "\\\\Sent"}``
            (RFC 6154 special-use included).
    """

    name: str
    delimiter: str | None
    attributes: frozenset[str]

    @property
    def selectable(self) -> bool:
        """False when the server marks the name ``\\Noselect`` or ``\\NonExistent``."""
        return not self.attributes & {r"\Noselect", r"\NonExistent"}


def _list_fields(tokens: list[imap_lex.Token]) -> tuple[frozenset[str], str | None, bytes]:
    """Split ``(attributes) delimiter name [extended]`` into attributes, delimiter and wire name."""
    if len(tokens) < 3 or not isinstance(tokens[0], list):
        raise imap_lex.LexError("expected (attributes) delimiter name")
    attributes = imap_lex.flag_set(tokens[0], imap_lex.MAILBOX_ATTRIBUTES)
    raw_delim, raw_name = tokens[1], tokens[2]
    if raw_delim is not None and not (isinstance(raw_delim, bytes) and len(raw_delim) == 1):
        raise imap_lex.LexError("delimiter is neither NIL nor one quoted character")
    delimiter = None if raw_delim is None else raw_delim.decode("ascii", "replace")
    if isinstance(raw_name, str):
        return attributes, delimiter, raw_name.encode("utf-8")
    if isinstance(raw_name, bytes | bytearray):
        return attributes, delimiter, bytes(raw_name)
    raise imap_lex.LexError("mailbox name is neither atom nor string")


def parse_list(
    lines: Sequence[imap_lex.Part], *, utf8: bool = False, skip_broken_names: bool = False
) -> list[ListedMailbox]:
    """Parse the untagged lines of a LIST (or LSUB) response, in server order.

    Names may be atoms, quoted strings (with ``\\"`` and ``\\\\`` escapes) or literals; extended data
    (RFC 5258 ``("CHILDINFO" ...)``) is skipped; other lines are ignored.

    Args:
        lines: aioimaplib's parts (``LIST`` keyword present or stripped, ``* `` optional).
        utf8: names are UTF-8 (after ``ENABLE UTF8=ACCEPT``, RFC 9051 section 6.3.1) rather than
            modified UTF-7.
        skip_broken_names: leave out an entry whose name is not valid modified UTF-7 (or UTF-8)
            instead of raising: for a listing of ``"*"`` of which only names maild sent itself
            are wanted (such a name is none of them).

    Standard: RFC 9051 section 7.3.1 (``mailbox-list``); RFC 3501 section 7.2.2; RFC 6154 section 2.

    Known limit: aioimaplib 2.0.3 deletes every ``* `` inside untagged lines, so a quoted name
    containing an asterisk followed by a space arrives damaged (send such names as literals).

    Raises:
        ProtocolError: a LIST line breaks the grammar or a name is not valid modified UTF-7.
    """
    standard = "RFC 9051 section 7.3.1"
    found: list[ListedMailbox] = []
    for logical in imap_lex.group_lines(lines):
        head = imap_lex.strip_untagged(logical[0])
        keyword = head[:5].upper()
        if keyword in (b"LIST ", b"LSUB "):
            head = head[5:]
        elif not head.startswith(b"("):
            continue
        try:
            attributes, delimiter, wire_name = _list_fields(imap_lex.lex([head, *logical[1:]]))
        except imap_lex.LexError as exc:
            raise ProtocolError(str(exc), line=imap_lex.excerpt(head), standard=standard) from None
        name = _readable_or_none(wire_name, utf8, standard, skip_broken_names)
        if name is not None:
            found.append(ListedMailbox(name, delimiter, attributes))
    return found


#: Special-use attributes (RFC 6154 section 2) of mailboxes that ``mailboxes = "all"`` leaves out:
#: deleted mail and spam are not the office's mail.
SKIPPED_SPECIAL_USE = frozenset({r"\Trash", r"\Junk"})


def choose_mailboxes(listed: Sequence[ListedMailbox], exclude: Iterable[str] = ()) -> list[str]:
    """Pick the mailboxes that ``mailboxes = "all"`` means from a LIST response.

    Left out: names the server marks ``\\Noselect`` or ``\\NonExistent`` (nothing to select), the
    special-use ``\\Trash`` and ``\\Junk`` mailboxes (:data:`SKIPPED_SPECIAL_USE`), and every name in
    ``exclude`` together with the mailboxes beneath it (``"Archiv"`` excludes ``"Archiv/2025"`` when
    the server's delimiter is ``/``). ``INBOX`` matches in any case. The result keeps the server's
    order with ``INBOX`` first and each name once.

    Standard: RFC 9051 section 7.3.1 (name attributes); RFC 6154 section 2 (special-use).
    """
    excluded = [name.upper() if name.upper() == "INBOX" else name for name in exclude]

    def is_excluded(mailbox: ListedMailbox) -> bool:
        for name in excluded:
            if mailbox.name == name:
                return True
            if mailbox.delimiter and mailbox.name.startswith(name + mailbox.delimiter):
                return True
        return False

    chosen: dict[str, None] = {}  # in server order, each once; a set's lookups (a list's cost
    # 50 million comparisons at 10,000 mailboxes: 0.6 s of the event loop every poll)
    for mailbox in listed:
        if not mailbox.selectable or mailbox.attributes & SKIPPED_SPECIAL_USE or is_excluded(mailbox):
            continue
        chosen.setdefault(mailbox.name)
    if "INBOX" in chosen:
        del chosen["INBOX"]
        return ["INBOX", *chosen]
    return list(chosen)


# --------------------------------------------------------------------------------------------------
# STATUS responses (RFC 9051 section 7.3.2), also returned by LIST-STATUS (RFC 5819) and NOTIFY
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """What a STATUS response said about one mailbox.

    Attributes:
        name: the readable mailbox name (modified UTF-7 decoded; ``INBOX`` upper-cased).
        messages: MESSAGES, the number of messages, or None when not sent.
        uidnext: UIDNEXT, or None when not sent.
        uidvalidity: UIDVALIDITY, or None when not sent (a NOTIFY event may leave it out).
        highest_modseq: HIGHESTMODSEQ (RFC 7162 section 3.1.6), or None when not sent (no CONDSTORE,
            or a mailbox that does not keep mod-sequences).
    """

    name: str
    messages: int | None = None
    uidnext: int | None = None
    uidvalidity: int | None = None
    highest_modseq: int | None = None


#: Largest mod-sequence value (RFC 7162 section 7, ``mod-sequence-value``: 63-bit unsigned).
MAX_MODSEQ = 2**63 - 1


def _status_fields(tokens: list[imap_lex.Token]) -> tuple[bytes, dict[str, int]]:
    """Split ``mailbox (item value ...)`` into the wire name and item (upper-cased) to number."""
    if len(tokens) != 2 or not isinstance(tokens[1], list) or len(tokens[1]) % 2:
        raise imap_lex.LexError("expected mailbox (item value ...)")
    raw_name = tokens[0]
    if isinstance(raw_name, str):
        wire_name = raw_name.encode("utf-8")
    elif isinstance(raw_name, bytes | bytearray):
        wire_name = bytes(raw_name)
    else:
        raise imap_lex.LexError("mailbox name is neither atom nor string")
    values: dict[str, int] = {}
    items = tokens[1]
    for item, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(item, str):
            raise imap_lex.LexError("status item is not an atom")
        key = item.upper()
        limit = MAX_MODSEQ if key == "HIGHESTMODSEQ" else imap_lex.MAX_NUMBER
        values[key] = imap_lex.parse_number(value, key, limit)
    return wire_name, values


def parse_status(
    lines: Sequence[imap_lex.Part], *, utf8: bool = False, skip_broken_names: bool = False
) -> dict[str, MailboxStatus]:
    """Parse the ``STATUS`` lines among untagged lines; other lines are ignored.

    Args:
        lines: aioimaplib's parts (``STATUS`` keyword present, ``* `` optional), e.g. the untagged
            lines of ``LIST ... RETURN (STATUS (...))`` or of pipelined STATUS commands.
        utf8: names are UTF-8 rather than modified UTF-7 (see :func:`parse_list`).
        skip_broken_names: leave out a status whose name is not valid (see :func:`parse_list`).

    Returns:
        Readable mailbox name to its status; a mailbox reported twice keeps the last report.

    Standard: RFC 9051 section 7.3.2 (``mailbox-data`` STATUS); RFC 5819 section 2 (LIST-STATUS);
    RFC 7162 section 3.1.6 (HIGHESTMODSEQ).

    Raises:
        ProtocolError: a STATUS line breaks the grammar (a number out of range, an odd item list,
            a name that is not valid modified UTF-7).
    """
    standard = "RFC 9051 section 7.3.2"
    found: dict[str, MailboxStatus] = {}
    for logical in imap_lex.group_lines(lines):
        head = imap_lex.strip_untagged(logical[0])
        if head[:7].upper() != b"STATUS ":
            continue
        try:
            wire_name, values = _status_fields(imap_lex.lex([head[7:], *logical[1:]]))
        except imap_lex.LexError as exc:
            raise ProtocolError(str(exc), line=imap_lex.excerpt(head), standard=standard) from None
        name = _readable_or_none(wire_name, utf8, standard, skip_broken_names)
        if name is None:
            continue
        found[name] = MailboxStatus(
            name,
            values.get("MESSAGES"),
            values.get("UIDNEXT"),
            values.get("UIDVALIDITY"),
            values.get("HIGHESTMODSEQ"),
        )
    return found


def unchanged(before: MailboxStatus, now: MailboxStatus) -> bool:
    """Whether a mailbox holds exactly the messages it held when ``before`` was taken.

    True when UIDVALIDITY, UIDNEXT and MESSAGES are all known and equal, and HIGHESTMODSEQ is equal
    or absent from both. Why that suffices for the set of UIDs: UIDNEXT changes whenever a message
    is added, even one expunged again (RFC 9051 section 2.3.1.1), so with UIDNEXT equal no message
    was added; then an expunge would lower MESSAGES. HIGHESTMODSEQ (RFC 7162 section 3.1.1: every
    change of a message's metadata or an expunge raises it) adds flag changes and catches servers
    that renumber messages without changing the rest; a status with it and one without (the
    server's capabilities changed) do not compare as equal.

    Standard: RFC 9051 section 2.3.1.1 (UIDNEXT, UIDVALIDITY), 7.3.2; RFC 7162 section 3.1.1.
    """
    known = (before.uidvalidity, before.uidnext, before.messages)
    if None in known or known != (now.uidvalidity, now.uidnext, now.messages):
        return False
    return before.highest_modseq == now.highest_modseq


#: ``VANISHED (EARLIER) uid-set`` (RFC 7162 section 3.2.10), after aioimaplib stripped ``* ``.
_VANISHED = re.compile(rb"(?:\* )?VANISHED \(EARLIER\) ([0-9:,]+)\s*\Z", re.IGNORECASE)
#: One ``uid`` or ``uid:uid`` of a UID set, with the comma that ends it (none after the last).
_UID_RANGE = re.compile(rb"([0-9]{1,10})(?::([0-9]{1,10}))?(,|\Z)")


def _vanished_ranges(lines: Sequence[imap_lex.Part]) -> Iterator[tuple[int, int]]:
    """The (low, high) UID ranges of the ``VANISHED (EARLIER)`` lines among ``lines``, one at a time.

    Nothing but the current range is held: a line of 16 MiB (:data:`~.library.MAX_LINE_OCTETS`)
    names about two million ranges, which as a list took about 270 MB.

    Raises:
        ProtocolError: a VANISHED line with a broken UID set (RFC 7162 section 3.2.10).
    """
    for part in lines:
        if isinstance(part, bytearray | imap_lex.SpooledLiteral):
            continue
        found = _VANISHED.match(bytes(part))
        if found is None:
            continue
        pos, end = found.span(1)
        text = found.string
        while pos < end:
            pair = _UID_RANGE.match(text, pos, end)
            if pair is None or (pair.group(3) and pair.end() == end):  # a broken item, or a trailing comma
                raise ProtocolError(
                    "VANISHED with a broken UID set",
                    line=imap_lex.excerpt(part),
                    standard="RFC 7162 section 3.2.10",
                )
            low = int(pair.group(1))
            high = int(pair.group(2)) if pair.group(2) else low
            yield (low, high) if low <= high else (high, low)
            pos = pair.end()


def parse_vanished(lines: Sequence[imap_lex.Part]) -> list[tuple[int, int]]:
    """The UID ranges of the ``VANISHED (EARLIER)`` lines among ``lines`` (a QRESYNC SELECT reply).

    Ranges are returned, never expanded (``1:4294967295`` is one pair), each as (low, high). For the
    UIDs of a known set that vanished use :func:`vanished_among` (it holds no list of ranges).

    Standard: RFC 7162 section 3.2.10 (VANISHED response), 3.2.5.2 (SELECT with QRESYNC).

    Raises:
        ProtocolError: a VANISHED line with a broken UID set.
    """
    return list(_vanished_ranges(lines))


def vanished_among(lines: Sequence[imap_lex.Part], known: Iterable[int]) -> set[int]:
    """The UIDs of ``known`` that the ``VANISHED (EARLIER)`` lines among ``lines`` name.

    Time: O(K log K + R log K) for K known UIDs and R ranges; memory: the sorted known UIDs and the
    result, never the ranges. (Testing each known UID against every range took K x R steps: 7.5 s
    of CPU for a mailbox of 20,000 messages half of which were expunged, hours for a hostile line of
    two million ranges.)

    Args:
        lines: a QRESYNC SELECT reply's untagged parts (other lines are ignored).
        known: the UIDs the mailbox held at the last listing.

    Standard: RFC 7162 section 3.2.10 (VANISHED response), 3.2.5.2 (SELECT with QRESYNC).

    Raises:
        ProtocolError: a VANISHED line with a broken UID set.
    """
    ordered = sorted(known)
    gone: set[int] = set()
    for low, high in _vanished_ranges(lines):
        first = bisect.bisect_left(ordered, low)
        last = bisect.bisect_right(ordered, high, first)
        if first < last:
            gone.update(ordered[first:last])
    return gone


def _readable_or_none(wire_name: bytes, utf8: bool, standard: str, skip_broken: bool) -> str | None:
    """:func:`_mailbox_name`, or None for a name that is not valid when ``skip_broken``.

    Raises:
        ProtocolError: the name is not valid and ``skip_broken`` is False.
    """
    try:
        return _mailbox_name(wire_name, utf8, standard)
    except ProtocolError:
        if skip_broken:
            return None
        raise


def _mailbox_name(wire_name: bytes, utf8: bool, standard: str) -> str:
    """The readable name of a mailbox name as sent: UTF-8 after ``ENABLE UTF8=ACCEPT`` (RFC 6855
    section 3), else modified UTF-7 (RFC 9051 section 5.1.3); ``INBOX`` in any case is ``INBOX``
    (RFC 9051 section 5.1).

    Raises:
        ProtocolError: the name is not valid UTF-8 / modified UTF-7 (naming ``standard``).
    """
    if utf8:
        try:
            name = wire_name.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                "mailbox name is not UTF-8", line=imap_lex.excerpt(wire_name), standard=standard
            ) from None
    else:
        name = decode_mailbox_name(wire_name)
    return "INBOX" if name.upper() == "INBOX" else name
