"""The POP3 adapter's DELE step: mark messages deleted, pipelined in windows when allowed.

DELE only marks (RFC 1939 section 5): the server removes the marked messages in the UPDATE state that
``+OK`` to QUIT starts (section 6), so a session that ends otherwise deletes nothing. Split from
``maildrop.py`` in session 15 with no change of behaviour.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from maild.model import POP3Key
from maild.protocols.pop3.session import POP3Session
from maild.protocols.pop3.top_reads import Run


async def mark_deleted(
    session: POP3Session, run: Run, targets: Sequence[tuple[POP3Key, int]], window: int
) -> None:
    """``DELE`` each (key, message-number) of ``targets``, ``window`` commands per round trip (1
    without PIPELINING, RFC 2449 section 6.6); every reply of a window is read before a refusal is
    raised, so the session stays usable.

    Raises:
        ProtocolError: the server refused a DELE (naming how many and the first UIDL).
        NetworkTimeout, ConnectError: the session is broken; nothing is deleted.
    """
    for start in range(0, len(targets), window):
        chunk = targets[start : start + window]
        commands = [f"DELE {n}" for _, n in chunk]
        replies = await run(functools.partial(session.run, "deleting", commands, multiline=False))
        refused = [(key, r.status) for (key, _), r in zip(chunk, replies, strict=True) if not r.status.ok]
        if refused:
            key, status = refused[0]
            raise session.protocol_error(
                f"DELE refused for {len(refused)} message(s), first UIDL {key.uidl!r}",
                line=session.redact(status.render()),
                standard="RFC 1939 section 5",
            )
