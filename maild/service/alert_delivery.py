"""Sending alert events: the ``[alerts] command`` (JSON on stdin) and mail through ``sendmail``.

Both run as child processes on the event loop (``asyncio.create_subprocess_exec``, never a shell),
each bounded by :data:`ALERT_TIMEOUT_S`; a child that does not finish is killed. What a child writes
on stderr is kept up to :data:`MAX_STDERR_OCTETS` for the log line of a failure.

Standard: the sendmail command line as every MTA provides it (``sendmail -oi -f SENDER -- RCPT...``,
the message on stdin, exit 0 when accepted); the message follows RFC 5322, marked
``Auto-Submitted: auto-generated`` (RFC 3834 section 5) so that autoresponders stay quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from maild.archive.alert_memory import load_alerts, save_alerts
from maild.archive.checkpointer import WalSnapshot
from maild.archive.store import Store
from maild.config.alerts import AlertsConfig
from maild.errors import StoreError
from maild.service.account_runtime import AccountRuntime
from maild.service.alerts import AlertEvent, AlertMonitor, DiskSpace, alert_test_event

log = structlog.get_logger("maild.service.alert_delivery")

#: Seconds an alert command or sendmail may run before it is killed.
ALERT_TIMEOUT_S = 30.0
#: Octets of a child's stderr kept for the log (the rest is read and dropped).
MAX_STDERR_OCTETS = 2048
#: Seconds before the alert memory is written again after the archive refused it (a full disk), unless
#: new events come.
MEMORY_RETRY_S = 300.0


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """How sending one event through one channel went.

    Attributes:
        channel: ``command`` or ``mail``.
        ok: the child exited 0 in time.
        detail: ``sent``, or why not (exit status and the start of its stderr, a timeout, a missing
            program).
    """

    channel: str
    ok: bool
    detail: str


async def _run(argv: list[str], stdin: bytes) -> tuple[bool, str]:
    """Run ``argv`` with ``stdin``; (exited 0 in time, ``sent`` or why not)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror}"
    assert proc.stdin is not None
    assert proc.stderr is not None
    kept = bytearray()

    async def talk() -> None:
        assert proc.stdin is not None
        assert proc.stderr is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        proc.stdin.close()
        while chunk := await proc.stderr.read(4096):
            kept.extend(chunk[: max(0, MAX_STDERR_OCTETS - len(kept))])
        await proc.wait()

    try:
        async with asyncio.timeout(ALERT_TIMEOUT_S):
            await talk()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False, f"{argv[0]} did not finish within {ALERT_TIMEOUT_S:g} s (killed)"
    if proc.returncode != 0:
        said = kept.decode("utf-8", "replace").strip().replace("\n", " ")
        return False, f"{argv[0]} exited {proc.returncode}" + (f": {said}" if said else "")
    return True, "sent"


def mail_message(config: AlertsConfig, event: AlertEvent, hostname: str | None = None) -> bytes:
    """The alert as an RFC 5322 message: subject, a readable body and the JSON event at the end.

    The stdlib's message classes (``email.message`` with ``email.utils``, ``email.header``,
    ``email.charset``, ``calendar``: 19 modules, about 9 ms of CPU and 0.8 MB resident) are imported
    here, when an alert is mailed, not with the daemon (docs/performance.md, "Session 15").
    """
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    host = hostname or socket.getfqdn()
    msg = EmailMessage()
    msg["To"] = ", ".join(config.mail_to)
    if config.mail_from is not None:
        msg["From"] = config.mail_from
    msg["Subject"] = event.subject()
    msg["Date"] = format_datetime(event.at)
    msg["Message-ID"] = make_msgid("maild", domain=host)
    msg["Auto-Submitted"] = "auto-generated"
    who = f"{event.account} ({event.organisation}, {event.employee})" if event.account else "the daemon"
    lines = [
        f"maild on {host}: {event.subject().removeprefix('[maild] ')}",
        "",
        f"Concerns:  {who}",
        f"Since:     {event.since:%Y-%m-%d %H:%M} UTC",
        f"What:      {event.message}",
        f"Next step: {event.next_step}",
        "",
        "The event as JSON (what an alert command reads):",
        json.dumps(event.to_json(), ensure_ascii=False, indent=2),
    ]
    msg.set_content("\n".join(lines) + "\n")
    return bytes(msg)


async def deliver(config: AlertsConfig, event: AlertEvent) -> list[DeliveryOutcome]:
    """Send ``event`` through every configured channel; log each outcome; never raise for a channel.

    Returns:
        One outcome per configured channel (command first, then mail).
    """
    outcomes: list[DeliveryOutcome] = []
    if config.command is not None:
        payload = (json.dumps(event.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
        ok, detail = await _run(list(config.command), payload)
        outcomes.append(DeliveryOutcome("command", ok, detail))
    if config.mail_to:
        argv = [*config.sendmail, "-oi"]
        if config.mail_from is not None:
            argv += ["-f", config.mail_from]
        argv += ["--", *config.mail_to]
        ok, detail = await _run(argv, mail_message(config, event))
        outcomes.append(DeliveryOutcome("mail", ok, detail))
    for out in outcomes:
        (log.info if out.ok else log.error)(
            "alert.sent" if out.ok else "alert.failed",
            channel=out.channel,
            kind=event.kind,
            state=event.state,
            alert_account=event.account,
            detail=out.detail,
        )
    return outcomes


def disk_space(path: Path) -> DiskSpace | None:
    """Free and total octets of the file system holding ``path`` (blocking: a statvfs), or None when it
    cannot be read."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return DiskSpace(free_octets=st.f_bavail * st.f_frsize, total_octets=st.f_blocks * st.f_frsize)


class Alerter:
    """The daemon's alerting: evaluates the :class:`~maild.service.alerts.AlertMonitor` and sends its
    events in order in the background, so that housekeeping (and the watchdog) never waits for a
    slow MTA. After sending, what was sent and what cleared is written to the archive (also in the
    background), so that a restart knows it (:meth:`attach`).

    Args:
        config: the ``[alerts]`` table.
    """

    def __init__(self, config: AlertsConfig) -> None:
        self.monitor = AlertMonitor(config)
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self._memory_failed_at: float | None = None
        """The event loop's time when writing the alert memory last failed, None after a success."""

    async def attach(self, store: Store) -> None:
        """Start from the alerts the archive remembers and remember new ones there.

        Raises:
            StoreError: the archive cannot be read.
        """
        self.monitor.restore(await load_alerts(store))
        self._store = store

    @property
    def config(self) -> AlertsConfig:
        """The ``[alerts]`` table in force."""
        return self.monitor.config

    def reconfigure(self, config: AlertsConfig, accounts: Iterable[str]) -> None:
        """Apply a reloaded ``[alerts]`` table; forget alerts of accounts no longer configured."""
        self.monitor.config = config
        self.monitor.forget(set(self.monitor.accounts_alerted()) - set(accounts))

    async def check(
        self,
        accounts: Iterable[AccountRuntime],
        now: datetime,
        state_dir: Path,
        daemon_problems: Mapping[str | None, str] | None = None,
        archive_replaced: str | None = None,
        wal: WalSnapshot | None = None,
    ) -> list[AlertEvent]:
        """Evaluate now and queue the resulting events; return them (none without a channel: nothing is
        evaluated then, so nothing is remembered as sent).

        Args:
            accounts: the scheduler's accounts.
            now: the current time (aware, UTC).
            state_dir: a directory on the archive's file system (for ``disk_full``).
            daemon_problems: see :meth:`~maild.service.alerts.AlertMonitor.evaluate`.
            archive_replaced: why the archive guard stopped deletions, or None.
            wal: the archive's write-ahead log (for ``wal_held``), or None.
        """
        if not self.config.enabled:
            # Nothing is evaluated, so nothing is remembered as sent: an admin who adds [alerts] later
            # (a reload) gets every open problem at once, not a day later (QA of session 11: a lockout
            # from before was remembered as "sent" to no one and held back for `repeat`).
            return []
        disk = await asyncio.to_thread(disk_space, state_dir)
        events = self.monitor.evaluate(
            accounts,
            now,
            disk=disk,
            daemon_problems=daemon_problems,
            archive_replaced=archive_replaced,
            directory=str(state_dir),
            wal=wal,
        )
        for event in events:
            self._queue.put_nowait(event)
        failed_at = self._memory_failed_at
        retry = failed_at is None or asyncio.get_running_loop().time() - failed_at >= MEMORY_RETRY_S
        if (events or (self.monitor.changed and retry)) and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self._send_queued(), name="alerts")
        return events

    async def _send_queued(self) -> None:
        while True:
            while not self._queue.empty():
                await deliver(self.config, self._queue.get_nowait())
            await self._remember()  # after sending: a crash in between sends again, never loses one
            if self._queue.empty():
                return

    async def _remember(self) -> None:
        """Write what was sent and what cleared to the archive; on failure keep it for the next try."""
        if self._store is None:
            return
        sent, cleared = self.monitor.take_changes()
        try:
            await save_alerts(self._store, sent, cleared)
        except StoreError as exc:
            self.monitor.give_back(sent, cleared)
            self._memory_failed_at = asyncio.get_running_loop().time()
            log.warning("alert.memory-not-saved", error=str(exc))
        else:
            self._memory_failed_at = None

    async def test(self, now: datetime) -> list[DeliveryOutcome]:
        """Send the test event through every channel now (``maild alert-test``)."""
        return await deliver(self.config, alert_test_event(now))

    async def close(self) -> None:
        """Send what is queued (each child bounded by :data:`ALERT_TIMEOUT_S`), then stop."""
        if self._worker is not None:
            await asyncio.wait([self._worker])
