"""Dates resolved against the call's start time (Asia/Shanghai)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from speech.understanding.dates import find_dates, resolve_date

CST = timezone(timedelta(hours=8))
# Thursday 2026-03-19, 10:16 Beijing time
NOW = datetime(2026, 3, 19, 10, 16, tzinfo=CST)


@pytest.mark.parametrize(
    ("said", "iso"),
    [
        ("今天", "2026-03-19"),
        ("今天早上", "2026-03-19"),
        ("昨天", "2026-03-18"),
        ("昨晚", "2026-03-18"),
        ("前天晚上八点多", "2026-03-17"),
        ("大前天", "2026-03-16"),
        ("三天前", "2026-03-16"),
        ("两天前", "2026-03-17"),
        ("二天前出的事", "2026-03-17"),
        ("五天 前", "2026-03-14"),
        ("一个星期前", "2026-03-12"),
        ("上周五", "2026-03-13"),
        ("上个星期三", "2026-03-11"),
        ("上 礼拜四", "2026-03-12"),
        ("上礼拜日", "2026-03-15"),  # weeks start on Monday: last week's Sunday
        ("上周天", "2026-03-15"),
        ("这周一", "2026-03-16"),
        ("本周四", "2026-03-19"),
        ("周二", "2026-03-17"),  # a bare weekday: the latest one not in the future
        ("周五", "2026-03-13"),
        ("上个月十五号", "2026-02-15"),
        ("上月3号", "2026-02-03"),
        ("十二号", "2026-03-12"),  # this month
        ("二十五号", "2026-02-25"),  # not yet this month: last month
        ("十号 下午 三点", "2026-03-10"),
        ("3月17日", "2026-03-17"),
        ("三月十七号", "2026-03-17"),
        ("三月 二十一 号", "2025-03-21"),  # later this year: last year
        ("十二月二十六号", "2025-12-26"),
        ("2026年3月17日", "2026-03-17"),
        ("二零二六年三月十七号", "2026-03-17"),
        ("2024年3月15号晚上八点左右", "2024-03-15"),
        ("去年十月一号", "2025-10-01"),
        ("2026-03-01", "2026-03-01"),
        ("11/20", "2025-11-20"),
        ("3/2", "2026-03-02"),
        ("半个月前", "2026-03-04"),
        ("是 前天 下午 三点 出 的 事", "2026-03-17"),
        ("我妈 姜 超前 天 下午", "2026-03-17"),  # the recognizer split 前天 across words
        ("九天 前人 走 了", "2026-03-10"),
        # read digit by digit, as "10月29日" is read off a form (and by a speech synthesizer)
        ("一零月二九日", "2025-10-29"),
        ("一 二 月 三 一 日", "2025-12-31"),
        ("零三月零五号", "2026-03-05"),
        ("二零二五年一零月零三日", "2025-10-03"),
    ],
)
def test_resolve(said: str, iso: str) -> None:
    mention = resolve_date(said, NOW)
    assert mention is not None and mention.problem is None
    assert mention.value is not None and mention.value.isoformat() == iso


@pytest.mark.parametrize("said", ["明天", "后天", "下周三", "这周六", "2026年5月1日", "今年五月一号"])
def test_future(said: str) -> None:
    mention = resolve_date(said, NOW)
    assert mention is not None and mention.value is None and mention.problem == "date_future"


@pytest.mark.parametrize("said", ["二月三十号", "2026年2月30日", "十三月五号"])
def test_invalid(said: str) -> None:
    mention = resolve_date(said, NOW)
    assert mention is not None and mention.problem == "date_invalid"


@pytest.mark.parametrize("said", ["身份证号是三三零", "在中山一院", "摔了一跤", "我叫韦文博", "一三八零零一三八零零零"])
def test_no_date(said: str) -> None:
    assert find_dates(said, NOW) == []


def test_day_of_a_month_that_lacks_it() -> None:
    # On 31 March, "三十一号" is today; on 1 March, it is 31 January (February has none).
    assert resolve_date("三十一号", datetime(2026, 3, 31, 9, tzinfo=CST)).value.isoformat() == "2026-03-31"
    assert resolve_date("三十一号", datetime(2026, 3, 1, 9, tzinfo=CST)).value.isoformat() == "2026-01-31"


def test_year_boundary() -> None:
    new_year = datetime(2026, 1, 2, 9, tzinfo=CST)
    assert resolve_date("前天", new_year).value.isoformat() == "2025-12-31"
    assert resolve_date("上周三", new_year).value.isoformat() == "2025-12-24"
    assert resolve_date("上个月十五号", new_year).value.isoformat() == "2025-12-15"


def test_correction_takes_the_last_date() -> None:
    assert resolve_date("不是前天，是昨天", NOW, last=True).value.isoformat() == "2026-03-18"
    assert resolve_date("不是前天，是昨天", NOW).value.isoformat() == "2026-03-17"
