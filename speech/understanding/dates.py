"""Incident dates: relative and absolute expressions resolved against the call's start.

"Now" is always the call's start time (CallContext.started_at) in its own
time zone, so a call at 00:30 Beijing time resolves 昨天 to the Beijing
yesterday. Times of day (晚上八点多) are ignored; the slot is a date.
An incident cannot be in the future: such dates come back as a problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .numbers import parse_cardinal

# numbers as said (十二, 三十一) and digit by digit (一零 for 10, 零五 for 5: "10月29日" read out by a
# speech synthesizer or a caller reading it off a form)
_NUM = r"(?:\d{1,2}|[一二两三四五六七八九十]{1,3}|[零〇幺一二三四五六七八九][零〇幺一二三四五六七八九])"
_YEAR = r"(?:\d{4}|[零〇一二三四五六七八九]{4}|\d{2}|[零〇一二三四五六七八九]{2})"
WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}

# Order matters only for readability: overlapping matches are resolved by length.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ymd", re.compile(rf"(?:(?P<y>{_YEAR})年|(?P<y2>今年|去年|前年))(?P<m>{_NUM})月(?:份的?)?(?P<d>{_NUM})(?:日|号)?")),
    ("iso", re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})")),
    ("md", re.compile(rf"(?P<m>{_NUM})月(?:份的?)?(?P<d>{_NUM})(?:日|号)?")),  # 四月份的三十号
    ("slash", re.compile(r"(?<![\d/])(?P<m>\d{1,2})/(?P<d>\d{1,2})(?![\d/])")),
    # typed month.day (7.11, 10.24): not a quantity (3.5天, 38.5度, 1.5万)
    ("dotted", re.compile(r"(?<![\d.])(?P<m>1[0-2]|0?[1-9])\.(?P<d>3[01]|[12]\d|0?[1-9])"
                          r"(?![\d.]|个|天|日|周|月|年|岁|度|万|千|元|块|米|公|斤|克|升|小时|分|倍|%|cm|kg)")),
    ("month_rel", re.compile(rf"(?P<rel>上上个?月|上个?月|这个?月|本月|当月)(?P<d>{_NUM})(?:日|号)")),
    ("day", re.compile(rf"(?<![月\d一二两三四五六七八九十])(?P<d>{_NUM})(?:号|日)(?![码线楼床机])")),
    ("ago", re.compile(rf"(?P<n>{_NUM}|半)(?P<unit>天|日|个?星期|个?礼拜|周|个月)(?:前|之前|以前|钱)")),
    ("week", re.compile(r"(?P<rel>上上个?|上个?|这个?|本|下个?)?(?:周|星期|礼拜)(?P<w>[一二三四五六日天七])")),
    ("word", re.compile(r"大前天|大前儿|前天|前儿个|前日|昨天|昨日|昨儿个?|昨晚|昨夜|今天|今日|今儿个?|今早|今晚|今天早上|明天|明日|后天|大后天")),
)

_WORD_OFFSETS = {
    "大前天": -3, "大前儿": -3,
    "前天": -2, "前儿个": -2, "前日": -2,
    "昨天": -1, "昨日": -1, "昨儿": -1, "昨儿个": -1, "昨晚": -1, "昨夜": -1,
    "今天": 0, "今日": 0, "今儿": 0, "今儿个": 0, "今早": 0, "今晚": 0, "今天早上": 0,
    "明天": 1, "明日": 1, "后天": 2, "大后天": 3,
}

# Where a date expression may start; used by the name finder to know where a name ends.
DATE_START_RE = re.compile(
    rf"(?:大?前天|昨|今天|今日|今早|今晚|明天|上上?个?(?:周|星期|礼拜|月)|这个?(?:周|星期|礼拜|月)|本(?:周|月)"
    rf"|{_NUM}(?:月|号|日|天|点|年|周|个)|\d{{4}}[-/.年]|前几天|那天|当天|半个月)"
)


_SPACES_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class DateMention:
    """A date expression found in text: the resolved date, or why it cannot be the incident date."""

    value: date | None
    problem: str | None  # "date_future", "date_invalid"
    span: str
    start: int
    end: int


def _num(text: str | None) -> int | None:
    if text is None:
        return None
    return parse_cardinal(text)


def _year(text: str, today: date) -> int | None:
    if text == "今年":
        return today.year
    if text == "去年":
        return today.year - 1
    if text == "前年":
        return today.year - 2
    if not text.isdigit():
        text = "".join(str("零一二三四五六七八九".index(c)) if c in "零一二三四五六七八九" else "0" for c in text)
    year = int(text)
    return 2000 + year if year < 100 else year


def _make(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _months_back(d: date, months: int) -> tuple[int, int]:
    total = d.year * 12 + (d.month - 1) - months
    return total // 12, total % 12 + 1


def _resolve(kind: str, m: re.Match[str], today: date) -> tuple[date | None, str | None]:
    g = m.groupdict()
    if kind in ("ymd", "iso"):
        year = _year(g.get("y") or g["y2"], today)
        month, day = _num(g["m"]), _num(g["d"])
        if year is None or month is None or day is None:
            return None, "date_invalid"
        value = _make(year, month, day)
        if value is None:
            return None, "date_invalid"
        return (value, None) if value <= today else (None, "date_future")
    if kind in ("md", "slash", "dotted"):
        month, day = _num(g["m"]), _num(g["d"])
        if month is None or day is None or not 1 <= month <= 12 or not 1 <= day <= 31:
            return None, "date_invalid"
        value = _make(today.year, month, day)
        if value is None or value > today:  # a month-day later this year means last year
            value = _make(today.year - 1, month, day)
        return (value, None) if value else (None, "date_invalid")
    if kind == "month_rel":
        day = _num(g["d"])
        back = {"上上个月": 2, "上上月": 2, "上个月": 1, "上月": 1}.get(g["rel"], 0)
        year, month = _months_back(today, back)
        value = _make(year, month, day) if day else None
        if value is None:
            return None, "date_invalid"
        return (value, None) if value <= today else (None, "date_future")
    if kind == "day":
        day = _num(g["d"])
        if day is None or not 1 <= day <= 31:
            return None, "date_invalid"
        # This month's day, or last month's if it has not come yet (or this month has no such day).
        value = _make(today.year, today.month, day)
        back = 0
        while (value is None or value > today) and back < 3:
            back += 1
            year, month = _months_back(today, back)
            value = _make(year, month, day)
        return (value, None) if value else (None, "date_invalid")
    if kind == "ago":
        n = 0.5 if g["n"] == "半" else _num(g["n"])
        if n is None:
            return None, "date_invalid"
        unit = g["unit"]
        if "月" in unit:
            if n == 0.5:
                delta = timedelta(days=15)
            else:
                year, month = _months_back(today, int(n))
                return _make(year, month, min(today.day, 28)), None
        elif "天" in unit or "日" in unit:
            delta = timedelta(days=n)
        else:
            delta = timedelta(weeks=n)
        return today - timedelta(days=int(delta.days)), None
    if kind == "week":
        rel = (g["rel"] or "").replace("个", "")
        weekday = WEEKDAYS[g["w"]]
        monday = today - timedelta(days=today.weekday())
        if rel == "上上":
            value = monday - timedelta(weeks=2) + timedelta(days=weekday)
        elif rel == "上":
            value = monday - timedelta(weeks=1) + timedelta(days=weekday)
        elif rel in ("这", "本"):
            value = monday + timedelta(days=weekday)
        elif rel == "下":
            return None, "date_future"
        else:  # a bare weekday: the latest one that is not in the future
            value = monday + timedelta(days=weekday)
            if value > today:
                value -= timedelta(weeks=1)
        return (value, None) if value <= today else (None, "date_future")
    if kind == "word":
        offset = _WORD_OFFSETS[m.group(0)]
        if offset > 0:
            return None, "date_future"
        return today + timedelta(days=offset), None
    return None, None


def find_dates(text: str, now: datetime) -> list[DateMention]:
    """Every date expression in text (spaces are ignored), in order of appearance."""
    compact = _SPACES_RE.sub("", text)
    today = now.date()
    found: list[tuple[int, int, str, re.Match[str]]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(compact):
            found.append((m.start(), m.end(), kind, m))
    # Keep the longest of overlapping matches ("三月十七号" over "十七号").
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    taken: list[tuple[int, int]] = []
    mentions: list[DateMention] = []
    for start, end, kind, m in found:
        if any(start < e and s < end for s, e in taken):
            continue
        value, problem = _resolve(kind, m, today)
        if value is None and problem is None:
            continue
        taken.append((start, end))
        mentions.append(DateMention(value, problem, m.group(0), start, end))
    mentions.sort(key=lambda d: d.start)
    return mentions


def resolve_date(text: str, now: datetime, *, last: bool = False) -> DateMention | None:
    """The incident date said in text (the first one, or the last one for corrections)."""
    mentions = find_dates(text, now)
    if not mentions:
        return None
    return mentions[-1] if last else mentions[0]


# Numerals a recognizer writes as a homophone before a date's unit ("期天前" for 七天前, "酒号"
# for 九号): only right before the unit, where no other word fits.
_NUMERAL_SOUNDS = {"七": "期其妻齐起骑欺", "九": "酒久", "一": "衣医依", "二": "而儿", "三": "山伞",
                   "五": "午舞武", "六": "溜流", "八": "吧巴", "十": "时实石识"}
_NUMERAL_SOUND_RE = re.compile(
    "(?<![星学假日])([" + "".join(_NUMERAL_SOUNDS.values()) + "])(?=个?(?:天|月|号|日|星期|礼拜|周|多月|来天))")
_NUMERAL_BY_SOUND = {ch: digit for digit, chars in _NUMERAL_SOUNDS.items() for ch in chars}


def respell_numerals(text: str) -> str:
    """Recognized text with numeral homophones before a date unit written as numerals."""
    return _NUMERAL_SOUND_RE.sub(lambda m: _NUMERAL_BY_SOUND[m.group(1)], text)
