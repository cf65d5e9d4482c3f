"""The POP3 adapter's reads by ``TOP``: header sections (``TOP n 0``) and whole messages
(``TOP n <lines>``, falling back to RETR), for :class:`~maild.protocols.pop3.maildrop.POP3Maildrop`'s
``header_fields`` and ``peek``.

Both run their commands through the maildrop's executor steps (``run``), pipelined in windows when
the server announces PIPELINING (RFC 2449 section 6.6), and record what they ask for in the session's
:class:`~maild.protocols.pop3.served.ServedLedger` (a server deleting downloaded mail may remove it at
QUIT). The pure rules of a whole ``TOP`` reply live in :mod:`maild.protocols.pop3.peek`. Split from
``maildrop.py`` in session 15 with no change of behaviour (a ``TOP n 0`` answered ``-ERR`` still
counts as served, as before).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from maild.model import MessageKey, RetrievalFailure, RetrievedMessage
from maild.pop3_uidls import header_window
from maild.protocols.pop3 import capped_reads
from maild.protocols.pop3.peek import (
    counts_line_ends_as_one,
    is_whole,
    top_lines,
    top_windows,
    whole_reply_cap,
)
from maild.protocols.pop3.served import ServedLedger
from maild.protocols.pop3.session import POP3Session

_T = TypeVar("_T")

_log = structlog.stdlib.get_logger("maild.protocols.pop3.maildrop")  # the adapter's events


class Run(Protocol):
    """The maildrop's way to run one blocking step in its executor (cancellation breaks the session)."""

    def __call__(self, fn: Callable[[], _T], /) -> Awaitable[_T]: ...


@dataclass(slots=True)
class PeekMemory:
    """What the session's whole-message reads learnt.

    Attributes:
        line_ends_as_one: a TOP reply of this session was whole only with LIST counting line ends as
            one octet (see :func:`~maild.protocols.pop3.peek.is_whole`).
        fallbacks: messages read with RETR instead (TOP not offered, refused or short), with why.
    """

    line_ends_as_one: bool = False
    fallbacks: list[tuple[MessageKey, str]] = field(default_factory=list)


async def header_sections(
    session: POP3Session,
    run: Run,
    targets: Sequence[tuple[MessageKey, int]],
    *,
    max_octets: int,
    window: int,
    served: ServedLedger,
) -> dict[MessageKey, bytes]:
    """``TOP n 0`` of each (key, message-number) of ``targets``, ``window`` commands per round trip
    (fewer where their replies could hold more than :data:`~maild.pop3_uidls.HEADER_WINDOW_OCTETS`:
    :func:`~maild.pop3_uidls.header_window`),
    each reply capped at ``max_octets`` while it arrives.

    Returns:
        Key to the header section as sent, un-stuffed, with the empty line that ends it; keys
        whose TOP was answered ``-ERR`` are left out.

    Raises:
        NetworkTimeout, ConnectError, ProtocolError: the session is broken (a reply over
            ``max_octets`` octets included).
    """
    served.asked((key for key, _ in targets), top=True)
    step = header_window(window, max_octets)
    read = functools.partial(capped_reads.header_sections, session, [n for _, n in targets], max_octets, step)
    replies = await run(read)
    pairs = zip(targets, replies, strict=True)
    return {key: reply.body for (key, _), reply in pairs if reply.body is not None}


async def whole_messages(
    session: POP3Session,
    run: Run,
    known: Sequence[tuple[MessageKey, int, int]],
    *,
    account: str,
    window: int,
    window_octets: int,
    served: ServedLedger,
    memory: PeekMemory,
    retrieve: Callable[[Sequence[MessageKey]], AsyncIterator[RetrievedMessage | RetrievalFailure]],
) -> AsyncGenerator[RetrievedMessage | RetrievalFailure, None]:
    """Each (key, message-number, LIST size) of ``known`` whole by ``TOP n <lines>`` in windows of
    up to ``window`` commands and about ``window_octets`` octets (sent at once with PIPELINING, one
    executor job per window), in the order of ``known``.

    Where CAPA lists capabilities without TOP, TOP is refused, or its reply is not the whole message
    by LIST's size (:func:`~maild.protocols.pop3.peek.is_whole`; once a reply of the session, its
    window included, was whole only with LIST counting line ends as one octet, a reply with CRLFs at
    exactly LIST's size is taken as cut, not whole), the message is read by ``retrieve`` (RETR)
    instead: logged ``pop3.peek.retr_fallback`` and listed in ``memory.fallbacks``.

    Each reply is capped while it arrives at :func:`~maild.protocols.pop3.peek.whole_reply_cap` of
    its LIST size (a longer one cannot be whole), so a window holds at most three times its LIST sizes
    plus 8 KiB a command, whatever the server sends.

    Standard: RFC 1939 section 7 (TOP, RETR), RFC 2449 sections 6.1 (CAPA TOP) and 6.6.

    Raises:
        NetworkTimeout, ConnectError, ProtocolError: the session is broken (a reply over its cap
            included).
    """
    offered = not session.caps or "TOP" in session.caps
    served.asked((key for key, _, _ in known), top=offered)
    msgnums = {key: n for key, n, _ in known}
    for chunk in top_windows([(key, size) for key, _, size in known], window, window_octets):
        commands = [f"TOP {msgnums[key]} {top_lines(size)}" for key, size in chunk]
        replies = [None] * len(chunk) if not offered else await run(
            functools.partial(
                capped_reads.exchange_many,
                session,
                commands,
                pipelined=session.pipelining,
                reply_caps=[whole_reply_cap(size) for _, size in chunk],
            )
        )
        # how the server sizes messages, from the whole window before any is taken (is_whole)
        memory.line_ends_as_one = memory.line_ends_as_one or any(
            r is not None and r.body is not None and counts_line_ends_as_one(r.body, size)
            for (_k, size), r in zip(chunk, replies, strict=True)
        )
        for (key, size), reply in zip(chunk, replies, strict=True):
            if (
                reply is not None
                and reply.body is not None
                and is_whole(reply.body, size, line_ends_as_one=memory.line_ends_as_one)
            ):
                yield RetrievedMessage(key, bytes(reply.body))
                continue
            why = "the server does not offer TOP"
            if reply is not None:
                why = (
                    f"TOP refused: {session.redact(reply.status.render())}"
                    if reply.body is None
                    else f"TOP sent {len(reply.body)} octets, LIST says {size}"
                )
            _log.warning("pop3.peek.retr_fallback", account=account, key=key, reason=why)
            memory.fallbacks.append((key, why))
            async for item in retrieve([key]):
                yield item
