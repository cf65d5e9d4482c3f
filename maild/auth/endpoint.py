"""One bounded HTTP exchange with an OAuth2 endpoint: POST a form, read the status and the body.

:mod:`urllib.request` (environment proxies, redirects) with two bounds of our own: the body read is at most
:data:`MAX_RESPONSE_OCTETS`, and the whole exchange (connecting, sending, status, headers, body) ends within
:data:`HTTP_TIMEOUT_S`. A socket timeout alone bounds each read, not the exchange: an endpoint sending one
octet every 29 s would hold the calling thread, and the account's token lock, for days (QA of session 11).
The socket is watched from before its TCP connect (:func:`_connect_watched`), so a connect to a host
dropping the SYN and a TLS handshake that never ends are cut off too, at the deadline and by
:func:`abort_exchanges` (the handshake since session 14; the connect since session 15: before, it ran to
the socket's own 30 s timeout, which no abort reached). Not covered: the host name's resolution
(``getaddrinfo``), which the system's resolver bounds.

:func:`abort_exchanges` ends every exchange running now: a stopping daemon calls it once its cycles are
done, so a hanging endpoint does not hold the process's exit for the rest of :data:`HTTP_TIMEOUT_S` (the
worker thread it blocks is joined at exit; QA of session 14: 29 s after SIGTERM with ``shutdown_timeout``
10 s, against systemd's ``TimeoutStopSec=30s``).
Blocking: call it from a worker thread or the CLI, never on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from maild.errors import ProtocolError, TransientError
from maild.model import is_loopback

if TYPE_CHECKING:
    import ssl  # the annotation only: ssl is imported by urllib when an endpoint is asked

__all__ = [
    "HTTP_TIMEOUT_S",
    "MAX_RESPONSE_OCTETS",
    "abort_count",
    "abort_exchanges",
    "endpoint_allowed",
    "post",
]

#: Longest token or device-authorization response read, in octets (real ones are 1-5 KB).
MAX_RESPONSE_OCTETS: Final = 64 * 1024
#: Limit in seconds for one exchange with a token endpoint as a whole: connecting, sending the request and
#: reading the whole answer (an endpoint trickling its answer is cut off then, not after each read).
HTTP_TIMEOUT_S: Final = 30.0


class _Deadline:
    """Shuts every socket of one HTTP exchange when :data:`HTTP_TIMEOUT_S` has passed since it began.

    A socket timeout bounds each read only: an endpoint sending one octet every 29 s would hold the
    calling thread (and the account's token lock) for days. Shutting the socket from a timer thread
    wakes the blocked read, which then sees the end of the stream.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.aborted = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def abort(self) -> None:
        """End the exchange now (see :func:`abort_exchanges`)."""
        self.aborted = True
        self._expire()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` at the deadline (at once if it has passed)."""
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            # the plain socket's shutdown, also under TLS: ssl.SSLSocket.shutdown would drop its TLS
            # object while the reading thread is still inside it
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


_LIVE: set[_Deadline] = set()
_LIVE_LOCK = threading.Lock()
_ABORTS = [0]  # calls of abort_exchanges so far (a list: changed in place, under _LIVE_LOCK)


def abort_count() -> int:
    """How many times :func:`abort_exchanges` was called in this process: a wait that must end with the
    exchanges (the refresh-token file's lock, :mod:`maild.auth.token_store`) gives up when it changes."""
    with _LIVE_LOCK:
        return _ABORTS[0]


def abort_exchanges() -> int:
    """End every exchange with an endpoint running now, in any thread; returns how many.

    Their sockets are shut, so each :func:`post` raises :class:`~maild.errors.TransientError` ("stopped")
    within moments instead of waiting up to :data:`HTTP_TIMEOUT_S` for an endpoint that does not answer.
    A stopping daemon calls it once its cycles have ended or were cancelled: nothing waits for these
    answers any more, but the threads they block are joined at the interpreter's exit. An exchange still
    in its TCP connect ends too (its socket is shut: since session 15). Exchanges begun later are not
    affected.
    """
    with _LIVE_LOCK:
        live = list(_LIVE)
        _ABORTS[0] += 1
    for deadline in live:
        deadline.abort()
    return len(live)


def endpoint_allowed(url: str) -> bool:
    """Whether maild talks to ``url``: ``https://`` to any host, ``http://`` only to a loopback address
    (tests, local proxies); the rule of :func:`maild.auth.oauth2.check_endpoint` for configured
    endpoints and of :func:`post` for where an endpoint redirects."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return True
    return parts.scheme == "http" and is_loopback(host)


CONNECT_POLL_S: Final = 0.1
"""How often a TCP connect in progress looks whether its exchange was ended, in seconds: the connect is
non-blocking and waited for in slices of this length, so an abort that comes before the connect has
begun (when shutting the socket does nothing yet) still ends it within this time."""


def _connect_watched(
    deadline: _Deadline, address: tuple[str, int], timeout: object = None, source_address: object = None
) -> socket.socket:
    """:func:`socket.create_connection` with each socket watched by ``deadline`` before its connect, so
    that the deadline and :func:`abort_exchanges` end a connect to a host that drops the SYN: the
    connect is non-blocking, waited for in :data:`CONNECT_POLL_S` slices, and ended as soon as the
    deadline has passed or the exchange was aborted (the socket is also shut then, which wakes the
    wait at once). The first address that connects wins; ``timeout`` (seconds) bounds each connect.

    Raises:
        OSError: no address could be connected (the last error: refused, timed out), or ``deadline``
            ended the connect.
    """
    host, port = address
    limit_s = float(timeout) if isinstance(timeout, int | float) else HTTP_TIMEOUT_S
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            deadline.watch(sock)
            if isinstance(source_address, tuple):
                sock.bind(source_address)
            _connect_polled(sock, sockaddr, limit_s, deadline)
        except OSError as exc:
            sock.close()
            last = exc
            if deadline.expired:
                break
            continue
        return sock
    raise last if last is not None else OSError(f"getaddrinfo returned no address for {host}")


def _connect_polled(sock: socket.socket, sockaddr: Any, limit_s: float, deadline: _Deadline) -> None:
    """Connect ``sock`` to ``sockaddr`` non-blocking, looking at ``deadline`` every
    :data:`CONNECT_POLL_S`; then give it ``limit_s`` as its timeout for what follows.

    Raises:
        OSError: refused or failed (its errno); TimeoutError after ``limit_s`` seconds; ECONNABORTED
            when ``deadline`` has passed or the exchange was aborted.
    """
    import errno
    import select
    import time

    sock.setblocking(False)
    code = sock.connect_ex(sockaddr)
    ends = time.monotonic() + limit_s
    waiting = select.poll()  # not select.select: a descriptor above 1023 is refused there
    waiting.register(sock, select.POLLOUT)
    while code in (errno.EINPROGRESS, errno.EAGAIN):
        if deadline.expired:
            raise OSError(errno.ECONNABORTED, "connect ended (deadline or stop)")
        left = ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        if waiting.poll(min(CONNECT_POLL_S, left) * 1000):  # writable, or an error or hang-up
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code != 0:
        raise OSError(code, os.strerror(code))
    sock.settimeout(limit_s)


class _RefusedRedirect(Exception):
    """An endpoint redirected to a URL :func:`endpoint_allowed` refuses (the URL's scheme and host)."""


def _opener(deadline: _Deadline) -> Any:
    """urllib's default opener (environment proxies, redirects); ``deadline`` watches its connections.

    Redirects are followed only to URLs :func:`endpoint_allowed` accepts: urllib also follows them
    to ``ftp://``, whose connections the deadline does not watch (an endpoint redirecting there held
    the thread past :data:`HTTP_TIMEOUT_S`), and from ``https://`` to plain ``http://`` anywhere, which
    the configuration refuses (QA of session 12).
    """
    import http.client
    import urllib.parse
    import urllib.request

    def connect_watched(
        address: tuple[str, int], timeout: object = None, source_address: object = None
    ) -> Any:
        return _connect_watched(deadline, address, timeout, source_address)

    class _HTTP(http.client.HTTPConnection):
        def connect(self) -> None:
            self._create_connection = connect_watched
            super().connect()

    class _HTTPS(http.client.HTTPSConnection):
        def connect(self) -> None:
            # HTTPSConnection.connect (3.11) with the TLS socket watched before its handshake, so that
            # a handshake that never ends is cut off at the deadline too; the TCP connect watched too
            self._create_connection = connect_watched
            http.client.HTTPConnection.connect(self)
            host = getattr(self, "_tunnel_host", None) or self.host
            context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
            self.sock = context.wrap_socket(self.sock, server_hostname=host, do_handshake_on_connect=False)
            deadline.watch(self.sock)
            self.sock.do_handshake()

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(_HTTP, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(_HTTPS, req)

    class _Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            if not endpoint_allowed(urllib.parse.urljoin(req.full_url, newurl)):
                parts = urllib.parse.urlsplit(newurl)
                raise _RefusedRedirect(f"{parts.scheme}://{parts.hostname or ''}")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, _Redirects)


def _stopped(account: str, what: str, url: str) -> TransientError:
    return TransientError(
        f"account {account}: {what} {url}: exchange stopped (maild is stopping)", account=account
    )


def post(
    account: str, url: str, fields: Iterable[tuple[str, str]], *, what: str = "token endpoint"
) -> tuple[int, bytes]:
    """POST a form to ``url``; the HTTP status and at most :data:`MAX_RESPONSE_OCTETS` of body (octets).

    Standard: RFC 6749 section 3.2 (token endpoint requests are POSTs of form fields).

    The whole exchange (connect, request, status, headers, body) ends within :data:`HTTP_TIMEOUT_S`.

    Args:
        account: the account name, for the error messages.
        url: the endpoint (checked by :func:`maild.auth.oauth2.check_endpoint` at load time).
        fields: the form fields, in order.
        what: how error messages name the endpoint.

    Raises:
        TransientError: the endpoint cannot be reached, does not answer in full within
            :data:`HTTP_TIMEOUT_S`, or answers 5xx; or :func:`abort_exchanges` ended the exchange.
        ProtocolError: the body is longer than :data:`MAX_RESPONSE_OCTETS`, or the endpoint redirects
            to a URL :func:`endpoint_allowed` refuses (not followed).
    """
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    data = urllib.parse.urlencode(list(fields)).encode("ascii")
    request = urllib.request.Request(  # noqa: S310 - scheme checked by check_endpoint at load time
        url,
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    del data
    with _Deadline(HTTP_TIMEOUT_S) as deadline:
        try:
            try:
                response = _opener(deadline).open(request, timeout=HTTP_TIMEOUT_S)
            except urllib.error.HTTPError as exc:  # 4xx/5xx: the body still says why
                response = exc
            with response:
                status = int(response.status or 0)
                body = response.read(MAX_RESPONSE_OCTETS + 1)
        except _RefusedRedirect as exc:
            raise ProtocolError(
                f"account {account}: {what} {url} redirected to {exc}, which maild does not follow"
                " (https://, or http:// to loopback only)",
                account=account,
            ) from None
        except http.client.HTTPException as exc:  # a broken status line, header flood, cut chunk
            if deadline.aborted:
                raise _stopped(account, what, url) from None
            if not deadline.expired:
                raise TransientError(
                    f"account {account}: {what} {url} answered with broken HTTP ({type(exc).__name__})",
                    account=account,
                ) from None
            raise TransientError(
                f"account {account}: {what} {url} did not answer within {HTTP_TIMEOUT_S:g} s",
                account=account,
            ) from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, connection resets
            if deadline.aborted:
                raise _stopped(account, what, url) from None
            if deadline.expired:
                raise TransientError(
                    f"account {account}: {what} {url} did not answer within {HTTP_TIMEOUT_S:g} s",
                    account=account,
                ) from None
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise TransientError(
                f"account {account}: {what} {url} unreachable: {reason}", account=account
            ) from None
    if deadline.aborted:
        raise _stopped(account, what, url)
    if deadline.expired:  # cut off: what was read is a part at best
        raise TransientError(
            f"account {account}: {what} {url} did not answer within {HTTP_TIMEOUT_S:g} s",
            account=account,
        )
    if len(body) > MAX_RESPONSE_OCTETS:
        raise ProtocolError(
            f"account {account}: {what} {url}: response longer than {MAX_RESPONSE_OCTETS} octets",
            account=account,
        )
    if status >= 500:
        raise TransientError(f"account {account}: {what} {url} answered HTTP {status}", account=account)
    return status, body
