"""Reminders under load: 100,000 due, sent to a fake provider on loopback, the scheduler killed -9
partway and restarted; throughput end to end, duplicates and lost counted from the provider's log.

    python bench/reminders_load.py [--reminders 100000] [--database-url URL] [--kill-at 0.4]

The scheduler is a subprocess (this script with --worker: the real Dispatcher under APScheduler,
its channel the generic fake provider's). Throughput is reminders over the wall time from the
first start to the last row final, kill and restart (and the lease running out) included.
Duplicates: provider log lines beyond the first per delivery id. Lost: rows not accepted, or
accepted in the database without a line in the provider's log. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlalchemy import func, select  # noqa: E402

from gateway.storage import migrate  # noqa: E402
from gateway.storage.database import create_engine, reminders  # noqa: E402

CAMPAIGN = """\
campaign: load
purpose: service
source: survey
steps:
  - name: notice
    channels:
      - {channel: sms, provider: generic, template: {code: SMS_LOAD, params: {n: "{n}"}, text: "提醒 {n}"}}
"""
ALWAYS = "00:00-23:59"


def campaigns_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "load.yaml").write_text(CAMPAIGN, encoding="utf-8")
    return folder


async def seed(url: str, count: int, folder: Path) -> None:
    """`count` reminders due now (the planner's rows, inserted as planning would)."""
    from scheduler import store
    from scheduler.campaigns import load_campaigns
    from scheduler.planner import planned_row

    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        campaign = load_campaigns(folder)["load"]
        step = campaign.steps[0]
        now = datetime.now(timezone.utc)
        rows = [planned_row(campaign, step, "notice", 0, f"S{i}", "1",
                            {"addresses": {"sms": f"1{i:010d}"}, "consent": {}, "values": {"n": str(i)}},
                            now - timedelta(seconds=1), now + timedelta(days=1)) for i in range(count)]
        for start in range(0, count, 20000):
            await store.insert_planned(engine, rows[start:start + 20000], now)
    finally:
        await engine.dispose()


async def unfinished(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(reminders).where(
                reminders.c.status.in_(("due", "sending"))))).scalar_one())
    finally:
        await engine.dispose()


async def final_rows(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return dict((await conn.execute(select(reminders.c.delivery_id, reminders.c.status))).all())
    finally:
        await engine.dispose()


def worker(args: argparse.Namespace) -> int:
    """The scheduler process: the real service (APScheduler ticks) with the fake provider's channel."""
    import logging

    from fakes.generic_provider import GenericChannel
    from gateway.settings import load_settings
    from scheduler.service import SchedulerService, build_dispatcher

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    settings = load_settings(environ={}).replace(
        database_url=args.database_url, campaigns_dir=str(args.campaigns), scheduler_lease_s=args.lease_s,
        scheduler_batch=args.batch, scheduler_concurrency=args.concurrency, scheduler_tick_s=0.2,
        scheduler_plan_interval_s=10 ** 9, scheduler_sms_hours=ALWAYS, scheduler_sms_per_day=0,
        scheduler_retry_base_s=0.5)

    async def run() -> None:
        engine = create_engine(args.database_url)
        channel = GenericChannel(args.provider_url, name="generic", timeout_s=args.timeout_s,
                                 connections=args.concurrency)
        dispatcher = build_dispatcher(settings, engine, channels={"generic": channel})
        dispatcher.options = type(dispatcher.options)(**{**dispatcher.options.__dict__, "tick_budget_s": 3600.0})
        service = SchedulerService(dispatcher, settings.scheduler_tick_s, settings.scheduler_plan_interval_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await service.start()
        print("worker started", flush=True)
        await stop.wait()
        await service.stop()
        await engine.dispose()

    asyncio.run(run())
    return 0


def start_worker(args: argparse.Namespace, provider_url: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "--database-url", args.database_url, "--provider-url", provider_url,
         "--campaigns", str(args.campaigns), "--lease-s", str(args.lease_s), "--batch", str(args.batch),
         "--concurrency", str(args.concurrency), "--timeout-s", str(args.timeout_s)],
        stdout=log.open("a"), stderr=subprocess.STDOUT, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reminders", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--kill-at", type=float, default=0.4, help="kill -9 the scheduler after this share was sent")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--lease-s", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=float, default=2.0)
    parser.add_argument("--deadline-s", type=float, default=900.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--provider-url", help=argparse.SUPPRESS)
    parser.add_argument("--campaigns", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from fakes.generic_provider import FakeProvider, running_provider

    tmp = Path(tempfile.mkdtemp(prefix="reminders-load-"))
    args.database_url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'load.db'}"
    args.campaigns = campaigns_dir(tmp / "campaigns")
    t0 = time.perf_counter()
    asyncio.run(seed(args.database_url, args.reminders, args.campaigns))
    print(f"seeded {args.reminders} reminders in {time.perf_counter() - t0:.1f} s ({args.database_url.split(':')[0]})",
          flush=True)
    log_path = tmp / "provider.log"
    worker_log = tmp / "worker.log"
    with running_provider(FakeProvider("generic", log_path=log_path)) as (provider, url):
        started = time.perf_counter()
        proc = start_worker(args, url, worker_log)
        killed_at = None
        while len(provider.sends) < args.reminders * args.kill_at:
            if proc.poll() is not None or time.perf_counter() - started > args.deadline_s:
                print(f"worker ended early ({proc.returncode}); see {worker_log}", file=sys.stderr)
                return 1
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(provider.sends)
        print(f"kill -9 after {killed_at} sends ({time.perf_counter() - started:.1f} s)", flush=True)
        proc = start_worker(args, url, worker_log)
        while asyncio.run(unfinished(args.database_url)):
            if proc.poll() is not None or time.perf_counter() - started > args.deadline_s:
                print(f"worker ended early or the deadline passed; see {worker_log}", file=sys.stderr)
                proc.kill()
                return 1
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    counts: dict[str, int] = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        delivery = line.split(" ", 1)[0]
        counts[delivery] = counts.get(delivery, 0) + 1
    rows = asyncio.run(final_rows(args.database_url))
    duplicates = sum(n - 1 for n in counts.values())
    lost = sum(1 for d, status in rows.items() if status != "accepted" or d not in counts)
    strays = sum(1 for d in counts if d not in rows)
    result = {"reminders": args.reminders, "seconds": round(elapsed, 2), "per_s": round(args.reminders / elapsed, 1),
              "duplicates": duplicates, "lost": lost, "strays": strays, "killed_after": killed_at,
              "database": args.database_url.split(":")[0], "batch": args.batch, "concurrency": args.concurrency,
              "cpus": os.cpu_count()}
    print(f"{args.reminders} reminders in {elapsed:.1f} s: {result['per_s']}/s end to end, kill -9 and restart "
          f"included; duplicates {duplicates}, lost {lost}")
    print(json.dumps(result))
    return 0 if duplicates == 0 and lost == 0 and strays == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
