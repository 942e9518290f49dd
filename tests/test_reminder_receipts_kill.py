"""kill -9 of a gateway while provider receipts pour into its webhook, then a restart: the provider
pushes again what it got no answer for (and, as providers do, some it did), and every reminder ends
`delivered` with its receipt applied once. A receipt is acknowledged only after the sink stored it,
so one the process died holding is pushed again, never lost."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select

from fakes.aliyun_sms import shanghai_time
from gateway.storage import migrate
from gateway.storage.database import create_engine, reminder_receipts, reminders
from serve_process import gateway_process, wait_for

COUNT = 300
SECRET = "kill-hook-secret"


def _row(i: int, now: datetime) -> dict:
    return {"delivery_id": str(uuid.uuid4()), "dedupe_key": f"renewal|P{i}|2026-09-24|t15|sms", "campaign": "renewal",
            "step": "t15", "channel_index": 0, "subject": f"P{i}", "cycle": "2026-09-24", "channel": "sms",
            "provider": "aliyun_sms", "recipient": f"138{i:08d}", "purpose": "service", "context": {},
            "due_at": now - timedelta(minutes=5), "status": "accepted", "attempts": 1, "provider_id": f"biz-{i}",
            "created_at": now, "updated_at": now, "sent_at": now, "accepted_at": now}


def _report(row: dict) -> list[dict]:
    return [{"phone_number": row["recipient"], "send_time": shanghai_time(), "report_time": shanghai_time(),
             "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
             "biz_id": row["provider_id"], "out_id": row["delivery_id"]}]


async def _push(client: httpx.AsyncClient, url: str, row: dict) -> bool:
    try:
        answer = await client.post(url, json=_report(row))
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and answer.json().get("code") == 0


@pytest.mark.slow
async def test_receipts_survive_a_kill_during_their_handling(tmp_path: Path, model_cache: Path, test_database: str):
    engine = create_engine(test_database)
    now = datetime.now(timezone.utc)
    rows = [_row(i, now) for i in range(COUNT)]
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(reminders), rows)
    finally:
        await engine.dispose()
    env = {"GATEWAY_MODEL_CACHE_DIR": str(model_cache), "GATEWAY_MODEL_MIRRORS": "", "GATEWAY_MODEL_URL": "",
           "GATEWAY_DATABASE_URL": test_database, "GATEWAY_TTS_ENGINE": "none", "GATEWAY_RECOGNIZER_POOL_SIZE": "1",
           "GATEWAY_RECOGNIZER_WORKERS": "1", "GATEWAY_PROVIDER_HOOK_SECRET": SECRET,
           "GATEWAY_SCHEDULER_ENABLED": "false"}
    acknowledged: set[int] = set()
    with gateway_process(tmp_path, env) as (address, process, _log):
        wait_for(address, "/livez", 200, process)
        url = f"http://{address}/hooks/aliyun/sms-report/{SECRET}"
        async with httpx.AsyncClient(timeout=10) as client:
            async def pusher(indexes: list[int]) -> None:
                for i in indexes:
                    if await _push(client, url, rows[i]):
                        acknowledged.add(i)

            tasks = [asyncio.create_task(pusher(list(range(k, COUNT, 8)))) for k in range(8)]
            while len(acknowledged) < COUNT // 3:  # a third through: the process dies mid-stream
                await asyncio.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await asyncio.gather(*tasks)
    assert COUNT // 3 <= len(acknowledged) < COUNT  # the kill cut the stream

    with gateway_process(tmp_path, env) as (address, process, _log):
        wait_for(address, "/livez", 200, process)
        url = f"http://{address}/hooks/aliyun/sms-report/{SECRET}"
        async with httpx.AsyncClient(timeout=10) as client:
            # what got no answer is pushed again, and the first ten that did, as providers replay
            again = [i for i in range(COUNT) if i not in acknowledged] + sorted(acknowledged)[:10]
            results = await asyncio.gather(*(_push(client, url, rows[i]) for i in again))
            assert all(results)

    engine = create_engine(test_database)
    try:
        async with engine.connect() as conn:
            statuses = dict((await conn.execute(
                select(reminders.c.status, func.count()).group_by(reminders.c.status))).all())
            applied = (await conn.execute(select(func.count()).select_from(reminder_receipts))).scalar_one()
            keys = (await conn.execute(
                select(func.count(func.distinct(reminder_receipts.c.reminder_id))))).scalar_one()
    finally:
        await engine.dispose()
    assert statuses == {"delivered": COUNT}
    assert applied == COUNT and keys == COUNT  # each receipt once
