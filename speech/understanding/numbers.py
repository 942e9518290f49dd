"""Spoken numbers: digit strings read digit by digit, cardinals, money.

Callers read phone and ID numbers digit by digit, with telephone habits
(幺 for 1, 两 for 2, 拐 for 7, 洞 for 0, 勾 for 9), grouped with pauses or
commas, mixed with Arabic or full-width digits. Cardinals (二十三, 一百) are
only parsed on short spans a caller uses for dates and amounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import cn2an

# Telephone-style spoken digits; 两 is common in phone numbers ("幺三两…").
DIGIT_WORDS: dict[str, str] = {
    "零": "0", "〇": "0", "○": "0", "洞": "0",
    "一": "1", "幺": "1", "壹": "1",
    "二": "2", "两": "2", "贰": "2",
    "三": "3", "叁": "3",
    "四": "4", "肆": "4",
    "五": "5", "伍": "5",
    "六": "6", "陆": "6",
    "七": "7", "拐": "7", "柒": "7",
    "八": "8", "捌": "8",
    "九": "9", "勾": "9", "玖": "9",
}
for _d in "0123456789":
    DIGIT_WORDS[_d] = _d
    DIGIT_WORDS[chr(ord("０") + int(_d))] = _d  # full-width digits

# Ways to say the ID card's final check character X (longest first).
X_WORDS = ("艾克斯", "爱克斯", "埃克斯", "哎克斯", "X", "x", "Ｘ", "ｘ", "叉")

# What may sit between digit groups: spaces, commas, dashes, hesitation sounds.
SEPARATORS = " \t,，、.。-—_·:：;；/嗯呃额啊"

# Telephone digits as heard by a recognizer that does not know it is hearing digits
# (toneless pinyin → digit); only used where a number is expected.
PINYIN_DIGITS: dict[str, str] = {
    "ling": "0", "yi": "1", "yao": "1", "er": "2", "liang": "2", "san": "3", "si": "4",
    "wu": "5", "liu": "6", "qi": "7", "guai": "7", "ba": "8", "jiu": "9", "dong": "0",
}

_CARDINAL_CHARS = "零〇一二两三四五六七八九十百千万壹贰叁肆伍陆柒捌玖拾佰仟"
CARDINAL_RE = re.compile(rf"[{_CARDINAL_CHARS}]+|\d+")
MONEY_RE = re.compile(
    rf"(?P<num>\d+(?:\.\d+)?(?:万|千)?|[{_CARDINAL_CHARS}点]+)\s*(?P<unit>元|块钱|块|圆)"
)


@dataclass(frozen=True)
class DigitRun:
    """A run of spoken digits found in text."""

    digits: str  # "0"-"9", and a final "X" when allowed
    start: int  # index in the text of the first digit
    end: int  # index just past the last digit (or X word)
    groups: tuple[str, ...] = ()  # digit groups as the caller paused between them


def is_digit_char(ch: str) -> bool:
    return ch in DIGIT_WORDS


def find_digit_runs(text: str, *, min_digits: int = 1, allow_x: bool = True) -> list[DigitRun]:
    """All maximal runs of spoken digits; separators between digits do not break a run.

    A run may end with an X word (the ID card check character) when allow_x.
    """
    runs: list[DigitRun] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in DIGIT_WORDS:
            i += 1
            continue
        start = i
        digits: list[str] = []
        groups: list[str] = []
        current: list[str] = []
        end = i
        while i < n:
            ch = text[i]
            if ch in DIGIT_WORDS:
                digits.append(DIGIT_WORDS[ch])
                current.append(DIGIT_WORDS[ch])
                i += 1
                end = i
                continue
            if ch in SEPARATORS:
                if current:
                    groups.append("".join(current))
                    current = []
                i += 1
                continue
            break
        if current:
            groups.append("".join(current))
        if allow_x:
            j = end
            while j < n and text[j] in " \t":
                j += 1
            for word in X_WORDS:
                if text.startswith(word, j):
                    digits.append("X")
                    groups.append("X")
                    end = j + len(word)
                    break
        i = max(i, end)
        if len(digits) >= min_digits:
            runs.append(DigitRun("".join(digits), start, end, tuple(groups)))
    return runs


def spoken_digits(text: str, *, allow_x: bool = True) -> str:
    """All digits said in text, concatenated ("幺八零，零零八零" → "1800080")."""
    return "".join(run.digits for run in find_digit_runs(text, allow_x=allow_x))


@lru_cache(maxsize=4096)
def _pinyin(ch: str) -> str:
    from pypinyin import lazy_pinyin  # imported lazily: only needed for noisy recognizer output

    return lazy_pinyin(ch)[0]


def digits_by_sound(text: str, *, allow_x: bool = True) -> str:
    """Digits in text read by sound, for recognizer output in a number context.

    A recognizer without digit context writes 要 for 幺, 久/酒 for 九, 吧 for 八,
    死 for 四; characters that do not sound like a digit are skipped.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in DIGIT_WORDS:
            out.append(DIGIT_WORDS[ch])
        elif allow_x and any(text.startswith(w, i) for w in X_WORDS):
            word = next(w for w in X_WORDS if text.startswith(w, i))
            out.append("X")
            i += len(word)
            continue
        elif "\u4e00" <= ch <= "\u9fff":
            sound = _pinyin(ch)
            digit = PINYIN_DIGITS.get(sound)
            if digit:
                out.append(digit)
            elif allow_x and sound == "cha" and len(out) == 17:  # 叉 heard as 差 / 插
                out.append("X")
        i += 1
    return "".join(out)


def parse_cardinal(span: str) -> int | None:
    """A cardinal number said as a whole ("十二" → 12, "二十三" → 23, "一百" → 100, "17" → 17)."""
    span = span.strip()
    if not span:
        return None
    if span.isdigit():
        return int(span)
    try:
        value = cn2an.cn2an(span, "smart")
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return int(value)


def parse_money(text: str) -> float | None:
    """An amount in yuan ("三千五百元" → 3500, "3500块" → 3500, "1.5万元" → 15000)."""
    m = MONEY_RE.search(text)
    if not m:
        return None
    num = m.group("num")
    scale = 1
    if num and num[-1] in "万千" and num[:-1].replace(".", "", 1).isdigit():
        scale = 10000 if num[-1] == "万" else 1000
        num = num[:-1]
    try:
        value = float(num) if re.fullmatch(r"\d+(?:\.\d+)?", num) else float(cn2an.cn2an(num, "smart"))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return value * scale
