"""Dialogue acts any flow hears, whatever its slots: yes, no, a person please, no thanks.

Read from config/dictionaries/dialogue_acts.yaml. The claim reader (claims.py) has its own,
richer reading of corrections (which claim value is wrong); this one is what every other
flow and every generic slot kind relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

# Sentence-final particles, spoken and typed (对滴, 好哒, 是啦: 滴/哒 for 的 in chat).
PARTICLES = "啊呀吧哈呢嘛哦喔啦咯呗滴哒哟嗷"
_PARTICLES_RE = re.compile(f"[{PARTICLES}了]+$")
_NO_PROBLEM_RE = re.compile(r"没有?问题")
# What may stand around a short word for a person ("人工", "真人") in a request for one: "我要人工",
# "转个人工吧". Anything else and it is part of other words: a name heard as "人工庆" (栾光庆).
_REQUEST_CHARS = frozenset("我要转找接请帮给个吧啊呀呢嗯哦喂您你好的客服务，")


def asks_for_person(bare: str, short_words: Iterable[str]) -> bool:
    """A short utterance that is a request for a person by a short word."""
    if len(bare) > 6:
        return False
    for word in short_words:
        if word in bare and all(ch in _REQUEST_CHARS for ch in bare.replace(word, "", 1)):
            return True
    return False


@dataclass(frozen=True)
class Acts:
    affirm: bool | None  # nothing but yes words / a no word (or starts with a strong one)
    wants_human: bool
    refused: bool  # declines the call: 不方便, 不想回答, 别再打了
    unknown: bool  # 不知道, 没听清: no answer


def alternation(words: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of the words, longest first; matches nothing for no words."""
    ordered = sorted({str(w) for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in ordered)) if ordered else re.compile(r"(?!x)x")


class DialogueActs:
    def __init__(self, lexicon: Mapping[str, Any]) -> None:
        words = lambda key: [str(w) for w in lexicon.get(key) or ()]  # noqa: E731
        self.affirm_words = tuple(words("affirm"))
        self.deny_words = tuple(words("deny"))
        yes = alternation(self.affirm_words).pattern
        self._yes_re = re.compile(f"(?:{yes})(?:，?(?:{yes}))*")
        self._no = set(self.deny_words) | {"不不", "不不不"}
        # a leading 不是/不对 says no even with more after it; 没有 alone does not ("没有问题")
        self._strong_no = sorted((w for w in self.deny_words if len(w) >= 2 and w not in ("没有", "有问题")),
                                 key=len, reverse=True)
        human = words("human")
        self.human_words = tuple(human)
        self._human_re = alternation([w for w in human if len(w) >= 3])
        self._human_short = [w for w in human if len(w) < 3]
        self.refuse_words = tuple(words("refuse"))
        self._refuse_re = alternation(self.refuse_words)
        self._unknown_re = alternation(words("unknown"))

    def read(self, compact: str) -> Acts:
        """`compact`: the utterance without spaces, punctuation reduced to '，'."""
        bare = compact.strip("，")
        stripped = _PARTICLES_RE.sub("", bare.replace("，", "")).lower()
        affirm: bool | None = None
        if stripped in self._no:
            affirm = False
        elif stripped and self._yes_re.fullmatch(stripped):
            affirm = True
        elif any(bare.startswith(w) for w in self._strong_no):
            affirm = False
        wants_human = bool(self._human_re.search(bare)) or asks_for_person(bare, self._human_short)
        unknown = bool(self._unknown_re.search(_NO_PROBLEM_RE.sub("", bare)))  # 没问 (题): "no problem" is known
        return Acts(affirm, wants_human, bool(self._refuse_re.search(bare)), unknown)
