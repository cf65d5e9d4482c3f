"""Sans-I/O parsing of LIST responses (RFC 9051 section 7.3.1) and the choice of mailboxes to fetch.

Special-use attributes follow RFC 6154; names arrive as modified UTF-7 (RFC 3501 section 5.1.3) unless
the server accepted UTF-8. Input parts as described in :mod:`maild.protocols.imap.wire`.

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib), :mod:`maild.errors`,
:mod:`maild.protocols.imap.lex`, :mod:`maild.protocols.imap.utf7`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from maild.errors import ProtocolError
from maild.protocols.imap.lex import (
    MAILBOX_ATTRIBUTES,
    LexError,
    Part,
    Token,
    excerpt,
    flag_set,
    group_lines,
    lex,
    strip_untagged,
)
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


def _list_fields(tokens: list[Token]) -> tuple[frozenset[str], str | None, bytes]:
    """Split ``(attributes) delimiter name [extended]`` into attributes, delimiter and wire name."""
    if len(tokens) < 3 or not isinstance(tokens[0], list):
        raise LexError("expected (attributes) delimiter name")
    attributes = flag_set(tokens[0], MAILBOX_ATTRIBUTES)
    raw_delim, raw_name = tokens[1], tokens[2]
    if raw_delim is not None and not (isinstance(raw_delim, bytes) and len(raw_delim) == 1):
        raise LexError("delimiter is neither NIL nor one quoted character")
    delimiter = None if raw_delim is None else raw_delim.decode("ascii", "replace")
    if isinstance(raw_name, str):
        return attributes, delimiter, raw_name.encode("utf-8")
    if isinstance(raw_name, bytes | bytearray):
        return attributes, delimiter, bytes(raw_name)
    raise LexError("mailbox name is neither atom nor string")


def parse_list(lines: Sequence[Part], *, utf8: bool = False) -> list[ListedMailbox]:
    """Parse the untagged lines of a LIST (or LSUB) response, in server order.

    Names may be atoms, quoted strings (with ``\\"`` and ``\\\\`` escapes) or literals; extended data
    (RFC 5258 ``("CHILDINFO" ...)``) is skipped; other lines are ignored.

    Args:
        lines: aioimaplib's parts (``LIST`` keyword present or stripped, ``* `` optional).
        utf8: names are UTF-8 (after ``ENABLE UTF8=ACCEPT``, RFC 9051 section 6.3.1) rather than
            modified UTF-7.

    Standard: RFC 9051 section 7.3.1 (``mailbox-list``); RFC 3501 section 7.2.2; RFC 6154 section 2.

    Known limit: aioimaplib 2.0.3 deletes every ``* `` inside untagged lines, so a quoted name
    containing an asterisk followed by a space arrives damaged (send such names as literals).

    Raises:
        ProtocolError: a LIST line breaks the grammar or a name is not valid modified UTF-7.
    """
    standard = "RFC 9051 section 7.3.1"
    found: list[ListedMailbox] = []
    for logical in group_lines(lines):
        head = strip_untagged(logical[0])
        keyword = head[:5].upper()
        if keyword in (b"LIST ", b"LSUB "):
            head = head[5:]
        elif not head.startswith(b"("):
            continue
        try:
            attributes, delimiter, wire_name = _list_fields(lex([head, *logical[1:]]))
        except LexError as exc:
            raise ProtocolError(str(exc), line=excerpt(head), standard=standard) from None
        if utf8:
            try:
                name = wire_name.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(
                    "mailbox name is not UTF-8", line=excerpt(wire_name), standard=standard
                ) from None
        else:
            name = decode_mailbox_name(wire_name)
        if name.upper() == "INBOX":
            name = "INBOX"
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

    chosen: list[str] = []
    for mailbox in listed:
        if not mailbox.selectable or mailbox.attributes & SKIPPED_SPECIAL_USE or is_excluded(mailbox):
            continue
        if mailbox.name not in chosen:
            chosen.append(mailbox.name)
    if "INBOX" in chosen:
        chosen.remove("INBOX")
        chosen.insert(0, "INBOX")
    return chosen
