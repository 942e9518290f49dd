"""The reminder pieces as the gateway wires them: the channel registry builds the real Aliyun SMS
channel from settings, the dispatcher sends through it to the fake Aliyun on loopback, and the
provider's SmsReport and SmsUp pushes come back through our webhook routes into the dispatcher's
sink: delivered once, a replayed receipt changes nothing, a 退订 reply stops the next marketing reminder."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from fakes.aliyun_sms import FakeAliyunSms
from gateway.settings import load_settings
from gateway.storage import migrate, policies
from gateway.storage.database import create_engine
from gateway.web.provider_hooks import provider_hook_routes
from scheduler import store
from scheduler.campaigns import parse_campaign
from scheduler.dispatcher import DispatchOptions, Dispatcher
from scheduler.registry import ChannelContext, LateSink, build_channels
from scheduler.rules import Rules, Window

ZONE = ZoneInfo("Asia/Shanghai")
PHONE = "13800138000"
SECRET = "hook-secret-1"

CAMPAIGN = """
campaign: renewal
purpose: marketing           # an SMS 退订 opts out of marketing (service notices still go)
source: policies
exit: [renewed, opted_out]
steps:
  - name: t15
    offset: -15d
    at: "10:00"
    channels:
      - {channel: sms, provider: aliyun_sms, template: {code: SMS_1, params: {d: "{days_left}"}, text: "还有{days_left}天到期"}}
  - name: t7
    offset: -7d
    at: "10:00"
    channels:
      - {channel: sms, provider: aliyun_sms, template: {code: SMS_2, params: {d: "{days_left}"}, text: "还有{days_left}天到期"}}
"""


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def local(self, day: date, hhmm: str) -> None:
        self.at = datetime.combine(day, time.fromisoformat(hhmm), ZONE).astimezone(timezone.utc)


def test_the_registry_builds_only_configured_channels() -> None:
    bare = load_settings(environ={})
    assert build_channels(ChannelContext(bare, None, LateSink())) == {}
    configured = bare.replace(aliyun_access_key_id="id", aliyun_access_key_secret="s", aliyun_sms_sign_name="保险",
                              twilio_account_sid="AC1", twilio_auth_token="t", twilio_from_number="+8610",
                              public_url="https://gw.example.com", freeswitch_gateway="carrier")
    channels = build_channels(ChannelContext(configured, None, LateSink()))
    assert sorted(channels) == ["aliyun_sms", "aliyun_voice", "freeswitch_voice", "twilio_voice"]
    assert {name: c.kind for name, c in channels.items()}["aliyun_sms"] == "sms"


async def test_sms_reminder_through_the_real_channel_and_its_receipts_through_our_webhooks(test_database) -> None:
    with FakeAliyunSms() as fake:
        settings = load_settings(environ={}).replace(
            aliyun_sms_endpoint=fake.url, aliyun_access_key_id=fake.access_key_id,
            aliyun_access_key_secret=fake.access_key_secret, aliyun_sms_sign_name="平安保险",
            provider_hook_secret=SECRET)
        engine = create_engine(test_database)
        late = LateSink()
        clock = Clock()
        campaign = parse_campaign(yaml.safe_load(CAMPAIGN), "renewal.yaml")
        dispatcher = Dispatcher(
            engine, {campaign.name: campaign}, build_channels(ChannelContext(settings, engine, late)),
            Rules(ZONE, {"sms": Window.parse("08:00-22:00")}, {"sms": 3}), instance_id="wired-1",
            options=DispatchOptions(batch=10, retry_base_s=10, lease_s=30, reconcile_wait_s=60),
            clock=clock, rng=random.Random(1))
        late.target = dispatcher.sink
        hooks = Starlette(routes=provider_hook_routes(dispatcher.sink, settings))
        try:
            await migrate.upgrade(engine)
            good, errors = policies.validate_rows([{
                "policy_number": "P1", "product": "医疗险", "holder_name": "张伟", "insured_name": "张伟",
                "insured_id_number": "11010519491231002X", "phone": PHONE, "start_date": "2025-09-30",
                "expiry_date": "2026-09-24"}], date(2026, 1, 1))
            assert not errors
            await policies.upsert(engine, good)

            clock.local(date(2026, 9, 9), "10:00")  # T-15
            await dispatcher.tick()
            [row] = await store.rows_for(engine)
            assert row["status"] == "accepted" and row["provider"] == "aliyun_sms"
            [sent] = fake.sends
            assert sent.out_id == row["delivery_id"] and row["provider_id"] == sent.provider_id  # OutId, BizId
            assert sent.to == PHONE and sent.template == "SMS_1"

            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks), base_url="http://gw") as client:
                report = [fake.report(sent)]
                answer = await client.post(f"/hooks/aliyun/sms-report/{SECRET}", json=report)
                assert answer.status_code == 200 and answer.json()["code"] == 0
                [row] = await store.rows_for(engine)
                assert row["status"] == "delivered"
                again = await client.post(f"/hooks/aliyun/sms-report/{SECRET}", json=report)  # replayed
                assert again.status_code == 200
                assert [r["status"] for r in await store.rows_for(engine)] == ["delivered"]
                refused = await client.post(f"/hooks/aliyun/sms-report/wrong-secret", json=report)
                assert refused.status_code == 403

                reply = [{"phone_number": PHONE, "content": "退订", "send_time": "2026-09-09 10:05:00",
                          "dest_code": "1234", "sequence_id": 1}]
                answer = await client.post(f"/hooks/aliyun/sms-up/{SECRET}", json=reply)
                assert answer.status_code == 200

            clock.local(date(2026, 9, 17), "10:00")  # T-7: opted out, so nothing is sent
            await dispatcher.tick()
            assert len(fake.sends) == 1
            statuses = {r["step"]: r["status"] for r in await store.rows_for(engine)}
            assert statuses.get("t15") == "delivered" and statuses.get("t7") in (None, "skipped", "cancelled")
        finally:
            await dispatcher.aclose()
            await engine.dispose()
