"""Relationship of the insured to the caller, and the incident type, from keyword lexicons.

Both work on compact text (no spaces), since recognizer output splits words
anywhere ("出险 的 是 我 爸").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .phonetic import SoundAlikes

RELATIONSHIPS = ("本人", "配偶", "父母", "子女", "其他")
INCIDENT_TYPES = ("住院", "门诊", "意外", "重疾", "身故")

# "我是他儿子": the caller names themself, so the insured is the inverse relation.
_INVERSE = {"子女": "父母", "父母": "子女", "配偶": "配偶", "其他": "其他"}


_OWNING_RE = re.compile(r"的|现在|这个|这部|用|打|手机|电话|号|姓|叫|名字|是(?!我)")  # also "就是我姓汤…", "就是我是蒋秋": a name follows


# "确诊了…", "查出来是…": the caller says the illness was diagnosed, not only named
_FRAMED_RE = re.compile(r"确诊|查出|得了|患了|得的是")
@dataclass(frozen=True)
class Classified:
    value: str
    span: str
    confidence: float = 0.9


def _alternation(words: list[str]) -> re.Pattern[str]:
    words = sorted({w for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words)) if words else re.compile(r"(?!x)x")


class RelationshipClassifier:
    def __init__(self, lexicon: dict[str, list[str]]) -> None:
        unknown = set(lexicon) - set(RELATIONSHIPS)
        if unknown:
            raise ValueError(f"unknown relationship categories: {sorted(unknown)}")
        self.word_to_value = {str(w): value for value, words in lexicon.items() for w in words}
        self._re = _alternation(list(self.word_to_value))
        others = [w for w, v in self.word_to_value.items() if v != "本人"]
        self._by_sound: list[tuple[tuple[str, ...], str]] | None = None
        others_re = "|".join(map(re.escape, sorted(others, key=len, reverse=True)))
        self._inverse_re = re.compile(rf"我是(?:他|她)(?:的)?({others_re})")

    def classify_by_sound(self, text: str) -> Classified | None:
        """For recognizer output that wrote a homophone ("我吧" for 我爸): match words by pinyin.

        Only words of two syllables or more, so that a single sound is never enough.
        """
        from pypinyin import lazy_pinyin  # only needed for this fallback

        if self._by_sound is None:
            self._by_sound = sorted(
                ((tuple(lazy_pinyin(w)), v) for w, v in self.word_to_value.items() if len(w) >= 2),
                key=lambda item: -len(item[0]),
            )
        syllables = tuple(lazy_pinyin(text))
        for sound, value in self._by_sound:
            n = len(sound)
            for i in range(len(syllables) - n + 1):
                if syllables[i:i + n] == sound:
                    return Classified(value, text, 0.6)
        return self._near_sound(syllables)

    def _near_sound(self, syllables: tuple[str, ...]) -> Classified | None:
        """"我公女" for 我闺女: three syllables or more, said with 我, one of them misheard as another
        with the same initial consonant. Never two syllables (我哥 is not 我公) and never when two
        words fit equally well."""
        from pypinyin import Style, lazy_pinyin

        keys: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {}
        for word, value in self.word_to_value.items():
            owned = word if word.startswith("我") else "我" + word
            if len(owned) >= 3:
                initials = tuple(lazy_pinyin(owned, style=Style.INITIALS, strict=False))
                keys.setdefault(tuple(lazy_pinyin(owned)), (value, initials))
        found: set[str] = set()
        for sound, (value, initials) in keys.items():
            n = len(sound)
            for i in range(len(syllables) - n + 1):
                window = syllables[i:i + n]
                differ = [k for k in range(n) if window[k] != sound[k]]
                if len(differ) != 1:
                    continue
                k = differ[0]
                initial = initials[k]
                if initial and window[k].startswith(initial) and k > 0:
                    found.add(value)
        return Classified(found.pop(), "", 0.5) if len(found) == 1 else None

    def relation_words(self) -> list[str]:
        """Words that name someone other than the caller (used to find "我爸张建国")."""
        return [w for w, v in self.word_to_value.items() if v != "本人"]

    def classify(self, text: str) -> Classified | None:
        inverse = self._inverse_re.search(text)
        if inverse:
            return Classified(_INVERSE[self.word_to_value[inverse.group(1)]], inverse.group(0))
        matches = list(self._re.finditer(text))
        if not matches:
            return None
        others = [m for m in matches if self.word_to_value[m.group(0)] != "本人"]
        # "就是我的手机号", "我自己的电话": 我 owning something is not "the insured is me"
        matches = [m for m in matches if self.word_to_value[m.group(0)] != "本人" or not _OWNING_RE.match(text, m.end())]
        if others:
            chosen = others[0]
            # "我爸的朋友": the last of a possessive chain is the insured
            for a, b in zip(others, others[1:]):
                if text[a.end():b.start()] == "的" and a is chosen:
                    chosen = b
            return Classified(self.word_to_value[chosen.group(0)], chosen.group(0))
        if not matches:
            return None
        return Classified("本人", matches[0].group(0))


class IncidentClassifier:
    """Incident type by precedence: death, injury, cancer-like, then where it was treated."""

    def __init__(self, lexicon: dict[str, list[str]]) -> None:
        # `<category>_patterns` are regular expressions for what is said in more than one word
        # ("住了一个星期院", "我媳妇走了"), matched alongside the category's words.
        words = {k: [str(w) for w in v] for k, v in lexicon.items() if not k.endswith("_patterns")}
        patterns = {k[: -len("_patterns")]: [str(p) for p in v] for k, v in lexicon.items() if k.endswith("_patterns")}
        for key in patterns:
            words.setdefault(key, [])
        self._sound_alikes = SoundAlikes({w for ws in words.values() for w in ws}, max_run=3)
        self._res = {}
        for key, ws in words.items():
            alternatives = [re.escape(w) for w in sorted(set(ws), key=len, reverse=True)] + patterns.get(key, [])
            self._res[key] = re.compile("|".join(alternatives)) if alternatives else re.compile(r"(?!x)x")

    def respell(self, text: str) -> str:
        """Recognizer output (words separated by spaces) with whole words that sound exactly like
        an incident word (two syllables or more, tones aside) written as that word: "过 是" → 过世,
        "医 外" → 意外. Only whole recognized words are joined, so "不过 是" stays as it is."""
        return " ".join(self._sound_alikes.respell(text.split()))

    def _find(self, key: str, text: str) -> str | None:
        pattern = self._res.get(key)
        m = pattern.search(text) if pattern else None
        return m.group(0) if m else None


    def classify(self, text: str, *, allow_weak: bool = True) -> Classified | None:
        """The incident type said or implied in text.

        Without allow_weak, only framing words count ("住院了", "去世了", "出了意外"),
        not a bare illness or injury name — for answers to other questions.
        """
        death = self._find("death", text)
        if death:
            return Classified("身故", death)
        accident = self._find("accident", text) or (self._find("injury", text) if allow_weak else None)
        if accident:
            return Classified("意外", accident)
        strong = self._find("critical_strong", text)
        no_stay = self._find("outpatient_negated_inpatient", text)
        inpatient = self._find("inpatient", text)
        weak = self._find("critical_weak", text)
        outpatient = self._find("outpatient", text)
        framed = _FRAMED_RE.search(text)
        if strong and (allow_weak or inpatient or outpatient or framed):
            return Classified("重疾", strong, 0.9 if allow_weak else 0.7)
        if no_stay:
            return Classified("门诊", no_stay)
        if inpatient:
            return Classified("住院", inpatient)
        if weak and (allow_weak or framed):
            return Classified("重疾", weak, 0.7)
        if outpatient:
            return Classified("门诊", outpatient)
        return None


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
