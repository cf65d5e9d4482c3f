"""A large RETR body written to the spool as it arrives (:mod:`maild.spool`), never held whole.

:meth:`.session.POP3Session.receive` asks a :class:`BodySpooler` after each read whether the body of
the reply being received has grown past the spool's threshold; from then on the decoder's body parts
(:meth:`.decoder.ReplyDecoder.take_body_part`, whole un-stuffed lines) go to a spool file about a
:data:`~maild.spool.SPOOL_PART_OCTETS` at a time, and the completed reply carries the spooled body
instead of bytes. A body that completes within one read past the threshold is spooled at once, so
that every message of at least the threshold leaves memory before it waits for its commit.

When the spool cannot take the message (:class:`~maild.spool.SpoolFull`), the rest of its body is
still read off the connection (the session stays usable) and dropped, a part at a time; the reply
then carries ``spool_error`` and the message is reported as not retrieved this cycle.

Runs in the POP3 worker thread, like the rest of the session.
"""

from __future__ import annotations

from maild.protocols.pop3 import wire
from maild.protocols.pop3.decoder import ReplyDecoder
from maild.spool import SPOOL_PART_OCTETS, LenientSpoolWriter, Spool

SPOOL_WRITE_OCTETS = 128 * 2**10
"""Most octets handed to the spool writer at a time (128 KiB). The writer's mark scan
(:class:`maild.spool_view.MarkRecorder`) copies each view it is given once; a copy of a 1 MiB part
was a fresh mapping each time (blocks from :data:`maild.service.memory.MMAP_THRESHOLD_OCTETS`, 256
KiB, get their own), 4 KiB page faults for every spooled octet, where pieces below that threshold
reuse the same heap memory (docs/performance.md, "Session 10: the POP3 fetch's CPU")."""


class BodySpooler:
    """The spool state of the one reply being received (reset by :meth:`finish`).

    Args:
        spool: where large bodies go.
    """

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._writer = LenientSpoolWriter(spool)

    def after_feed(self, decoder: ReplyDecoder) -> None:
        """Move what the decoder holds of a large body into the spool file (or drop it, after a
        failure); nothing while the body is below the threshold. Never raises SpoolFull: it is
        kept for :meth:`finish`."""
        buffered = decoder.body_octets_buffered
        if buffered < (SPOOL_PART_OCTETS if self._writer.started else self._spool.threshold_octets):
            return
        decoder.take_body_part(self._write)

    def _write(self, part: memoryview) -> None:
        """Write ``part`` (a view of the receive buffer) in pieces of at most :data:`SPOOL_WRITE_OCTETS`."""
        write = self._writer.write
        octets = len(part)
        if octets <= SPOOL_WRITE_OCTETS:
            write(part)
            return
        for start in range(0, octets, SPOOL_WRITE_OCTETS):
            with part[start : start + SPOOL_WRITE_OCTETS] as piece:
                write(piece)

    def finish(self, reply: wire.Reply) -> wire.Reply:
        """The completed ``reply`` as handed on: with its body spooled (the rest written first), or
        dropped with ``spool_error``, or unchanged (small, or not a body); resets for the next."""
        body = reply.body
        if body is None:  # -ERR (cannot follow a begun body) or a single-line reply
            self.abort()
            return reply
        if not self._writer.started and len(body) < self._spool.threshold_octets:
            return reply
        self._writer.write(body)
        outcome = self._writer.finish()
        self._writer = LenientSpoolWriter(self._spool)
        if isinstance(outcome, str):
            return wire.Reply(reply.status, None, spool_error=outcome)
        if outcome is None:  # nothing was written: an empty body cannot pass the threshold
            return reply
        return wire.Reply(reply.status, None, spooled=outcome)

    def abort(self) -> None:
        """Drop the file of a reply that will not complete (the session broke)."""
        self._writer.abort()
        self._writer = LenientSpoolWriter(self._spool)
