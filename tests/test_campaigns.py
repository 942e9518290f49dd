"""Campaigns as data: the shipped files load, bad ones are refused naming file and path, and the
planner is pure and idempotent (one dedupe key per subject, cycle, step and channel)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from scheduler.campaigns import CampaignError, load_campaigns, parse_campaign
from scheduler.planner import Subject, plan

ROOT = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Asia/Shanghai")


def test_the_shipped_campaigns_load():
    found = load_campaigns(ROOT / "config" / "campaigns")
    assert set(found) == {"renewal", "missing_documents", "survey"}
    renewal = found["renewal"]
    assert [s.name for s in renewal.steps] == ["t30", "t15", "t7", "t3", "t1"]
    assert [c.kind for c in renewal.step("t15").channels] == ["wechat", "sms"]
    assert renewal.step("t15").escalate.unless == "read" and renewal.step("t15").escalate.within == timedelta(hours=24)
    assert renewal.step("t1").channels[0].kind == "task" and renewal.purpose == "marketing"
    docs = found["missing_documents"]
    assert docs.repeat.every == timedelta(days=3) and docs.repeat.max == 5 and "documents_received" in docs.exit


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("source"), "x.yaml.source: missing"),
    (lambda d: d.update(purpose="ads"), "x.yaml.purpose: 'ads' is not one of service, marketing"),
    (lambda d: d["steps"][0].update(offset="ten days"), "x.yaml.steps[0].offset: 'ten days' is not a duration"),
    (lambda d: d["steps"][0]["channels"][0].update(channel="fax"), "x.yaml.steps[0].channels[0].channel: 'fax'"),
    (lambda d: d["steps"][0]["channels"][0].pop("provider"), "x.yaml.steps[0].channels[0].provider: missing"),
    (lambda d: d["steps"][0]["channels"][0]["template"].update(text="{oops"), "x.yaml.steps[0].channels[0].template.text"),
    (lambda d: d["steps"][0].update(colour="red"), "x.yaml.steps[0].colour: unknown key"),
    (lambda d: d["steps"][0].update(escalate={"unless": "seen", "within": "1h"}), "x.yaml.steps[0].escalate.unless"),
    (lambda d: d.update(exit=["bored"]), "x.yaml.exit[0]: 'bored'"),
    (lambda d: d.update(steps=[]), "x.yaml.steps: expected a non-empty list"),
])
def test_a_bad_campaign_names_the_file_and_the_path(change, message):
    data = yaml.safe_load((ROOT / "config" / "campaigns" / "survey.yaml").read_text(encoding="utf-8"))
    change(data)
    with pytest.raises(CampaignError) as caught:
        parse_campaign(data, "x.yaml")
    assert message in str(caught.value)


def test_a_file_that_is_not_yaml_is_named(tmp_path):
    (tmp_path / "broken.yaml").write_text("campaign: [unclosed\n", encoding="utf-8")
    with pytest.raises(CampaignError, match="broken.yaml: not valid YAML"):
        load_campaigns(tmp_path)


def test_the_same_campaign_twice_is_refused(tmp_path):
    text = (ROOT / "config" / "campaigns" / "survey.yaml").read_text(encoding="utf-8")
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(CampaignError, match="also defined in"):
        load_campaigns(tmp_path)


def _subject(**changes) -> Subject:
    values = dict(source="policies", id="P1", anchor=date(2026, 9, 24), cycle="2026-09-24",
                  addresses={"sms": "13800138000", "voice": "13800138000", "wechat": "oX"}, consent={},
                  values={"policy_number": "P1", "product": "车险", "expiry_date": "2026-09-24"})
    values.update(changes)
    return Subject(**values)


def test_planning_is_pure_and_idempotent_and_picks_a_reachable_channel():
    campaigns = list(load_campaigns(ROOT / "config" / "campaigns").values())
    now = datetime.combine(date(2026, 9, 8), time(12), ZONE).astimezone(timezone.utc)  # T-16
    first = plan(campaigns, [_subject()], now, ZONE)
    assert [(p.step, p.channel, p.recipient) for p in first] == [("t15", "wechat", "oX")]
    assert first[0].due_at == datetime(2026, 9, 9, 10, 0, tzinfo=ZONE)
    assert first[0].context["values"]["days_left"] == "15"
    assert [p.dedupe_key for p in plan(campaigns, [_subject()], now, ZONE)] == [p.dedupe_key for p in first]
    no_wechat = plan(campaigns, [_subject(addresses={"sms": "13800138000", "voice": "13800138000"})], now, ZONE)
    assert [(p.channel, p.channel_index) for p in no_wechat] == [("sms", 1)]
    refused = plan(campaigns, [_subject(consent={"marketing": False})], now, ZONE)
    assert [(p.status, p.skip_reason) for p in refused] == [("skipped", "no_consent")]
    renewed = plan(campaigns, [_subject(anchor=date(2027, 9, 24), cycle="2027-09-24")], now, ZONE)
    assert renewed == []  # the new cycle's first step is a year away


def test_a_missing_documents_campaign_repeats_until_its_maximum():
    docs = load_campaigns(ROOT / "config" / "campaigns")["missing_documents"]
    subject = _subject(source="missing_documents", id="r1", anchor=date(2026, 3, 2), cycle="2026-03-02",
                       values={"documents": "发票"})
    keys = set()
    for day in range(0, 20):
        now = datetime.combine(date(2026, 3, 2) + timedelta(days=day), time(9), ZONE)
        keys |= {(p.step, p.channel) for p in plan([docs], [subject], now, ZONE)}
    notices = sorted(s for s, c in keys if s.startswith("notice"))
    calls = sorted(s for s, c in keys if s.startswith("call"))
    assert notices == [f"notice#{k}" for k in range(1, 6)]
    assert calls == [f"call#{k}" for k in range(2, 6)]  # from the second round on
