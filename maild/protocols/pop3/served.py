"""What one POP3 session served (RETR, TOP), for ending it without QUIT when a message it served is
not kept.

A POP3 server set to delete what POP3 downloads (Gmail's "delete Gmail's copy", some hosters)
removes, in the UPDATE state that QUIT starts, the messages it served by RETR and some also by TOP;
RSET before QUIT is no promise there. A session that ends without QUIT never enters UPDATE (RFC 1939
section 6), so the adapter (:class:`~maild.protocols.pop3.maildrop.POP3Maildrop`) records here every
message it asks for, and :meth:`ServedLedger.unkept` tells whether one is in none of the keys the
caller keeps (session 14; the digest inventory's header reads since session 15). Split from
``maildrop.py`` in session 15.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from maild.model import MessageKey


class ServedLedger:
    """The keys one POP3 session served, in two sets: what :meth:`retrieve
    <maild.protocols.pop3.maildrop.POP3Maildrop.retrieve>`, ``peek`` and ``header_fields`` asked
    for (a RETR answered ``-ERR`` is taken out again: nothing was downloaded), and what the digest
    inventory of a server without UIDL read to name messages (``TOP n 0`` or RETR; a later refused
    RETR does not undo that read), plus a count of messages that inventory read and left without
    an identity (never kept: no key names them).
    """

    __slots__ = ("_inventory", "_requested", "_topped", "_unnamed")

    def __init__(self) -> None:
        self._requested: set[MessageKey] = set()
        self._topped: set[MessageKey] = set()
        self._inventory: set[MessageKey] = set()
        self._unnamed = 0

    def asked(self, keys: Iterable[MessageKey], *, top: bool = False) -> None:
        """Record ``keys`` as served (asked for by RETR, or by TOP when ``top``; recorded before the
        command goes out, since a reply cut short may count as a download)."""
        if top:
            keys = list(keys)
            self._topped.update(keys)
        self._requested.update(keys)

    def refused(self, key: MessageKey) -> None:
        """Take ``key`` out of the requested ones: its RETR was answered ``-ERR`` (nothing served by
        it). A key this session asked for by TOP stays served: the TOP reply was a read, a later
        refused RETR does not undo it (review of session 15: the listed-size check's ``TOP n 0``
        of another message, then its RETR refused, and a failure after it sent RSET, QUIT)."""
        if key not in self._topped:
            self._requested.discard(key)

    def named(self, keys: Iterable[MessageKey], unnamed: int) -> None:
        """Record what the digest inventory read: ``keys`` it named, ``unnamed`` it read and could
        not name."""
        self._inventory.update(keys)
        self._unnamed += unnamed

    def unkept(self, *kept: Collection[MessageKey]) -> bool:
        """Whether a served message is in none of ``kept`` (always, once the digest inventory read
        one it could not name).

        Sets first, by set difference (their stored hashes: ~10 us for 2,000 keys, where a
        membership test per key costs ~1 ms, the dataclass keys hashing in Python); other
        collections by membership.
        """
        if self._unnamed:
            return True
        sets = [keys for keys in kept if isinstance(keys, set | frozenset)]
        others = [keys for keys in kept if not isinstance(keys, set | frozenset)]
        rest = self._requested.difference(*sets)
        if self._inventory:
            rest |= self._inventory.difference(*sets)
        return any(all(key not in keys for keys in others) for key in rest)
