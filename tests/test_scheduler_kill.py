"""kill -9 of a scheduler process, then a restart: a reminder is sent at most once and every row ends
final. The scheduler is a real subprocess (bench/reminders_load.py --worker: the Dispatcher under
APScheduler) sending to the generic fake provider on loopback; the lease is 2 s."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from fakes.generic_provider import FakeProvider, running_provider
from gateway.storage.database import create_engine, reminders

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import reminders_load  # noqa: E402

COUNT = 200


def _worker(url: str, provider_url: str, campaigns: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "reminders_load.py"), "--worker", "--database-url", url,
         "--provider-url", provider_url, "--campaigns", str(campaigns), "--lease-s", "2", "--batch", "50",
         "--concurrency", "16", "--timeout-s", "60"],
        stdout=log.open("a"), stderr=subprocess.STDOUT, cwd=ROOT)


async def _statuses(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return dict((await conn.execute(select(reminders.c.status, func.count()).group_by(reminders.c.status))).all())
    finally:
        await engine.dispose()


async def _wait(condition, what: str, log: Path, limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.05)


async def _run(tmp_path: Path, url: str, provider: FakeProvider, provider_url: str, armed, kill_when, disarm) -> None:
    campaigns = reminders_load.campaigns_dir(tmp_path / "campaigns")
    await reminders_load.seed(url, COUNT, campaigns)
    log = tmp_path / "worker.log"
    armed(provider)
    proc = _worker(url, provider_url, campaigns, log)
    try:
        await _wait(lambda: kill_when(provider, url), "the moment to kill", log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        disarm(provider)
        proc = _worker(url, provider_url, campaigns, log)

        async def done() -> bool:
            statuses = await _statuses(url)
            return statuses.get("due", 0) + statuses.get("sending", 0) == 0

        await _wait(done, "every row final", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    sent = provider.count_by_delivery()
    assert len(sent) == COUNT and set(sent.values()) == {1}  # each reminder once, none lost
    assert await _statuses(url) == {"accepted": COUNT}


async def test_killed_after_the_claim_commit_before_the_provider_answered(tmp_path, test_database):
    with running_provider(FakeProvider("generic")) as (provider, provider_url):
        async def claimed_and_in_flight(p: FakeProvider, url: str) -> bool:
            return p.requests >= 16 and (await _statuses(url)).get("sending", 0) > 0

        def hang(p: FakeProvider) -> None:
            p.hang_all = True  # requests arrive and are never accepted nor answered

        def release(p: FakeProvider) -> None:
            p.hang_all = False

        await _run(tmp_path, test_database, provider, provider_url, hang, claimed_and_in_flight, release)
        assert provider.requests > COUNT  # the hung requests were seen, then the rows were sent again once


async def test_killed_after_the_provider_accepted_before_our_commit(tmp_path, test_database):
    with running_provider(FakeProvider("generic")) as (provider, provider_url):
        async def accepted_unanswered(p: FakeProvider, url: str) -> bool:
            return len(p.sends) >= 16

        def slow_answers(p: FakeProvider) -> None:
            p.delay_after_s = 3600  # accepted and logged, the answer never comes before the kill

        def fast(p: FakeProvider) -> None:
            p.delay_after_s = 0

        await _run(tmp_path, test_database, provider, provider_url, slow_answers, accepted_unanswered, fast)
