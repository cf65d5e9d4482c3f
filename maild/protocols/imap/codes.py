"""The IMAP response codes maild acts on by name (RFC 5530), never by a completion's free text.

May import: nothing.
"""

from __future__ import annotations

__all__ = ["SESSION_CODES", "THROTTLE_CODES"]

#: RFC 5530 response codes that mean "come back later".
THROTTLE_CODES = frozenset({"UNAVAILABLE", "LIMIT", "INUSE"})
#: Session-level refusals: the throttle codes and ``[SERVERBUG]`` (RFC 5530 section 3).
SESSION_CODES = THROTTLE_CODES | {"SERVERBUG"}
