"""Capped multi-reply reads of a POP3 session: every reply of a window capped while it arrives.

``TOP n 0`` header sections (:func:`header_sections`, for the deletion checks) and ``TOP n <lines>``
replies with a cap per reply (:func:`exchange_many`, for peek), each run in a worker thread of
maild's POP3 pool on a :class:`~maild.protocols.pop3.session.POP3Session`, one step at a time. A reply
over its cap stops the reading where the decoder passed it (:attr:`.decoder.ReplyDecoder.over_cap_octets`),
so a window holds at most the sum of its caps; the session's own cap is restored after each call. The
session is then out of step: the caller aborts it, no QUIT (RFC 1939 section 6). Split from
``session.py`` in session 15 with no change of behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence

from maild.errors import ProtocolError
from maild.protocols.pop3 import wire
from maild.protocols.pop3.session import POP3Session

__all__ = ["exchange_many", "header_sections"]


def header_sections(
    session: POP3Session, msgnums: Sequence[int], max_reply_octets: int, window: int = 1
) -> list[wire.Reply]:
    """``TOP n 0`` for each of ``msgnums``, sent ``window`` commands at a time (one round trip per
    window; more than 1 only when the server announced PIPELINING), every reply capped at
    ``max_reply_octets`` while it arrives (a header section, not a message; the session's cap is
    restored after): one window holds at most ``window`` x ``max_reply_octets`` octets of replies.

    Standard: RFC 1939 section 7 (TOP), RFC 2449 sections 6.1 (CAPA TOP) and 6.6 (PIPELINING).

    Raises:
        ProtocolError: a reply is malformed, or larger than ``max_reply_octets`` ("server answered
            TOP n 0 with more than ... octets": reading stopped there; the session is then out
            of step: abort it, no QUIT, RFC 1939 section 6). NetworkTimeout, ConnectError: as
            for :meth:`POP3Session.run`.
    """
    decoder = session.decoder
    saved = decoder.max_reply_octets
    decoder.max_reply_octets = cap = min(saved, max_reply_octets)
    step = max(window, 1)
    replies: list[wire.Reply] = []
    try:
        with session.mapped("reading header sections"):
            for start in range(0, len(msgnums), step):
                commands = [f"TOP {n} 0" for n in msgnums[start : start + step]]
                session.drain_owed()
                session.send_ahead(commands, multiline=True)
                session.receive(len(commands), multiline=True, into=replies)
            return replies
    except ProtocolError as exc:
        received = decoder.over_cap_octets
        if received is None:
            raise
        raise session.protocol_error(
            f"server answered TOP {msgnums[len(replies)]} 0 with more than {cap} octets (at least"
            f" {received} read before maild stopped reading): not a header section",
            standard="RFC 1939 section 7",
        ) from exc
    finally:
        decoder.max_reply_octets = saved


def exchange_many(
    session: POP3Session,
    commands: Sequence[str],
    *,
    pipelined: bool,
    reply_caps: Sequence[int] | None = None,
) -> list[wire.Reply]:
    """Send ``commands`` with multi-line ``+OK`` replies (``TOP n lines``), at once when
    ``pipelined`` (RFC 2449 section 6.6), and read their replies, in one executor job.

    ``reply_caps``: a cap in octets for each command's reply (within the session's own), enforced
    while it arrives, so the replies held together never pass their sum.

    Raises:
        ProtocolError: a reply is malformed or too large ("server answered TOP n l with more than
            ... octets" for a reply over its cap: reading stopped there, the session is out of
            step). NetworkTimeout, ConnectError: as for :meth:`POP3Session.run`.
    """
    if reply_caps is None:
        with session.mapped("reading messages"):
            return session.exchange(commands, multiline=True, pipelined=pipelined)
    decoder = session.decoder
    saved = decoder.max_reply_octets
    replies: list[wire.Reply] = []
    try:
        with session.mapped("reading messages"):
            session.drain_owed()
            batches = [commands] if pipelined else [[c] for c in commands]
            for batch in batches:
                session.send_ahead(batch, multiline=True)
                caps = [min(saved, cap) for cap in reply_caps[len(replies) : len(replies) + len(batch)]]
                session.receive(len(batch), multiline=True, into=replies, caps=caps)
            return replies
    except ProtocolError as exc:
        if decoder.over_cap_octets is None:
            raise
        raise session.protocol_error(
            f"server answered {commands[len(replies)]} with more than {decoder.max_reply_octets}"
            f" octets (at least {decoder.over_cap_octets} read before maild stopped reading)",
            standard="RFC 1939 section 7",
        ) from exc
    finally:
        decoder.max_reply_octets = saved
