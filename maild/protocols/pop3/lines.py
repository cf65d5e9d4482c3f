"""Reading one POP3 line with a deadline for the whole line.

``timeout_s`` bounds each read of the socket, so it never fires while octets keep coming: a server
sending one octet every few seconds held a session for hours (QA of session 13). poplib reads the
lines before maild takes the socket over (the greeting, and the replies to STLS, USER and PASS) with
``readline``; :func:`bounded_getline` replaces its ``_getline`` with the same result and a deadline of
:data:`LINE_REPLY_TIMEOUTS` times the socket's timeout. After the take-over,
``maild.protocols.pop3.session.POP3Session.receive`` applies the same deadline to one-line replies.

May import: the standard library only.
"""

from __future__ import annotations

import io
import poplib
import time
from typing import cast

LINE_REPLY_TIMEOUTS = 2
"""A single-line reply (``+OK``/``-ERR`` to DELE, STAT, USER, PASS, QUIT, ...) must arrive whole within
this many times the account's ``timeout_s``: the inactivity limit never fires while octets keep
coming, so a server sending one octet every few seconds held a cycle (and its connection slot) for
hours (QA of session 13); multi-line replies have their progress floor instead."""

POPLIB_MAX_LINE_OCTETS: int = getattr(poplib, "_MAXLINE", 2048)
"""The longest line poplib reads (``poplib._MAXLINE``): the greeting and the replies to STLS, USER
and PASS, which poplib reads before maild takes the socket over."""


class LineTooSlow(TimeoutError):
    """A one-line reply still incomplete after its deadline while octets kept coming; its text says
    how long."""


def bounded_getline(pop: poplib.POP3) -> tuple[bytes, int]:
    """poplib's ``_getline`` (one line of at most :data:`POPLIB_MAX_LINE_OCTETS` octets, its end
    removed, and its length in octets) with a deadline of :data:`LINE_REPLY_TIMEOUTS` times the
    socket's timeout for the whole line: poplib's ``readline`` waits for the line's end however slowly
    octets come (QA of session 13).

    Raises:
        LineTooSlow: the deadline passed before the line ended.
        poplib.error_proto: the line is too long, or the server closed the connection first.
        TimeoutError: one read waited the socket's whole timeout.
    """
    timeout = pop.sock.gettimeout()
    limit_s = None if timeout is None else LINE_REPLY_TIMEOUTS * timeout
    started = time.monotonic()
    file = cast(io.BufferedReader, pop.file)
    parts: list[bytes] = []
    size = 0
    while True:
        data = file.peek(1)  # what is buffered, after at most one read of the socket
        if not data:
            break
        end = data.find(b"\n")
        chunk = file.read(min(len(data) if end < 0 else end + 1, POPLIB_MAX_LINE_OCTETS + 1 - size))
        parts.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > POPLIB_MAX_LINE_OCTETS:
            break
        if limit_s is not None and time.monotonic() - started > limit_s:
            raise LineTooSlow(
                f"a one-line reply still incomplete after {limit_s:g} s ({LINE_REPLY_TIMEOUTS} x timeout)"
            )
    line = b"".join(parts)
    if len(line) > POPLIB_MAX_LINE_OCTETS:
        raise poplib.error_proto("line too long")
    if not line:
        raise poplib.error_proto("-ERR EOF")
    if line[-2:] == b"\r\n":
        return line[:-2], len(line)
    if line[:1] == b"\r":
        return line[1:-1], len(line)
    return line[:-1], len(line)
