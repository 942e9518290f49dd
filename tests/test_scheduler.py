"""The scheduler end to end on a real database and fake providers on loopback, with a controlled clock:
renewal steps, escalation from receipts, fall-through, opt-outs, caps, quiet hours, retries,
documents received mid-campaign, replayed receipts, two dispatchers on one database."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import insert, select

from fakes.generic_provider import FakeProvider, GenericChannel, running_provider
from gateway.storage import migrate, outbox, policies
from gateway.storage.database import create_engine, flow_results, opt_outs, reminders
from scheduler import store
from scheduler.campaigns import parse_campaign
from scheduler.channels.base import Receipt, Reply
from scheduler.dispatcher import DispatchOptions, Dispatcher
from scheduler.rules import Rules, Window

ZONE = ZoneInfo("Asia/Shanghai")
PHONE = "13800138000"
OPENID = "oWx_openid_0001"

RENEWAL = """
campaign: renewal
purpose: marketing
source: policies
exit: [renewed, opted_out]
steps:
  - name: t15
    offset: -15d
    at: "10:00"
    channels:
      - {channel: wechat, provider: wechat, template: {code: W1, params: {p: "{policy_number}"}, text: "续保 {policy_number}"}}
      - {channel: sms, provider: sms, template: {code: S1, params: {d: "{days_left}"}, text: "还有{days_left}天到期"}}
    escalate: {unless: read, within: 24h}
  - name: t3
    offset: -3d
    at: "15:00"
    channels:
      - {channel: voice, provider: voice, template: {code: reminder_renewal, text: "您的保单快到期了"}}
  - name: t1
    offset: -1d
    at: "09:30"
    channels:
      - {channel: task, template: {code: call_back, text: "请回访 {policy_number}"}}
"""

DOCUMENTS = """
campaign: missing_documents
purpose: service
source: missing_documents
exit: [documents_received, opted_out]
repeat: {every: 3d, max: 3}
steps:
  - name: notice
    offset: 0d
    at: "10:00"
    channels:
      - {channel: sms, provider: sms, template: {code: D1, text: "请补充{documents}"}}
"""


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set_local(self, day: date, hhmm: str) -> None:
        self.at = datetime.combine(day, time.fromisoformat(hhmm), ZONE).astimezone(timezone.utc)


def campaigns(*texts: str):
    return {c.name: c for c in (parse_campaign(yaml.safe_load(t), "test.yaml") for t in texts)}


def rules(**caps: int) -> Rules:
    return Rules(ZONE, {"voice": Window.parse("09:00-21:00"), "sms": Window.parse("08:00-22:00"),
                        "wechat": Window.parse("08:00-22:00")},
                 {"voice": 1, "sms": 3, "wechat": 3, **caps})


@contextlib.contextmanager
def providers() -> Iterator[dict[str, tuple[FakeProvider, str]]]:
    with running_provider(FakeProvider("wechat")) as w, running_provider(FakeProvider("sms")) as s, \
            running_provider(FakeProvider("voice")) as v:
        yield {"wechat": w, "sms": s, "voice": v}


class Harness:
    def __init__(self, url: str, fakes, camps, clock: Clock, **rule_caps: int) -> None:
        self.engine = create_engine(url)
        self.fakes = fakes
        self.clock = clock
        self.channels = {name: GenericChannel(base, name=name, kind=name if name != "sms" else "sms", timeout_s=2.0)
                         for name, (_, base) in fakes.items()}
        self.dispatcher = Dispatcher(self.engine, camps, self.channels, rules(**rule_caps), instance_id="test-1",
                                     options=DispatchOptions(batch=50, retry_base_s=10, lease_s=30,
                                                             reconcile_wait_s=60),
                                     clock=clock, rng=random.Random(7))

    async def setup(self) -> None:
        await migrate.upgrade(self.engine)

    async def policy(self, number: str = "P1", expiry: date = date(2026, 9, 24), **extra: str) -> None:
        row = {"policy_number": number, "product": "车险", "holder_name": "张伟", "insured_name": "张伟",
               "insured_id_number": "11010519491231002X", "phone": PHONE, "start_date": "2025-09-30",
               "expiry_date": expiry.isoformat(), "wechat_openid": OPENID, **extra}
        good, errors = policies.validate_rows([row], date(2026, 1, 1))
        assert not errors
        await policies.upsert(self.engine, good)

    async def tick(self) -> None:
        await self.dispatcher.tick()

    async def deliver_receipts(self, *names: str) -> None:
        for name in names or tuple(self.channels):
            await self.dispatcher.sink.receipts(await self.channels[name].receipts())

    async def rows(self) -> list[dict]:
        return await store.rows_for(self.engine)

    async def close(self) -> None:
        await self.dispatcher.aclose()
        await self.engine.dispose()


@pytest.fixture
def fakes():
    with providers() as found:
        yield found


@pytest.fixture
async def renewal(test_database, fakes):
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    h = Harness(test_database, fakes, campaigns(RENEWAL, DOCUMENTS), clock)
    await h.setup()
    yield h
    await h.close()


def by_step(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["step"], r["channel"]): r for r in rows}


async def test_renewal_escalates_to_sms_when_wechat_is_not_read_then_calls_and_tasks(renewal):
    h = renewal
    await h.policy()
    h.clock.set_local(date(2026, 9, 9), "10:00")  # T-15
    await h.tick()
    [row] = await h.rows()
    assert (row["step"], row["channel"], row["status"], row["recipient"]) == ("t15", "wechat", "accepted", OPENID)
    assert h.fakes["wechat"][0].sends[0]["delivery_id"] == row["delivery_id"]
    await h.deliver_receipts("wechat")  # delivered, but not read: the SMS follows after 24 h
    assert by_step(await h.rows())[("t15", "wechat")]["status"] == "delivered"
    h.clock.at += timedelta(hours=23)
    await h.tick()
    assert len(await h.rows()) == 1
    h.clock.at += timedelta(hours=2)
    await h.tick()
    rows = by_step(await h.rows())
    assert rows[("t15", "wechat")]["status"] == "escalated"
    assert rows[("t15", "sms")]["status"] == "accepted"
    sms = h.fakes["sms"][0].sends
    assert [s["text"] for s in sms] == ["还有15天到期拒收请回复R"]  # marketing SMS carry the opt-out line
    await h.deliver_receipts("sms")
    assert by_step(await h.rows())[("t15", "sms")]["status"] == "delivered"
    h.clock.set_local(date(2026, 9, 21), "15:00")  # T-3: a voice call
    await h.tick()
    await h.deliver_receipts("voice")
    assert by_step(await h.rows())[("t3", "voice")]["status"] == "delivered"
    h.clock.set_local(date(2026, 9, 23), "09:30")  # T-1: a task for an agent, on the outbox
    await h.tick()
    assert by_step(await h.rows())[("t1", "task")]["status"] == "delivered"
    [task] = [r for r in await outbox.pending(h.engine) if r["topic"] == "reminder_task"]
    assert task["payload"]["subject"] == "P1" and task["payload"]["values"]["policy_number"] == "P1"
    assert (task["payload"]["template"], task["payload"]["text"]) == ("call_back", "请回访 P1")
    assert all(len(f.sends) == 1 for f, _ in h.fakes.values())
    transitions = h.dispatcher.metrics.transitions
    assert transitions[("renewal", "wechat", "sending")] == 1 and transitions[("renewal", "sms", "accepted")] == 1
    text = h.dispatcher.metrics.render(await store.status_counts(h.engine))
    assert 'gateway_reminders{campaign="renewal",channel="sms",status="delivered"} 1' in text


async def test_a_read_wechat_message_stops_the_escalation_and_a_replayed_receipt_changes_nothing(renewal):
    h = renewal
    await h.policy()
    h.clock.set_local(date(2026, 9, 9), "10:00")
    await h.tick()
    [row] = await h.rows()
    read = Receipt("wechat", "read", h.clock(), provider_id=row["provider_id"])
    await h.dispatcher.sink.receipts([read])
    failed_late = Receipt("wechat", "failed", h.clock(), provider_id=row["provider_id"], error="late")
    await h.dispatcher.sink.receipts([read, failed_late, read])  # replay, and a failure after delivery
    h.clock.at += timedelta(days=2)
    await h.tick()
    [row] = await h.rows()
    assert (row["status"], row["read_at"] is not None, row["last_error"]) == ("delivered", True, None)
    assert h.fakes["sms"][0].sends == []


async def test_wechat_unreachable_falls_through_to_sms_at_once_and_a_failed_receipt_escalates(renewal):
    h = renewal
    await h.policy()
    h.fakes["wechat"][0].unreachable.add(OPENID)  # 43004 not following, in the fake's words
    h.clock.set_local(date(2026, 9, 9), "10:00")
    await h.tick()
    rows = by_step(await h.rows())
    assert rows[("t15", "wechat")]["status"] == "failed"
    assert rows[("t15", "sms")]["status"] == "accepted"
    # A failed receipt on the last channel of the step: failed, nothing after it.
    h.fakes["sms"][0].receipt_for[PHONE] = "failed"
    await h.deliver_receipts("sms")
    assert by_step(await h.rows())[("t15", "sms")]["status"] == "delivered"  # the fake sent delivered already


async def test_a_call_due_on_a_holiday_waits_for_the_next_workday_or_is_skipped_once_useless(renewal):
    h = renewal
    await h.policy(expiry=date(2026, 10, 4))  # T-3 is 1 October: National Day, until the 7th
    h.clock.set_local(date(2026, 10, 1), "15:00")
    await h.tick()
    [voice] = [r for r in await h.rows() if r["channel"] == "voice"]
    # The next workday (8 October) is after the policy lapsed: skipped, never called on the holiday.
    assert (voice["status"], voice["skip_reason"]) == ("skipped", "expired (holiday)")
    assert h.fakes["voice"][0].sends == []


async def test_a_call_due_at_mid_autumn_is_made_the_next_workday_at_nine(test_database, fakes):
    only_call = RENEWAL[:RENEWAL.index("  - name: t15")] + RENEWAL[RENEWAL.index("  - name: t3"):RENEWAL.index("  - name: t1\n")]
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    h = Harness(test_database, fakes, campaigns(only_call), clock)
    await h.setup()
    try:
        await h.policy(expiry=date(2026, 9, 28))  # T-3: 25 September, Mid-Autumn Festival
        clock.set_local(date(2026, 9, 25), "15:00")
        await h.tick()
        [voice] = await h.rows()
        assert (voice["status"], voice["skip_reason"]) == ("due", "holiday")
        assert voice["due_at"].astimezone(ZONE) == datetime(2026, 9, 28, 9, 0, tzinfo=ZONE)
        clock.set_local(date(2026, 9, 27), "20:00")  # Sunday, still the holiday
        await h.tick()
        assert h.fakes["voice"][0].sends == []
        clock.set_local(date(2026, 9, 28), "09:00")
        await h.tick()
        assert [r["status"] for r in await h.rows()] == ["accepted"] and len(h.fakes["voice"][0].sends) == 1
    finally:
        await h.close()


async def test_an_sms_due_at_night_waits_for_eight_in_the_morning(test_database, fakes):
    night = DOCUMENTS.replace('at: "10:00"', 'at: "23:30"')
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    h = Harness(test_database, fakes, campaigns(night), clock)
    await h.setup()
    try:
        claim = await _claim_report(h.engine)
        clock.set_local(date(2026, 3, 2), "09:00")
        await store.request_documents(h.engine, claim, ["发票"], clock())
        clock.set_local(date(2026, 3, 2), "23:30")
        await h.tick()
        [row] = await h.rows()
        assert (row["status"], row["skip_reason"]) == ("due", "quiet_hours")
        assert row["due_at"].astimezone(ZONE) == datetime(2026, 3, 3, 8, 0, tzinfo=ZONE)
        clock.set_local(date(2026, 3, 3), "08:00")
        await h.tick()
        assert [r["status"] for r in await h.rows()] == ["accepted"]
    finally:
        await h.close()


async def _claim_report(engine, result_id: str = "r-claim-1") -> str:
    now = datetime.now(timezone.utc)
    async with engine.begin() as conn:
        await conn.execute(insert(flow_results).values(
            id=result_id, flow="claim", topic="claim_report", call_id="call-1", status="complete",
            caller_number=PHONE, policy_number="P1", subject_phone=PHONE, slots={}, details={}, transcript=[],
            created_at=now, updated_at=now))
    return result_id


async def test_a_document_received_mid_campaign_stops_its_reminders(renewal):
    h = renewal
    claim = await _claim_report(h.engine)
    h.clock.set_local(date(2026, 3, 2), "09:00")
    await store.request_documents(h.engine, claim, ["发票", "诊断证明"], h.clock())
    h.clock.set_local(date(2026, 3, 2), "10:00")
    await h.tick()
    [first] = await h.rows()
    assert first["status"] == "accepted" and h.fakes["sms"][0].sends[0]["text"] == "请补充发票、诊断证明"
    h.clock.set_local(date(2026, 3, 4), "12:00")  # the second round is planned a day ahead
    await h.tick()
    assert [r["status"] for r in await h.rows()] == ["accepted", "due"]
    assert (await store.receive_document(h.engine, claim, "发票", h.clock()))["cancelled"] == 0  # one still missing
    done = await store.receive_document(h.engine, claim, "诊断证明", h.clock())
    assert done == {"received": 1, "missing": 0, "cancelled": 1}
    h.clock.set_local(date(2026, 3, 8), "10:00")
    await h.tick()
    assert [r["status"] for r in await h.rows()] == ["accepted", "cancelled"]
    assert len(h.fakes["sms"][0].sends) == 1


async def test_the_exit_condition_is_checked_again_inside_the_send_transaction(renewal):
    h = renewal
    await h.policy()
    h.clock.set_local(date(2026, 9, 9), "09:00")
    await h.dispatcher.plan()  # planned while the policy was about to lapse
    await h.policy(expiry=date(2027, 9, 24))  # renewed before the send: the expiry moved
    h.clock.set_local(date(2026, 9, 9), "10:00")
    await h.dispatcher.tick(plan=False)
    [row] = await h.rows()
    assert (row["status"], row["skip_reason"]) == ("cancelled", "renewed")
    assert h.fakes["wechat"][0].sends == []


async def test_opt_outs_by_sms_reply_wechat_unsubscribe_and_a_refused_call(renewal):
    h = renewal
    await h.policy()
    await h.dispatcher.sink.replies([
        Reply("sms", PHONE, h.clock(), text="ＴＤ"), Reply("wechat", OPENID, h.clock(), event="unsubscribe"),
        Reply("sms", "13900000000", h.clock(), text="好的谢谢")])
    async with h.engine.connect() as conn:
        found = {(r.recipient, r.channel, r.purpose) for r in (await conn.execute(select(opt_outs))).all()}
    assert found == {(PHONE, "sms", "marketing"), (OPENID, "wechat", "*")}
    h.clock.set_local(date(2026, 9, 9), "10:00")
    await h.tick()
    rows = by_step(await h.rows())
    assert rows[("t15", "wechat")]["skip_reason"] == "opted_out"
    assert rows[("t15", "sms")]["skip_reason"] == "opted_out"
    assert h.fakes["wechat"][0].sends == [] and h.fakes["sms"][0].sends == []
    # The call goes out; the customer says 别再打了: the number is on the do-not-call list.
    h.clock.set_local(date(2026, 9, 21), "15:00")
    await h.tick()
    voice = by_step(await h.rows())[("t3", "voice")]
    await h.dispatcher.sink.receipts([Receipt("voice", "completed", h.clock(), provider_id=voice["provider_id"],
                                              outcome="refused")])
    async with h.engine.connect() as conn:
        dnc = (await conn.execute(select(opt_outs).where(opt_outs.c.channel == "voice"))).all()
    assert [(d.recipient, d.purpose, d.source) for d in dnc] == [(PHONE, "*", "voice_refused")]


async def test_at_most_one_voice_call_a_day_across_campaigns(test_database, fakes):
    other = RENEWAL.replace("campaign: renewal", "campaign: renewal_b")
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    h = Harness(test_database, fakes, campaigns(RENEWAL, other), clock)
    await h.setup()
    try:
        await h.policy()
        clock.set_local(date(2026, 9, 21), "15:00")
        await h.tick()
        voice = [r for r in await h.rows() if r["channel"] == "voice"]
        assert sorted(r["status"] for r in voice) == ["accepted", "due"]
        [waiting] = [r for r in voice if r["status"] == "due"]
        assert waiting["skip_reason"] == "cap"
        assert waiting["due_at"].astimezone(ZONE) == datetime(2026, 9, 22, 9, 0, tzinfo=ZONE)
        assert len(h.fakes["voice"][0].sends) == 1
    finally:
        await h.close()


async def test_retryable_errors_back_off_then_go_dead_and_rejections_fail(renewal):
    h = renewal
    h.dispatcher.options = DispatchOptions(batch=50, retry_base_s=10, max_attempts=3)
    claim = await _claim_report(h.engine)
    h.clock.set_local(date(2026, 3, 2), "10:00")
    await store.request_documents(h.engine, claim, ["发票"], h.clock())
    h.fakes["sms"][0].fail_5xx = 10
    await h.tick()
    [row] = await h.rows()
    assert (row["status"], row["attempts"]) == ("due", 1)
    first_delay = (row["due_at"] - h.clock()).total_seconds()
    assert 5 <= first_delay <= 10  # 10 s base, jittered to 50-100 %
    for _ in range(2):
        h.clock.at = row["due_at"]
        await h.dispatcher.tick(plan=False)
        [row] = await h.rows()
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert [r["id"] for r in await store.dead_letters(h.engine)] == [row["id"]]


async def test_two_dispatchers_on_one_database_claim_disjoint_rows(test_database, fakes):
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    a = Harness(test_database, fakes, campaigns(RENEWAL), clock)
    b = Harness(test_database, fakes, campaigns(RENEWAL), clock)
    b.dispatcher.instance_id = "test-2"
    await a.setup()
    try:
        rows = [{"policy_number": f"P{i}", "product": "车险", "holder_name": "张伟", "insured_name": "张伟",
                 "insured_id_number": "11010519491231002X", "phone": f"1380000{i:04d}", "start_date": "",
                 "expiry_date": "2026-09-24", "wechat_openid": f"o{i}"} for i in range(300)]
        good, _ = policies.validate_rows(rows, date(2026, 1, 1))
        await policies.upsert(a.engine, good)
        clock.set_local(date(2026, 9, 9), "10:00")
        await a.dispatcher.plan()
        a.fakes["wechat"][0].delay_s = 0.002  # sends overlap between the two
        await asyncio.gather(*(d.dispatcher.tick(plan=False) for d in (a, b) for _ in range(3)))
        sent = a.fakes["wechat"][0].count_by_delivery()
        assert len(sent) == 300 and set(sent.values()) == {1}
        statuses = {r["status"] for r in await a.rows()}
        assert statuses == {"accepted"}
        leased_by = {r["leased_by"] for r in await a.rows()}
        assert leased_by <= {"test-1", "test-2"}
    finally:
        await a.close()
        await b.close()


async def test_dry_run_names_who_is_reminded_tomorrow_and_who_is_skipped_and_why(test_database, fakes):
    night = RENEWAL.replace("campaign: renewal", "campaign: late_call").replace('at: "15:00"', 'at: "21:30"')
    second_call = RENEWAL.replace("campaign: renewal", "campaign: second_call")
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    h = Harness(test_database, fakes, campaigns(RENEWAL, night, second_call), clock)
    await h.setup()
    try:
        for number, phone in (("P1", "13800000001"), ("P2", "13800000002"), ("P3", "13800000003")):
            await h.policy(number, expiry=date(2026, 9, 24), phone=phone, wechat_openid=f"o-{number}")
        await h.dispatcher.sink.replies([Reply("wechat", "o-P2", clock(), event="unsubscribe"),
                                         Reply("sms", "13800000002", clock(), text="退订")])
        clock.set_local(date(2026, 9, 8), "10:30")  # today; tomorrow is T-15 and... T-3 is the 21st
        await h.dispatcher.plan()  # P3's T-15 row is planned now (due tomorrow 10:00)
        await h.policy("P3", expiry=date(2027, 9, 24), phone="13800000003", wechat_openid="o-P3")  # renewed
        result = await h.dispatcher.dry_run(date(2026, 9, 9))
        sends = {(s["campaign"], s["subject"], s["channel"]) for s in result["send"]}
        skips = {(s["campaign"], s["subject"], s["channel"], s["reason"]) for s in result["skip"]}
        assert ("renewal", "P1", "wechat") in sends
        assert ("renewal", "P2", "wechat", "opted_out") in skips
        assert ("renewal", "P3", "wechat", "renewed") in skips
        assert not any(s[1] == "P2" for s in sends)
        # The 21st: the 21:30 calls wait for the morning; a second call the same day hits the cap.
        calls = await h.dispatcher.dry_run(date(2026, 9, 21))
        call_skips = {(s["campaign"], s["subject"], s["reason"]) for s in calls["skip"] if s["channel"] == "voice"}
        call_sends = [(s["campaign"], s["subject"]) for s in calls["send"] if s["channel"] == "voice"]
        assert ("late_call", "P1", "quiet_hours") in call_skips
        assert sorted(call_sends) == [("renewal", "P1"), ("renewal", "P2")]
        assert ("second_call", "P1", "cap") in call_skips
        assert await h.rows() and h.fakes["voice"][0].sends == []  # a dry run sends nothing
    finally:
        await h.close()


async def test_a_paused_campaign_sends_nothing_until_resumed(renewal):
    h = renewal
    await h.policy()
    await store.set_paused(h.engine, "renewal", True, h.clock())
    h.clock.set_local(date(2026, 9, 9), "10:00")
    await h.tick()
    assert [r["status"] for r in await h.rows()] == ["due"] and h.fakes["wechat"][0].sends == []
    await store.set_paused(h.engine, "renewal", False, h.clock())
    await h.tick()
    assert [r["status"] for r in await h.rows()] == ["accepted"]
