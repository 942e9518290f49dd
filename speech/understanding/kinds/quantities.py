"""Kinds for amounts: `number` (a count), `money` (yuan), `rating` (a score 1..N).

Spoken Chinese numerals (五, 二十三, 两万五), Arabic and full-width digits, and the keypad
(a keyed entry reaches `read` as its digits) all come to one integer or amount.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any, Mapping

import cn2an

from ..numbers import parse_cardinal
from .base import Dictionaries, Heard, KindError, Options, Reading

_CN = "零〇一二两三四五六七八九十百千万壹贰叁肆伍陆柒捌玖拾佰仟"
_NUMBER_RE = re.compile(rf"\d+(?:\.\d+)?|[{_CN}]+(?:点[{_CN}]+)?")
CN_DIGITS = "零一二三四五六七八九"


def _value(token: str) -> float | None:
    token = unicodedata.normalize("NFKC", token)
    if re.fullmatch(r"\d+(?:\.\d+)?", token):
        return float(token)
    whole = parse_cardinal(token)
    if whole is not None:
        return float(whole)
    try:
        return float(cn2an.cn2an(token, "smart"))
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def numeral(n: int) -> str:
    """1..99 as said: 五, 十, 十二, 二十三."""
    return cn2an.an2cn(str(n)) if n else "零"


class Number:
    """A whole number (`min`, `max`, and an optional `unit` said after it: 次, 个, 天)."""

    name = "number"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"min", "max", "unit"})
        self.minimum = opts.integer("min", 0)
        self.maximum = opts.integer("max", 10**9)
        self.unit = str(opts.get("unit") or "")
        if self.maximum < self.minimum:
            raise KindError("options.max: smaller than min")

    def read(self, heard: Heard) -> Reading | None:
        # unasked, only with its unit ("住了三天"), and only when the slot has one
        matches = list(_NUMBER_RE.finditer(heard.text))
        if not heard.asked:
            matches = [m for m in matches if self.unit and heard.text.startswith(self.unit, m.end())]
        for m in matches:
            value = _value(m.group(0))
            if value is None or not value.is_integer():
                continue
            n = int(value)
            problem = self._problem(n)
            return Reading(None if problem else str(n), 0.9 if heard.asked else 0.75, m.group(0), problem)
        return None

    def _problem(self, n: int) -> str | None:
        return None if self.minimum <= n <= self.maximum else "number_range"

    def normalize(self, raw: str) -> str | None:
        m = _NUMBER_RE.search(raw)
        value = _value(m.group(0)) if m else None
        return str(int(value)) if value is not None and value.is_integer() else None

    def validate(self, value: str, now: datetime) -> str | None:
        return self._problem(int(value)) if value.lstrip("-").isdigit() else "number_format"

    def grammar(self) -> tuple[str, ...]:
        words = [*CN_DIGITS, "两", "十", "百", "千", "万"]
        if self.maximum <= 100:
            words += [numeral(n) for n in range(self.minimum, self.maximum + 1)]
        if self.unit:
            words += [w + self.unit for w in list(words)]
        return tuple(dict.fromkeys(words))

    def say(self, value: str) -> str:
        return f"{value}{self.unit}"


_MONEY_RE = re.compile(
    rf"(?P<num>\d+(?:\.\d+)?|[{_CN}]+(?:点[{_CN}]+)?)(?P<scale>万|千)?(?P<unit>块钱|块|元|圆|人民币)?(?P<more>多)?")


class Money:
    """An amount in yuan ("三千五百元", "两万块", "1.5万", "八千多"), stored as a plain number ("3500")."""

    name = "money"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"max"})
        self.maximum = opts.integer("max", 10**9, 1)

    def _amounts(self, text: str, asked: bool) -> list[tuple[float, str, bool]]:
        out = []
        for m in _MONEY_RE.finditer(text):
            num, scale = m.group("num"), m.group("scale") or ""
            if not asked and not (m.group("unit") or scale or num[-1] in "万千"):
                continue  # unasked, a bare numeral is no amount
            if num[-1] in "万千" and "点" in num:  # "三点五万"
                num, scale = num[:-1], num[-1] + scale
            value = _value(num)
            if value is None:
                continue
            for unit in scale:
                value *= 10000 if unit == "万" else 1000
            out.append((value, m.group(0), bool(m.group("more"))))
        return out

    def read(self, heard: Heard) -> Reading | None:
        found = self._amounts(heard.text, heard.asked)
        if not found:
            return None
        value, span, approximate = found[0]
        problem = None if 0 < value <= self.maximum else "money_range"
        confidence = (0.9 if heard.asked else 0.8) - (0.1 if approximate else 0.0)
        return Reading(None if problem else _plain(value), confidence, span, problem)

    def normalize(self, raw: str) -> str | None:
        found = self._amounts(raw, True)
        return _plain(found[0][0]) if found else None

    def validate(self, value: str, now: datetime) -> str | None:
        try:
            amount = float(value)
        except ValueError:
            return "money_format"
        return None if 0 < amount <= self.maximum else "money_range"

    def grammar(self) -> tuple[str, ...]:
        return (*CN_DIGITS, "两", "十", "百", "千", "万", "点", "块", "块钱", "元", "多")

    def say(self, value: str) -> str:
        return f"{value}元"


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0")


# What callers say instead of a number on a satisfaction scale, as a share of the scale.
_RATING_WORDS = (
    ("非常不满意", 0.0), ("很不满意", 0.0), ("特别不满意", 0.0), ("太差", 0.0), ("很差", 0.0),
    ("不满意", 0.25), ("不太满意", 0.25), ("一般般", 0.5), ("一般", 0.5), ("还行", 0.5), ("马马虎虎", 0.5),
    ("还可以", 0.75), ("比较满意", 0.75), ("挺好", 0.75), ("满意", 0.75),
    ("非常满意", 1.0), ("很满意", 1.0), ("特别满意", 1.0), ("十分满意", 1.0), ("非常好", 1.0), ("最满意", 1.0),
)
_FULL_MARKS_RE = re.compile(r"满分|最高分|打满|给满")
_SCORE_RE = re.compile(rf"(?P<a>\d+|[{_CN}]+?)(?P<b>[{_CN}\d])?(?P<unit>分|颗星|个星|星)")
_BARE_RE = re.compile(rf"^(?:就|我)?(?:打|给|选|评|按)?(?:个)?(?P<n>\d{{1,2}}|[{_CN}]{{1,3}})(?:吧|啊|呀|嘛|了)?$")


class Rating:
    """A score from `min` (default 1) to `max`: "五分", "5分", "打四分吧", "给五星", "满分", "四五分吧"
    (the lower), a keyed digit, or by words ("非常满意" is the top of the scale)."""

    name = "rating"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"min", "max"})
        self.minimum = opts.integer("min", 1)
        self.maximum = opts.integer("max", 5, 1)
        if not self.minimum < self.maximum <= 10:
            raise KindError("options.max: a rating needs min < max <= 10")

    def read(self, heard: Heard) -> Reading | None:
        # "十分满意" is "very satisfied", not ten points
        text = re.sub(r"十分满意|百分之?百满意", "非常满意", heard.text.replace("，", ""))
        if _FULL_MARKS_RE.search(text):
            return Reading(str(self.maximum), 0.9, text)
        m = _SCORE_RE.search(text)
        if m:
            a = _value(m.group("a"))
            b = _value(m.group("b")) if m.group("b") else None
            if b is not None and a is not None and b == a + 1 and a < 10:
                n, confidence = int(a), 0.7  # "四五分": between the two, the lower
            elif b is not None:
                joined = _value(m.group("a") + m.group("b"))
                n, confidence = (int(joined), 0.9) if joined is not None else (-1, 0.0)
            else:
                n, confidence = (int(a), 0.9) if a is not None and a.is_integer() else (-1, 0.0)
            if confidence:
                problem = self._problem(n)
                return Reading(None if problem else str(n), confidence, m.group(0), problem)
        if not heard.asked:
            return None
        bare = _BARE_RE.match(text)
        if bare:
            value = _value(bare.group("n"))
            if value is not None and value.is_integer():
                problem = self._problem(int(value))
                return Reading(None if problem else str(int(value)), 0.85, bare.group(0), problem)
        for word, share in sorted(_RATING_WORDS, key=lambda w: len(w[0]), reverse=True):
            if word in text:
                n = self.minimum + round(share * (self.maximum - self.minimum))
                return Reading(str(n), 0.6, word)
        return None

    def _problem(self, n: int) -> str | None:
        return None if self.minimum <= n <= self.maximum else "rating_range"

    def normalize(self, raw: str) -> str | None:
        reading = self.read(Heard(raw, datetime(2000, 1, 1), asked=True, recognized=False))  # no dates in a score
        return reading.value if reading else None

    def validate(self, value: str, now: datetime) -> str | None:
        return self._problem(int(value)) if value.isdigit() else "rating_format"

    def grammar(self) -> tuple[str, ...]:
        words: list[str] = []
        for n in range(self.minimum, self.maximum + 1):
            for said in (numeral(n), "两") if n == 2 else (numeral(n),):  # 两分 as often as 二分
                words += [said, f"{said}分", f"{said}星", f"{said}颗星", f"打{said}分", f"给{said}分", f"给{said}星"]
        words += ["满分", "打满分", *(w for w, _ in _RATING_WORDS)]
        return tuple(dict.fromkeys(words))

    def say(self, value: str) -> str:
        return f"{value}分"
