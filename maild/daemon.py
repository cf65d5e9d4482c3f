"""The daemon's life cycle: config, store, control socket, scheduler, ``READY=1``; graceful stop.

SIGTERM and SIGINT stop the daemon: running cycles get ``shutdown_timeout`` seconds, then are
cancelled (their sessions aborted, so nothing uncommitted is deleted on a server). A second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import structlog

from maild import __version__
from maild.config import Config
from maild.control import ControlServer
from maild.errors import ControlError
from maild.fetch import utc_now
from maild.scheduler import AccountRuntime, Scheduler
from maild.sdnotify import notify
from maild.store import Store, utc_text

log = structlog.get_logger("maild.daemon")


def _iso(moment: datetime | None) -> str | None:
    return utc_text(moment) if moment else None


def account_status(
    rt: AccountRuntime, messages: int, kept: tuple[int, datetime | None] = (0, None)
) -> dict[str, Any]:
    """The status object of one account (see the README's control-socket reference).

    Args:
        rt: the scheduler's runtime record.
        messages: archived messages linked to the account.
        kept: (archived messages still on the server, earliest first-fetch time among them).
    """
    acc = rt.config
    out: dict[str, Any] = {
        "name": acc.name,
        "organisation": acc.organisation,
        "employee": acc.employee,
        "protocol": acc.protocol,
        "host": acc.host,
        "enabled": acc.enabled,
        "state": rt.state,
        "messages": messages,
        "last_success": _iso(rt.last_success),
        "next_run": _iso(rt.next_run),
        "last_error": rt.last_error,
        "consecutive_failures": rt.consecutive_failures,
    }
    res = rt.last_result
    out["on_server"] = res.on_server if res else None
    if acc.protocol == "pop3":
        out["retention"] = acc.retention
        out["retention_days"] = acc.retention_days
        out["pending_deletion"] = 0 if acc.retention == "keep" else kept[0]
        out["oldest_kept_since"] = _iso(kept[1])
        if acc.retention == "delete-after" and kept[1] is not None and acc.retention_days is not None:
            out["next_deletion_due"] = _iso(kept[1] + timedelta(days=acc.retention_days))
    else:
        out["mailboxes"] = list(acc.mailboxes)
    if res is not None:
        out["last_cycle"] = {
            "new_messages": res.new_links,
            "octets": res.octets,
            "deleted": res.deleted,
            "seconds": round(res.seconds, 3),
            "failures": [{"key": repr(f.key), "reason": f.reason} for f in res.failures],
            "too_large": [repr(k) for k in res.too_large],
        }
    return out


class Daemon:
    """One running maild.

    Args:
        config: the validated configuration.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = asyncio.Event()
        self.started_at = utc_now()
        self.store: Store | None = None
        self.scheduler: Scheduler | None = None

    async def status(self) -> dict[str, Any]:
        """The full status snapshot: accounts (in config order) and archive totals."""
        assert self.store is not None
        assert self.scheduler is not None
        counts = await self.store.message_counts()
        kept = await self.store.on_server_summary()
        messages, octets = await self.store.totals()
        return {
            "version": __version__,
            "started_at": utc_text(self.started_at),
            "accounts": [
                account_status(rt, counts.get(name, 0), kept.get(name, (0, None)))
                for name, rt in self.scheduler.accounts.items()
            ],
            "archive": {"messages": messages, "octets": octets},
        }

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (see :mod:`maild.control`).

        Raises:
            ControlError: unknown command (``unknown-command``) or account (``unknown-account``).
        """
        assert self.scheduler is not None
        command = req["command"]
        if command == "status":
            snap = await self.status()
            if req.get("account"):
                snap["accounts"] = [a for a in snap["accounts"] if a["name"] == req["account"]]
                if not snap["accounts"]:
                    raise ControlError("unknown-account", f"no account named {req['account']!r}")
            return snap
        if command == "version":
            return {"version": __version__}
        if command == "fetch-now":
            target = req.get("account", "all")
            names = list(self.scheduler.accounts) if target == "all" else [target]
            for name in names:
                if name not in self.scheduler.accounts:
                    raise ControlError("unknown-account", f"no account named {name!r}")
            futures = {n: self.scheduler.request_fetch(n) for n in names}
            if req.get("wait", True):
                await asyncio.gather(*futures.values())
                results = {}
                for name, fut in futures.items():
                    res = fut.result()
                    rt = self.scheduler.accounts[name]
                    results[name] = (
                        {
                            "ok": True,
                            "new_messages": res.new_links,
                            "octets": res.octets,
                            "seconds": round(res.seconds, 3),
                        }
                        if res is not None
                        else {"ok": False, "error": rt.last_error or rt.state}
                    )
                return {"results": results}
            return {"queued": names}
        if command == "stop":
            self.stop_event.set()
            return {"stopping": True}
        raise ControlError("unknown-command", f"unknown command {command!r} (try status, version, fetch-now)")

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT or a ``stop`` request.

        Raises:
            StoreError: the archive cannot be opened.
            ControlError: the control socket cannot be created.
        """
        cfg = self.config
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info("daemon.stopping")
                notify("STOPPING=1")
                self.stop_event.set()
            else:
                log.warning("daemon.forced-stop")
                for task in asyncio.all_tasks(loop):
                    if task is not asyncio.current_task():
                        task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        executor = ThreadPoolExecutor(max_workers=cfg.daemon.pop3_threads, thread_name_prefix="maild-pop3")
        self.store = await Store.open(cfg.daemon.database)
        control: ControlServer | None = None
        try:
            now = utc_now()
            for acc in cfg.accounts.values():
                await self.store.ensure_account(acc.name, acc.organisation, acc.employee, acc.protocol, now)
            self.scheduler = Scheduler(
                cfg.accounts.values(),
                self.store,
                executor,
                max_concurrent_fetches=cfg.daemon.max_concurrent_fetches,
            )
            control = ControlServer(cfg.daemon.control_socket, self.handle)
            await control.start()
            log.info(
                "daemon.started",
                version=__version__,
                accounts=len(cfg.accounts),
                socket=str(cfg.daemon.control_socket),
            )
            notify("READY=1", f"STATUS={len(cfg.accounts)} accounts")
            await self.scheduler.run(self.stop_event, cfg.daemon.shutdown_timeout_s)
        finally:
            if control is not None:
                await control.close()
            await self.store.close()
            executor.shutdown(wait=False, cancel_futures=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            log.info("daemon.stopped")
