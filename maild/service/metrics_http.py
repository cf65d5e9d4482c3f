"""``metrics_listen``: the Prometheus metrics over HTTP for a scraper, next to the textfile.

A deliberately small HTTP/1.1 responder on asyncio streams: one request per connection, ``GET`` (or
``HEAD``) ``/metrics`` answers the exposition text, anything else 404 or 405, then the connection
closes. The request head is bounded in size and time, so a client that sends too much or nothing
cannot hold memory or a connection. Bind it to loopback (or a management network): there is no
authentication, and the metrics name accounts and organisations.

Standard: RFC 9112 (HTTP/1.1 message syntax): request line, header section ending in an empty line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from maild.errors import ControlError

log = structlog.get_logger("maild.service.metrics_http")

#: Octets a request head (request line and headers) may have; longer requests get 431.
MAX_REQUEST_OCTETS = 8192
#: Seconds a client has to send its request head.
REQUEST_TIMEOUT_S = 10.0
#: Connections answered at once; a connection arriving while all are busy gets ``503`` and is closed
#: at once (before session 10 it waited, holding a file descriptor: thousands of clients that never
#: finished their request could use up the daemon's descriptors, and with them its mail and archive).
MAX_CONNECTIONS = 8
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """Serve ``GET /metrics`` on ``host``:``port``.

    Args:
        host: the address to listen on (an IP address or a host name).
        port: the TCP port.
        render: returns the current exposition text (awaited per request).
    """

    def __init__(self, host: str, port: int, render: Callable[[], Awaitable[str]]) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def start(self) -> None:
        """Listen.

        Raises:
            ControlError: ``metrics-listen`` when the address cannot be bound (in use, not local).
        """
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_REQUEST_OCTETS
            )
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise ControlError(
                "metrics-listen", f"daemon.metrics_listen: cannot listen on {where}: {exc.strerror}"
            ) from None
        log.info("metrics.listening", address=f"{self.host}:{self.port}")

    @property
    def busy(self) -> bool:
        """Whether all :data:`MAX_CONNECTIONS` slots are taken (a new connection is then refused)."""
        return self._slots.locked()

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when ``port`` was 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and wait for connections being answered."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.busy:  # every slot taken: refuse now rather than hold the connection open
            await self._refuse(writer)
            return
        async with self._slots:
            try:
                status, body, head_only = await self._answer(reader)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode("ascii") + (b"" if head_only else body))
                await writer.drain()
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter) -> None:
        """Answer ``503`` without reading the request, and close (bounded by REQUEST_TIMEOUT_S)."""
        body = b"busy: try again\n"
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode("ascii") + body)
            writer.close()
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, bytes, bool]:
        """(status line text, body, whether to send the head only) for one request."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, ValueError):
            return "431 Request Header Fields Too Large", b"request head too large\n", False
        except asyncio.IncompleteReadError:
            return "400 Bad Request", b"incomplete request\n", False
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return "400 Bad Request", b"bad request line\n", False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return "404 Not Found", b"maild serves /metrics\n", False
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET or HEAD\n", False
        return "200 OK", (await self._render()).encode("utf-8"), method == b"HEAD"
