"""Talking to the scripted servers and the fault proxy byte by byte, and checking they left no thread behind.

Used by ``tests/faults/test_proxy.py`` and ``tests/faults/test_scripted_pop3.py``.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import threading
from collections.abc import Iterator

TIMEOUT_S = 5.0
"""Seconds a client waits for any single reply."""
SILENCE_S = 0.3
"""How long a test listens to prove that nothing arrives."""


def recv_until(sock: socket.socket, end: bytes) -> bytes:
    """Read until the data received ends with ``end``; fail on EOF first."""
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def recv_to_eof(sock: socket.socket) -> bytes:
    """Read until the other side closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@contextlib.contextmanager
def pop3_client(address: tuple[str, int], *, login: bool = True) -> Iterator[poplib.POP3]:
    """A poplib client on ``address``, logged in as the scripted server's default user unless ``login`` is false."""
    client = poplib.POP3(*address, timeout=TIMEOUT_S)
    try:
        if login:
            client.user("alice")
            client.pass_("secret")
        yield client
    finally:
        client.close()


def leaked_threads(*prefixes: str) -> list[threading.Thread]:
    """Live threads whose names start with one of ``prefixes`` (a test's servers and proxies must stop theirs)."""
    return [t for t in threading.enumerate() if t.name.startswith(prefixes) and t.is_alive()]
