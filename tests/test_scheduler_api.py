"""The reminders' admin API on a real gateway, `gateway serve` running the scheduler, and
`gateway scheduler` on its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy import insert, select

from conftest import running_gateway
from gateway.storage.database import create_engine, flow_results, instances

ROOT = Path(__file__).resolve().parent.parent
PHONE = "13800138000"


def _policy(expiry: str) -> dict:
    return {"policy_number": "P1", "product": "车险", "holder_name": "张伟", "insured_name": "张伟",
            "insured_id_number": "11010519491231002X", "phone": PHONE, "start_date": "2025-01-01",
            "expiry_date": expiry, "wechat_openid": "oWx1", "consent_marketing": "是", "consent_voice": "0"}


async def _claim(url: str) -> None:
    engine = create_engine(url)
    now = datetime.now(timezone.utc)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(flow_results).values(
                id="r-1", flow="claim", topic="claim_report", call_id="c-1", status="complete", caller_number=PHONE,
                policy_number="P1", subject_phone=PHONE, slots={}, details={}, transcript=[], created_at=now,
                updated_at=now))
    finally:
        await engine.dispose()


async def _scheduler_instances(url: str) -> list:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(instances).where(instances.c.role == "scheduler"))).all()
    finally:
        await engine.dispose()


async def test_admin_api_campaigns_dry_run_pause_documents_history_and_metrics(make_settings, test_database):
    with running_gateway(make_settings(scheduler_tick_s=3600)) as address:
        base = f"http://{address}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            today = datetime.now(timezone(timedelta(hours=8))).date()
            expiry = (today + timedelta(days=16)).isoformat()  # T-15 is tomorrow
            bad = await client.post("/api/policies", json=[{**_policy(expiry), "consent_sms": "maybe"}])
            assert bad.status_code == 207 and "consent_sms" in bad.json()["errors"][0]["error"]
            assert (await client.post("/api/policies", json=[_policy(expiry)])).status_code == 200
            campaigns = (await client.get("/api/reminders/campaigns")).json()["campaigns"]
            assert {c["name"] for c in campaigns} == {"renewal", "missing_documents", "survey"}
            renewal = next(c for c in campaigns if c["name"] == "renewal")
            assert renewal["steps"][1]["channels"][0] == {"channel": "wechat", "provider": "wechat",
                                                          "template": "RENEWAL_NOTICE", "configured": False}
            dry = (await client.get("/api/reminders/dry-run")).json()
            assert dry["day"] == (today + timedelta(days=1)).isoformat()
            # No provider is configured in this gateway: the dry run says so, channel by channel.
            assert {(s["campaign"], s["channel"], s["reason"]) for s in dry["skip"]} >= {("renewal", "wechat", "no_channel")}
            assert (await client.get("/api/reminders/dry-run?day=tomorrow")).status_code == 400
            assert (await client.post("/api/reminders/campaigns/renewal/pause")).json() == {"campaign": "renewal",
                                                                                          "paused": True}
            dry = (await client.get("/api/reminders/dry-run")).json()
            assert {s["reason"] for s in dry["skip"] if s["campaign"] == "renewal"} == {"paused"}
            assert (await client.post("/api/reminders/campaigns/renewal/resume")).json()["paused"] is False
            assert (await client.post("/api/reminders/campaigns/nothing/pause")).status_code == 404

            assert (await client.post("/api/claims/r-1/missing-documents", json={"documents": ["发票"]})).status_code == 404
            await _claim(test_database)
            assert (await client.post("/api/claims/r-1/missing-documents", json={"documents": []})).status_code == 400
            made = await client.post("/api/claims/r-1/missing-documents", json={"documents": ["发票", "诊断证明"]})
            assert made.status_code == 201 and [d["document"] for d in made.json()["documents"]] == ["发票", "诊断证明"]
            got = await client.post("/api/claims/r-1/documents-received", json={"document": "发票"})
            assert got.json() == {"received": 1, "missing": 1, "cancelled": 0}
            assert (await client.post("/api/claims/r-1/documents-received", json={"document": "保单"})).status_code == 404

            assert (await client.post("/api/reminders/opt-outs", json={"recipient": PHONE, "channel": "sms",
                                                                        "purpose": "*"})).status_code == 201
            assert (await client.post("/api/reminders/opt-outs", json={"recipient": PHONE, "channel": "fax"})).status_code == 400
            history = (await client.get("/api/reminders/history", params={"recipient": PHONE})).json()["history"]
            assert {"channel": "sms", "purpose": "*", "source": "api"}.items() <= history[-1]["opt_out"].items()
            assert (await client.get("/api/reminders/dead")).json() == {"dead": []}
            metrics = (await client.get("/metrics")).text
            assert "gateway_scheduler_ticks_total" in metrics and "gateway_reminders" in metrics
    # serve ran the scheduler (scheduler_enabled defaults to on) and said it stopped.
    [row] = await _scheduler_instances(test_database)
    assert row.stopped_at is not None


async def test_gateway_scheduler_runs_on_its_own_and_stops_on_sigterm(test_database, tmp_path):
    env = {**os.environ, "GATEWAY_DATABASE_URL": test_database, "GATEWAY_SETTINGS": str(ROOT / "config" / "settings.toml"),
           "GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_SCHEDULER_TICK_S": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "scheduler"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                found = await _scheduler_instances(test_database)
            except Exception:  # noqa: BLE001 - the schema is not there yet
                found = []
            if found:
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "scheduler" in out and "started" in out
    [row] = await _scheduler_instances(test_database)
    assert row.stopped_at is not None and row.pid == proc.pid
