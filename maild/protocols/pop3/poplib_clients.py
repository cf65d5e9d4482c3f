"""The poplib clients a POP3 session connects with: poplib.POP3 and POP3_SSL, mended for maild.

poplib leaks the socket when the greeting fails and reads lines of any length; these subclasses close
it and bound each line they read (:func:`.lines.bounded_getline`: the greeting, STLS, USER, PASS, AUTH).
:class:`~maild.protocols.pop3.session.POP3Session` uses them until login; maild's own reader takes over
after. Split from ``session.py`` in session 15 with no change of behaviour.
"""

from __future__ import annotations

import contextlib
import poplib
import ssl

from maild.protocols.pop3.lines import bounded_getline

__all__ = ["BoundedPOP3", "BoundedPOP3SSL", "close_quietly"]


def close_quietly(pop: poplib.POP3) -> None:
    """Close a poplib session's file and socket, also a half-constructed one; never raises."""
    with contextlib.suppress(AttributeError, OSError):
        pop.close()


class BoundedPOP3(poplib.POP3):
    """poplib.POP3 that closes its socket when the greeting fails (poplib leaks it) and bounds each
    line it reads (:func:`.lines.bounded_getline`: the greeting, STLS, USER, PASS)."""

    def _getline(self) -> tuple[bytes, int]:
        return bounded_getline(self)

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            super().__init__(host, port, timeout)
        except BaseException:
            close_quietly(self)
            raise


class BoundedPOP3SSL(poplib.POP3_SSL):
    """poplib.POP3_SSL that closes its socket when the greeting fails (poplib leaks it) and bounds
    each line it reads (:func:`.lines.bounded_getline`)."""

    def _getline(self) -> tuple[bytes, int]:
        return bounded_getline(self)

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        try:
            super().__init__(host, port, timeout=timeout, context=context)
        except BaseException:
            close_quietly(self)
            raise
