"""One IMAP session over aioimaplib: connect, TLS, LOGIN, SELECT, LIST and the guarded command call.

:class:`IMAPSession` is what :class:`~.mailbox.IMAPMailbox` (fetching, deleting, appending)
and :class:`~maild.protocols.imap.idle.IMAPIdleSession` share. What it adds on top of the library:

* every tagged status is parsed and checked: NO and BAD come back from aioimaplib as data;
* user names and mailbox names are quoted here, mailbox names encoded as modified UTF-7
  (aioimaplib sends arguments raw; it quotes only the password);
* STARTTLS through :func:`~maild.protocols.imap.client.starttls`;
* SELECT, never EXAMINE (broken in the library);
* every library call is raced against an inactivity timeout of ``settings.timeout_s`` and against the
  connection-lost callback, because aioimaplib leaves a command pending forever when the connection
  drops. After a timeout, a lost connection or a cancellation the session is discarded and every
  later call raises :class:`~maild.errors.TransientError`.

With the other ``imap*`` adapter modules the only code that catches ``OSError``, ``ssl.SSLError`` and
aioimaplib's errors; aioimaplib's untyped values (``Any``) stay inside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib
import structlog

from maild.errors import (
    AccountError,
    AuthError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import (
    ServerSettings,
)
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap import wire
from maild.protocols.imap.client import IMAPClient, quiet_library_logger, starttls
from maild.protocols.tls import client_context

#: RFC 5530 response codes that mean "come back later".
THROTTLE_CODES = frozenset({"UNAVAILABLE", "LIMIT", "INUSE"})
#: Slowest upload rate assumed for APPEND, in octets per second: while a message is being sent
#: nothing arrives, so the inactivity limit is extended by its size divided by this rate.
MIN_UPLOAD_OCTETS_PER_S = 32 * 1024

#: One logger name for the whole IMAP adapter, as before it was split into modules.
_log = structlog.get_logger("maild.protocols.imap.mailbox")


def consume_outcome(task: asyncio.Future[Any]) -> None:
    """Mark a library task's exception as retrieved (it may finish after we stopped waiting)."""
    if not task.cancelled():
        task.exception()


class SelectRefused(ProtocolError):
    """SELECT was answered NO (no such mailbox, no permission): per-key failures in retrieve()."""


class IMAPSession:
    """An authenticated IMAP session with one account's server; not safe for concurrent use.

    Args:
        settings: server, TLS mode, credentials and ``timeout_s``, the longest silence in seconds
            tolerated during any one operation (connect, each command; a FETCH may take longer as
            long as data keeps arriving).
    """

    def __init__(self, settings: ServerSettings) -> None:
        quiet_library_logger()
        self._settings = settings
        self._client: Any = None
        self._lost: asyncio.Future[None] | None = None
        self._broken: str | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._selected: str | None = None
        self._uidvalidity = 0
        self._parked_at: float | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper-cased (``"UIDPLUS"``, ``"IDLE"``, ...)."""
        return self._capabilities

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version (e.g. ``"TLSv1.3"``) of an open session, None when plaintext."""
        with contextlib.suppress(Exception):
            ssl_object = self._client.protocol.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                return str(ssl_object.version())
        return None

    # ------------------------------------------------------------------ plumbing

    def _on_connection_lost(self, _exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _discard(self, reason: str) -> None:
        """Mark the session unusable and close its transport; later calls raise TransientError."""
        self._parked_at = None
        if self._broken is None:
            self._broken = reason
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            transport = client.protocol.transport
            if transport is not None:
                transport.abort()
        with contextlib.suppress(Exception):
            if not client._client_task.done():
                client._client_task.cancel()
        with contextlib.suppress(Exception):
            for task in list(client.protocol.tasks):
                task.cancel()

    def _error(
        self, cls: type[AccountError], message: str, *, line: str = "", standard: str = ""
    ) -> AccountError:
        """Build an error naming the account (never the password)."""
        text = f"{self._settings.account}: {message}"
        if issubclass(cls, ProtocolError):
            return cls(text, account=self._settings.account, line=line, standard=standard)
        return cls(text, account=self._settings.account)

    @property
    def _protocol(self) -> Any:
        """The library's protocol object of a usable session.

        Raises:
            TransientError: not opened, or discarded after a timeout, loss or cancellation.
        """
        if self._broken is not None:
            raise self._error(TransientError, f"session discarded ({self._broken})")
        if self._client is None:
            raise self._error(TransientError, "session not open")
        return self._client.protocol

    async def _call(
        self, what: str, start: Callable[[], Any], *, send_octets: int = 0, timeout_s: float | None = None
    ) -> Any:
        """Run one library call, raced against inactivity and the loss of the connection.

        Args:
            what: the command, for error messages (never holds a secret).
            start: makes the library's awaitable; called only when the session is usable.
            send_octets: octets the command uploads (APPEND); the inactivity limit is extended by
                ``send_octets / MIN_UPLOAD_OCTETS_PER_S`` seconds, since nothing arrives meanwhile.
            timeout_s: the inactivity limit in seconds; default the account's ``timeout_s``.

        Raises:
            TransientError: the session was discarded earlier.
            NetworkTimeout: nothing arrived for ``timeout_s`` seconds.
            ConnectError: the connection was lost or could not be made, or TLS failed.
            ProtocolError: aioimaplib rejected the state of the session or a response.
        """
        if self._broken is not None:
            raise self._error(TransientError, f"{what}: session discarded ({self._broken})")
        if self._client is None or self._lost is None:
            raise self._error(TransientError, f"{what}: session not open")
        if self._lost.done():
            self._discard("connection lost")
            raise self._error(ConnectError, f"{what}: connection lost")
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(start())
        task.add_done_callback(consume_outcome)
        began = loop.time() + send_octets / MIN_UPLOAD_OCTETS_PER_S
        if timeout_s is None:
            timeout_s = self._settings.timeout_s
        try:
            while not task.done():
                last = max(began, self._client.protocol.last_received)
                remaining = last + timeout_s - loop.time()
                if remaining <= 0:
                    self._discard(f"{what} timed out")
                    raise self._error(NetworkTimeout, f"{what}: no data from server for {timeout_s:g} s")
                await asyncio.wait((task, self._lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if not task.done() and self._lost.done():
                    self._discard(f"connection lost during {what}")
                    greeting = self._client.protocol.greeting_refused
                    if greeting is not None:
                        text = bytes(greeting[:200]).decode("utf-8", "replace")
                        raise self._error(ConnectError, f"{what}: server refused the session: {text}")
                    raise self._error(ConnectError, f"{what}: connection lost")
            return task.result()
        except asyncio.CancelledError:
            self._discard(f"{what} cancelled")
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise self._error(ProtocolError, f"{what}: cancelled inside aioimaplib") from None
            raise
        except MaildError:
            self._discard(f"{what} failed")
            raise
        except (TimeoutError, aioimaplib.CommandTimeout):
            self._discard(f"{what} timed out")
            raise self._error(NetworkTimeout, f"{what}: timed out after {timeout_s:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            self._discard("TLS certificate rejected")
            raise self._error(
                ConnectError, f"{what}: TLS certificate rejected: {exc.verify_message}"
            ) from None
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._discard(f"{what} failed: {type(exc).__name__}")
            raise self._error(ConnectError, f"{what}: {type(exc).__name__}: {exc}") from None
        except (aioimaplib.AioImapException, RecursionError, ValueError) as exc:
            self._discard(f"{what} failed in aioimaplib")
            raise self._error(
                ProtocolError, f"{what}: aioimaplib failed: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            if not task.done():
                task.cancel()

    def _completion(self, response: Any, what: str) -> tuple[list[imap_lex.Part], wire.StatusResponse]:
        """Split a library Response into its untagged parts and the parsed tagged status."""
        lines = list(response.lines)
        if not lines or not isinstance(lines[-1], bytes | bytearray):
            raise self._error(ProtocolError, f"{what}: response without tagged completion")
        try:
            status = wire.parse_completion(str(response.result), lines[-1])
        except ProtocolError as exc:
            self._discard(f"{what}: bad completion")
            raise self._error(ProtocolError, f"{what}: {exc}") from None
        if status.code == "ALERT":
            _log.warning("imap.alert", account=self._settings.account, command=what, text=status.text)
        return lines[:-1], status

    def _refused(self, status: wire.StatusResponse, what: str) -> AccountError:
        """The error for a NO or BAD completion, by RFC 5530 response code (never by text)."""
        detail = f"{what} refused: {status.describe()}"
        if status.condition == "NO" and status.code in THROTTLE_CODES:
            return self._error(ThrottledError, detail)
        if status.condition == "NO" and status.code == "SERVERBUG":
            return self._error(TransientError, detail)
        return self._error(ProtocolError, detail, line=status.describe(), standard="RFC 9051 section 7.1")

    async def _command(self, what: str, start: Callable[[], Any]) -> list[imap_lex.Part]:
        """Run a command that must end OK; return its untagged parts."""
        lines, status = self._completion(await self._call(what, start), what)
        if not status.ok:
            raise self._refused(status, what)
        return lines

    async def _capability(self) -> frozenset[str]:
        protocol = self._protocol
        lines = await self._command(
            "CAPABILITY",
            lambda: protocol.execute(
                aioimaplib.Command("CAPABILITY", protocol.new_tag(), loop=protocol.loop)
            ),
        )
        capabilities = frozenset().union(*(wire.parse_capability(line) for line in lines))
        if not capabilities & {"IMAP4REV1", "IMAP4REV2"}:
            raise self._error(
                ProtocolError,
                "server speaks neither IMAP4rev1 nor IMAP4rev2",
                standard="RFC 9051 section 7.2.2",
            )
        return capabilities

    # ------------------------------------------------------------------ session

    async def open(self) -> None:
        """Connect, negotiate TLS (implicit or STARTTLS), check CAPABILITY and LOGIN.

        The certificate and host name are always verified (``settings.ca_file`` or the system store).
        User name and password travel as quoted strings (RFC 9051 section 6.2.3).

        Cancelled at any await: the session is discarded; call :meth:`abort`.

        Raises:
            ConnectError: refused, unreachable, TLS failure, or the connection was lost.
            NetworkTimeout: the server was silent for ``timeout_s`` seconds.
            AuthError: LOGIN answered NO (RFC 5530 ``[AUTHENTICATIONFAILED]`` and others), or the
                user name or password holds CR, LF or NUL.
            ThrottledError: LOGIN answered NO ``[UNAVAILABLE]``, ``[LIMIT]`` or ``[INUSE]``.
            ProtocolError: no STARTTLS or LOGIN offered, BAD, or a broken response.
            RuntimeError: called a second time on the same object.
        """
        if self._client is not None:
            raise RuntimeError("open() may be called once per IMAPMailbox")
        settings = self._settings
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        context: ssl.SSLContext | None = None
        if settings.tls != "none":
            try:
                context = client_context(settings.ca_file)  # built once per CA file, then shared
            except (OSError, ssl.SSLError) as exc:
                raise self._error(ConnectError, f"cannot load ca_file {settings.ca_file!r}: {exc}") from None
        self._client = IMAPClient(
            settings.host,
            settings.port,
            timeout=settings.timeout_s,
            conn_lost_cb=self._on_connection_lost,
            ssl_context=context if settings.tls == "implicit" else None,
        )
        client = self._client
        await self._call("connect", client.wait_hello_from_server)
        preauth = client.get_state() == "AUTH"
        if settings.tls == "starttls":
            if preauth:
                self._discard("PREAUTH before STARTTLS")
                raise self._error(
                    ProtocolError, "PREAUTH greeting: STARTTLS impossible", standard="RFC 9051 section 6.2.1"
                )
            if "STARTTLS" not in await self._capability():
                raise self._error(
                    ProtocolError, "server offers no STARTTLS", standard="RFC 9051 section 6.2.1"
                )
            assert context is not None
            _lines, status = self._completion(
                await self._call(
                    "STARTTLS",
                    lambda: starttls(client.protocol, context, settings.host, settings.timeout_s),
                ),
                "STARTTLS",
            )
            if not status.ok:
                raise self._refused(status, "STARTTLS")
        capabilities = await self._capability()
        if not preauth:
            capabilities = await self._login(capabilities)
        self._capabilities = capabilities

    async def _login(self, capabilities: frozenset[str]) -> frozenset[str]:
        settings = self._settings
        if "LOGINDISABLED" in capabilities:
            raise self._error(
                ProtocolError, "server disables LOGIN here (use TLS)", standard="RFC 9051 section 6.2.3"
            )
        password = settings.password.reveal()
        try:
            user = wire.quote_astring(settings.username)
            wire.quote_astring(password)  # only the check: aioimaplib quotes the password itself
        except ValueError:
            raise self._error(AuthError, "user name or password contains CR, LF or NUL") from None
        protocol = self._protocol
        _lines, status = self._completion(
            await self._call("LOGIN", lambda: protocol.login(user, password)), "LOGIN"
        )
        if status.condition == "NO" and status.code not in THROTTLE_CODES | {"SERVERBUG"}:
            raise self._error(AuthError, f"LOGIN refused: {status.describe()}")
        if not status.ok:
            raise self._refused(status, "LOGIN")
        if status.code == "CAPABILITY":
            return wire.parse_capability(status.code_args)
        return await self._capability()

    async def _select(self, mailbox: str) -> wire.SelectInfo:
        """SELECT ``mailbox`` (read-write, so that STORE works; no flags change by selecting)."""
        protocol = self._protocol
        argument = wire.quote_astring(wire.encode_mailbox_name(mailbox))
        what = f"SELECT {mailbox!r}"
        self._selected = None
        lines, status = self._completion(await self._call(what, lambda: protocol.select(argument)), what)
        if status.condition == "NO" and status.code not in THROTTLE_CODES | {"SERVERBUG"}:
            raise SelectRefused(
                f"{self._settings.account}: {what} refused: {status.describe()}",
                account=self._settings.account,
            )
        if not status.ok:
            raise self._refused(status, what)
        info = wire.parse_select(lines, status)
        self._selected, self._uidvalidity = mailbox, info.uidvalidity
        return info

    async def list_mailboxes(self) -> list[imap_list.ListedMailbox]:
        """LIST every mailbox (``LIST "" "*"``), with special-use attributes when the server has them.

        With ``SPECIAL-USE`` and ``LIST-EXTENDED`` the command is ``LIST "" "*" RETURN (SPECIAL-USE)``
        (RFC 6154 section 5.1); other servers may still put ``\\Trash`` and the like in a plain LIST.

        Standard: RFC 9051 section 6.3.9 (LIST); RFC 6154.

        Raises:
            ProtocolError: LIST refused or a broken response (a name that is not modified UTF-7).
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        protocol = self._protocol
        args: tuple[str, ...] = ('""', '"*"')
        if {"SPECIAL-USE", "LIST-EXTENDED"} <= self._capabilities:
            args = (*args, "RETURN", "(SPECIAL-USE)")
        lines = await self._command("LIST", lambda: protocol.simple_command("LIST", *args))
        try:
            return imap_list.parse_list(lines)
        except ProtocolError as exc:
            raise self._error(ProtocolError, f"LIST: {exc}", standard=exc.standard) from None

    async def create_mailbox(self, mailbox: str) -> None:
        """Create ``mailbox`` (readable name; encoded to modified UTF-7 and quoted here).

        Standard: RFC 9051 section 6.3.4, RFC 3501 section 6.3.3 (CREATE).

        Raises:
            ProtocolError: the name cannot be sent; CREATE refused (e.g. ``[ALREADYEXISTS]``, RFC 5530).
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        try:
            argument = wire.quote_astring(wire.encode_mailbox_name(mailbox))
        except ValueError as exc:
            raise self._error(ProtocolError, f"CREATE {mailbox!r}: {exc}") from None
        protocol = self._protocol
        await self._command(f"CREATE {mailbox!r}", lambda: protocol.simple_command("CREATE", argument))

    async def close(self) -> None:
        """LOGOUT and close the connection. Deletions were applied by EXPUNGE already.

        A connection the server closes right after its BYE counts as success (RFC 9051 section 6.1.3).
        Does nothing if the session was never opened.

        Raises:
            TransientError: the session was discarded earlier (call :meth:`abort`).
            NetworkTimeout: no answer to LOGOUT within ``timeout_s`` seconds.
            ProtocolError: LOGOUT answered BAD.
        """
        if self._client is None:
            return
        protocol = self._protocol
        try:
            _lines, status = self._completion(await self._call("LOGOUT", protocol.logout), "LOGOUT")
            if status.condition == "BAD":
                raise self._refused(status, "LOGOUT")
        except ConnectError:
            pass
        finally:
            self._discard("closed")

    @property
    def parked(self) -> bool:
        """Whether :meth:`park` kept this session for a later cycle (and it was not taken back)."""
        return self._parked_at is not None

    async def park(self) -> bool:
        """End a cycle but keep the authenticated connection for the next one (see :meth:`resume`).

        Nothing is pending on the server when a cycle ends (IMAP deletions took effect at EXPUNGE),
        so a kept session is just a logged-in connection. Returns True; False (and the session is
        discarded) when it is not usable any more.
        """
        if self._broken is not None or self._client is None or self._lost is None or self._lost.done():
            self._discard("not kept: not usable")
            return False
        self._parked_at = asyncio.get_running_loop().time()
        return True

    async def resume(self, *, max_age_s: float, probe_timeout_s: float) -> bool:
        """Take a parked session back for a new cycle: True when it is ready, else it is discarded
        (call :meth:`abort`) and a fresh session must be opened.

        Ready means: parked less than ``max_age_s`` seconds ago (below the server's inactivity
        timer, at least 30 minutes, RFC 9051 section 5.4), the connection not lost meanwhile, and
        ``NOOP`` answered OK within ``probe_timeout_s`` seconds (RFC 9051 section 6.1.2; it also
        catches a connection that a middlebox dropped silently). Never raises for the server's
        behaviour.
        """
        parked_at, self._parked_at = self._parked_at, None
        if parked_at is None or self._broken is not None or self._lost is None or self._lost.done():
            self._discard("kept session lost")
            return False
        if asyncio.get_running_loop().time() - parked_at > max_age_s:
            self._discard("kept session too old")
            return False
        protocol = self._protocol
        try:
            _lines, status = self._completion(
                await self._call("NOOP", lambda: protocol.simple_command("NOOP"), timeout_s=probe_timeout_s),
                "NOOP",
            )
        except MaildError:
            return False  # _call discarded the session
        if not status.ok:
            self._discard("NOOP refused")
            return False
        self._selected = None  # every cycle selects again (RFC 9051 section 6.3.2)
        return True

    async def abort(self) -> None:
        """Close the connection at once without LOGOUT. Never raises; safe at any time and repeatedly."""
        with contextlib.suppress(Exception):
            self._discard("aborted")
