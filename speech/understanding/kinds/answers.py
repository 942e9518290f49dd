"""Kinds for short answers to a closed or open question: `yes_no`, `choice`, `free_text`.

Their values are only read from the answer to their own question: "是的" or "电话" said
while another question was asked answers that question, not this one.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from ..acts import DialogueActs, alternation
from .base import Dictionaries, Heard, KindError, Options, Reading

# How callers say yes / no to a question about a state ("处理完了吗？"), beyond plain 是/不是.
_YES_PHRASES = (
    "已经", "处理好了", "处理完了", "处理了", "办好了", "办完了", "弄好了", "搞定了", "解决了", "结案了",
    "赔了", "赔完了", "到账了", "收到了", "好了", "完了", "有的", "有", "当然", "嗯嗯", "是啊", "对呀",
)
_NO_PHRASES = (
    "没有", "还没", "没呢", "还没有", "没处理", "没好", "没完", "尚未", "未", "不是", "没", "还在等",
    "还在处理", "在处理", "在办", "不太清楚",
)
# "没问题" / "没错" say yes although they start with 没
_NOT_NEGATIONS_RE = re.compile(r"没问题|没有问题|没错|没毛病")
_NO_RE = re.compile(r"^(?:还|都|也|好像|应该)?(?:没|未|不是|不对|尚未)|还没|没有|还在(?:等|处理|办)|在处理")


class YesNo:
    name = "yes_no"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"affirm", "deny"})
        # not `yes`/`no` as option names: YAML reads those as true/false
        self.yes = str(opts.get("affirm", "是"))
        self.no = str(opts.get("deny", "否"))
        self._acts: DialogueActs = dictionaries.acts()
        self._yes_re = alternation(_YES_PHRASES)

    def read(self, heard: Heard) -> Reading | None:
        if not heard.asked:
            return None
        answer = self._answer(heard.text)
        if answer is None:
            return None
        return Reading(self.yes if answer else self.no, 0.9, heard.text)

    def _answer(self, text: str) -> bool | None:
        acts = self._acts.read(text)
        if acts.unknown or acts.refused:
            return None
        if acts.affirm is not None:
            return acts.affirm
        rest = _NOT_NEGATIONS_RE.sub("好", text)
        if _NO_RE.search(rest):
            return False
        if self._yes_re.search(rest) or _NOT_NEGATIONS_RE.search(text):
            return True
        return None

    def normalize(self, raw: str) -> str | None:
        answer = self._answer(raw)
        return None if answer is None else (self.yes if answer else self.no)

    def validate(self, value: str, now: datetime) -> str | None:
        return None if value in (self.yes, self.no) else "yes_no_value"

    def grammar(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self._acts.affirm_words, *self._acts.deny_words, *_YES_PHRASES, *_NO_PHRASES)))

    def say(self, value: str) -> str:
        return value


# A mention of a choice that is turned down: "别打电话", "不要发短信", "电话就不用了".
_NEGATED_BEFORE = ("不要", "不用", "别", "不", "没")
_NEGATED_AFTER = ("就不用", "不用", "不要", "不行", "不方便", "就算了", "算了")


class Choice:
    """One of a few values, each said in several ways (`choices: {短信: [发短信, 短信吧]}` or a
    `dictionary:` file in config/dictionaries/ of the same shape)."""

    name = "choice"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"choices", "dictionary", "unasked"})
        # false: read only as the answer to its own question (a survey's many yes/no questions
        # share their words: "是的" answers the question asked, not every other one too)
        self.unasked = opts.get("unasked", True)
        if not isinstance(self.unasked, bool):
            raise KindError(f"options.unasked: expected true or false, got {self.unasked!r}")
        raw = opts.get("choices")
        if opts.get("dictionary") is not None:
            if raw is not None:
                raise KindError("options: give `choices` or `dictionary`, not both")
            try:
                raw = dictionaries.yaml(str(opts.get("dictionary")))
            except OSError as e:
                raise KindError(f"options.dictionary: cannot read {dictionaries.path(str(opts.get('dictionary')))}: "
                                f"{e.strerror or e}") from None
        self.values = _choices(raw)
        self._value_of = {str(word): value for value, words in self.values.items() for word in (value, *words)}
        self._re = alternation(self._value_of)
        # a choice said as "I don't know" (a survey's 不清楚 = no) is an answer, not a lack of one
        acts = dictionaries.acts()
        self.hears_unknown = any(acts.read(word).unknown for word in self._value_of)

    def read(self, heard: Heard) -> Reading | None:
        found = self._find(heard.text)
        if found is None:
            return None
        value, span, many = found
        # unasked, only a value said on its own terms (the longer synonyms, not one of several)
        if not heard.asked and (many or len(span) < 2 or not self.unasked):
            return None
        return Reading(value, 0.9 if heard.asked else 0.75, span)

    def _find(self, text: str) -> tuple[str, str, bool] | None:
        kept: list[tuple[str, str]] = []
        for m in self._re.finditer(text):
            before, after = text[max(0, m.start() - 3):m.start()], text[m.end():m.end() + 4]
            if any(before.endswith(w) for w in _NEGATED_BEFORE) or any(after.startswith(w) for w in _NEGATED_AFTER):
                continue
            kept.append((self._value_of[m.group(0)], m.group(0)))
        if not kept:
            return None
        return kept[0][0], kept[0][1], len({value for value, _ in kept}) > 1

    def normalize(self, raw: str) -> str | None:
        found = self._find(raw)
        return found[0] if found else None

    def validate(self, value: str, now: datetime) -> str | None:
        return None if value in self.values else "choice_value"

    def grammar(self) -> tuple[str, ...]:
        return tuple(self._value_of)

    def say(self, value: str) -> str:
        return value


def _choices(raw: Any) -> dict[str, tuple[str, ...]]:
    if isinstance(raw, list) and raw:
        return {str(v): () for v in raw}
    if isinstance(raw, dict) and raw:
        out = {}
        for value, words in raw.items():
            if words is None:
                words = []
            if isinstance(words, str):
                words = [words]
            if not isinstance(words, list):
                raise KindError(f"options.choices.{value}: expected a list of ways to say it")
            out[str(value)] = tuple(str(w) for w in words if str(w).strip())
        return out
    raise KindError("options.choices: expected the values, a list or a mapping value -> ways to say it")


# Hesitations and politeness around an open answer; they are not part of it.
_LEAD_FILLERS_RE = re.compile(r"^(?:(?:嗯+|呃+|额+|啊+|哦+|那个|这个|就是说|就是|然后|我觉得吧|其实|emm+)，?)+")
_TAIL_FILLERS_RE = re.compile(r"(?:，?(?:吧|啊|呀|哈|呢|嘛|哦|吧谢谢|谢谢|谢谢你|谢谢您|就这些|就这样|没了))+$")
# "nothing to add": the answer is that there is none
_NOTHING_RE = re.compile(
    r"^(?:没有|没|没了|没有了|没什么|没啥|暂时没有|暂时没了|也没有|没有什么|没什么了|没啥了|都没有|没有意见|没意见|"
    r"没有建议|没建议|没什么意见|没什么建议|没有别的|没别的|不用了|没有其他|没其他的?|都挺好|都挺好的|挺好的|"
    r"就这样|就这样吧|没有了谢谢)(?:了|的)?$")


class FreeText:
    """The answer as said, minus hesitations; "没有了" and the like are the value `none` (无)."""

    name = "free_text"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"none"})
        self.none = str(opts.get("none", "无"))
        self._acts = dictionaries.acts()

    def read(self, heard: Heard) -> Reading | None:
        if not heard.asked:
            return None
        value = self.normalize(heard.text)
        return Reading(value, 0.9, heard.text) if value else None

    def normalize(self, raw: str) -> str | None:
        text = raw.strip("，")
        if self._acts.read(text).unknown and len(text) <= 6:
            return None  # "没听清", "你说什么": no answer
        text = _LEAD_FILLERS_RE.sub("", text)
        text = _TAIL_FILLERS_RE.sub("", text).strip("，")
        if not text:
            return None
        if _NOTHING_RE.match(text.replace("，", "")):
            return self.none
        return text

    def validate(self, value: str, now: datetime) -> str | None:
        return None if value.strip() else "free_text_empty"

    def grammar(self) -> None:
        return None

    def say(self, value: str) -> str:
        return value
