"""Pure rules with a controlled clock: quiet hours per channel, Chinese holidays and make-up workdays
for voice, a year the calendar lacks, caps, the decision order, backoff, opt-out keywords."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from scheduler.lifecycle import Defer, Facts, Send, Stop, decide, retry_delay
from scheduler.optout import normalize, sms_opt_out, voice_opt_out, wechat_opt_out
from scheduler.rules import Rules, RulesError, TokenBucket, Window, parse_rates, with_opt_out_line

ZONE = ZoneInfo("Asia/Shanghai")


def local(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), ZONE).astimezone(timezone.utc)


RULES = Rules(ZONE, {"voice": Window.parse("09:00-21:00"), "sms": Window.parse("08:00-22:00")},
              {"voice": 1, "sms": 3})


def test_inside_the_window_now_outside_it_the_next_opening():
    wed = date(2026, 9, 9)
    assert RULES.next_allowed("sms", local(wed, "10:00")) == (local(wed, "10:00"), None)
    assert RULES.next_allowed("sms", local(wed, "07:59")) == (local(wed, "08:00"), "quiet_hours")
    assert RULES.next_allowed("sms", local(wed, "22:00")) == (local(wed + timedelta(days=1), "08:00"), "quiet_hours")
    assert RULES.next_allowed("voice", local(wed, "21:30")) == (local(wed + timedelta(days=1), "09:00"), "quiet_hours")
    assert RULES.next_allowed("wechat", local(wed, "03:00"))[1] is None  # no window configured: any time


def test_voice_waits_for_workdays_from_the_chinese_calendar_and_sms_does_not():
    # National Day 2026: 1-7 October off; Saturday 10 October is a make-up workday.
    assert RULES.next_allowed("voice", local(date(2026, 10, 1), "10:00")) == (local(date(2026, 10, 8), "09:00"), "holiday")
    assert RULES.next_allowed("voice", local(date(2026, 10, 10), "10:00")) == (local(date(2026, 10, 10), "10:00"), None)
    assert RULES.next_allowed("voice", local(date(2026, 9, 20), "10:00"))[1] is None  # Sunday, a make-up workday
    assert RULES.next_allowed("voice", local(date(2026, 10, 11), "10:00"))[1] == "holiday"  # an ordinary Sunday
    assert RULES.next_allowed("sms", local(date(2026, 10, 1), "10:00"))[1] is None
    # On the holiday's last evening, after hours: the first workday's morning.
    assert RULES.next_allowed("voice", local(date(2026, 10, 7), "22:00")) == (local(date(2026, 10, 8), "09:00"), "holiday")


def test_a_year_the_calendar_does_not_cover_falls_back_to_weekdays_with_one_warning(caplog):
    rules = Rules(ZONE, {"voice": Window.parse("09:00-21:00")}, {})
    with caplog.at_level(logging.WARNING, logger="scheduler.rules"):
        assert rules.next_allowed("voice", local(date(2099, 1, 2), "10:00"))[1] is None  # a Friday
        assert rules.next_allowed("voice", local(date(2099, 1, 3), "10:00")) == (local(date(2099, 1, 5), "09:00"), "holiday")
    assert [r.getMessage() for r in caplog.records if "2099" in r.getMessage()] == [
        "chinesecalendar has no holidays for 2099: voice calls that year go out Monday to Friday "
        "(update the chinesecalendar package)"]


def test_decide_checks_exit_then_opt_out_then_expiry_then_hours_then_caps():
    wed = date(2026, 9, 9)
    now = local(wed, "15:00")
    later = now + timedelta(days=2)
    assert decide("voice", now, later, Facts(exit_reason="renewed", opted_out=True), RULES, now) == Stop("cancelled", "renewed")
    assert decide("voice", now, later, Facts(opted_out=True), RULES, now) == Stop("skipped", "opted_out", escalate=True)
    assert decide("voice", now, now, Facts(), RULES, now) == Stop("skipped", "expired")
    assert decide("voice", now, later, Facts(sent_today=0), RULES, now) == Send()
    assert decide("voice", now, later, Facts(sent_today=1), RULES, now) == Defer(local(wed + timedelta(days=1), "09:00"), "cap")
    assert decide("sms", now, later, Facts(sent_today=2), RULES, now) == Send()
    night = local(wed, "23:00")
    assert decide("sms", night, later, Facts(), RULES, night) == Defer(local(wed + timedelta(days=1), "08:00"), "quiet_hours")
    assert decide("sms", night, night + timedelta(hours=1), Facts(), RULES, night) == Stop("skipped", "expired (quiet_hours)")
    assert decide("task", night, later, Facts(), RULES, night) == Send()  # a task for an agent has no hours


def test_backoff_doubles_with_jitter_and_is_capped():
    assert [retry_delay(n, 30, 0.0) for n in (1, 2, 3)] == [15, 30, 60]
    assert retry_delay(1, 30, 0.999) == pytest.approx(30, rel=0.01)
    assert retry_delay(20, 30, 0.5) == 3600 * 0.75


def test_windows_rates_and_the_opt_out_line():
    with pytest.raises(RulesError, match="must start before it ends"):
        Window.parse("21:00-09:00")
    assert parse_rates(("aliyun_sms=100", "wechat=2.5")) == {"aliyun_sms": 100.0, "wechat": 2.5}
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    assert [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0), bucket.take(0.5)] == [True, True, False, True]
    assert with_opt_out_line("您的保单将到期。") == "您的保单将到期。拒收请回复R"
    assert with_opt_out_line("x拒收请回复R") == "x拒收请回复R"


@pytest.mark.parametrize("text", ["TD", "td", "T", "R", "N", "退订", "取消", "拒收", "STOP", "stop", "ＴＤ", "ｓｔｏｐ",
                                  " 退订。", "Ｒ", "【退订】"])
def test_sms_opt_out_keywords_in_any_width_and_case(text):
    assert sms_opt_out("13800138000", text).__dict__ == {"recipient": "13800138000", "channel": "sms",
                                                         "purpose": "marketing", "source": "sms_reply"}


@pytest.mark.parametrize("text", ["好的", "TD是什么", "我不想退订", "NO", "谢谢R", ""])
def test_other_replies_are_not_opt_outs(text):
    assert sms_opt_out("13800138000", text) is None


def test_wechat_events_and_a_refused_call():
    assert normalize("ＳＴＯＰ！") == "STOP"
    assert wechat_opt_out("oX", "unsubscribe").channel == "wechat"
    assert wechat_opt_out("oX", "block").purpose == "*"
    assert wechat_opt_out("oX", "subscribe") is None
    dnc = voice_opt_out("13800138000", "refused")
    assert (dnc.channel, dnc.purpose, dnc.source) == ("voice", "*", "voice_refused")
    assert voice_opt_out("13800138000", "acknowledged") is None
