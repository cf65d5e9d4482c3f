"""IDLE (RFC 2177) for an IMAP account: learn of new mail within seconds instead of at the next poll.

An :class:`IdleWatcher` keeps an IMAP session of its own (apart from the fetch cycles' sessions),
selects the watched mailbox (``idle_mailbox``, INBOX by default) and waits in IDLE. Where the server
offers NOTIFY (RFC 5465), the same connection first asks for news of every other fetched mailbox
(``mailboxes = "all"``: every mailbox of the user), which the server then pushes as ``* STATUS``
during IDLE: new mail in any folder ends the wait within about a second, on one connection. The scheduler
waits between fetch cycles with :meth:`IdleWatcher.wait` instead of sleeping: a push from the server
(``* n EXISTS``, ``* n RECENT``, ``* n EXPUNGE``) ends the wait and a normal fetch cycle runs at once.
A push is only a hint: the cycle's own ``UID SEARCH`` decides what is new, so a push lost in transit
(aioimaplib can drop data that arrives with the IDLE completion) costs at most one poll interval.

Supervision, because aioimaplib's IDLE calls can hang forever when the server goes away:

* every step that waits for the server is bounded: the ``+`` continuation and the answer to DONE
  within the account's ``timeout``, and between IDLE rounds a NOOP must come back (liveness);
* IDLE is ended and issued again every ``idle_restart`` (29 minutes by default; RFC 2177 section 3
  lets a server drop a client idle for 30);
* ``* BYE``, end of file and a reset count as loss at once; TCP keepalive (probes after
  :data:`KEEPALIVE_IDLE_S` seconds of silence) turns a vanished peer into a reset within about
  two minutes, and the DONE/NOOP deadline of the next restart catches a stalled server;
* after a loss the watcher reconnects with capped exponential backoff
  (:func:`maild.waiting.reconnect_delay_s`: :data:`~maild.waiting.RECONNECT_BASE_S` doubling up to
  :data:`~maild.waiting.RECONNECT_CAP_S`); meanwhile the account polls on its interval;
* once IDLE runs again, a fetch cycle is triggered if the mailbox changed while nobody watched
  (its UIDVALIDITY or UIDNEXT differs from what the last cycle recorded).

A server without IDLE leaves the account polling (mode ``"polling"``). So do a refused login and an
``idle_mailbox`` that cannot be selected, until the scheduler's next wait between cycles starts the
watcher again (after a refused login only once a cycle has logged in), so that the watcher never
adds to the failed logins that make providers lock an account.

The IDLE connection counts against ``max_connections_per_host`` like every other connection (see
:class:`~maild.service.budget.Budgets`): while all but one connection of the host are held, the
watcher waits for one (mode ``"reconnecting"``, the account polls), so fetch cycles always have one
left; with ``max_connections_per_host = 1`` the account polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Literal, NoReturn, Protocol

import structlog

from maild import waiting
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import AuthError, MaildError, ProtocolError
from maild.fetch.cycle import utc_now
from maild.model import ServerSettings
from maild.protocols.imap.wire import MailboxEvents, SelectInfo
from maild.secret import redact_known
from maild.service.budget import Budgets

log = structlog.get_logger("maild.service.idle")

#: How the account learns of new mail: waiting in IDLE, polling on its interval, or polling while
#: the watcher reconnects.
Mode = Literal["idle", "polling", "reconnecting"]
#: Why :meth:`IdleWatcher.wait` returned.
WaitOutcome = Literal["push", "timeout", "lost", "interrupted"]

#: Seconds an IDLE connection must have lasted for its loss to start the reconnection backoff
#: afresh. A server that ends every IDLE at once (``* BYE`` right after the continuation) made the
#: watcher sign in again every RECONNECT_BASE_S, for ever (QA of session 11: 36 logins in 4 s at a
#: 0.1 s base): the backoff now grows across such short-lived connections.
IDLE_STABLE_S = 60.0
#: TCP keepalive: seconds of silence before probing, seconds between probes, probes before giving up.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT = 4


class IdleSession(Protocol):
    """What the watcher needs of a session; :class:`maild.protocols.imap.idle.IMAPIdleSession` has it."""

    notify_refused: str | None
    """Why the server refused NOTIFY in :meth:`notify` (then only the selected mailbox is watched)."""

    @property
    def supports_idle(self) -> bool: ...

    async def open(self) -> None: ...

    async def select_mailbox(self) -> SelectInfo: ...

    async def notify(self) -> bool: ...

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None: ...

    async def idle_start(self) -> None: ...

    async def idle_wait(self, timeout_s: float) -> MailboxEvents: ...

    async def idle_done(self) -> MailboxEvents: ...

    async def noop(self) -> MailboxEvents: ...

    async def close(self) -> None: ...

    async def abort(self) -> None: ...


def imap_idle_session(account: AccountConfig) -> IdleSession:
    """Make an unopened IDLE session for ``account`` (the default session factory).

    Raises:
        ConfigError: the password cannot be obtained.
    """
    from maild.protocols.imap.idle import IMAPIdleSession

    settings: ServerSettings = account.server_settings()
    watched = None if account.all_mailboxes else [m for m in account.mailboxes if m != account.idle_mailbox]
    return IMAPIdleSession(settings, account.idle_mailbox, watched)


class IdleWatcher:
    """Watches one IMAP account's ``idle_mailbox`` with IDLE and tells waiters when it changed.

    Args:
        account: the account (``protocol = "imap"``); ``idle_mailbox``, ``idle_restart_s`` and
            ``timeout_s`` are used.
        budgets: the process's budgets: the IDLE connection holds one of the host's connections
            (see the module docstring); None: not counted (a watcher on its own, as in tests).
        store: the archive, to compare the mailbox's UIDVALIDITY and UIDNEXT after (re)connecting
            with what the last cycle recorded; None triggers a cycle after every (re)connection.
        session_factory: makes an unopened session; tests pass fakes.
        clock: the current aware UTC time (for ``last_push``).
        reconnect_base_s, reconnect_cap_s: the backoff between reconnection attempts, in seconds.

    Attributes:
        mode: ``"reconnecting"`` until IDLE runs, then ``"idle"``; ``"reconnecting"`` again after a
            loss; ``"polling"`` when the server lacks IDLE or the watcher is stopped.
        last_push: when the server last announced a change (UTC), or None.
        last_error: why the last session ended or could not start, or None.
    """

    def __init__(
        self,
        account: AccountConfig,
        *,
        budgets: Budgets | None = None,
        store: Store | None = None,
        session_factory: Callable[[AccountConfig], IdleSession] = imap_idle_session,
        clock: Callable[[], datetime] | None = None,
        reconnect_base_s: float = waiting.RECONNECT_BASE_S,
        reconnect_cap_s: float = waiting.RECONNECT_CAP_S,
    ) -> None:
        self.account = account
        self._budgets = budgets
        self.mode: Mode = "polling"
        self.last_push: datetime | None = None
        self.last_error: str | None = None
        self._store = store
        self._factory = session_factory
        self._clock = clock or utc_now
        self._base_s = reconnect_base_s
        self._cap_s = reconnect_cap_s
        self._idle_since: float | None = None
        """The event loop's time when the current IDLE connection first entered IDLE, or None."""
        self._task: asyncio.Task[None] | None = None
        self._unsupported = False
        self._push_pending = False
        self._lost_pending = False
        self._changed = asyncio.Event()
        self._failures = 0
        self.notifying = False
        """Whether the current IDLE connection also watches the other mailboxes with NOTIFY."""

    @property
    def running(self) -> bool:
        """Whether the watcher's task is alive (connected or reconnecting)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start watching in a background task; does nothing while running or if the server lacks IDLE."""
        if self.running or self._unsupported:
            return
        if self._budgets is not None and not self._budgets.idle_allowed():
            self._unsupported = True  # max_connections_per_host changes only with a restart
            self.last_error = "max_connections_per_host = 1 leaves no connection for IDLE: polling"
            log.warning("imap.idle-no-connection", mailbox=self.account.idle_mailbox, error=self.last_error)
            return
        self.mode = "reconnecting"
        self._task = asyncio.create_task(self._supervise(), name=f"idle:{self.account.name}")

    async def stop(self) -> None:
        """Stop watching: cancel the task and drop its session (no LOGOUT; nothing to commit)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved; _supervise logs its own failures
        self.mode = "polling"

    async def wait(self, timeout_s: float, interrupt: asyncio.Event | None = None) -> WaitOutcome:
        """Wait until the server announces a change, the connection is lost, or ``timeout_s`` passes.

        A change that arrived since the last call returns ``"push"`` at once (also one announced
        while a fetch cycle ran). ``"lost"`` is returned once per loss: the watcher reconnects on its
        own, and the caller should go on waiting (polling) until its own deadline.

        Args:
            timeout_s: the longest wait, in seconds.
            interrupt: an event that ends the wait as well (the scheduler's wake-up), left set.

        Returns:
            ``"push"``, ``"lost"``, ``"interrupted"`` or ``"timeout"``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._push_pending:
                self._push_pending = False
                return "push"
            if self._lost_pending:
                self._lost_pending = False
                return "lost"
            if interrupt is not None and interrupt.is_set():
                return "interrupted"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            self._changed.clear()
            waiters = [asyncio.ensure_future(self._changed.wait())]
            if interrupt is not None:
                waiters.append(asyncio.ensure_future(interrupt.wait()))
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    # ------------------------------------------------------------------ the background task

    def _push(self, events: MailboxEvents | None) -> None:
        """Tell waiters that the mailbox changed (``events`` from the server, None for a catch-up)."""
        if events is not None:
            self.last_push = self._clock()
            log.info(
                "imap.idle-push",
                mailbox=self.account.idle_mailbox,
                exists=events.exists,
                recent=events.recent,
                expunged=events.expunged,
                notified=events.notified,
            )
        self._push_pending = True
        self._changed.set()

    async def _changed_meanwhile(self, info: SelectInfo) -> bool:
        """Whether the mailbox may hold mail the last cycle did not see."""
        if self._store is None:
            return True
        recorded = (await self._store.mailbox_states(self.account.name)).get(self.account.idle_mailbox)
        return (
            recorded is None
            or info.uidnext is None
            or (recorded.uidvalidity, recorded.uidnext) != (info.uidvalidity, info.uidnext)
        )

    async def _supervise(self) -> None:
        while True:
            try:
                if await self._watch():
                    return
            except Exception as exc:  # a bug must not end the watching for good either
                await self._after_failure(exc)

    async def _watch(self) -> bool:
        """One IDLE connection, from waiting for a host connection to its loss.

        Returns True when watching ends until the next :meth:`start` (no IDLE on the server, the
        mailbox cannot be selected, the login was refused). Raises what ended the connection
        otherwise (the caller reconnects after a delay). Whatever ends it, the session is aborted
        or closed and the host connection given back before this returns or raises (also when
        cancelled).
        """
        self.mode = "reconnecting"
        host = self.account.host
        if self._budgets is not None:
            await self._budgets.acquire_connection(host, idle=True)
        session: IdleSession | None = None
        try:
            session = self._factory(await self.account.resolved())
            await session.open()
            if not session.supports_idle:
                self._unsupported = True
                self.mode = "polling"
                log.info("imap.idle-unsupported", mailbox=self.account.idle_mailbox)
                with contextlib.suppress(MaildError):
                    await session.close()
                return True
            try:
                info = await session.select_mailbox()
            except ProtocolError as exc:  # no such mailbox, no permission: retrying will not help
                await self._give_up(session, exc, "imap.idle-select-failed")
                return True
            self.notifying = await session.notify()
            if session.notify_refused is not None:  # IDLE on the mailbox alone; the others are polled
                log.warning(
                    "imap.notify-refused",
                    mailbox=self.account.idle_mailbox,
                    error=redact_known(session.notify_refused),
                )
            session.keepalive(KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
            # with NOTIFY a change elsewhere while nobody watched is possible too: catch up always
            catch_up = self.notifying or await self._changed_meanwhile(info)
            await self._idle_rounds(session, catch_up)
        except AuthError as exc:
            # Never risk a provider lockout from here: the fetch cycles count refusals and the
            # scheduler starts the watcher again after a cycle that logged in.
            await self._give_up(session, exc, "imap.idle-auth-failed")
            return True
        except BaseException:
            if session is not None:
                await session.abort()
            raise
        finally:
            if self._budgets is not None:
                self._budgets.release_connection(host)

    async def _give_up(self, session: IdleSession | None, exc: MaildError, event: str) -> None:
        """End the watching until the next :meth:`start` (the scheduler's next wait): mode polling."""
        if session is not None:
            await session.abort()
        self.mode = "polling"
        self._idle_since = None
        self.last_error = redact_known(str(exc))
        log.warning(event, mailbox=self.account.idle_mailbox, error=self.last_error)

    async def _after_failure(self, exc: Exception) -> None:
        was_idle = self.mode == "idle"
        self.notifying = False
        self.mode = "reconnecting"
        self.last_error = (
            redact_known(str(exc)) if isinstance(exc, MaildError) else f"internal error: {type(exc).__name__}"
        )
        idle_since, self._idle_since = self._idle_since, None
        if idle_since is not None and asyncio.get_running_loop().time() - idle_since >= IDLE_STABLE_S:
            self._failures = 0  # a loss after a good while: start the backoff afresh
        self._failures += 1
        delay = waiting.reconnect_delay_s(self._failures, self._base_s, self._cap_s)
        if was_idle:
            self._lost_pending = True
            self._changed.set()
        log.warning(
            "imap.idle-lost" if was_idle else "imap.idle-connect-failed",
            mailbox=self.account.idle_mailbox,
            error=self.last_error,
            retry_in_s=round(delay, 3),
        )
        if not isinstance(exc, MaildError):
            log.error("imap.idle-internal-error", exc_info=exc)
        await asyncio.sleep(delay)

    async def _idle_rounds(self, session: IdleSession, catch_up: bool) -> NoReturn:
        """IDLE, wait for pushes until ``idle_restart``, DONE, NOOP; again and again until a failure."""
        loop = asyncio.get_running_loop()
        first = True
        while True:
            await session.idle_start()
            if first:
                first = False
                self.mode = "idle"
                self._idle_since = loop.time()  # the backoff starts afresh only once this lasted
                self.last_error = None
                log.info(
                    "imap.idle-started",
                    mailbox=self.account.idle_mailbox,
                    catch_up=catch_up,
                    notify=self.notifying,
                )
                if catch_up:
                    self._push(None)
            deadline = loop.time() + self.account.idle_restart_s
            while (remaining := deadline - loop.time()) > 0:
                events = await session.idle_wait(remaining)
                if events.changed:
                    self._push(events)
            events = (await session.idle_done()).merge(await session.noop())
            if events.changed:
                self._push(events)
