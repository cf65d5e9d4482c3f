"""The POP3 adapter's executor steps and the session's life cycle: one blocking step at a time in
maild's POP3 thread pool, the state it leaves the session in, and the ways a session ends.

Cancelling asyncio does not stop a thread, so a cancelled step shuts the socket down, which makes the
blocked thread return at once; the session is then broken, and ending it only closes it. A session
that ends without ``+OK`` to QUIT never enters UPDATE, so nothing marked with DELE is deleted (RFC
1939 section 6). :class:`~maild.protocols.pop3.maildrop.POP3Maildrop` holds one
:class:`SessionSteps` (composition: the maildrop's reads and marks run through :meth:`SessionSteps.run`).
Split from ``maildrop.py`` in session 15 with no change of behaviour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Literal, TypeVar, cast

import structlog

from maild.protocols.pop3.session import ABORT_TIMEOUT_S, POP3Session

_T = TypeVar("_T")
State = Literal["new", "opening", "open", "broken", "closed"]
"""``new`` (not opened), ``opening``, ``open`` (in step), ``broken`` (a step failed or was
cancelled: the stream may be out of step), ``closed``."""
_log = structlog.stdlib.get_logger("maild.protocols.pop3.maildrop")  # the adapter's events


class SessionSteps:
    """Runs one POP3 session's blocking steps in the executor and tracks its state.

    Args:
        session: the blocking session.
        executor: maild's POP3 thread pool; each step is one job in it.
        account: the account's name, for errors and logs.
    """

    def __init__(
        self, session: POP3Session, executor: concurrent.futures.ThreadPoolExecutor, account: str
    ) -> None:
        self._session = session
        self._executor = executor
        self._account = account
        self.state: State = "new"
        self._job: concurrent.futures.Future[object] | None = None

    async def run(self, fn: Callable[[], _T]) -> _T:
        """Run one blocking step in the executor.

        Cancelled: the socket is shut down so the thread returns promptly, and the session is broken.
        Any exception from the step also breaks the session (the stream may be out of step).
        """
        job = self._executor.submit(fn)
        self._job = cast("concurrent.futures.Future[object]", job)
        try:
            return await asyncio.wrap_future(job)
        except BaseException:
            self.state = "broken"
            if not job.done():
                self._session.shutdown()
            raise

    def require_open(self) -> None:
        """Raise RuntimeError unless the session is open and in step."""
        if self.state != "open":
            raise RuntimeError(f"POP3 session for {self._account!r} is {self.state}, not open")

    async def open(self) -> None:
        """Connect and log in (:meth:`POP3Session.connect`); only once.

        Raises:
            As :meth:`POP3Session.connect`; RuntimeError when called a second time.
        """
        if self.state != "new":
            raise RuntimeError("open() may be called only once")
        self.state = "opening"
        await self.run(self._session.connect)
        self.state = "open"

    async def quit(self) -> None:
        """QUIT, then the session is closed.

        Raises:
            ProtocolError: QUIT was answered ``-ERR``; deletions may not have happened.
            NetworkTimeout, ConnectError: no reply to QUIT; treat deletions as not done.
        """
        self.require_open()
        status = await self.run(self._session.quit)
        self.state = "closed"
        if not status.ok:
            line = self._session.redact(status.render())
            raise self._session.protocol_error(
                "QUIT refused; deletions may not have been applied", line=line, standard="RFC 1939 section 6"
            )

    async def end(self, *, polite: bool) -> None:
        """End the session without UPDATE; never raises (cancellation still propagates).

        ``polite`` and in step: RSET and, only after ``+OK`` to it, QUIT, limited to twice
        :data:`~maild.protocols.pop3.session.ABORT_TIMEOUT_S`. Not ``polite``: no further command.
        A step still running is shut down, waiting at most ``ABORT_TIMEOUT_S`` for its thread.
        The socket is closed in every case; safe at any time and more than once.

        Standard: RFC 1939 section 5 (RSET) and section 6 (no UPDATE without QUIT).
        """
        state, self.state = self.state, "closed"
        if state in ("new", "closed"):
            return
        try:
            if state == "open" and (self._job is None or self._job.done()):
                if polite:
                    async with asyncio.timeout(2 * ABORT_TIMEOUT_S):
                        await self.run(self._session.reset_and_quit)
            elif self._job is not None and not self._job.done():
                self._session.shutdown()
                waiter = asyncio.wrap_future(self._job)
                await asyncio.wait([waiter], timeout=ABORT_TIMEOUT_S)
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()  # retrieved: the step failed because we shut it down
                waiter.cancel()
        except Exception as exc:  # best effort by contract
            _log.debug("pop3.abort.failed", account=self._account, error=type(exc).__name__)
        finally:
            self.state = "closed"
            self._session.shutdown()
            self._session.close()
