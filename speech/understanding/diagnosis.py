"""Diagnosis or injury as said, without filler: "医生说是软组织挫伤" → "软组织挫伤".

A lexicon term is found first ("骨折"), then widened by the body part or
qualifier said right before it ("左腿骨折", "急性阑尾炎") and a stage right
after it ("肺癌晚期"). Diagnoses missing from the lexicon are taken when the
caller frames them ("诊断是…", "得了…") and they end like a disease (…炎, …癌).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

# What callers put before a diagnosis; the diagnosis follows.
_FRAMES = (
    "诊断结果是", "诊断结果为", "诊断为", "诊断是", "诊断", "医生说是", "医生说", "大夫说是", "大夫说", "确诊为",
    "确诊是", "确诊了", "确诊", "查出来是", "查出来", "查出是", "查出了", "查出", "检查出", "得了", "患了", "患有",
    "说是", "是",
)
# Where a framed diagnosis ends.
_END_RE = re.compile(r"，|在|住院|去世|过世|了|的|住进|入院|看的|做了|需要|要|还|而且|并且|然后|所以|因为|医院")
_FILLER_PREFIXES = ("就是", "是", "那个", "嗯", "呃", "一个", "有点", "有些", "说是", "得了", "患了")
# Characters of grammar, not of a diagnosis: words before a term holding one are no part of it.
_GRAMMAR_CHARS = frozenset("我你他她它的了在是和因为得被说就还都也很太又给把让从到去来这那个么吗呢吧啊呀嗯哦")
_FILLER_SUFFIXES = ("吧", "啊", "呀", "了", "的", "呢", "哈")


@dataclass(frozen=True)
class DiagnosisMention:
    value: str
    span: str
    start: int
    confidence: float = 0.9


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    words = sorted({w for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words)) if words else re.compile(r"(?!x)x")


class DiagnosisFinder:
    def __init__(
        self,
        terms: Iterable[str],
        synonyms: dict[str, str],
        modifiers: Iterable[str],
        body_parts: Iterable[str],
        suffixes: Iterable[str],
        disease_endings: Iterable[str],
    ) -> None:
        self.synonyms = dict(synonyms)
        self.terms = tuple(terms)
        self._term_re = _alternation(list(self.terms) + list(self.synonyms))
        prefix_words = sorted(set(modifiers) | set(body_parts), key=len, reverse=True)
        self._max_prefix = max((len(w) for w in prefix_words), default=0)
        # a qualifier or body part ending right where the term starts
        self._prefix_re = re.compile(f"(?:{_alternation(prefix_words).pattern})$")
        self._suffix_re = re.compile(f"(?:{_alternation(suffixes).pattern})*")
        self._ending_re = re.compile(f"(?:{_alternation(disease_endings).pattern})$")
        self._by_sound: list[tuple[tuple[str, ...], tuple[str, ...], str]] | None = None
        self._prefix_start_re = _alternation(prefix_words)

    def term_words(self) -> list[str]:
        return [*self.terms, *self.synonyms]

    def _widen(self, text: str, start: int, end: int) -> tuple[int, int]:
        """Take in qualifiers and body parts right before, and stages right after."""
        while start > 0:
            m = self._prefix_re.search(text, max(0, start - self._max_prefix), start)
            if not m:
                break
            start = m.start()
        m = self._suffix_re.match(text, end)
        if m:
            end = m.end()
        return start, end

    def _normalize(self, value: str) -> str:
        for word, standard in self.synonyms.items():
            if word in value and standard not in value:
                value = value.replace(word, standard)
        return value

    def find(self, text: str) -> list[DiagnosisMention]:
        """Lexicon diagnoses in compact text, widened by qualifiers; in order of appearance."""
        mentions: list[DiagnosisMention] = []
        for m in self._term_re.finditer(text):
            start, end = self._widen(text, m.start(), m.end())
            if mentions and mentions[-1].start + len(mentions[-1].span) == start:
                # terms said one after the other with nothing between ("感冒发烧"): one diagnosis
                start = mentions.pop().start
            span = text[start:end]
            mentions.append(DiagnosisMention(self._normalize(span), span, start))
        return mentions

    def as_answered(self, text: str, mention: DiagnosisMention) -> DiagnosisMention:
        """`mention` with the words said right before it in the same clause, when the caller answers
        the diagnosis question with a little more than the lexicon knows ("左手食指切割伤吧" →
        左手食指切割伤, not 割伤): up to six characters of one word, no filler, framing or grammar."""
        clause_start = text.rfind("，", 0, mention.start) + 1
        before = text[clause_start:mention.start]
        for frame in _FRAMES:
            if before.startswith(frame):
                before = before[len(frame):]
                break
        before = _strip_front(before)
        if (not before or len(before) > 6 or not _all_cjk(before) or any(c in _GRAMMAR_CHARS for c in before)
                or mention.value != mention.span):
            return mention
        span = before + mention.span
        return DiagnosisMention(span, span, mention.start - len(before), mention.confidence)

    def term_by_sound(self, chunk: str) -> str | None:
        """A bare answer heard as words that only sound like a term ("手指歌声" for 手指割伤, "该爱" for
        肝癌): the chunk with its term written right, or None. The whole chunk after its qualifiers
        and body parts must be one term of two syllables or more, by toneless pinyin, or with one
        syllable misheard as another of the same initial consonant (ge sheng / ge shang); an answer
        two terms fit equally is left as heard."""
        from pypinyin import Style, lazy_pinyin

        if self._by_sound is None:
            self._by_sound = [
                (tuple(lazy_pinyin(t)), tuple(lazy_pinyin(t, style=Style.INITIALS, strict=False)), t)
                for t in self.terms if len(t) >= 2 and _all_cjk(t)
            ]
        start = 0
        while True:  # qualifiers and body parts said before the term ("左腿", "急性")
            m = self._prefix_start_re.match(chunk, start)
            if not m or m.end() == start or len(chunk) - m.end() < 2:
                break
            start = m.end()
        rest = chunk[start:]
        if not 2 <= len(rest) <= 6 or not _all_cjk(rest):
            return None
        heard = tuple(lazy_pinyin(rest))
        fits = set()
        for sound, initials, term in self._by_sound:
            if len(sound) != len(heard):
                continue
            differ = [k for k in range(len(sound)) if heard[k] != sound[k]]
            if not differ or (len(differ) == 1 and initials[differ[0]] and heard[differ[0]].startswith(initials[differ[0]])):
                fits.add(term)
        return chunk[:start] + fits.pop() if len(fits) == 1 else None

    def framed(self, text: str) -> DiagnosisMention | None:
        """A diagnosis after 诊断是 / 医生说是 / 得了 … that ends like a disease, lexicon or not."""
        for frame in _FRAMES:
            if frame not in text:
                continue
            for m in re.finditer(re.escape(frame), text):
                rest = text[m.end():]
                end = _END_RE.search(rest)
                candidate = rest[: end.start()] if end else rest
                candidate = _strip(candidate)
                if 2 <= len(candidate) <= 12 and self._ending_re.search(candidate) and _all_cjk(candidate):
                    return DiagnosisMention(self._normalize(candidate), candidate, m.end(), 0.8)
        return None

    def bare(self, text: str, recognized: bool = False) -> DiagnosisMention | None:
        """The answer to "医生诊断是什么": the lexicon term, a framed diagnosis, or the words said
        (`recognized`: a recognizer's words that sound like a term are that term)."""
        found = self.find(text)
        if found:
            return found[0]
        framed = self.framed(text)
        if framed:
            return framed
        for chunk in reversed([c for c in text.split("，") if c]):
            for frame in _FRAMES:
                if chunk.startswith(frame) and len(chunk) > len(frame):
                    chunk = chunk[len(frame):]
                    break
            chunk = _strip(chunk)
            if 2 <= len(chunk) <= 12 and _all_cjk(chunk):
                by_sound = self.term_by_sound(chunk) if recognized else None
                if by_sound is not None:
                    return DiagnosisMention(self._normalize(by_sound), chunk, text.find(chunk), 0.6)
                confidence = 0.7 if self._ending_re.search(chunk) else 0.5
                return DiagnosisMention(self._normalize(chunk), chunk, text.find(chunk), confidence)
        return None


def _all_cjk(text: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in text)


def _strip_front(text: str) -> str:
    """`text` without the fillers it starts with ("就是", "那个")."""
    changed = True
    while changed and text:
        changed = False
        for prefix in _FILLER_PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix):]
                changed = True
    return text


def _strip(text: str) -> str:
    changed = True
    while changed and text:
        changed = False
        for prefix in _FILLER_PREFIXES:
            if text.startswith(prefix) and len(text) > len(prefix):
                text = text[len(prefix):]
                changed = True
        for suffix in _FILLER_SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)]
                changed = True
    return text
