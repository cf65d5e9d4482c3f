"""The inventory of a POP3 maildrop without UIDL: identities from the messages' content.

UIDL is optional (RFC 1939 section 7). When a server does not offer it or refuses it permanently,
:class:`~maild.protocols.pop3.maildrop.POP3Maildrop` hands the inventory to
:func:`inventory_without_uidl`, which reads header sections (``TOP n 0``) and, where they do not
identify a message, whole messages (RETR, keeping only the digest) through the maildrop's executor
steps. The rules for the identities and why they are safe live in the sans-I/O
:mod:`maild.protocols.pop3.identity`; this module only drives the session.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog

from maild.errors import ThrottledError
from maild.model import InventoryEntry, POP3Key
from maild.protocols.pop3 import identity, wire
from maild.protocols.pop3.session import THROTTLE_CODES, Listing, POP3Session

__all__ = ["DigestInventory", "inventory_without_uidl", "msgnum_windows"]

_T = TypeVar("_T")
_log = structlog.stdlib.get_logger(__name__)


class Run(Protocol):
    """The maildrop's way to run one blocking step in its executor (cancellation breaks the session)."""

    def __call__(self, fn: Callable[[], _T], /) -> Awaitable[_T]: ...


@dataclass(frozen=True, slots=True)
class DigestInventory:
    """What :func:`inventory_without_uidl` found.

    Attributes:
        entries: one entry per identified message, in message-number order, sizes in octets from LIST.
        msgnum_by_key: the identity (the ``uidl`` of each entry's POP3Key) to its message-number in
            this session.
        size_by_key: the identity to its size in octets from LIST.
        warnings: what could not be done as usual, in words for the status.
        served: the identities of the messages the server served to name them: ``TOP n 0``
            answered (header identities, and the placeholders of too-large ones whose header section
            was read) or RETR (full-content identities). A server deleting what it served at QUIT
            removes them then, unless kept.
        served_unnamed: messages served (``TOP n 0`` answered) that got no identity (their RETR
            refused here): nothing could show them kept, so the session must not QUIT.
    """

    entries: list[InventoryEntry]
    msgnum_by_key: dict[str, int]
    size_by_key: dict[str, int]
    warnings: tuple[str, ...]
    served: frozenset[str] = frozenset()
    served_unnamed: int = 0


def msgnum_windows(
    msgnums: Sequence[int], sizes: Mapping[int, int], *, limit: int, window_octets: int
) -> list[list[int]]:
    """Group message-numbers into RETR windows of at most ``limit`` commands and about
    ``window_octets`` octets by LIST size (at least one message each), in the given order."""
    windows: list[list[int]] = []
    octets = 0
    for msgnum in msgnums:
        size = sizes[msgnum]
        if not windows or len(windows[-1]) >= limit or octets + size > window_octets:
            windows.append([])
            octets = 0
        windows[-1].append(msgnum)
        octets += size
    return windows


def _digest_window(session: POP3Session, msgnums: Sequence[int]) -> list[str | wire.StatusLine]:
    """RETR ``msgnums`` (in the worker thread) and return each one's content digest, or the refusal."""
    replies = session.run("identifying messages", [f"RETR {n}" for n in msgnums], multiline=True)
    out: list[str | wire.StatusLine] = []
    for reply in replies:
        out.append(identity.content_digest(reply.body) if reply.body is not None else reply.status)
    return out


async def inventory_without_uidl(
    session: POP3Session,
    listing: Listing,
    run: Run,
    *,
    window: int,
    window_octets: int,
    max_message_size: int | None,
) -> DigestInventory:
    """Identities for a server without UIDL: digests of the messages' content.

    Steps: ``TOP n 0`` for every message up to ``max_message_size`` octets by LIST (pipelined in
    windows of ``window`` when allowed; not sent when CAPA lists capabilities without TOP); a header
    identity (``"hdr:…"``) for each message whose header section is distinctive and unique in the
    listing; RETR of every other message, in windows by LIST size (``window_octets``), keeping only its
    SHA-256 (``"sha256:…"``, computed in the worker thread, the octets dropped at once). A message
    larger than ``max_message_size`` octets (by LIST) is read neither way (maild will not store it, and
    a server may delete what TOP served at QUIT; since session 15): it gets
    ``"unidentified:<octets>:<msgnum>"``, which names nothing in the archive. Every message read
    (TOP answered, or RETR) is in :attr:`DigestInventory.served`. A message
    whose RETR is refused here has no identity this cycle: it is left out (neither retrieved nor
    deleted) and named in the warnings.

    Args:
        session: the logged-in session (its steps run through ``run``).
        listing: the LIST (and the refused UIDL) of this session.
        run: the maildrop's executor step runner.
        window: most commands pipelined in one round trip (1 without PIPELINING).
        window_octets: about how many octets (LIST sizes) one RETR window may request.
        max_message_size: the account's ``max_message_size`` in octets, or None.

    Cancelled: nothing changes on the server; the session is broken (the maildrop's ``run`` shuts it).

    Standard: RFC 1939 section 7 (UIDL optional, TOP), RFC 2449 section 6.6 (PIPELINING).

    Raises:
        ThrottledError: UIDL was refused with a code saying the condition will pass.
        NetworkTimeout, ConnectError, ProtocolError: the session is broken.
    """
    acct = session.settings.account
    status = listing.uidl_status
    if status is not None and any(status.has_code(c) for c in THROTTLE_CODES):
        raise ThrottledError(f"{session.where()}: UIDL deferred: {listing.uidl_refusal}", account=acct)
    sizes = listing.sizes
    msgnums = sorted(sizes)
    limit = window if session.pipelining else 1
    tops: dict[int, bytes | None] = {}
    cap = max_message_size
    # a message maild will not download is not read either: a server deleting what TOP served
    # would remove it at QUIT, or, counted as served, it would withhold every QUIT (session 15)
    headed = [n for n in msgnums if not (cap and sizes[n] > cap)]
    if headed and (not session.caps or "TOP" in session.caps):
        for start in range(0, len(headed), limit):
            chunk = headed[start : start + limit]
            commands = [f"TOP {n} 0" for n in chunk]
            replies = await run(functools.partial(session.run, "reading headers", commands, multiline=True))
            tops.update((n, r.body) for n, r in zip(chunk, replies, strict=True))
    plan = identity.plan_identities(sizes, tops)
    headers_read = {n for n, body in tops.items() if body is not None}  # served: TOP answered +OK
    del tops
    skipped = {n: f"unidentified:{sizes[n]}:{n}" for n in plan.need_content if cap and sizes[n] > cap}
    digests: dict[int, str] = {}
    refused: list[str] = []
    readable = [n for n in plan.need_content if n not in skipped]
    for msgnum_window in msgnum_windows(readable, sizes, limit=limit, window_octets=window_octets):
        outcome = await run(functools.partial(_digest_window, session, msgnum_window))
        for msgnum, result in zip(msgnum_window, outcome, strict=True):
            if isinstance(result, str):
                digests[msgnum] = result
            else:
                refused.append(session.redact(result.render()))
    keys = {**plan.header_keys, **identity.content_keys(digests), **skipped}
    entries: list[InventoryEntry] = []
    msgnum_by_key: dict[str, int] = {}
    size_by_key: dict[str, int] = {}
    served: set[str] = set()
    served_unnamed = 0
    for msgnum in msgnums:
        key = keys.get(msgnum)
        read = msgnum in headers_read or msgnum in digests
        if key is not None:
            msgnum_by_key[key] = msgnum
            size_by_key[key] = sizes[msgnum]
            entries.append(InventoryEntry(POP3Key(key), sizes[msgnum]))
            if read:
                served.add(key)
        elif read:
            served_unnamed += 1
    what = "does not offer UIDL" if "UIDL" not in session.caps else "refused UIDL"
    warnings = [
        f"the server {what} (RFC 1939 section 7): messages are identified by digests of their "
        f"content; {len(plan.header_keys)} by header section (TOP), {len(digests)} by full content "
        "(downloaded in full in every cycle)"
    ]
    if plan.collisions:
        warnings.append(
            f"{len(plan.collisions)} messages share their header section with another one: "
            "identified by full content"
        )
    if skipped:
        warnings.append(
            f"{len(skipped)} messages above max_message_size cannot be identified without "
            "downloading them: skipped, left on the server"
        )
    if refused:
        warnings.append(
            f"{len(refused)} messages could not be read to identify them ({refused[0]}): "
            "left on the server, tried again next cycle"
        )
    _log.info(  # every cycle: info, not warning; the status carries the warning
        "pop3.identity.content-digest",
        account=acct,
        by_header=len(plan.header_keys),
        by_content=len(digests),
        header_collisions=len(plan.collisions),
        unidentified=len(refused),
    )
    return DigestInventory(
        entries, msgnum_by_key, size_by_key, tuple(warnings), frozenset(served), served_unnamed
    )
