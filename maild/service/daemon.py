"""The daemon's life cycle: config, store, control socket, scheduler, ``READY=1``; graceful stop.

SIGHUP (``systemctl reload``) re-reads the configuration (see :meth:`Daemon.reload`).
SIGTERM and SIGINT stop the daemon: running cycles get ``shutdown_timeout`` seconds, then are
cancelled (their sessions aborted, so nothing uncommitted is deleted on a server). A second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from maild import __version__
from maild.archive.schema import utc_text
from maild.archive.store import Store
from maild.config.loader import Config, load_config
from maild.errors import ControlError, MaildError
from maild.fetch.cycle import utc_now
from maild.log import LEVELS
from maild.policy import next_deletion_due
from maild.service import metrics
from maild.service.control import ControlServer
from maild.service.scheduler import AccountRuntime, Scheduler
from maild.service.sdnotify import notify

log = structlog.get_logger("maild.service.daemon")

HOUSEKEEPING_S = 5.0


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
        "mode": rt.mode,
    }
    res = rt.last_result
    out["on_server"] = res.on_server - res.deleted if res else None  # as left by the last cycle
    if acc.protocol == "imap":
        out.update(_imap_status(rt))
    out["retention"] = acc.retention
    out["retention_days"] = acc.retention_days
    if acc.protocol == "pop3":  # "uidl", or "content-digest" for a server without UIDL
        out["identity"] = res.identity if res is not None else None
    out["warnings"] = list(res.warnings) if res is not None else []
    out["pending_deletion"] = 0 if acc.retention == "keep" else kept[0]
    out["oldest_kept_since"] = _iso(kept[1])
    if (due := next_deletion_due(acc.retention, acc.retention_days, kept[1])) is not None:
        out["next_deletion_due"] = _iso(due)
    if res is not None:
        out["last_cycle"] = {
            "new_messages": res.new_links,
            "octets": res.octets,
            "deleted": res.deleted,
            "seconds": round(res.seconds, 3),
            "failures": [{"key": repr(f.key), "reason": f.reason} for f in res.failures],
            "too_large": [repr(k) for k in res.too_large],
        }
        if res.imap is not None:
            out["last_cycle"]["mailbox_failures"] = dict(res.imap.mailbox_failures)
    return out


def _imap_status(rt: AccountRuntime) -> dict[str, Any]:
    """The IMAP part of an account's status: mailboxes, IDLE, UIDVALIDITY changes."""
    acc = rt.config
    res = rt.last_result
    watcher = rt.watcher
    info = res.imap if res is not None else None
    out: dict[str, Any] = {
        "mailboxes": list(info.mailboxes) if info is not None else list(acc.mailboxes),
        "mailbox_selection": "all" if acc.all_mailboxes else "list",
        "idle": acc.idle,
        "idle_mailbox": acc.idle_mailbox,
        "last_push": _iso(watcher.last_push) if watcher is not None else None,
        "idle_error": watcher.last_error if watcher is not None else None,
        "uidvalidity_changes": [
            {
                "mailbox": change.mailbox,
                "old_uidvalidity": change.old_uidvalidity,
                "new_uidvalidity": change.new_uidvalidity,
                "relinked": change.relinked,
                "to_retrieve": change.to_retrieve,
                "at": _iso(change.at),
            }
            for change in rt.uidvalidity_changes
        ],
    }
    if acc.all_mailboxes:
        out["exclude"] = list(acc.exclude)
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
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ControlError):  # already logged as reload.rejected
            await self.reload()

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
        """Answer one control request (see :mod:`maild.service.control`).

        Raises:
            ControlError: unknown command (``unknown-command``) or account (``unknown-account``).
        """
        if self.scheduler is None or self.store is None:
            raise ControlError("starting", "maild is starting; try again in a moment")
        command = req["command"]
        for field in ("account",):
            if field in req and not isinstance(req[field], str):
                raise ControlError("bad-request", f'"{field}" must be a string')
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
        if command in ("pause", "resume"):
            name = req.get("account")
            if not isinstance(name, str) or name not in self.scheduler.accounts:
                raise ControlError("unknown-account", f"no account named {name!r}")
            (self.scheduler.pause if command == "pause" else self.scheduler.resume)(name)
            return {"account": name, "state": self.scheduler.accounts[name].state}
        if command == "reload":
            return await self.reload()
        if command == "metrics":
            return {"text": await self.metrics_text()}
        if command == "stop":
            self.stop_event.set()
            return {"stopping": True}
        raise ControlError(
            "unknown-command",
            f"unknown command {command!r} (status, version, fetch-now, pause, resume, reload, metrics, stop)",
        )

    async def metrics_text(self) -> str:
        """The Prometheus text exposition of the running daemon."""
        assert self.store is not None
        assert self.scheduler is not None
        messages, _octets = await self.store.totals()
        return metrics.render(
            self.scheduler.accounts.values(), metrics.database_octets(self.config.daemon.database), messages
        )

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration and its drop-ins and apply the accounts without a restart.

        A configuration with errors is rejected as a whole; the running set stays as it was.
        ``[daemon]`` changes other than ``log_level`` need a restart (logged).

        Raises:
            ControlError: ``config-invalid`` with the error, when the new configuration is rejected.
        """
        assert self.store is not None
        assert self.scheduler is not None
        async with self._reload_lock:
            notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            try:
                new = await asyncio.to_thread(load_config, self.config.path)
                now = utc_now()
                for acc in new.accounts.values():
                    await self.store.ensure_account(
                        acc.name, acc.organisation, acc.employee, acc.protocol, now
                    )
            except MaildError as exc:
                log.error("reload.rejected", error=str(exc))
                raise ControlError(
                    "config-invalid", f"configuration rejected, nothing changed: {exc}"
                ) from None
            finally:
                notify("READY=1")
            if replace(new.daemon, log_level="") != replace(self.config.daemon, log_level=""):
                log.warning("reload.daemon-settings-need-restart")
            if new.daemon.log_level != self.config.daemon.log_level:
                logging.getLogger().setLevel(LEVELS[new.daemon.log_level])
            self.config = new
            report = self.scheduler.apply(new.accounts.values())
            log.info("reload.applied", **report)
            return report

    async def _housekeeping(self) -> None:
        """Every few seconds: watchdog ping (only while the loop and scheduler are alive), STATUS= line,
        metrics textfile."""
        watchdog_us = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            watchdog_us = 0
        period = min(HOUSEKEEPING_S, watchdog_us / 2e6) if watchdog_us else HOUSEKEEPING_S
        while True:
            assert self.scheduler is not None
            accounts = list(self.scheduler.accounts.values())
            failing = sum(1 for rt in accounts if rt.state in ("backoff", "error", "auth_failed"))
            last = max((rt.last_success for rt in accounts if rt.last_success), default=None)
            summary = f"{len(accounts)} accounts, {failing} failing, last fetch " + (
                last.strftime("%H:%M") if last else "never"
            )
            lines = [f"STATUS={summary}"]
            if watchdog_us and self.scheduler.healthy():
                lines.append("WATCHDOG=1")
            notify(*lines)
            if self.config.daemon.metrics_textfile is not None:
                try:
                    metrics.write_textfile(self.config.daemon.metrics_textfile, await self.metrics_text())
                except OSError as exc:
                    log.warning("metrics.textfile-failed", error=str(exc))
            await asyncio.sleep(period)

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

        def on_hup() -> None:
            if self.scheduler is not None:
                task = loop.create_task(self._reload_quietly())
                self._background.add(task)
                task.add_done_callback(self._background.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        # The control socket first: it is also the lock against a second daemon on the same
        # configuration, which must not touch the archive or the other daemon's socket.
        control = ControlServer(cfg.daemon.control_socket, self.handle, group=cfg.daemon.control_socket_group)
        await control.start()
        executor = ThreadPoolExecutor(max_workers=cfg.daemon.pop3_threads, thread_name_prefix="maild-pop3")
        try:
            self.store = await Store.open(cfg.daemon.database)
        except BaseException:
            await control.close()
            executor.shutdown(wait=False)
            raise
        try:
            now = utc_now()
            for acc in cfg.accounts.values():
                await self.store.ensure_account(acc.name, acc.organisation, acc.employee, acc.protocol, now)
            self.scheduler = Scheduler(
                cfg.accounts.values(),
                self.store,
                executor,
                max_concurrent_fetches=cfg.daemon.max_concurrent_fetches,
                max_connections_per_host=cfg.daemon.max_connections_per_host,
            )
            log.info(
                "daemon.started",
                version=__version__,
                accounts=len(cfg.accounts),
                socket=str(cfg.daemon.control_socket),
            )
            notify("READY=1", f"STATUS={len(cfg.accounts)} accounts")
            housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
            try:
                await self.scheduler.run(self.stop_event, cfg.daemon.shutdown_timeout_s)
            finally:
                housekeeping.cancel()
                for task in [housekeeping, *self._background]:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            await control.close()
            await self.store.close()
            executor.shutdown(wait=False, cancel_futures=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("daemon.stopped")
