"""The server's own floor for a no-op cycle: the same commands as maild, from a minimal client.

A blocking socket client with no parsing beyond finding the end of each reply, so its time is the
server's time plus the round trips; what maild's no-op cycle costs above it is maild's own work.
POP3 sends what a maild cycle sends (greeting, ``USER``, ``PASS``, ``CAPA``, ``UIDL`` and ``LIST``
pipelined, ``QUIT``); IMAP both the fresh-login cycle (``LOGIN``, ``SELECT``, ``UID SEARCH ALL``,
``LOGOUT``) and the kept-session one (``NOOP``, ``SELECT``, ``UID SEARCH ALL`` on a logged-in
connection).
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable

__all__ = ["imap_floor_s", "pop3_floor_s"]


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""

    def until(self, done: Callable[[bytes], bool]) -> bytes:
        while not done(self.buf):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf, b""
        return data

    def lines(self, count: int) -> bytes:
        return self.until(lambda b: b.count(b"\r\n") >= count)

    def close(self) -> None:
        self.sock.close()


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 9051 section 4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _multiline_replies(count: int) -> Callable[[bytes], bool]:
    return lambda b: b.count(b"\r\n.\r\n") >= count


def _median_s(once: Callable[[], float], repeat: int) -> float:
    once()  # warm: the first login of a user opens its index
    return statistics.median(once() for _ in range(repeat))


def pop3_floor_s(host: str, port: int, user: str, password: str, *, repeat: int = 15) -> float:
    """Median seconds for a raw POP3 no-op cycle (see the module docstring)."""

    def once() -> float:
        started = time.perf_counter()
        conn = _Conn(host, port)
        conn.lines(1)
        for command in (f"USER {user}", f"PASS {password}"):
            conn.sock.sendall(command.encode() + b"\r\n")
            if not conn.lines(1).startswith(b"+OK"):
                conn.close()
                raise ConnectionError(f"{command.split()[0]} refused")
        conn.sock.sendall(b"CAPA\r\n")
        conn.until(_multiline_replies(1))
        conn.sock.sendall(b"UIDL\r\nLIST\r\n")
        conn.until(_multiline_replies(2))
        conn.sock.sendall(b"QUIT\r\n")
        conn.lines(1)
        conn.close()
        return time.perf_counter() - started

    return _median_s(once, repeat)


def imap_floor_s(host: str, port: int, user: str, password: str, *, repeat: int = 15) -> tuple[float, float]:
    """Median seconds for a raw IMAP no-op cycle with a fresh login, and on a kept session."""
    tags = iter(range(1, 1_000_000))

    def command(conn: _Conn, text: str) -> None:
        tag = f"f{next(tags)}".encode()
        conn.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        reply = b"\r\n" + conn.until(lambda b: b"\r\n" + tag + b" " in b"\r\n" + b)
        if not reply[reply.index(b"\r\n" + tag + b" ") :].startswith(b"\r\n" + tag + b" OK"):
            raise ConnectionError(f"{text.split()[0]} refused")

    def fresh() -> float:
        started = time.perf_counter()
        conn = _Conn(host, port)
        conn.lines(1)
        command(conn, f"LOGIN {_quoted(user)} {_quoted(password)}")
        command(conn, "SELECT INBOX")
        command(conn, "UID SEARCH ALL")
        command(conn, "LOGOUT")
        conn.close()
        return time.perf_counter() - started

    kept = _Conn(host, port)

    def reused() -> float:
        started = time.perf_counter()
        command(kept, "NOOP")
        command(kept, "SELECT INBOX")
        command(kept, "UID SEARCH ALL")
        return time.perf_counter() - started

    try:
        kept.lines(1)
        command(kept, f"LOGIN {_quoted(user)} {_quoted(password)}")
        return _median_s(fresh, repeat), _median_s(reused, repeat)
    finally:
        kept.close()
