"""The daemon's life cycle: config, store, control socket, scheduler, ``READY=1``; graceful stop.

SIGHUP (``systemctl reload``) re-reads the configuration (see :meth:`Daemon.reload`).
SIGTERM and SIGINT stop the daemon: running cycles get ``shutdown_timeout`` seconds, then are
cancelled (their sessions aborted, so nothing uncommitted is deleted on a server). A second signal
stops at once.

A transaction on the archive left open (its ``COMMIT`` and ``ROLLBACK`` failed) stops the daemon the
same way, with the ``archive_replaced`` alert sent and an error line saying why, and ``run`` raises
:class:`~maild.errors.ArchiveNeedsRestart`: ``maild run`` exits 75 and systemd starts it again on a
new connection (74, not restarted, when it repeats within an hour: :mod:`maild.service.restart_record`).
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
from typing import Any

import structlog

from maild import __version__
from maild.archive.store import ArchiveReplaced, Store
from maild.config.loader import Config, load_config
from maild.errors import ArchiveNeedsRestart, ControlError, MaildError
from maild.fetch.cycle import utc_now
from maild.log import LEVELS
from maild.service import metrics
from maild.service.alert_delivery import Alerter
from maild.service.archive_lock import acquire_archive_lock
from maild.service.budget import Budgets
from maild.service.commands import CommandContext, dispatch
from maild.service.control import ControlServer
from maild.service.health import LoopLagProbe, daemon_problems
from maild.service.memory import tune_allocator
from maild.service.metrics_http import MetricsServer
from maild.service.replies import AlertChannelResult, AlertTestReply, ReloadReport
from maild.service.restart_record import stop_for_restart
from maild.service.scheduler import Scheduler
from maild.service.sdnotify import notify

log = structlog.get_logger("maild.service.daemon")

HOUSEKEEPING_S = 5.0


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
        self._commands: CommandContext | None = None
        self._control: ControlServer | None = None
        self.alerter = Alerter(config.alerts)
        self.lag_probe = LoopLagProbe(config.alerts.loop_lag_s)
        self.left_open: str | None = None
        """Why the daemon stops for a restart (a transaction on the archive left open), or None."""

    def _archive_left_open(self, reason: str) -> None:
        """The archive's connection holds a transaction it cannot end: stop (no new cycle; running
        ones get ``shutdown_timeout`` and are cancelled; the guard already refuses every deletion) and
        let :meth:`run` raise :class:`~maild.errors.ArchiveNeedsRestart` once everything is closed."""
        if self.left_open is not None:
            return
        self.left_open = reason
        log.error(
            "daemon.stopping-for-restart",
            reason=reason,
            detail="a restart opens the archive afresh; SQLite rolls the open transaction back",
        )
        notify(
            "STOPPING=1",
            "STATUS=stopping for a restart: a transaction on the archive could not be rolled back",
        )
        self.stop_event.set()

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ControlError):  # already logged as reload.rejected
            await self.reload()

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request by the command table (see :mod:`maild.service.commands`).

        Raises:
            ControlError: as :func:`~maild.service.commands.dispatch` says.
        """
        return await dispatch(self._commands, req)

    async def metrics_text(self) -> str:
        """The Prometheus text exposition of the running daemon."""
        assert self.store is not None
        assert self.scheduler is not None
        counters = self.store.counters  # kept by every batch: no archive read (issue 15, item 7)
        messages = counters.messages if counters is not None else (await self.store.totals())[0]
        return metrics.render(
            self.scheduler.accounts.values(),
            metrics.database_octets(self.config.daemon.database),
            messages,
            now=utc_now(),
            started_at=self.started_at,
            wal=self.store.wal_snapshot(),
        )

    async def alert_test(self) -> AlertTestReply:
        """Send the test alert through every configured channel and say how each went."""
        outcomes = await self.alerter.test(utc_now())
        return AlertTestReply(tuple(AlertChannelResult(o.channel, o.ok, o.detail) for o in outcomes))

    async def _check_alerts(self) -> None:
        """Evaluate alerts (queued for sending in the background); an error here never stops the daemon.

        Also checks the archive guard when no write is waiting (a check would queue behind it), so a
        replaced archive is noticed while every account sleeps.
        """
        assert self.scheduler is not None
        assert self.store is not None
        try:
            if not self.store.writing:
                with contextlib.suppress(ArchiveReplaced):
                    await self.store.verify_identity()
            await self.store.recheck_wal()  # an idle daemon: "held" ends with the reader, not the next write
            now = utc_now()
            await self.alerter.check(
                self.scheduler.accounts.values(),
                now,
                self.config.daemon.state_dir,
                daemon_problems(self.scheduler, self.lag_probe, now),
                self.store.replaced,
                self.store.wal_snapshot(),
            )
        except Exception:  # a bug in alerting must not stop the watchdog
            log.exception("alert.check-failed")

    async def reload(self) -> ReloadReport:
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
                records = [(a.name, a.organisation, a.employee, a.protocol) for a in new.accounts.values()]
                await self.store.ensure_accounts(records, utc_now())
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
            self.lag_probe.threshold_s = new.alerts.loop_lag_s
            report = self.scheduler.apply(new.accounts.values())
            self.alerter.reconfigure(new.alerts, new.accounts)
            log.info("reload.applied", **report)
            return ReloadReport(tuple(report["added"]), tuple(report["removed"]), tuple(report["changed"]))

    async def _housekeeping(self) -> None:
        """Every few seconds: watchdog ping (only while the loop and scheduler are alive), STATUS= line,
        metrics textfile, the control socket still at its path."""
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
            await self.scheduler.flush_history()  # quiet cycles' history rows, one commit for all
            await self._check_alerts()
            if self._control is not None:
                try:  # the socket file or its directory removed under the daemon: listen again
                    await self._control.restore()
                except Exception:  # a bug here must not stop the watchdog
                    log.exception("control.socket.restore-failed")
            if self.config.daemon.metrics_textfile is not None:
                try:
                    metrics.write_textfile(self.config.daemon.metrics_textfile, await self.metrics_text())
                except OSError as exc:
                    log.warning("metrics.textfile-failed", error=str(exc))
            await asyncio.sleep(period)

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT or a ``stop`` request.

        Raises:
            ArchiveNeedsRestart: stopped because a transaction on the archive was left open (after
                closing everything it could).
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
        self._control = control
        try:  # one fetcher per archive, whatever its configuration (maild/service/archive_lock.py)
            fetch_lock = acquire_archive_lock(cfg.daemon.database)
        except BaseException:
            await control.close()
            raise
        metrics_server = (
            MetricsServer(*cfg.daemon.metrics_listen, self.metrics_text)
            if cfg.daemon.metrics_listen is not None
            else None
        )
        tune_allocator()  # before the worker threads start: see maild/service/memory.py
        executor = ThreadPoolExecutor(max_workers=cfg.daemon.pop3_threads, thread_name_prefix="maild-pop3")
        try:
            self.store = await Store.open(cfg.daemon.database)
            if metrics_server is not None:
                await metrics_server.start()
        except BaseException:
            if self.store is not None:
                await self.store.close()
            await control.close()
            fetch_lock.release()
            executor.shutdown(wait=False)
            raise
        self.store.db.on_left_open = self._archive_left_open
        started = False
        try:
            records = [(a.name, a.organisation, a.employee, a.protocol) for a in cfg.accounts.values()]
            await self.store.ensure_accounts(records, utc_now())
            for acc in cfg.accounts.values():
                if acc.deliver_maildir is not None:  # leftovers of writes killed mid-way
                    from maild.archive.maildir import clean_stale_tmp  # only with deliver_maildir

                    await asyncio.to_thread(clean_stale_tmp, acc.deliver_maildir)
            await self.store.keep_counters()  # status answers from these (issue 15, item 7)
            await self.alerter.attach(self.store)
            self.scheduler = Scheduler(
                cfg.accounts.values(),
                self.store,
                executor,
                budgets=Budgets.from_config(cfg.daemon),
                history=await self.store.account_histories(),
            )
            self._commands = CommandContext(
                scheduler=self.scheduler,
                store=self.store,
                started_at=self.started_at,
                reload=self.reload,
                metrics_text=self.metrics_text,
                stop=self.stop_event.set,
                alert_test=self.alert_test,
            )
            log.info(
                "daemon.started",
                version=__version__,
                accounts=len(cfg.accounts),
                socket=str(cfg.daemon.control_socket),
            )
            notify("READY=1", f"STATUS={len(cfg.accounts)} accounts")
            started = True
            housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
            from maild.archive import document_index, document_text  # zipfile, expat: only in the daemon

            indexer: asyncio.Task[None] | None = None
            if document_text.available():  # the documents extra: PDF/Office attachment text, after commit
                indexer = asyncio.create_task(
                    document_index.run_indexer(self.store.index_documents, self.stop_event), name="documents"
                )
            else:
                log.info("documents.not-indexed", reason="the documents extra (pypdf) is not installed")
            self.lag_probe.start()
            try:
                await self.scheduler.run(self.stop_event, cfg.daemon.shutdown_timeout_s)
            finally:
                housekeeping.cancel()
                if indexer is not None:  # stops its worker process on the way out
                    indexer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await indexer
                await self.lag_probe.stop()
                if self.left_open is not None:  # the alert before the exit: the next start is another process
                    await self._check_alerts()
                await self.alerter.close()
                for task in [housekeeping, *self._background]:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            if metrics_server is not None:
                await metrics_server.close()
            await control.close()
            await self.store.close()
            fetch_lock.release()
            executor.shutdown(wait=False, cancel_futures=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if started:  # a start refused (e.g. ProtocolChanged) is reported by the caller, not as a stop
                log.info("daemon.stopped")
            # in the finally: a start-up write that left the transaction open raises a StoreError past
            # the loop, and that stop is a restart too (review of session 15: it exited 1, restarted
            # every RestartSec without the record, so never 74)
            if self.left_open is not None:
                repeated = await asyncio.to_thread(
                    stop_for_restart, cfg.daemon.state_dir, self.left_open, utc_now()
                )
                raise ArchiveNeedsRestart(self.left_open, repeated=repeated)
