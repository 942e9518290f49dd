"""The survey campaign (config/campaigns/survey.yaml) on a real database with a controlled clock: the
invitation's link by the fake Aliyun SMS server on loopback (computed at send time from the salt and the
key), its `sent` event on the case's audit trail, the nudge by WeChat then SMS, the voice step before
the deadline naming the survey flow and the invitation, the agent task, the invitation's own channel
first, every reminder stopping when the case is completed, and nothing due or kept past the deadline."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from fakes.aliyun_sms import FakeAliyunSms
from fakes.generic_provider import FakeProvider, GenericChannel, running_provider
from gateway.storage import migrate, outbox
from gateway.storage import surveys as survey_store
from gateway.storage.database import create_engine
from gateway.storage.survey_service import SurveyLinks
from scheduler import store
from scheduler.campaigns import load_campaigns
from scheduler.channels.aliyun_sms import AliyunConfig, AliyunSmsChannel
from scheduler.dispatcher import DispatchOptions, Dispatcher
from scheduler.rules import Rules, Window
from surveys.products import deadline as cooling_off_deadline

from survey_cases import BASE, IDS, KEY, ZONE, add_policies, answer_all, catalog, invite, policy_rows, survey, \
    verified_session

ROOT = Path(__file__).resolve().parent.parent
OPENID = "oWx_survey_0001"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set_local(self, day: date, hhmm: str) -> None:
        self.at = datetime.combine(day, time.fromisoformat(hhmm), ZONE).astimezone(timezone.utc)


@pytest.fixture
def fakes():
    with FakeAliyunSms() as sms, running_provider(FakeProvider("wechat")) as wechat, \
            running_provider(FakeProvider("twilio_voice")) as voice:
        yield {"sms": sms, "wechat": wechat, "voice": voice}


@pytest.fixture
async def harness(test_database, fakes, tmp_path):
    engine = create_engine(test_database)
    await migrate.upgrade(engine)
    clock = Clock(datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc))  # Tuesday 10:00 in Shanghai
    channels = {
        "aliyun_sms": AliyunSmsChannel(AliyunConfig(fakes["sms"].url, fakes["sms"].access_key_id,
                                                    fakes["sms"].access_key_secret, 5.0), "保险服务"),
        "wechat": GenericChannel(fakes["wechat"][1], name="wechat", kind="wechat", timeout_s=2.0),
        "twilio_voice": GenericChannel(fakes["voice"][1], name="twilio_voice", kind="voice", timeout_s=2.0),
    }
    campaign = load_campaigns(ROOT / "config" / "campaigns")["survey"]
    rules = Rules(ZONE, {"voice": Window.parse("09:00-21:00"), "sms": Window.parse("08:00-22:00"),
                         "wechat": Window.parse("08:00-22:00")}, {"voice": 2, "sms": 5, "wechat": 5})
    dispatcher = Dispatcher(engine, {"survey": campaign}, channels, rules, instance_id="survey-test",
                            options=DispatchOptions(batch=50, lease_s=30), clock=clock, rng=random.Random(3),
                            survey_links=SurveyLinks(KEY, BASE))
    rows = policy_rows(3, receipt=date(2026, 11, 28))  # TERM (default): 15 days -> deadline 2026-12-13
    rows[0]["wechat_openid"] = OPENID
    rows[0]["product"] = "TERM"
    await add_policies(engine, rows)
    yield engine, dispatcher, clock, catalog(tmp_path)
    await dispatcher.aclose()
    await engine.dispose()


def by_step(rows):
    return {(r["step"], r["channel"]): r for r in rows}


async def test_invite_nudge_call_and_task_until_the_deadline(harness, fakes):
    engine, dispatcher, clock, cat = harness
    (item,) = await invite(engine, cat, ["P001"], now=clock())
    deadline = datetime.fromisoformat(item["deadline"])
    assert deadline == cooling_off_deadline(date(2026, 11, 28), 15, ZONE)
    assert deadline.astimezone(ZONE).date() == date(2026, 12, 13)  # 15 days after the day of receipt
    clock.at += timedelta(minutes=1)
    await dispatcher.tick()
    [invite_row] = await store.rows_for(engine)
    assert invite_row["context"]["values"]["product"] == "保险产品"  # TERM is not in the catalog: the default
    assert (invite_row["step"], invite_row["channel"], invite_row["status"]) == ("invite_sms", "sms", "accepted")
    [sms] = fakes["sms"].sends
    assert sms.to == "13800138000" and sms.template == "SMS_SURVEY_INVITE"
    assert sms.params == {"link": item["url"], "deadline": "12月13日"}
    # The text with the link and the sign name fits one SMS (70 characters).
    text = dispatcher.message(invite_row).text
    assert text == f"您的新保单回访请于12月13日前完成：{item['url']}" and len("【保险服务】" + text) <= 70
    # The link is computed when sent: the reminder row keeps the salt, never the link.
    assert item["url"] not in str(invite_row["context"])
    sent = [e for e in await survey_store.events(engine, item["id"]) if e["kind"] == "sent"]
    assert len(sent) == 1 and sent[0]["data"]["provider_id"] == sms.provider_id
    assert sent[0]["data"]["step"] == "invite_sms"
    assert survey_store.verify_chain(await survey_store.events(engine, item["id"])) is None

    # Two days later, not answered: WeChat, then SMS when it is not read within 4 hours.
    clock.set_local(date(2026, 12, 3), "10:00")
    await dispatcher.tick()
    wechat = fakes["wechat"][0].sends
    assert len(wechat) == 1 and wechat[0]["params"]["url"] == item["url"] and wechat[0]["to"] == OPENID
    clock.set_local(date(2026, 12, 3), "14:01")
    await dispatcher.tick()
    rows = by_step(await store.rows_for(engine))
    assert rows[("nudge", "wechat")]["status"] == "escalated" and rows[("nudge", "sms")]["status"] == "accepted"
    assert fakes["sms"].sends[-1].template == "SMS_SURVEY_NUDGE"

    # Three days before the deadline: the survey by voice, the flow and the invitation named.
    clock.set_local(date(2026, 12, 10), "15:00")
    await dispatcher.tick()
    [call] = fakes["voice"][0].sends
    assert call["template"] == "survey_new_contract" and call["params"]["invitation_id"] == item["id"]
    voice_row = by_step(await store.rows_for(engine))[("call", "voice")]
    message = dispatcher.message(voice_row)
    assert message.extra["flow"] == "survey_new_contract" and message.params["invitation_id"] == item["id"]

    # The day before: a task for an agent on the outbox.
    clock.set_local(date(2026, 12, 12), "09:30")
    await dispatcher.tick()
    [task] = [r for r in await outbox.pending(engine) if r["topic"] == "reminder_task"]
    assert task["payload"]["subject"] == item["id"] and task["payload"]["template"] == "survey_call_back"
    assert "P001" in task["payload"]["text"]

    # Every row expires at the deadline at the latest; after it the case is expired and nothing is planned.
    assert all(r["expires_at"] <= deadline for r in await store.rows_for(engine))
    count = len(await store.rows_for(engine))
    clock.set_local(date(2026, 12, 14), "10:00")
    await dispatcher.tick()
    assert len(await store.rows_for(engine)) == count
    case = await survey_store.get(engine, item["id"])
    assert (case["status"], case["outcome"]) == ("expired", "outside_cooling_off")


async def test_a_completed_case_stops_its_reminders_and_each_case_starts_on_its_own_channel(harness, fakes):
    engine, dispatcher, clock, cat = harness
    done, by_wechat = await invite(engine, cat, ["P001"], now=clock()) + \
        await invite(engine, cat, ["P002"], now=clock(), channel="wechat")
    await add_policies(engine, [{**policy_rows(3)[2], "wechat_openid": "oWx_3"}])
    (by_voice,) = await invite(engine, cat, ["P003"], now=clock(), channel="voice")
    clock.at += timedelta(minutes=1)
    await dispatcher.tick()
    rows = await store.rows_for(engine)
    first = {r["subject"]: (r["step"], r["channel"]) for r in rows}
    # P002 has no WeChat openid: its invitation falls through to SMS; P003 is called first.
    assert first == {done["id"]: ("invite_sms", "sms"), by_wechat["id"]: ("invite_wechat", "sms"),
                     by_voice["id"]: ("invite_voice", "voice")}
    assert fakes["voice"][0].sends[0]["params"]["invitation_id"] == by_voice["id"]

    # The nudge is planned a day ahead; then the customer completes the survey.
    clock.set_local(date(2026, 12, 2), "10:30")
    await dispatcher.tick()
    planned = [r for r in await store.rows_for(engine) if r["step"] == "nudge"]
    assert {r["subject"] for r in planned} == {done["id"], by_wechat["id"], by_voice["id"]}
    now = clock().astimezone(ZONE)
    session = await verified_session(engine, done["id"], IDS[0], now=now)
    await answer_all(engine, done["id"], session["id"], now=now + timedelta(minutes=1))
    await survey_store.complete(engine, done["id"], survey(), now=now + timedelta(minutes=2))
    before = len(fakes["sms"].sends)
    clock.set_local(date(2026, 12, 3), "10:00")
    await dispatcher.tick()
    nudges = {r["subject"]: r for r in await store.rows_for(engine) if r["step"] == "nudge"}
    assert (nudges[done["id"]]["status"], nudges[done["id"]]["skip_reason"]) == ("cancelled", "survey_answered")
    assert nudges[by_wechat["id"]]["status"] == "accepted"
    assert all(s.params.get("link") != done["url"] for s in fakes["sms"].sends[before:])
    # Revoked: the same.
    await survey_store.revoke(engine, by_voice["id"], clock())
    clock.set_local(date(2026, 12, 10), "15:00")
    await dispatcher.tick()
    assert not [r for r in await store.rows_for(engine) if r["subject"] == by_voice["id"] and r["step"] == "call"]


async def test_an_invitation_made_close_to_its_deadline_gets_only_what_fits_before_it(harness, fakes):
    engine, dispatcher, clock, cat = harness
    clock.set_local(date(2026, 12, 12), "11:00")  # a day and a half before the deadline
    (item,) = await invite(engine, cat, ["P002"], now=clock())
    await dispatcher.tick()
    clock.set_local(date(2026, 12, 13), "09:00")
    await dispatcher.tick()
    rows = await store.rows_for(engine)
    steps = {r["step"] for r in rows}
    assert "invite_sms" in steps and "nudge" not in steps and "call" not in steps
    deadline = (await survey_store.get(engine, item["id"]))["deadline"]
    assert all(r["expires_at"] <= deadline for r in rows)
    dry = await dispatcher.dry_run(date(2026, 12, 13))
    assert all(e["subject"] != item["id"] or e["step"] != "nudge" for e in dry["send"])
