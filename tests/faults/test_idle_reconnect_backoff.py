"""A server that ends every IDLE at once: the reconnection backoff grows instead of starting afresh each time.

Found by the QA of session 11: ``* BYE`` right after each IDLE continuation made the watcher sign in again every
``reconnect_base_s`` for ever (36 logins in 4 s at a 0.1 s base; at the default 1 s, a login a second all day,
which providers answer by locking the account). A scripted server: Dovecot does not end IDLE on request.
"""

from __future__ import annotations

import asyncio

from maild.service import idle as idle_module
from maild.service.idle import IdleWatcher
from tests.faults.imap_scripted import ScriptedIMAP
from tests.faults.test_idle_faults import message, scripted_account


async def test_a_server_ending_every_idle_at_once_gets_fewer_and_fewer_logins(
    watchers: list[IdleWatcher],
) -> None:
    """Steps: a watcher (base 0.1 s) on a server that sends `* BYE` as soon as a session is in IDLE, for 4 s.
    With the backoff doubling across these short connections (0.1, 0.2, 0.4, 0.8, 1.6 s) there are at most 7
    logins (a loaded machine makes fewer); starting afresh after each IDLE start made one per 0.1 s (36)."""
    assert idle_module.IDLE_STABLE_S == 60.0
    async with ScriptedIMAP({"INBOX": [message(n) for n in range(1, 4)]}) as server:
        watcher = IdleWatcher(scripted_account(server), reconnect_base_s=0.1, reconnect_cap_s=30.0)
        watchers.append(watcher)
        watcher.start()
        loop = asyncio.get_running_loop()
        end = loop.time() + 4.0
        while loop.time() < end:
            if any(s.idling for s in server.sessions):
                await server.push(b"* BYE go away\r\n")
            await asyncio.sleep(0.01)
        logins = len(server.commands_named("LOGIN"))
        assert 2 <= logins <= 7, logins
