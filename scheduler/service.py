"""The scheduler process: APScheduler 3 only ticks; the rows in the database are the schedule.

One interval job per process (coalesce, max_instances=1, the default memory job store: 3.x job
stores must not be shared between schedulers). Each tick plans (every `plan_interval_s`),
reconciles, escalates, then claims and sends what is due. The process has a row in
`instances` with a heartbeat; on SQLite a second live scheduler is named in the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from gateway.storage.database import instances, utcnow
from gateway.storage.survey_service import SurveyLinks
from scheduler.campaigns import Campaign, load_campaigns
from scheduler.channels.base import Channel
from scheduler.dispatcher import DispatchOptions, Dispatcher
from scheduler.metrics import ReminderMetrics
from scheduler.registry import ChannelContext, LateSink, build_channels
from scheduler.rules import Rules, Window, parse_rates

log = logging.getLogger(__name__)


def campaigns_path(settings: Settings) -> Path:
    return Path(settings.campaigns_dir).expanduser().resolve() if settings.campaigns_dir \
        else settings.config_path / "campaigns"


def rules_from(settings: Settings) -> Rules:
    return Rules(
        zone=ZoneInfo(settings.timezone),
        windows={"voice": Window.parse(settings.scheduler_voice_hours), "sms": Window.parse(settings.scheduler_sms_hours),
                 "wechat": Window.parse(settings.scheduler_wechat_hours)},
        caps_per_day={"voice": settings.scheduler_voice_per_day, "sms": settings.scheduler_sms_per_day,
                      "wechat": settings.scheduler_wechat_per_day},
    )


def options_from(settings: Settings) -> DispatchOptions:
    return DispatchOptions(
        batch=settings.scheduler_batch, concurrency=settings.scheduler_concurrency, lease_s=settings.scheduler_lease_s,
        max_attempts=settings.scheduler_max_attempts, retry_base_s=settings.scheduler_retry_base_s,
        reconcile_wait_s=settings.scheduler_reconcile_wait_s, rates=parse_rates(settings.scheduler_provider_rates))


def build_dispatcher(settings: Settings, engine: AsyncEngine, *, channels: dict[str, Channel] | None = None,
                     campaigns: dict[str, Campaign] | None = None, metrics: ReminderMetrics | None = None) -> Dispatcher:
    """The dispatcher from settings: campaigns from campaigns_dir, channels from the registry
    (those that report receipts themselves, FreeSWITCH's, report them to the dispatcher's sink)."""
    late = LateSink()
    campaigns = campaigns if campaigns is not None else load_campaigns(campaigns_path(settings))
    # Survey campaigns compute each invitation's link when they send (the key never leaves this host).
    links = SurveyLinks.from_settings(settings) if any(c.source == "survey" for c in campaigns.values()) else None
    dispatcher = Dispatcher(
        engine, campaigns,
        channels if channels is not None else build_channels(ChannelContext(settings, engine, late)),
        rules_from(settings), instance_id=str(uuid.uuid4()), options=options_from(settings), metrics=metrics,
        survey_links=links)
    late.target = dispatcher.sink
    return dispatcher


class _BusyTickFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


@dataclass
class SchedulerService:
    dispatcher: Dispatcher
    tick_s: float = 5.0
    plan_interval_s: float = 300.0

    def __post_init__(self) -> None:
        self._scheduler: AsyncIOScheduler | None = None
        self._planned_at = float("-inf")
        self._running: asyncio.Task | None = None

    async def _tick(self) -> None:
        if self.dispatcher.stopping:
            return
        self._running = asyncio.current_task()
        try:
            plan = time.monotonic() - self._planned_at >= self.plan_interval_s
            await self.dispatcher.tick(plan=plan)
            if plan:
                self._planned_at = time.monotonic()
            await self._heartbeat()
        except asyncio.CancelledError:
            # The process is ending (its loop cancels what runs): rows in flight are reconciled.
            log.info("scheduler tick cancelled: the process is stopping")
        except Exception:  # a database hiccup must not end the schedule
            log.exception("scheduler tick failed")
        finally:
            self._running = None

    async def _heartbeat(self) -> None:
        async with self.dispatcher.engine.begin() as conn:
            await conn.execute(update(instances).where(instances.c.instance_id == self.dispatcher.instance_id)
                               .values(heartbeat_at=utcnow()))

    async def start(self) -> None:
        engine = self.dispatcher.engine
        now = utcnow()
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                others = (await conn.execute(select(instances.c.instance_id).where(
                    instances.c.role == "scheduler", instances.c.stopped_at.is_(None),
                    instances.c.heartbeat_at > now - timedelta(seconds=max(3 * self.tick_s, 30))))).scalars().all()
                if others:
                    log.error("another scheduler (%s) is running on this SQLite database: run one, or use "
                              "PostgreSQL for several", others[0])
            await conn.execute(insert(instances).values(
                instance_id=self.dispatcher.instance_id, role="scheduler", hostname=socket.gethostname(),
                pid=os.getpid(), started_at=now, heartbeat_at=now))
        # A tick sends until nothing is due, so runs that find the last one still going are normal.
        logging.getLogger("apscheduler.scheduler").addFilter(_BusyTickFilter())
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        scheduler.add_job(self._tick, "interval", seconds=self.tick_s, coalesce=True, max_instances=1,
                          next_run_time=datetime.now(timezone.utc), id="reminders-tick")
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler %s started: %d campaigns (%s), tick every %.0f s", self.dispatcher.instance_id,
                 len(self.dispatcher.campaigns), ", ".join(sorted(self.dispatcher.campaigns)), self.tick_s)

    async def stop(self) -> None:
        """Stop after the batch in flight (its rows are recorded, not left `sending`)."""
        self.dispatcher.stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        running = self._running
        if running is not None and not running.done():
            try:
                await asyncio.wait_for(asyncio.shield(running), self.dispatcher.options.lease_s)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("scheduler stopped with a batch in flight: its rows are reconciled after the lease")
        try:
            async with self.dispatcher.engine.begin() as conn:
                await conn.execute(update(instances).where(instances.c.instance_id == self.dispatcher.instance_id)
                                   .values(stopped_at=utcnow()))
        finally:
            await self.dispatcher.aclose()
