"""Reading a POP3 message whole without RETR: ``TOP n <lines>`` and the check that it is whole.

RFC 1939 section 7: ``TOP msg n`` sends the header section, the empty line and the first ``n`` lines
of the body. With ``n`` at least the number of the body's lines the reply is the whole message, and
servers that mark or delete what RETR downloads may leave it alone: Dovecot's TOP does not set
``\\Seen`` (its RETR does, unless ``pop3_no_flag_updates``). A message of ``size`` octets has at
most ``size`` lines, so :func:`top_lines` asks for that many. What came back is taken as the whole
message only when its length is LIST's size (:func:`is_whole`); otherwise the caller falls back to
RETR, saying so. Pure: no I/O (the adapter, :meth:`maild.protocols.pop3.maildrop.POP3Maildrop.peek`,
sends the commands).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

_K = TypeVar("_K")
_CRLF = b"\r\n"

#: Least line count asked of TOP (an empty message still gets ``TOP n 1``, not ``TOP n 0``).
MIN_TOP_LINES = 1

WHOLE_REPLY_FACTOR = 3
"""A ``TOP n <lines>`` reply that can still be the whole message of LIST size ``s`` has at most
``3 * s`` octets of body on the wire: :func:`is_whole` takes at most ``2 * s`` octets un-stuffed
(LIST counting each CRLF as one octet) and byte-stuffing adds at most one dot per CRLF-ended line
(RFC 1939 section 3), half as many again. See :func:`whole_reply_cap`."""
REPLY_FRAME_OCTETS = 8 * 1024 + 7
"""Octets of a ``TOP`` reply besides its body: a status line of at most 8 KiB
(:data:`maild.protocols.pop3.wire.MAX_STATUS_LINE_OCTETS`, RFC 2449 section 4) with its CRLF and
the ``.`` terminator line."""


def whole_reply_cap(size_octets: int) -> int:
    """Cap in octets on the ``TOP n <lines>`` reply to a message of LIST size ``size_octets``:
    ``WHOLE_REPLY_FACTOR * max(size_octets, 1) + REPLY_FRAME_OCTETS``. A longer reply cannot be the
    whole message (:func:`is_whole`), so reading stops there (session 15's bound review: before,
    each of a window's 200 replies could bring the session's 100 MiB, whatever LIST said)."""
    return WHOLE_REPLY_FACTOR * max(size_octets, 1) + REPLY_FRAME_OCTETS


def top_lines(size_octets: int) -> int:
    """The line count to ask ``TOP`` for so that a message of ``size_octets`` (LIST) comes whole.

    Every line of a message, CRLF or bare LF, takes at least one octet, so a message has at most
    ``size_octets`` lines; at least :data:`MIN_TOP_LINES`.
    """
    return max(size_octets, MIN_TOP_LINES)


def is_whole(body: bytes, size_octets: int, *, line_ends_as_one: bool = False) -> bool:
    """Whether a TOP reply ``body`` (un-stuffed, as sent) is the whole message LIST sized ``size_octets``.

    Equal lengths, or LIST counting each line end as one octet (a server storing bare LFs that
    sends CRLF, RFC 1939 section 11 lets it report such a size) while ``body`` has CRLF line ends:
    then ``size_octets`` is ``len(body)`` minus one octet per CRLF. Anything else (shorter: TOP
    stopped early; longer: another message) is not whole.

    ``line_ends_as_one``: the server is known to count line ends as one octet (a reply of this
    session was whole only that way, :func:`counts_line_ends_as_one`). Then a reply with CRLFs
    whose length equals LIST's size is *short* (the whole message would be one octet longer per
    line end), not whole: a server capping TOP cut exactly as many octets as the message has line
    ends (session 14's review: such a cut message was stored as the message).

    Standard: RFC 1939 section 5 (LIST's size) and section 11 (sizes may be approximate).
    """
    if len(body) == size_octets:  # the usual case: no pass over the octets unless the server counts
        return not line_ends_as_one or _CRLF not in body
    return len(body) - body.count(_CRLF) == size_octets


def counts_line_ends_as_one(body: bytes, size_octets: int) -> bool:
    """Whether the TOP reply ``body`` is whole only by LIST counting each line end as one octet
    (longer than ``size_octets`` by exactly its CRLFs): evidence of how this server sizes its
    messages, for :func:`is_whole`'s ``line_ends_as_one``."""
    return len(body) != size_octets and len(body) - body.count(_CRLF) == size_octets


def top_windows(
    sized: Sequence[tuple[_K, int]], max_commands: int, max_octets: int
) -> list[list[tuple[_K, int]]]:
    """``sized`` (key, LIST size in octets) cut into windows, in order: each window at most
    ``max_commands`` keys and, beyond its first key, at most ``max_octets`` octets by size (a
    window always takes one key, however large)."""
    windows: list[list[tuple[_K, int]]] = []
    current: list[tuple[_K, int]] = []
    octets = 0
    for item in sized:
        if current and (len(current) >= max_commands or octets + item[1] > max_octets):
            windows.append(current)
            current, octets = [], 0
        current.append(item)
        octets += item[1]
    if current:
        windows.append(current)
    return windows
