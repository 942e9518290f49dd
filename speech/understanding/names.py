"""Person names in caller speech: "我叫韦文博", "姓韦，叫韦文博", "我爸张建国昨天…", "弓长张".

Recognizer output puts spaces in odd places ("侯文博上 礼拜四", "姜 超前 天"),
so names are read from text without spaces: a known surname, then one or two
given-name characters, ending where a date, a keyword or a function word starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from .dates import DATE_START_RE

# Characters that do not occur in given names but do follow names in speech.
GIVEN_NAME_STOP_CHARS = frozenset(
    "我你他她它的了在是和与跟也都就还说叫姓给报因为出得住去看被从到这那个们么吗呢吧啊呀嗯哦不没有很太又再才要想请帮，"
)

# Who is named: the caller ("我叫…"), the insured ("我爸叫…", "出险人是…"), or unknown (a bare name).
ROLE_SELF = "self"
ROLE_INSURED = "insured"
ROLE_BARE = "bare"

_SELF_TRIGGERS = (
    "我的名字叫", "我的名字是", "我名字叫", "我名字是", "我的姓名是", "我姓名是", "报案人是", "报案人叫",
    "本人叫", "本人是", "我这边是", "我叫", "我是",
)
_INSURED_TRIGGERS = (
    "出险人是", "出险人叫", "出险的是", "出事的是", "被保险人是", "被保险人叫", "被保人是", "被保人叫",
    "患者是", "患者叫", "病人是", "病人叫", "伤者是", "伤者叫", "他的名字叫", "她的名字叫", "他的名字是",
    "她的名字是", "他名字叫", "她名字叫", "他叫", "她叫", "他是", "她是",
)
_BARE_PREFIXES = (
    "就是我", "我的名字叫", "我的名字是", "我名字叫", "我名字是", "名字叫", "名字是", "姓名是", "全名是", "全名叫",
    "叫做", "我叫", "我是", "他叫", "她叫", "他是", "她是", "就是", "就叫", "那个", "嗯", "呃", "额", "哦", "叫", "是", "我",
    "是这样的", "这样的", "你好", "您好", "喂", "啊", "呀", "哎", "唉", "这个", "好的", "好",
)
_SURNAME_MARK_RE = re.compile("姓")
_AFTER_SURNAME_RE = re.compile(r"，?(?:名字叫|名字是|名叫|全名叫|全名是|叫做|叫|是|名)?，?")  # 姓韦，叫…
_AFTER_RELATION_RE = re.compile(r"(?:的名字|名字)?(?:叫做|叫|是)?，?")  # 我爸(的名字)(叫)…
_SURNAME_BEFORE_RE = re.compile(r"姓[\u4e00-\u9fff]{1,2}，?$")
_THIRD_PERSON_BEFORE_RE = re.compile(r"(?:他|她)(?:的)?(?:名字)?$")
_FIRST_PERSON_BEFORE_RE = re.compile(r"我(?:的)?(?:名字)?$")
# What may lead a name told character by character in ("我叫刘洋，刘备的刘…").
_TOLD_LEADS = tuple(sorted({*_SELF_TRIGGERS, *_INSURED_TRIGGERS, "就是", "是", "叫"}, key=len, reverse=True))
_BARE_SUFFIXES = ("就是我", "是我", "吧", "啊", "呀", "哈", "的", "了", "呢")


# What a name is not: a number ("一百二十"), a date or time ("三月五号", "下午三点", "公元前一万年"),
# a place or a department ("北京市", "住院部"). Numerals alone are fine in names (王一博, 王一一).
_NUMERALS = "零〇一二三四五六七八九十百千万亿两"
_NOT_A_NAME_RE = re.compile(
    rf"^[{_NUMERALS}]+$|[{_NUMERALS}]{{3}}|[{_NUMERALS}][年月日号点分秒时岁]|公元|[上下中]午|早上|晚上|凌晨|昨天|今天|明天|前天"
    r"|[市省县区镇乡村路街部院科室局馆站楼]$"
)
_HAN_RE = re.compile(r"[\u4e00-\u9fff]+")
# "…，平卫是名字", "诗是名", "名字是平卫" said after the full name.
_EXPLAINED_GIVEN_RE = re.compile(r"，?([\u4e00-\u9fff]{1,2})是(?:我的)?名(?:字)?(?=，|$)")
# A surname said alone, then the full name: "曾，曾亮", "曾曾亮" (spaces dropped), after any of
# the words an answer opens with ("啊 杨 杨冬", "嗯，我叫曾，曾亮").
_REPEATED_SURNAME_RE = re.compile(
    "^(?:(?:" + "|".join(sorted(_BARE_PREFIXES, key=len, reverse=True)) + ")，?)*"
    r"([\u4e00-\u9fff]{1,2})，?(\1[\u4e00-\u9fff]{1,2})(?=，|$)"
)
# "芳是芬芳的芳": one character of the name said, explained by a word it is in.
_EXPLAINED_CHAR_RE = re.compile(r"，?([\u4e00-\u9fff])是[\u4e00-\u9fff]{0,3}\1[\u4e00-\u9fff]{0,3}的\1(?=，|$)")
# A surname alone: "姓章", "我姓章", "是姓章的".
_SURNAME_ONLY_RE = re.compile(r"(?:我|他|她|是|我是)?姓([\u4e00-\u9fff]{1,2}?)(?:的)?")
MAX_TRANSLITERATED = 10  # Han characters in a name with "·" (买买提·艾力, 阿依古丽·买买提)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a person's name ("name_length", "name_invalid"), or None.

    A Han name of 2-4 characters, or a transliterated (minority, foreign) one whose
    parts are Han and joined by "·", up to ten characters; never a number, date, time
    or place expression.
    """
    parts = name.split("·")
    if not all(_HAN_RE.fullmatch(part) for part in parts):
        return "name_invalid"  # digits, Latin letters, an empty part around a "·"
    letters = sum(len(part) for part in parts)
    if len(parts) == 1 and not 2 <= letters <= 4 or len(parts) > 1 and letters > MAX_TRANSLITERATED:
        return "name_length"
    if any(_NOT_A_NAME_RE.search(part) for part in parts):
        return "name_invalid"
    return None


@dataclass(frozen=True)
class NameMention:
    name: str
    role: str  # ROLE_SELF, ROLE_INSURED or ROLE_BARE
    start: int  # index in the compact text
    confidence: float = 0.9


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def load_surnames(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def load_spellings(path: Path) -> dict[str, str]:
    """Spelled-surname phrases → surname ("弓长张", "弓长的张", "弓长张的张" → 张)."""
    raw: dict[str, str] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    phrases: dict[str, str] = {}
    for description, surname in raw.items():
        description, surname = str(description), str(surname)
        if description.endswith(surname):  # "三点水的汪": the surname is part of the description
            phrases[description] = surname
            phrases[f"{description}的{surname}"] = surname
        else:
            phrases[f"{description}{surname}的{surname}"] = surname
            phrases[f"{description}的{surname}"] = surname
            phrases[f"{description}{surname}"] = surname
    return phrases


class NameFinder:
    """Finds person names in compact text (no spaces; punctuation as '，')."""

    def __init__(
        self,
        surnames: Iterable[str],
        spellings: dict[str, str],
        stop_words: Iterable[str],
        relation_words: Iterable[str],
    ) -> None:
        relation_words = tuple(relation_words)
        self.surnames = frozenset(surnames)
        self.spellings = dict(sorted(spellings.items(), key=lambda kv: -len(kv[0])))
        self._stop_re = _alternation(stop_words)
        self._relation_re = _alternation(relation_words)
        self._relation_end_re = (
            re.compile(f"(?:{self._relation_re.pattern})(?:的)?(?:名字)?$") if relation_words else None
        )
        self._spelling_re = _alternation(self.spellings)
        self._self_re = _alternation(_SELF_TRIGGERS)
        self._insured_re = _alternation(_INSURED_TRIGGERS)
        # "文章的章", "韩国的韩": a word, 的, then the surname it contains.
        self._word_spelling_re = re.compile(r"([\u4e00-\u9fff]{1,3})的([\u4e00-\u9fff])")

    # -- surnames ------------------------------------------------------------------

    def surname_at(self, text: str, pos: int) -> str | None:
        if text[pos:pos + 2] in self.surnames:
            return text[pos:pos + 2]
        if text[pos:pos + 1] in self.surnames:
            return text[pos:pos + 1]
        return None

    def told_by_characters(self, text: str) -> str | None:
        """A name told character by character, written as the name (with what led it in):
        "言午许，文化的文，气宇轩昂的轩" → 许文轩, "耳东陈，早晨的晨" → 陈晨, "我叫刘洋，刘备的刘，海洋的
        洋" → 我叫刘洋. After the full name, a surname alone (姓许, 许) or nothing, each clause
        explains one character by its parts (言午许) or by a word it is in (文化的文); a name said
        first must hold every character explained. None when the text is not such a name."""
        for pos, chars in self._explanations(text.rstrip("，")):
            name = self._told_name(text[:pos].rstrip("，"), chars)
            if name is not None:
                return name
        return None

    def _explanations(self, body: str, depth: int = 0) -> Iterable[tuple[int, list[str]]]:
        """Ways to read the end of `body` as explained characters: (where they start, the chars)."""
        if depth > 4 or not body:
            return
        ends: list[tuple[int, str]] = []
        spelling = next((w for w in self.spellings if body.endswith(w)), None)
        if spelling:
            ends.append((len(body) - len(spelling), self.spellings[spelling]))
        elif len(body) >= 3 and body[-2] == "的" and _is_cjk(body[-1]):
            char, clause = body[-1], body[:-2].rsplit("，", 1)
            sizes = [len(clause[1])] if len(clause) == 2 else range(1, 7)  # said apart: the whole clause
            for size in sizes:
                word = body[-2 - size:-2]
                if len(word) == size and 0 < size <= 6 and all(_is_cjk(c) for c in word) and char in word \
                        and word != char:
                    ends.append((len(body) - 2 - size, char))
        for pos, char in ends:
            for before, chars in self._explanations(body[:pos].rstrip("，"), depth + 1):
                yield before, [*chars, char]
            yield pos, [char]

    def _told_name(self, head: str, chars: list[str]) -> str | None:
        """The name a head ("我叫刘洋", "姓许", "", …) and the characters explained after it tell."""
        lead = next((t for t in _TOLD_LEADS if head.startswith(t)), "")
        said = head[len(lead):].lstrip("，")
        if said.startswith("姓"):
            said = said[1:]
        if not said:
            name = "".join(chars)
        elif said in self.surnames and chars[0] != said:
            name = said + "".join(chars)
        elif len(said) >= 2 and all(c in said for c in chars) and self.surname_at(said, 0):
            name = said
        else:
            return None
        surname = self.surname_at(name, 0)
        if surname is None or not 2 <= len(name) <= 4 or len(name) == len(surname):
            return None
        return lead + name

    def drop_explanations(self, text: str) -> str:
        """A name with its explanation taken out, the name kept once.

        People say the surname and then the full name ("曾，曾亮", "曾 曾亮"), explain the given
        name ("徐平卫，平卫是名字", "段诗，诗是名字") or one of its characters ("商莉平，平安的平",
        "王芳，芳是芬芳的芳"). An explanation repeats the end of the name just said; that is how
        it is told apart from a name of its own (段诗诗 stays 段诗诗). A name told character by
        character (`told_by_characters`) comes back as the name.
        """
        told = self.told_by_characters(text)
        if told is not None:
            return told
        m = _EXPLAINED_GIVEN_RE.search(text)
        if m:  # "…X，X是名字" or, spaces dropped, "…XX是名字"
            before = text[:m.end(1)]
            for length in (2, 1):
                said, rest = before[-length:], before[:-length].rstrip("，")
                if len(before) > length and rest.endswith(said) and len(rest) > length:
                    text = rest + text[m.end():]
                    break
        m = _EXPLAINED_CHAR_RE.search(text)
        if m and text[:m.start()].endswith(m.group(1)):  # "王芳，芳是芬芳的芳"
            text = text[:m.start()] + text[m.end():]
        for m in self._word_spelling_re.finditer(text):
            word, char = m.group(1), m.group(2)
            for k in range(len(word) - 1):  # the word may have swallowed the name's last character
                before, spelt = text[:m.start() + k].rstrip("，"), word[k:]
                # "商莉平，平安的平": the last character explained (whatever the first: a surname
                # misheard as another character is still a name, 导海 for 党海 in "导海，大海的海")
                if char in spelt and before.endswith(char) and len(before) >= 2 and _is_cjk(before[-2]):
                    text = before + text[m.end():]
                    break
            else:
                continue
            break
        m = _REPEATED_SURNAME_RE.match(text)
        if m and self.surname_at(m.group(2), 0) == m.group(1):
            text = text[:m.start(1)] + text[m.start(2):]  # "曾，曾亮": the surname, then the full name
        return text

    def replace_spellings(self, text: str) -> tuple[str, str | None]:
        """Text with spelled surnames replaced by 姓<surname>, and the spelled surname."""
        spelled: str | None = None
        hit = self._spelling_re.search(text) if self.spellings else None
        if hit:
            surname = self.spellings[hit.group(0)]
            before = text[:hit.start()]
            marker = surname if before.endswith("姓") else f"姓{surname}"
            text = before + marker + "，" + text[hit.end():]
            spelled = surname
        elif "的" in text:
            for m in self._word_spelling_re.finditer(text):
                word, char = m.group(1), m.group(2)
                if char in word and char in self.surnames and word != char:
                    before = text[:m.start()]
                    marker = char if before.endswith("姓") else f"姓{char}"
                    text = before + marker + "，" + text[m.end():]
                    spelled = char
                    break
        return text, spelled

    def surname_said(self, text: str) -> str | None:
        """The surname in an answer that gives a surname and no full name: "立早章", "文章的章",
        "不是弓长张，是立早章" (the last one said), "姓章", "我姓章的"."""
        text = text.strip("，")
        found = None
        for _ in range(4):  # spelled surnames, each replaced by 姓X: the caller's last word counts
            text, spelled = self.replace_spellings(text)
            if spelled is None:
                break
            found = spelled
            text = text.replace(f"姓{spelled}", "", 1)
        if found is not None:
            return found
        m = _SURNAME_ONLY_RE.fullmatch(_strip_fillers(text))
        return m.group(1) if m and m.group(1) in self.surnames else None

    def with_surname(self, name: str, surname: str) -> str:
        """`name` with its surname replaced by `surname` (张伟 → 章伟)."""
        old = self.surname_at(name, 0) or name[:1]
        return surname + name[len(old):]

    # -- one name at a position --------------------------------------------------

    def _boundary(self, text: str, i: int) -> bool:
        if i >= len(text):
            return True
        ch = text[i]
        if not _is_cjk(ch) or ch in GIVEN_NAME_STOP_CHARS:
            return True
        if DATE_START_RE.match(text, i) or self._stop_re.match(text, i):
            return True
        return bool(self._relation_re.match(text, i))

    def name_at(self, text: str, pos: int) -> str | None:
        """The name starting at pos (surname + 1-2 given-name characters), if one does."""
        if pos >= len(text):
            return None
        surname = self.surname_at(text, pos)
        if surname is None or self._stop_re.match(text, pos) or DATE_START_RE.match(text, pos):
            return None
        rest = pos + len(surname)
        fallback: str | None = None
        # The shortest given name that ends where something else starts: "韩艳六月…" is 韩艳.
        for length in (1, 2):
            given = text[rest:rest + length]
            if len(given) < length or not all(_is_cjk(c) and c not in GIVEN_NAME_STOP_CHARS for c in given):
                break
            if self._stop_re.match(text, rest) or DATE_START_RE.match(text, rest):
                break
            if self._boundary(text, rest + length):
                return surname + given
            fallback = surname + given
        return fallback

    # -- names in free text ------------------------------------------------------

    def find(self, text: str) -> list[NameMention]:
        """Names introduced as the caller's, the insured's, or by 姓…叫… (bare)."""
        text, spelled = self.replace_spellings(self.drop_explanations(text))
        mentions: dict[int, NameMention] = {}  # by start: the first trigger to find a name wins

        def add(name: str | None, role: str, start: int, confidence: float = 0.9) -> None:
            if not name:
                return
            if spelled and name[0] != spelled and _same_sound(name[0], spelled):
                name = spelled + name[1:]
            known = mentions.get(start)
            if known is None:
                mentions[start] = NameMention(name, role, start, confidence)
            elif known.role == ROLE_BARE and role != ROLE_BARE:  # a later trigger knows whose name it is
                mentions[start] = NameMention(known.name, role, start, known.confidence)

        # 姓X，叫XY / 姓X叫Y
        for m in _SURNAME_MARK_RE.finditer(text):
            surname = self.surname_at(text, m.end())
            if surname is None:
                continue
            role = self._role_before(text, m.start())
            after = m.end() + len(surname)
            tail = _AFTER_SURNAME_RE.match(text, after)
            pos = tail.end() if tail else after
            name = self.name_at(text, pos)
            if name and name.startswith(surname):
                add(name, role, pos)
            elif tail and tail.group(0).strip("，") and pos < len(text):
                # "姓韦，叫文博": only the given name after 叫
                given = text[pos:pos + 2]
                if given and all(_is_cjk(c) and c not in GIVEN_NAME_STOP_CHARS for c in given):
                    end = pos + 2 if self._boundary(text, pos + 2) else pos + 1
                    add(surname + text[pos:end], role, pos, 0.8)

        for m in self._self_re.finditer(text):
            add(self.name_at(text, m.end()), ROLE_SELF, m.end())
        for m in self._insured_re.finditer(text):
            pos = m.end()
            rel = self._relation_re.match(text, pos)
            if rel:  # "出险人是我爸张建国"
                pos = rel.end()
            add(self.name_at(text, pos), ROLE_INSURED, pos)
        start = text.find("叫")
        while start >= 0:  # "我同事叫曹娜", "名字叫…"
            add(self.name_at(text, start + 1), self._role_before(text, start), start + 1)
            start = text.find("叫", start + 1)
        for m in self._relation_re.finditer(text):  # "我爸张建国", "我 父亲 姜 建国"
            tail = _AFTER_RELATION_RE.match(text, m.end())
            pos = tail.end() if tail else m.end()
            add(self.name_at(text, pos), ROLE_INSURED, pos)
        return sorted(mentions.values(), key=lambda n: n.start)

    def _role_before(self, text: str, idx: int) -> str:
        """Whose name follows: look at what comes right before 叫/姓."""
        before = text[max(0, idx - 8):idx].rstrip("，")
        if before.endswith("姓") or _SURNAME_BEFORE_RE.search(before):
            # "我姓韦，叫…": the role is decided before 姓
            k = text.rfind("姓", 0, idx)
            return self._role_before(text, k) if k >= 0 and k != idx else ROLE_BARE
        if _THIRD_PERSON_BEFORE_RE.search(before):
            return ROLE_INSURED
        if self._relation_end_re and self._relation_end_re.search(before):
            return ROLE_INSURED
        if _FIRST_PERSON_BEFORE_RE.search(before):
            return ROLE_SELF
        return ROLE_BARE

    # -- a bare answer to "请问您的姓名" -------------------------------------------

    def bare(self, text: str) -> NameMention | None:
        """The name in an answer that is (almost) only a name: "韦文博", "就是我，韦文博"."""
        text, spelled = self.replace_spellings(self.drop_explanations(text))
        best: NameMention | None = None
        offset = 0
        for chunk in text.split("，"):
            start = offset
            offset += len(chunk) + 1
            core = _strip_fillers(chunk)
            if not core or not all(_is_cjk(c) for c in core):
                continue
            if self._relation_re.fullmatch(core) or self._relation_re.search(chunk):
                continue  # "是我父亲", "我爸过世了": who, not a name
            if core.startswith("姓"):
                continue
            if spelled and core[0] != spelled and _same_sound(core[0], spelled):
                core = spelled + core[1:]
            surname = self.surname_at(core, 0)
            if (
                surname
                and 2 <= len(core) <= 4
                and len(core) > len(surname)
                and not self._stop_re.match(core)
                and not any(c in GIVEN_NAME_STOP_CHARS for c in core[len(surname):])
            ):
                best = NameMention(core, ROLE_BARE, start, 0.9)
                continue
            name = self.name_at(core, 0)
            rest = core[1:]
            rest_surname = self.surname_at(rest, 0) if not surname and _sounds_like_filler(core[0]) else None
            if name:
                best = NameMention(name, ROLE_BARE, start, 0.8)
            elif (rest_surname and 2 <= len(rest) <= 3 and len(rest) > len(rest_surname)
                  and not any(c in GIVEN_NAME_STOP_CHARS for c in rest[len(rest_surname):])):
                # a filler heard as a character before the name ("嗯，沙志" heard 儿沙志)
                best = NameMention(rest, ROLE_BARE, start + 1, 0.7)
            elif (
                2 <= len(core) <= 3
                and best is None
                and not self._stop_re.match(core)
                and not any(c in GIVEN_NAME_STOP_CHARS for c in core)
            ):
                best = NameMention(core, ROLE_BARE, start, 0.5)  # a surname not in the list
        return best


# What 嗯 呃 啊 哦 sound like when the recognizer writes them as other characters (儿 饿 阿 恩).
_FILLER_SOUNDS = frozenset({"a", "e", "o", "en", "er", "ng", "n", "m", "ei", "ai", "ao", "ou"})


def _sounds_like_filler(ch: str) -> bool:
    return any(r.rstrip("012345") in _FILLER_SOUNDS for r in _toned(ch))


def _strip_fillers(chunk: str) -> str:
    changed = True
    while changed and chunk:
        changed = False
        for prefix in _BARE_PREFIXES:
            if chunk.startswith(prefix) and len(chunk) > len(prefix):
                chunk = chunk[len(prefix):]
                changed = True
                break
        for suffix in _BARE_SUFFIXES:
            if chunk.endswith(suffix) and len(chunk) > len(suffix) + 1:
                chunk = chunk[: -len(suffix)]
                changed = True
                break
    return chunk


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    words = sorted({w for w in words if w}, key=len, reverse=True)
    if not words:
        return re.compile(r"(?!x)x")
    return re.compile("|".join(re.escape(w) for w in words))


def _same_sound(a: str, b: str) -> bool:
    from pypinyin import lazy_pinyin  # only for spelled surnames

    return lazy_pinyin(a) == lazy_pinyin(b)


class NamePrior:
    """Recognized names, spelled as the commonest name that sounds exactly the same (tones too).

    A speech recognizer restricted to name characters cannot tell 涵 from 韩 (both han2) or 家姨
    from 佳怡 (jia1 yi2); the acoustics say nothing more, so the spelling real names use most wins:
    a first character that is no surname becomes the commonest surname with its sound, a given
    name not in the list of common given names becomes the first one in it with its sound. A
    surname or given name that is already a known one is kept (the recognizer's choice stands).
    Lists are in order of frequency (surnames.txt, given_names.txt).
    """

    def __init__(self, surnames: Iterable[str], given_names: Iterable[str]) -> None:
        self.surnames = list(dict.fromkeys(surnames))
        self.given = list(dict.fromkeys(given_names))
        self._surname_set = frozenset(self.surnames)
        self._given_set = frozenset(self.given)
        self._given_chars: dict[str, int] = {}
        for g in self.given:
            for ch in g:
                self._given_chars.setdefault(ch, len(self._given_chars))
        self._surname_by_sound: dict[str, str] = {}
        for s in self.surnames:
            if len(s) == 1:
                for reading in _toned(s):
                    self._surname_by_sound.setdefault(reading, s)
        self._surname_by_toneless: dict[str, str] = {}
        for s in self.surnames:
            if len(s) == 1:
                for reading in _toned(s):
                    self._surname_by_toneless.setdefault(reading.rstrip("012345"), s)
        self._given_by_sound: dict[tuple[str, ...], str] = {}
        for g in self.given:
            self._given_by_sound.setdefault(tuple(_toned(ch)[0] for ch in g if _toned(ch)), g)
        self._char_by_sound: dict[str, str] = {}
        for ch in self._given_chars:
            for reading in _toned(ch):
                self._char_by_sound.setdefault(reading, ch)

    def normalize(self, name: str) -> str:
        if not 2 <= len(name) <= 4 or not all(_is_cjk(c) for c in name):
            return name
        surname = name[:2] if name[:2] in self._surname_set else name[0]
        given = name[len(surname):]
        if surname not in self._surname_set:
            surname = next((self._surname_by_sound[r] for r in _toned(surname) if r in self._surname_by_sound),
                           surname)
        if given and given not in self._given_set:
            whole = self._given_by_sound_of(given)
            if whole is not None:
                given = whole
            else:
                given = "".join(
                    ch if ch in self._given_chars
                    else next((self._char_by_sound[r] for r in _toned(ch) if r in self._char_by_sound), ch)
                    for ch in given
                )
        return surname + given

    def respell_surnames(self, text: str) -> str:
        """Recognized text with a character that sounds like a surname, where a name starts, spelled
        as that surname: "我姓鹏叫朋玉小" → "我姓彭叫彭玉小", "亲夫叫父雷伟" → "亲夫叫付雷伟".

        A recognizer restricted to name characters still writes 鹏 for 彭 or 父 for 付; the name
        finder knows names by their surname, so without this it finds none and the name is asked
        again until the call gives up. Only where a name can start: the beginning, after 姓 / 叫 /
        是 / a pause, or right after the same surname (the surname said, then the full name).
        """
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch in self._surname_set or not _is_cjk(ch) or ch in GIVEN_NAME_STOP_CHARS:
                continue  # a pronoun or particle stays itself: "你好" is a greeting, not 倪好
            before = chars[i - 1] if i else ""
            if i and before not in "姓叫是，" and not (before in self._surname_set and i >= 1
                                                        and (i == 1 or chars[i - 2] in "姓叫是，")):
                continue
            surname = next((self._surname_by_sound[r] for r in _toned(ch) if r in self._surname_by_sound), None)
            if surname is None:  # the tone misheard too (草 for 曹)
                surname = next((self._surname_by_toneless[r.rstrip("012345")] for r in _toned(ch)
                                if r.rstrip("012345") in self._surname_by_toneless), None)
            if surname is None:
                continue
            if before in self._surname_set and before != surname:
                continue  # after another surname: a given name's character ("王鹏")
            chars[i] = surname
        return "".join(chars)

    def plausible(self, name: str) -> bool:
        """A known surname and given-name characters that names use ("刘磊", not "证券" or "附件均")."""
        if not 2 <= len(name) <= 4:
            return False
        surname = name[:2] if name[:2] in self._surname_set else name[0]
        given = name[len(surname):]
        return surname in self._surname_set and bool(given) and all(ch in self._given_chars for ch in given)

    def _given_by_sound_of(self, given: str) -> str | None:
        from itertools import product

        readings = [_toned(ch) for ch in given]
        if not all(readings):
            return None
        for combo in product(*readings):
            found = self._given_by_sound.get(tuple(combo))
            if found is not None:
                return found
        return None


def load_given_names(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _toned(ch: str) -> tuple[str, ...]:
    """The toned pinyin of a character ("han2")."""
    return _toned_cached(ch)


from functools import lru_cache  # noqa: E402


@lru_cache(maxsize=8192)
def _toned_cached(ch: str) -> tuple[str, ...]:
    if not _is_cjk(ch):
        return ()
    from pypinyin import Style, pinyin

    readings = pinyin(ch, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True, errors="ignore")
    # the first (commonest) reading only: rare readings make strange homophones (家 as gu1)
    return (readings[0][0],) if readings and readings[0] else ()
