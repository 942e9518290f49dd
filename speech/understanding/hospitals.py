"""Hospital mentions matched against a directory, tolerant of recognizer homophones.

A mention is the text ending in 医院 / 卫生院 / 一院 / 附院 …, started after 在 / 到 /
去 / 住进了 …. Exact aliases map to the canonical name; otherwise the pinyin of
the mention is compared with the pinyin of every alias, because a recognizer
writes 鞋和医院 for 协和医院. Unknown hospitals are kept as said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml
from rapidfuzz import fuzz, process

SUFFIX_RE = re.compile(
    r"医院|卫生院|卫生服务中心|医学中心|医疗中心|防治中心|保健院|诊所|门诊部|附[一二三]院|附院|[一二三四五六七八九十]院|总院"
)
# Left of a hospital name: 在 / 到 / 去 / 住进了 … (hard), 是 / 的 (soft: "去的是华西医院").
_HARD_LEFT = frozenset("，在到去进于往送转了叫")  # 叫: "就社区医院，叫…卫生服务中心"
_SOFT_LEFT = frozenset("是的")
_LEADING_FILLERS = (
    "就是", "那个", "一家", "一个", "我们这的", "我们这边的", "我们那的", "我们这", "我们那", "我们", "咱们", "俺们",
    "当地的", "附近的", "本地的", "市里的", "当地", "就在", "就",
)
_NUMERALS = frozenset("一二三四五六七八九十零〇0123456789")
# A place said first ("郑州市…", "萧山区…"), and the kinds of hospital every place has.
_PLACE_RE = re.compile(r"([\u4e00-\u9fff]{2,4}?)(?:省|市|县|区)")
_GENERIC_RE = re.compile(
    r"(?:第[一二三四五六七八九十]+)?(?:人民|中心|中医|中西医结合|骨科|妇幼保健|妇幼|儿童|肿瘤|口腔|眼科|精神病?|传染病|妇产|康复|红十字会)?"
    r"(?:医院|保健院)|中医院"
)
_MAX_LEN = 26


@dataclass(frozen=True)
class Hospital:
    name: str
    city: str = ""
    aliases: tuple[str, ...] = ()
    short: tuple[str, ...] = ()


@dataclass(frozen=True)
class HospitalMention:
    value: str  # canonical name when matched, else the name as said
    said: str
    start: int
    end: int
    canonical: bool
    confidence: float


@lru_cache(maxsize=8192)
def _char_pinyin(ch: str) -> str:
    from pypinyin import lazy_pinyin

    return lazy_pinyin(ch)[0]


def _pinyin(text: str) -> str:
    return " ".join(_char_pinyin(c) for c in text)


def _numerals(text: str) -> str:
    return "".join(c for c in text if c in _NUMERALS)


class HospitalDirectory:
    def __init__(
        self,
        hospitals: Iterable[Hospital],
        generic: Iterable[str] = (),
        *,
        fuzzy_cutoff: float = 90.0,
    ) -> None:
        self.hospitals = tuple(hospitals)
        self.fuzzy_cutoff = fuzzy_cutoff
        # alias → (value, is_canonical); the first hospital to claim an alias keeps it
        self._index: dict[str, tuple[str, bool]] = {}
        self._short: dict[str, str] = {}
        self._city: dict[str, str] = {h.name: h.city for h in self.hospitals}
        for h in self.hospitals:
            for alias in (h.name, *h.aliases):
                for form in _city_forms(alias, h.city):
                    self._index.setdefault(form, (h.name, True))
            for s in h.short:
                self._short.setdefault(s, h.name)
        for g in generic:  # names every city has: corrected for homophones, kept as said
            self._index.setdefault(g, (g, False))
        self._keys = list(self._index)
        # Names without a 医院-like ending ("北京协和", "广东省医"), found anywhere, and
        # short names ("华西") found right after 在 / 到 / 去: "在华西住的院".
        plain = [
            k for k, (_, canonical) in self._index.items()
            if canonical and not any(m.end() == len(k) for m in SUFFIX_RE.finditer(k))
        ]
        self._plain_re = _alternation(plain)
        self._short_re = (
            re.compile(f"(?<=[在到去是])(?:{_alternation(self._short).pattern})") if self._short else None
        )
        self._key_pinyin = [_pinyin(k) for k in self._keys]

    @classmethod
    def from_yaml(cls, path: Path) -> "HospitalDirectory":
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        hospitals = [
            Hospital(
                name=str(h["name"]),
                city=str(h.get("city") or ""),
                aliases=tuple(str(a) for a in h.get("aliases") or ()),
                short=tuple(str(s) for s in h.get("short") or ()),
            )
            for h in data.get("hospitals") or ()
        ]
        return cls(hospitals, [str(g) for g in data.get("generic") or ()])

    def names(self) -> list[str]:
        """Every alias and canonical name (for a recognizer vocabulary or a tokenizer)."""
        return list(self._index)

    # -- matching one name -----------------------------------------------------

    def lookup(self, said: str) -> tuple[str, bool] | None:
        """Exact match of a name as said: (value, is_canonical)."""
        return self._index.get(said)

    def fuzzy(self, said: str) -> tuple[str, bool, float] | None:
        """Closest directory name by sound: (value, is_canonical, score 0..100)."""
        if len(said) < 3:
            return None
        if is_local_name(said):
            return None  # "佛山市中心医院", "南京市骨科医院": a whole name every city has, kept as said
        place = _PLACE_RE.match(said)
        hits = process.extract(
            _pinyin(said), self._key_pinyin, scorer=fuzz.ratio, score_cutoff=self.fuzzy_cutoff, limit=5
        )
        for _, score, index in hits:
            key = self._keys[index]
            # 第二医院 is not 第一医院, however close they sound
            if _numerals(key) != _numerals(said) or abs(len(key) - len(said)) > 2:
                continue
            if place and place.group(1) not in key:
                continue  # 郑州市… is not 深圳市…, however close they sound
            value, canonical = self._index[key]
            return value, canonical, score
        return None

    # -- mentions in text --------------------------------------------------------

    def find(self, text: str, stop_re: re.Pattern[str] | None = None) -> list[HospitalMention]:
        """Hospital mentions in compact text, in order."""
        mentions: list[HospitalMention] = []
        last_end = -1
        for m in SUFFIX_RE.finditer(text):
            if m.start() < last_end:
                continue
            mention = self._mention_ending_at(text, m.start(), m.end(), stop_re)
            if mention:
                mentions.append(mention)
                last_end = mention.end
        extra = [
            HospitalMention(self._index[m.group(0)][0], m.group(0), m.start(), m.end(), True, 0.9)
            for m in self._plain_re.finditer(text)
        ]
        if self._short_re is not None:
            extra += [
                HospitalMention(self._short[m.group(0)], m.group(0), m.start(), m.end(), True, 0.8)
                for m in self._short_re.finditer(text)
            ]
        for mention in extra:
            if not any(mention.start < other.end and other.start < mention.end for other in mentions):
                mentions.append(mention)
        return sorted(mentions, key=lambda h: h.start)

    def _mention_ending_at(
        self, text: str, suffix_start: int, end: int, stop_re: re.Pattern[str] | None
    ) -> HospitalMention | None:
        # 附一院 / 一院 after a name: the suffix may begin inside a longer one
        hard = suffix_start
        while hard > 0 and end - hard < _MAX_LEN and text[hard - 1] not in _HARD_LEFT and _name_char(text[hard - 1]):
            hard -= 1
        soft = suffix_start
        while soft > hard and text[soft - 1] not in _SOFT_LEFT:
            soft -= 1
        said = text[soft:end]
        # cut off words that cannot be part of a name ("急性心肌梗死西京医院")
        if stop_re is not None:
            for s in stop_re.finditer(said, 0, len(said) - (end - suffix_start)):
                if suffix_start - (soft + s.end()) >= 2:
                    said = text[soft + s.end():end]
        for filler in _LEADING_FILLERS:
            if said.startswith(filler) and len(said) - len(filler) >= 3:
                said = said[len(filler):]
        start = end - len(said)
        # 1. an exact alias ending here, the longest first
        generic: HospitalMention | None = None
        for i in range(hard, suffix_start + 1):
            hit = self._index.get(text[i:end])
            if hit and self._fits(text, i, start, hit):
                if hit[1]:
                    return HospitalMention(hit[0], text[i:end], i, end, True, 1.0)
                generic = HospitalMention(hit[0], text[i:end], i, end, False, 0.9)
                break
        # 2. the closest name by sound ("深圳是人民医院" from a recognizer is 深圳市人民医院)
        best: tuple[str, bool, float, int] | None = None
        for i in range(hard, start + 1):
            fuzzy = self.fuzzy(text[i:end])
            if fuzzy and self._fits(text, i, start, fuzzy[:2]) and (best is None or fuzzy[2] > best[2]):
                best = (fuzzy[0], fuzzy[1], fuzzy[2], i)
        if best and (generic is None or (best[1] and best[2] >= 95 and best[3] < generic.start)):
            return HospitalMention(best[0], text[best[3]:end], best[3], end, best[1], best[2] / 100)
        if generic:
            return generic
        # 3. as said, when there is a name before the suffix
        if suffix_start - start < 2:
            return None
        return HospitalMention(said, said, start, end, False, 0.6)

    def _fits(self, text: str, i: int, start: int, hit: tuple[str, bool]) -> bool:
        """May a directory name found from i stand for the mention said from start?"""
        if i <= start:
            return i == start or hit[1]  # a generic name (人民医院) must be the whole mention
        # "佛山同仁医院" is not 北京同仁医院: only the hospital's own city may be dropped
        city = self._city.get(hit[0], "")
        return hit[1] and bool(city) and text[start:i] in (city, f"{city}市")

    def bare(
        self, text: str, stop_re: re.Pattern[str] | None = None, *, last: bool = False, recognized: bool = False
    ) -> HospitalMention | None:
        """The answer to "在哪家医院": a mention, a short name (协和), or the words said.

        With last (a correction, "不是协和，是华西"), the last name said wins. Recognized speech
        is kept as said only when it names a kind of place ("仁爱医院", "社区卫生服务中心"): under
        the hospital grammar "有个地方不对" was heard as 友科大方不对, "没问题" as 门铁.
        """
        found = self.find(text, stop_re)
        if found:
            return found[-1] if last else found[0]
        chunks = [c for c in re.split(r"，|是(?=[^的])", text) if c]
        for chunk in reversed(chunks) if last else chunks:
            core = re.sub(r"^(?:就是|就|是|在|去的|去了|去|到了|到)+", "", chunk)
            core = re.sub(r"(?:看的|看病|就诊|住院|住的|那边|那里|这边|这里|吧|啊|的)+$", "", core)
            if not core:
                continue
            if core in self._short:
                return HospitalMention(self._short[core], core, text.find(core), text.find(core) + len(core), True, 0.9)
            hit = self.lookup(core) or None
            if hit:
                return HospitalMention(hit[0], core, text.find(core), text.find(core) + len(core), hit[1], 1.0)
            fuzzy = self.fuzzy(core)
            if fuzzy:
                start = text.find(core)
                return HospitalMention(fuzzy[0], core, start, start + len(core), fuzzy[1], fuzzy[2] / 100)
            if stop_re is not None and stop_re.search(core):
                continue  # "左骨折", "急性阑尾炎": an illness, not a hospital's name
            if recognized and not _PLACE_KIND_RE.search(core):
                continue
            if 2 <= len(core) <= _MAX_LEN and all(_name_char(c) for c in core):
                return HospitalMention(core, core, text.find(core), text.find(core) + len(core), False, 0.4)
        return None


# The words that make a name a place of treatment.
_PLACE_KIND_RE = re.compile("院|中心|诊所|门诊|卫生室|医务室")


def is_local_name(said: str) -> bool:
    """A place and a name every place has ("南宁市中心医院", "济南县人民医院"): a whole name as said."""
    place = _PLACE_RE.match(said)
    return bool(place) and bool(_GENERIC_RE.fullmatch(said[place.end():]))


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    words = sorted({w for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words)) if words else re.compile(r"(?!x)x")


def _name_char(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or ch.isdigit() or ch.isascii() and ch.isalpha()


def _city_forms(alias: str, city: str) -> list[str]:
    """An alias, and the forms with its city in front ("同仁医院" → "北京同仁医院", "北京市同仁医院")."""
    forms = [alias]
    if city and not alias.startswith(city):
        forms += [city + alias, f"{city}市{alias}"]
    return forms
