"""The control socket's commands: one handler per command, registered in :data:`COMMANDS`.

:func:`dispatch` is the :class:`~maild.service.control.ControlServer`'s handler (bound to the running
daemon's :class:`CommandContext`): it checks the request's common fields, looks the command up in
the table and returns the handler's typed reply (:mod:`maild.service.status`) as JSON. A
:class:`~maild.errors.ControlError` raised here becomes the JSON error reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from maild import __version__
from maild.archive.failures import request_retry
from maild.archive.store import Store
from maild.errors import ControlError
from maild.service import replies
from maild.service.scheduler import Scheduler
from maild.service.snapshot import (
    fetch_outcome,
    locked_out_outcome,
    reported_state,
    skip_reason,
    status_reply,
)


class Reply(Protocol):
    """What a command handler returns: a record that knows its JSON form."""

    def to_json(self) -> dict[str, Any]:
        """The reply's JSON object, without ``"ok"``."""
        ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What the commands may use of a running daemon.

    Attributes:
        scheduler: the running scheduler (its accounts are the running set).
        store: the open archive.
        started_at: when the daemon started (UTC).
        reload: re-reads the configuration (raises ControlError ``config-invalid`` when rejected).
        metrics_text: renders the Prometheus text exposition.
        stop: asks the daemon to stop (returns at once).
        alert_test: sends a test alert through every configured channel; None: alerts unavailable.
    """

    scheduler: Scheduler
    store: Store
    started_at: datetime
    reload: Callable[[], Awaitable[replies.ReloadReport]]
    metrics_text: Callable[[], Awaitable[str]]
    stop: Callable[[], None]
    alert_test: Callable[[], Awaitable[replies.AlertTestReply]] | None = None


Request = Mapping[str, Any]
CommandHandler = Callable[[CommandContext, Request], Awaitable[Reply]]

#: Command name -> handler, in the order the unknown-command error lists them.
COMMANDS: dict[str, CommandHandler] = {}
#: Command name -> the request fields it takes besides ``command`` and ``version``.
FIELDS: dict[str, tuple[str, ...]] = {}
#: Fields every request may have.
COMMON_FIELDS = ("command", "version")


def command(name: str, *fields: str) -> Callable[[CommandHandler], CommandHandler]:
    """Register the decorated coroutine as the handler of ``name`` in :data:`COMMANDS`, taking the
    request ``fields`` (any other is refused: :func:`dispatch`)."""

    def register(handler: CommandHandler) -> CommandHandler:
        COMMANDS[name] = handler
        FIELDS[name] = fields
        return handler

    return register


def _known_account(ctx: CommandContext, name: object) -> str:
    """``name`` when it is a running account. Raises ControlError ``unknown-account`` otherwise (also
    when the request names none: the code clients know, with a message that says what is missing)."""
    if name is None:
        raise ControlError("unknown-account", 'the request names no account ("account": "NAME")')
    if not isinstance(name, str) or name not in ctx.scheduler.accounts:
        raise ControlError("unknown-account", f"no account named {name!r}")
    return name


@command("status", "account")
async def _status(ctx: CommandContext, req: Request) -> Reply:
    only = req.get("account") or None
    reply = await status_reply(ctx.scheduler.accounts, ctx.store, ctx.started_at, only)
    if only is not None and not reply.accounts:
        raise ControlError("unknown-account", f"no account named {only!r}")
    return reply


@command("version")
async def _version(ctx: CommandContext, req: Request) -> Reply:
    return replies.VersionReply(__version__)


@command("fetch-now", "account", "wait", "retry_failed")
async def _fetch_now(ctx: CommandContext, req: Request) -> Reply:
    target = req.get("account", "all")
    names = list(ctx.scheduler.accounts) if target == "all" else [target]
    for name in names:
        _known_account(ctx, name)
    retry_failed = req.get("retry_failed", False)
    if not isinstance(retry_failed, bool):
        raise ControlError("bad-request", '"retry_failed" must be true or false')
    if retry_failed:  # the set-aside messages get one more attempt in the cycle asked for here
        for name in names:
            await request_retry(ctx.store, name)
    # A paused or disabled account is skipped, not failed: the admin stopped it on purpose.
    skipped = {n: s for n in names if (s := skip_reason(ctx.scheduler.accounts[n])) is not None}
    # A locked-out account is not logged into on request (each refusal counts at the provider).
    locked = {n: o for n in names if (o := locked_out_outcome(ctx.scheduler.accounts[n])) is not None}
    futures = {n: ctx.scheduler.request_fetch(n) for n in names if n not in skipped and n not in locked}
    wait = req.get("wait", True)
    if not isinstance(wait, bool):
        raise ControlError("bad-request", f'"wait" must be true or false, not {json.dumps(wait)[:40]}')
    if not wait:
        return replies.FetchQueued(tuple(futures), skipped=tuple(skipped) + tuple(locked))
    await asyncio.gather(*futures.values())
    return replies.FetchResults(
        tuple(
            replies.FetchOutcome(n, skipped=skipped[n])
            if n in skipped
            else locked[n]
            if n in locked
            else fetch_outcome(ctx.scheduler.accounts[n], futures[n].result())
            for n in names
        )
    )


@command("pause", "account")
async def _pause(ctx: CommandContext, req: Request) -> Reply:
    name = _known_account(ctx, req.get("account"))
    ctx.scheduler.pause(name)
    return replies.AccountStateReply(name, reported_state(ctx.scheduler.accounts[name]))


@command("resume", "account")
async def _resume(ctx: CommandContext, req: Request) -> Reply:
    name = _known_account(ctx, req.get("account"))
    ctx.scheduler.resume(name)
    return replies.AccountStateReply(name, reported_state(ctx.scheduler.accounts[name]))


@command("reload")
async def _reload(ctx: CommandContext, req: Request) -> Reply:
    return await ctx.reload()


@command("metrics")
async def _metrics(ctx: CommandContext, req: Request) -> Reply:
    return replies.MetricsReply(await ctx.metrics_text())


@command("alert-test")
async def _alert_test(ctx: CommandContext, req: Request) -> Reply:
    if ctx.alert_test is None:
        return replies.AlertTestReply(())
    return await ctx.alert_test()


@command("stop")
async def _stop(ctx: CommandContext, req: Request) -> Reply:
    ctx.stop()
    return replies.StopReply()


async def dispatch(ctx: CommandContext | None, req: Request) -> dict[str, Any]:
    """Answer one control request (already checked by the server to have a string ``command``).

    Args:
        ctx: the running daemon's parts, or None while it is still starting.
        req: the request object.

    Returns:
        The reply's JSON object, without ``"ok"``.

    Raises:
        ControlError: ``starting`` before the archive and scheduler are up; ``bad-request`` when
            ``account`` is not a string or a field is not one the command takes; ``unknown-command``;
            ``unknown-account``; ``config-invalid`` (``reload``).
    """
    if ctx is None:
        raise ControlError("starting", "maild is starting; try again in a moment")
    if "account" in req and not isinstance(req["account"], str):
        raise ControlError("bad-request", '"account" must be a string')
    name = req["command"]
    handler = COMMANDS.get(name)
    if handler is None:
        raise ControlError("unknown-command", f"unknown command {name!r} ({', '.join(COMMANDS)})")
    unknown = [f for f in req if f not in COMMON_FIELDS and f not in FIELDS[name]]
    if unknown:
        # QA of session 15: fields were ignored, so a misspelt "accounts" made fetch-now fetch every account
        takes = ", ".join(FIELDS[name]) or "no fields"
        raise ControlError(
            "bad-request", f"unknown field {json.dumps(unknown[0])[:80]} for {name} (it takes {takes})"
        )
    reply = await handler(ctx, req)
    return reply.to_json()
