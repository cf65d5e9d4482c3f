"""IDLE against a real Dovecot: the daemon in-process learns of new mail within seconds.

The account polls only every hour, so a message that arrives within seconds was fetched because of
an IDLE push (or the catch-up after a reconnection), never because of the poll interval.
"""

from __future__ import annotations

import asyncio
import imaplib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from maild.config.loader import load_config
from maild.service.daemon import Daemon
from maild.service.snapshot import status_reply
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.waiting import eventually

pytestmark = pytest.mark.dovecot


class RunningDaemon:
    """A :class:`~maild.service.daemon.Daemon` running in this event loop, with status helpers."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.directory = directory
        self.daemon = Daemon(load_config(config))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.daemon.run())
        await eventually(self._ready, "the daemon to start")

    async def _ready(self) -> bool:
        assert self.task is not None
        if self.task.done():
            self.task.result()
        return self.daemon.scheduler is not None and self.daemon.store is not None

    async def account(self, name: str = "anna-imap") -> dict[str, Any]:
        assert self.daemon.scheduler is not None and self.daemon.store is not None
        snapshot = await status_reply(
            self.daemon.scheduler.accounts, self.daemon.store, self.daemon.started_at
        )
        return next(a for a in snapshot.to_json()["accounts"] if a["name"] == name)

    async def stop(self) -> None:
        self.daemon.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)

    def subjects(self) -> list[str]:
        """Subjects of every archived message (read-only, as another program would)."""
        db = self.directory / "state" / "maild.sqlite3"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return sorted(row[0] or "" for row in conn.execute("SELECT subject FROM messages"))


@pytest.fixture
async def start_daemon() -> AsyncIterator[Callable[..., Awaitable[RunningDaemon]]]:
    """Start an in-process daemon for an IMAP account on the given Dovecot; stopped afterwards."""
    running: list[RunningDaemon] = []

    async def start(dovecot: Dovecot, user: MailUser, **extra: Any) -> RunningDaemon:
        directory = short_dir("maild-idle-")
        extra = {"poll_interval": "1h", "timeout": "5s", **extra}
        spec = AccountSpec("anna-imap", "imap", user.name, user.password, extra=extra)
        daemon = RunningDaemon(directory, write_config(directory, dovecot, [spec]))
        running.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in running:
        await daemon.stop()


async def test_mail_delivered_while_idling_is_stored_by_the_push(
    dovecot: Dovecot, mail_user: MailUser, start_daemon: Callable[..., Awaitable[RunningDaemon]]
) -> None:
    """A message delivered while the account idles is archived within a few seconds, by the push.

    Steps: one message, start the daemon (poll interval 1 h); wait for mode "idle"; deliver two
    messages one after the other; each is archived long before the next poll (so by the push, not a
    timing bound: speed is the benchmark's); status shows last_push.
    """
    dovecot.deliver(mail_user.name, corpus.make_message(subject="before"))
    running = await start_daemon(dovecot, mail_user)

    async def idling() -> bool:
        return (await running.account())["mode"] == "idle"

    await eventually(idling, 'mode "idle"')
    assert running.subjects() == ["before"]
    assert (await running.account())["last_push"] is None

    for subject in ("pushed one", "pushed two"):
        dovecot.deliver(mail_user.name, corpus.make_message(subject=subject))

        async def stored(subject: str = subject) -> bool:
            return subject in running.subjects()

        await eventually(stored, f"{subject!r} in the archive")  # the poll is 1 h away: only push

    status = await running.account()
    assert status["mode"] == "idle"
    assert status["last_push"] is not None
    assert status["messages"] == 3
    assert status["idle_mailbox"] == "INBOX"
    metrics = await running.daemon.metrics_text()
    assert 'mode="idle"} 1' in metrics


async def test_dovecot_restart_mid_idle_reconnects_and_catches_up(
    private_dovecot: Dovecot,
    mail_user_factory: Callable[..., MailUser],
    start_daemon: Callable[..., Awaitable[RunningDaemon]],
) -> None:
    """Dovecot stopped mid-IDLE: mode "reconnecting"; mail delivered while it is down is archived after it returns.

    Steps: start the daemon; wait for "idle"; stop Dovecot (clients cut off); mode turns
    "reconnecting"; deliver a message into the Maildir meanwhile; start Dovecot on the same ports;
    the watcher reconnects, sees UIDNEXT moved and triggers a cycle: the message is archived and
    mode is "idle" again. Then Dovecot restarts once more, and a push after it still works.
    """
    user = private_dovecot.add_user("restart-user", "pw restart")
    running = await start_daemon(private_dovecot, user)

    async def mode_is(mode: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (await running.account())["mode"] == mode

        return check

    await eventually(await mode_is("idle"), 'mode "idle"')
    ports = private_dovecot.ports
    await asyncio.to_thread(private_dovecot.stop)
    await eventually(await mode_is("reconnecting"), 'mode "reconnecting" after the server went away', 5.0)
    private_dovecot.deliver(user.name, corpus.make_message(subject="while down"))
    await asyncio.to_thread(private_dovecot.start)
    assert private_dovecot.ports == ports

    async def caught_up() -> bool:
        return "while down" in running.subjects()

    await eventually(caught_up, "the message delivered during the outage")
    await eventually(await mode_is("idle"), 'mode "idle" again')

    await asyncio.to_thread(private_dovecot.restart)
    await eventually(await mode_is("idle"), 'mode "idle" after restart()')
    private_dovecot.deliver(user.name, corpus.make_message(subject="after restart"))

    async def pushed() -> bool:
        return "after restart" in running.subjects()

    await eventually(pushed, "the message delivered after the restart")  # by push, not the poll
    assert running.subjects() == ["after restart", "while down"]


async def test_idle_false_polls(
    dovecot: Dovecot, mail_user: MailUser, start_daemon: Callable[..., Awaitable[RunningDaemon]]
) -> None:
    """idle = false: mode "polling", no push; a poll interval of 1 s still fetches new mail."""
    running = await start_daemon(dovecot, mail_user, idle=False, poll_interval="1s")

    async def first_cycle() -> bool:
        return (await running.account())["last_success"] is not None

    await eventually(first_cycle, "the first cycle")
    dovecot.deliver(mail_user.name, corpus.make_message(subject="polled"))

    async def stored() -> bool:
        return "polled" in running.subjects()

    await eventually(stored, "the polled message")
    status = await running.account()
    assert status["mode"] == "polling"
    assert status["last_push"] is None


def append_over_imap(dovecot: Dovecot, user: MailUser, mailbox: str, raw: bytes) -> None:
    """APPEND ``raw`` to ``mailbox`` as another mail client would (stdlib imaplib, blocking).

    Dovecot reports changes to NOTIFY clients from its index, which a file written straight into a
    Maildir does not update until someone opens the mailbox; an APPEND (like LMTP delivery) does.
    """
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as client:
        client.login(user.name, user.password)
        status, _data = client.append(f'"{mailbox}"', "", None, raw)
        assert status == "OK"
        client.logout()


async def test_mail_in_another_folder_is_fetched_by_notify_push(
    dovecot: Dovecot, mail_user: MailUser, start_daemon: Callable[..., Awaitable[RunningDaemon]]
) -> None:
    """With NOTIFY, a message APPENDed to a folder other than the IDLE mailbox is archived without a poll.

    Steps: folders "Projekte" and "Kunden/Meier" with a message each; start the daemon with
    ``mailboxes = "all"`` and a poll interval of one hour; wait for mode "idle" and the first
    cycle; APPEND a message to "Kunden/Meier" from another client: it is archived (only the
    ``* STATUS`` push of NOTIFY can explain that within the hour), and the push is logged with
    ``notified``.
    """
    for folder in ("Projekte", "Kunden/Meier"):
        dovecot.deliver(mail_user.name, corpus.make_message(subject=f"old {folder}"), mailbox=folder)
    running = await start_daemon(dovecot, mail_user, mailboxes="all")

    async def ready() -> bool:
        status = await running.account()
        return status["mode"] == "idle" and status["last_success"] is not None

    await eventually(ready, 'mode "idle" after the first cycle')
    assert running.subjects() == ["old Kunden/Meier", "old Projekte"]
    assert running.daemon.scheduler is not None
    runtime = running.daemon.scheduler.accounts["anna-imap"]
    assert runtime.watcher is not None
    assert runtime.watcher.notifying

    with capture_logs() as logs:
        raw = corpus.make_message(subject="neu bei Meier")
        await asyncio.to_thread(append_over_imap, dovecot, mail_user, "Kunden/Meier", raw)

        async def stored() -> bool:
            return "neu bei Meier" in running.subjects()

        await eventually(stored, "the message appended to Kunden/Meier")
    pushes = [e for e in logs if e["event"] == "imap.idle-push"]
    assert pushes
    assert pushes[0]["notified"] >= 1
