"""A loopback token endpoint answering every POST with a scripted JSON object and HTTP status, for tests of what
maild makes of an endpoint's answers (echoed secrets, throttling, errors)."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "EchoEndpoint", "echo_endpoint"]

Answer = Callable[[dict[str, str]], dict[str, Any]]


class EchoEndpoint:
    """A loopback token endpoint answering HTTP ``status`` (400) with whatever ``answer(form)`` makes of the
    request, or ``raw``."""

    def __init__(self) -> None:
        self.answer: Answer = lambda form: {"error": "invalid_grant"}
        self.status = 400
        self.raw: bytes | None = None
        """Sent instead of the JSON of ``answer`` when set."""
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                owner.requests += 1
                body = owner.raw if owner.raw is not None else json.dumps(owner.answer(form)).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def echo_endpoint() -> Iterator[EchoEndpoint]:
    """An :class:`EchoEndpoint`, stopped at the end of the block."""
    server = EchoEndpoint()
    try:
        yield server
    finally:
        server.close()
