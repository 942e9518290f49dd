"""The claim kinds' joint reader: one caller utterance → every claim value it contains (mixed initiative).

This module owns the claim vocabulary: the nine claim roles (`ROLES`: who reports, who is
insured, their relationship, the ID, the phone, when, what, where, which illness) and the
dictionaries that read them. A flow binds its slots to these roles (a slot's claim `kind`,
or its `role`, see speech.understanding.kinds.claim); slot names are the flow's own.

Every utterance goes through every extractor: "我爸张建国昨天因为肺炎住进了华西医院"
fills six slots at once. The slot the bot just asked for (CallContext.expected_slot)
is only used to read bare answers ("韦文博", a digit string, "本人") and to route
values that fit several slots (a name, a number).

Text may come from the recognizer (spaces between words, no punctuation) or a
chat channel (punctuation, Arabic digits); both are reduced to one compact form
first: full-width folded, spaces dropped, punctuation reduced to "，".
"""

from __future__ import annotations

import contextlib
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from . import dates as dates_mod
from .acts import PARTICLES, asks_for_person
from .classify import IncidentClassifier, RelationshipClassifier
from .diagnosis import DiagnosisFinder
from .hospitals import HospitalDirectory, HospitalMention, is_local_name
from .idcard import id_problem, normalize_id
from .names import (ROLE_BARE, ROLE_INSURED, ROLE_SELF, NameFinder, NamePrior, load_given_names, load_spellings,
                    load_surnames, name_problem)
from .numbers import DigitRun, digits_by_sound, find_digit_runs
from .phone import mentions_caller_number, normalize_phone
from .phonetic import SoundAlikes, sound_key
from .types import CallContext, Extraction, SlotProblem, SlotValue

# The contract resolves dates in Asia/Shanghai, which has had no DST since 1991.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

# What the joint reader fills, named as in the claim-report contract (shared/eval/CONTRACT.md).
ROLES = (
    "reporter_name",
    "reporter_phone",
    "relationship",
    "insured_name",
    "insured_id_number",
    "incident_date",
    "incident_type",
    "hospital",
    "diagnosis",
)

NAME_SLOTS = ("reporter_name", "insured_name")
NUMBER_SLOTS = ("reporter_phone", "insured_id_number")

_PUNCT_RE = re.compile(r"[,，。.!！?？;；:：、…~～\"“”'‘’()（）\[\]【】<>《》]+")
_SPACE_RE = re.compile(r"\s+")
# Words that always end a name and never start one ("我爸 全身…", "我妈 那天…").
_NAME_STOP_WORDS = (
    "全身", "那天", "当天", "那时", "最近", "突然", "一直", "今年", "去年", "刚才", "刚刚", "现在", "之前", "以前", "后来",
    "平时", "时候", "常年", "干活", "万一", "高烧", "高处", "左边", "右边", "明天", "后天", "下周", "上午", "下午", "中午",
    "晚上", "早上", "凌晨", "夜里", "半夜", "出险", "出事", "报案", "医生", "医院", "身份证", "手机", "电话", "号码",
    "名字", "姓名", "本人", "自己", "来电", "这个", "那个", "车祸", "意外", "门诊", "住院", "确诊", "查出", "诊断",
    "谢谢", "你好", "您好", "麻烦", "好的", "喂", "稍等", "等等", "知道", "清楚", "免贵",
)
# After 我 in an opening, words that say the caller is the one it happened to ("我今天出了意外").
_SELF_EVENT_RE = re.compile(
    rf"(?:^|，|报案|报个案)我(?:{dates_mod.DATE_START_RE.pattern}|得了|得的|确诊|查出|住院|住进|出了|摔|被|因为|去看|看了|骨折)"
)
_CALLER_IS_INSURED_RE = re.compile(r"^(?:是|就是)?(?:我|是我|我啊|就我)$")
_NUMBER_PUNCT_RE = re.compile(r"(?<=\d)[./\-](?=\d)")  # 2026-03-17, 11/20, 3.5: not boundaries
_PROTECT = {".": "\0", "/": "\1", "-": "\2"}
_PARTICLES_RE = re.compile(f"[{PARTICLES}]+$")  # not 了: 错了 is a no
# Interjections and fillers an answer opens with, before its yes or no ("哎 不对", "那个不对").
_LEAD_FILLER_RE = re.compile(r"(?:(?:哎呀|哎哟|哎|唉|诶|欸|呃|嗯|哦|噢|喔|啊|那个|这个|就是说|喂)，?)+")
# A caller correcting themself inside one answer ("五号，哦不对，六号").
_SELF_FIX_RE = re.compile(r"不对|不是|说错了|错了|哦不|啊不")
_RENAMED_RE = re.compile(r"，?(?:叫|叫做|名字叫|全名叫|全名是|全称是|全称叫|就是)，?")
_LEAD_IS_RE = re.compile(r"^(?:应该是|应该|是)(?=.)")  # "不对，应该是…"
_INSURED_HINT_RE = re.compile(r"他|她|出险|被保|患者|病人")
_NUMBER_LEAD_RE = re.compile(r"身份证号码|身份证号|身份证|号码|手机号|手机|电话|是")
_ID_WORDS_RE = re.compile(r"身份证|证件|身份号")
_PHONE_WORDS_RE = re.compile(r"手机|电话|联系|号码|打我")


@dataclass(frozen=True)
class _Acts:
    affirm: bool | None
    correction: bool
    wants_human: bool
    hint: str | None  # slot named by a correction ("身份证号是…", "名字错了")
    body: str  # the compact text after a leading "不对，"


class _Collector:
    """Values and problems found in one utterance; the first value for a slot wins."""

    def __init__(self) -> None:
        self.values: dict[str, SlotValue] = {}
        self.problems: dict[str, SlotProblem] = {}
        self.introduced: set[str] = set()  # slots whose value was said with whose it is

    def put(self, slot: str, value: str, confidence: float, span: str) -> None:
        if slot not in self.values:
            self.values[slot] = SlotValue(slot, value, round(min(max(confidence, 0.0), 1.0), 2), span)
            self.problems.pop(slot, None)

    def problem(self, slot: str, code: str, span: str, heard: str = "") -> None:
        if slot not in self.values and slot not in self.problems:
            self.problems[slot] = SlotProblem(slot, code, span, heard)


def compact_text(text: str) -> str:
    """Full-width folded, spaces dropped, punctuation reduced to '，' (kept in dates and numbers)."""
    text = unicodedata.normalize("NFKC", text)
    text = _NUMBER_PUNCT_RE.sub(lambda m: _PROTECT[m.group(0)], text)
    text = _SPACE_RE.sub("", text)
    text = _PUNCT_RE.sub("，", text)
    text = text.replace("\0", ".").replace("\1", "/").replace("\2", "-")
    return text.strip("，")


def _word_list(path: Path) -> list[str]:
    """One word a line, `#` comments; none when the file is absent."""
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _alternation(words: Any) -> re.Pattern[str]:
    words = sorted({str(w) for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words)) if words else re.compile(r"(?!x)x")


class ClaimReader:
    """The joint claim reader: dictionaries loaded once, `extract` per utterance (thread-safe).

    Values come keyed by role (`ROLES`); `kinds.claim.ClaimBinding` renames them to a flow's slots."""

    def __init__(self, dictionaries: Path) -> None:
        self.dictionaries = dictionaries
        load = lambda name: yaml.safe_load((dictionaries / name).read_text(encoding="utf-8")) or {}  # noqa: E731
        self.relationships = RelationshipClassifier(load("relationships.yaml"))
        incident_lexicon = load("incident_types.yaml")
        self.incidents = IncidentClassifier(incident_lexicon)
        diag = load("diagnoses.yaml")
        self.diagnoses = DiagnosisFinder(
            terms=[str(t) for t in diag.get("terms") or ()],
            synonyms={str(k): str(v) for k, v in (diag.get("synonyms") or {}).items()},
            modifiers=[str(t) for t in diag.get("modifiers") or ()],
            body_parts=[str(t) for t in diag.get("body_parts") or ()],
            suffixes=[str(t) for t in diag.get("suffixes") or ()],
            disease_endings=[str(t) for t in diag.get("disease_endings") or ()],
        )
        self.hospitals = HospitalDirectory.from_yaml(dictionaries / "hospitals.yaml")
        cities = _word_list(dictionaries / "cities.txt")
        provinces = _word_list(dictionaries / "provinces.txt")
        self._places = frozenset(cities) | frozenset(provinces)
        # a place as said before a hospital's kind: a city with 市, a province with 省
        place_forms = [f"{city}市" for city in cities] + [f"{province}省" for province in provinces]
        self._place_re = _alternation(place_forms)
        # a city by its sound, for one heard as a homophone before 市 (暨南市): only sounds one city has
        by_sound: dict[str, list[str]] = {}
        for city in cities:
            by_sound.setdefault(sound_key(city), []).append(city)
        self._city_by_sound = {key: found[0] for key, found in by_sound.items() if len(found) == 1}
        # "洛阳是第三人民医院": 市 heard as 是 after a city, before a name every city's hospitals have
        self._city_shi_re = re.compile(
            f"({'|'.join(map(re.escape, sorted(cities, key=len, reverse=True)))})是(?=第|人民|中心|中医|儿童|妇幼|妇产|骨科|肿瘤|口腔|眼科)"
        ) if cities else None
        acts = load("dialogue_acts.yaml")
        self._yes = {str(w) for w in acts.get("affirm") or ()}
        yes = _alternation(self._yes).pattern
        self._yes_re = re.compile(f"(?:{yes})(?:，?(?:{yes}))*")
        self._no = sorted({str(w) for w in acts.get("deny") or ()}, key=len, reverse=True)
        self._strong_no = [w for w in self._no if len(w) >= 2 and w not in ("没有", "有问题")]
        self._no_sounds = SoundAlikes(self._no)
        self._wrong_re = _alternation(acts.get("wrong_markers") or ())
        human = [str(w) for w in acts.get("human") or ()]
        self._human_re = _alternation([w for w in human if len(w) >= 3])
        self._human_short = {w for w in human if len(w) < 3}
        self._unknown_re = _alternation(acts.get("unknown") or ())
        self._slot_words: dict[str, list[str]] = {
            str(slot): [str(w) for w in words] for slot, words in (acts.get("slot_words") or {}).items()
        }
        self._slot_word_re = _alternation([w for words in self._slot_words.values() for w in words])
        self._slot_of_word = {w: slot for slot, words in self._slot_words.items() for w in words}

        incident_words = [str(w) for words in incident_lexicon.values() for w in words]
        relation_words = self.relationships.relation_words()
        surnames = load_surnames(dictionaries / "surnames.txt")
        # recognized names spelled as common names sound (涵建国 → 韩建国); speech only
        self.name_prior = NamePrior(surnames, load_given_names(dictionaries / "given_names.txt"))
        self.names = NameFinder(
            surnames,
            load_spellings(dictionaries / "surname_spellings.yaml"),
            stop_words=[
                *self.diagnoses.term_words(), *incident_words, *self.hospitals.names(), *_NAME_STOP_WORDS,
                *(str(w) for w in diag.get("body_parts") or ()),
                # "支原体肺炎" is no name 支原体 (one-character ones, 左 右, start names too)
                *(str(w) for w in diag.get("modifiers") or () if len(str(w)) >= 2),
            ],
            relation_words=relation_words,
        )
        # Words that cannot be part of a hospital name said before 医院.
        self._hospital_stop_re = _alternation(
            [*self.diagnoses.term_words(), *incident_words, *relation_words, "出了", "得了", "确诊", "查出来", "因为"]
        )
        self._user_dict = dictionaries / "insurance_medical.txt"
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def from_config(cls, config_dir: Path) -> "ClaimReader":
        """Load from the config folder (the one holding `dictionaries/`) or the dictionaries folder itself."""
        config_dir = Path(config_dir)
        dictionaries = config_dir / "dictionaries" if (config_dir / "dictionaries").is_dir() else config_dir
        return cls(dictionaries)

    def tokenizer(self) -> Any:
        """A private jieba tokenizer with the insurance/medical user dictionary (built on first use, ~1 s)."""
        with self._tokenizer_lock:
            if self._tokenizer is None:
                import jieba

                tokenizer = jieba.Tokenizer()
                tokenizer.load_userdict(str(self._user_dict))
                self._tokenizer = tokenizer
            return self._tokenizer

    # -- the entry point -----------------------------------------------------------

    def extract(self, text: str, context: CallContext) -> Extraction:
        compact = compact_text(text)
        acts = self._acts(compact)
        if context.recognized and acts.affirm is None:
            acts = self._acts_by_sound(compact, context.expected_slot == "confirm") or acts
        body = acts.body
        expected = context.expected_slot
        # For a correction that names its slot, that slot is what the value answers.
        target = acts.hint or (expected if expected in ROLES else None)
        # "不知道" is no answer: bare-answer readings would turn it into a name or a hospital.
        bare_ok = not self._unknown_re.search(body)
        now = shanghai(context.started_at)
        out = _Collector()

        self._numbers(body, target, now, out)
        use_caller_number = mentions_caller_number(body) and target in (None, "reporter_phone")
        if use_caller_number and context.caller_number:
            number = normalize_phone(context.caller_number)
            if number:
                out.put("reporter_phone", number, 0.95, body)

        if context.recognized and target in (None, "hospital", "confirm"):
            body = self._respell_cities(body)
        if context.recognized and self._city_shi_re is not None:
            body = self._city_shi_re.sub(r"\1市", body)
        hospital_mentions = self.hospitals.find(body, self._hospital_stop_re)
        if not hospital_mentions and target == "hospital" and bare_ok:
            bare = self.hospitals.bare(body, self._hospital_stop_re, last=acts.correction, recognized=context.recognized)
            hospital_mentions = [bare] if bare else []
        if hospital_mentions:
            h = hospital_mentions[-1] if acts.correction else hospital_mentions[0]
            for said, named in zip(hospital_mentions, hospital_mentions[1:]):
                if said is h and _RENAMED_RE.fullmatch(body[said.end:named.start]):
                    h = named  # "社区医院，叫玉林社区卫生服务中心": the name it goes by
            if context.recognized and h.confidence < 1.0:
                h = self._hospital_after_noise(h)
            out.put("hospital", h.value, h.confidence, h.said)
        # Hospital names hold words that mean other things (肿瘤医院, 儿童医院).
        rest = body
        for h in hospital_mentions:
            rest = rest.replace(h.said, "，")

        self._dates(dates_mod.respell_numerals(rest) if context.recognized else rest, now, acts, target, out)
        self._relationship(rest, target, expected, out)
        self._names(rest, target if bare_ok else None, acts, out, context.recognized)
        if target in NAME_SLOTS and context.current and target not in out.values and bare_ok:
            # "不是，是立早章" to "您姓张，弓长张，对吗？": the surname alone corrects the name we have
            surname = self.names.surname_said(rest)
            if surname:
                out.put(target, self.names.with_surname(context.current, surname), 0.9, rest)
        incident_text = rest
        if context.recognized and target in (None, "incident_type"):
            # incident words heard as words that sound like them (医外 for 意外); not in answers to
            # other questions, whose digits sound like words too (勾幺 like 狗咬)
            incident_text = compact_text(self.incidents.respell(text))
            for h in hospital_mentions:
                incident_text = incident_text.replace(h.said, "，")
        self._incident(incident_text, target, out)
        self._diagnosis(rest, target if bare_ok else None, acts, out, context.recognized)

        if bare_ok and acts.correction and not out.values and not out.problems and not use_caller_number:
            # "不对，韦文博": a bare fix at read-back, and a name is the only thing it can be.
            # Which name is unknown; the caller's comes first in the read-back.
            bare = self.names.bare(body) if len(body) <= 6 else None
            if bare and bare.confidence >= 0.8:
                name = self.name_prior.normalize(bare.name) if context.recognized else bare.name
                plausible = not context.recognized or self.name_prior.plausible(name)
                out.put("reporter_name", name, 0.6 if plausible else 0.4, body)

        return Extraction(
            values=out.values,
            problems=out.problems,
            affirm=acts.affirm,
            correction=acts.correction,
            use_caller_number=use_caller_number,
            wants_human=acts.wants_human,
            about=acts.hint if acts.hint in ROLES else None,
            introduced=frozenset(out.introduced),
        )

    # -- dialogue acts ---------------------------------------------------------------

    def _acts(self, compact: str) -> _Acts:
        bare = compact.strip("，")
        lead = _LEAD_FILLER_RE.match(bare)
        if lead and lead.end() < len(bare):
            bare = bare[lead.end():]  # "哎，不对，…", "那个不对": the no after the filler
        stripped = _PARTICLES_RE.sub("", bare).lower()
        wants_human = bool(self._human_re.search(bare)) or asks_for_person(bare, self._human_short)
        affirm: bool | None = None
        correction = False
        body = bare
        if stripped in self._no or stripped in ("不不", "不不不"):
            affirm = False
        elif self._is_yes(stripped):
            affirm = True
        else:
            for word in self._strong_no:
                if bare.startswith(word):
                    affirm, correction = False, True
                    body = bare[len(word):].lstrip("，")
                    body = _LEAD_IS_RE.sub("", body) if not body.startswith("是我") else body
                    break
            else:
                for yes in ("对的", "是的", "没错", "嗯对", "对"):
                    if bare.startswith(yes + "，"):
                        affirm = True
                        break
        hint = None
        # "名字错了，是…", "身份证号不对"
        wrong = self._wrong_re.search(body if correction else bare)
        if wrong or correction:
            source = body if correction else bare
            slot_word = self._slot_word_re.search(source)
            if slot_word and (not wrong or slot_word.start() <= wrong.start() or correction):
                hint = self._slot_of_word[slot_word.group(0)]
                if hint == "any_name":
                    hint = self._name_owner(source[: slot_word.start()])
            if wrong and not correction and (slot_word is not None):
                affirm, correction = False, True
                body = bare[wrong.end():].lstrip("，")
                body = _LEAD_IS_RE.sub("", body)
        return _Acts(affirm, correction, wants_human, hint, body or bare)

    def _acts_by_sound(self, compact: str, read_back: bool = False) -> _Acts | None:
        """Recognized speech that misheard the yes/no word: "对等" / "是 等" for 对的 / 是的, "错 出门
        我叫…" for 错了，我叫…; at the read-back (`read_back`) also a no heard as words that sound
        just like it, tones aside ("有个地方部队，我叫…" for 有个地方不对). Only short yeses (a longer
        answer says something else too), and never one that sounds as much like a no (部队 is
        nearer 不对 than 都对)."""
        from .phonetic import name_similarity

        bare = compact.strip("，")
        stripped = _PARTICLES_RE.sub("", bare)
        if stripped.startswith("错") and not stripped.startswith("错误"):
            body = stripped[1:].lstrip("了，")
            acts = self._acts(f"错了，{body}" if body else "错了")
            return acts if acts.affirm is False else None
        if read_back:
            respelled = self._deny_by_sound(bare)
            if respelled != bare:
                acts = self._acts(respelled)
                if acts.affirm is False:
                    return acts
        if 2 <= len(stripped) <= 3 and not any(ch in stripped for ch in "不没错否"):
            nearest_no = max((name_similarity(stripped, w) for w in self._no if len(w) == len(stripped)), default=0.0)
            for word in self._yes:
                if (len(word) == len(stripped) and len(word) >= 2 and name_similarity(stripped, word) >= 0.75
                        and name_similarity(stripped, word) > nearest_no):
                    return _Acts(True, False, False, None, bare)
        return None

    def _deny_by_sound(self, text: str) -> str:
        """`text` with a run of characters that sounds exactly like a no word of two syllables or
        more (tones aside) written as that word: 部队 → 不对, 有个地方部队 → 有个地方不对."""
        return "".join(self._no_sounds.respell(list(text)))

    def _is_yes(self, stripped: str) -> bool:
        # "对", "对对对", "嗯对没错", "是的是的": nothing but yes words
        return stripped in self._yes or bool(self._yes_re.fullmatch(stripped))

    def _name_owner(self, before: str) -> str:
        """Whose name a correction is about: the insured if 他/她/出险人/a relative is named, else the caller."""
        if _INSURED_HINT_RE.search(before) or self.relationships.classify(before):
            rel = self.relationships.classify(before)
            if rel is None or rel.value != "本人":
                return "insured_name"
        return "reporter_name"

    # -- slots -----------------------------------------------------------------------

    def _numbers(self, body: str, target: str | None, now: datetime, out: _Collector) -> None:
        runs = _self_corrected(body, find_digit_runs(body))
        candidates = [r for r in runs if len(r.digits) >= 6] or (
            [max(runs, key=lambda r: len(r.digits))] if runs and target in NUMBER_SLOTS else []
        )
        for run in candidates:
            slot = self._number_slot(body, run, target)
            if slot is None:
                continue
            self._number_value(slot, run.digits, body[run.start:run.end], now, out)
        # A recognizer that mishears digits as words ("要八零" for 幺八零): read by sound,
        # and keep it only if it makes a valid number.
        if target in NUMBER_SLOTS and target not in out.values:
            tail = _NUMBER_LEAD_RE.split(body)[-1]
            digits = digits_by_sound(tail)
            if target == "reporter_phone":
                valid = normalize_phone(digits) is not None
            else:
                valid = id_problem(digits, now.date()) is None
            if valid:
                self._number_value(target, digits, tail, now, out, confidence=0.6)

    def _number_slot(self, body: str, run: DigitRun, target: str | None) -> str | None:
        before = body[max(0, run.start - 10):run.start]
        if _ID_WORDS_RE.search(before):
            return "insured_id_number"
        if _PHONE_WORDS_RE.search(before):
            return "reporter_phone"
        if target in NUMBER_SLOTS:
            return target
        n = len(run.digits)
        if n == 18 or (n == 17 and not run.digits.endswith("X")) or run.digits.endswith("X"):
            return "insured_id_number"
        if normalize_phone(run.digits):
            return "reporter_phone"
        if n >= 15:
            return "insured_id_number"
        return None

    def _number_value(
        self, slot: str, digits: str, span: str, now: datetime, out: _Collector, confidence: float = 0.95
    ) -> None:
        if slot == "insured_id_number":
            number = normalize_id(digits)
            code = id_problem(number, now.date())
            if code is None:
                out.put(slot, number, confidence, span)
            else:
                out.problem(slot, code, span, number)
        else:
            phone = normalize_phone(digits)
            if phone:
                out.put(slot, phone, confidence, span)
            else:
                out.problem(slot, "phone_format", span, digits)

    def _respell_cities(self, text: str) -> str:
        """A place before 市 that is no city but sounds like exactly one (暨南市 → 济南市)."""
        out = text
        for i in [m.start() for m in re.finditer("市", text)]:
            for n in (3, 2):
                heard = text[i - n:i] if i >= n else ""
                if not heard or not all("\u4e00" <= ch <= "\u9fff" for ch in heard):
                    continue
                if self._ends_with_place(heard):
                    break  # a city said right (or ending one: 在苏州)
                city = self._city_by_sound.get(sound_key(heard))
                if city and len(city) == n:
                    out = out[:i - n] + city + out[i:]
                    break
        return out

    def _ends_with_place(self, text: str) -> bool:
        return any(text[k:] in self._places for k in range(len(text)))

    def _after_misheard_lead(self, said: str) -> str | None:
        """What follows a misheard word or two before a place ("大无锡市骨科医院", "市浙阳本苏州市…",
        for 在… / 是这样的…): the name from the place on; None when what is before it is a place
        itself (江苏省苏州市) or part of a name (复旦大学附属…)."""
        place = self._place_re.search(said, 1)
        if place is None or place.start() > 4:
            return None
        lead = said[:place.start()]
        if lead[-1] in "省市县区" or self._ends_with_place(lead) or re.search("大学|学院|附属|医|院", lead):
            return None
        return said[place.start():]

    def _hospital_after_noise(self, h: HospitalMention) -> HospitalMention:
        """A name not found as said whose first character or two are a misheard word ("战省人民医院",
        "大瑞金医院" for 在省人民医院 / 在瑞金医院): the directory name that follows, if one does -
        said exactly, or (for a name otherwise kept as said) by sound."""
        if not h.canonical and (rest := self._after_misheard_lead(h.said)) is not None:
            hit = self.hospitals.lookup(rest)
            if hit:
                return HospitalMention(hit[0], rest, h.end - len(rest), h.end, hit[1], 0.8)
            return HospitalMention(rest, rest, h.end - len(rest), h.end, False, min(h.confidence, 0.8))
        if is_local_name(h.said):
            return h  # "南宁市中心医院" is not a misheard word before 市中心医院
        cuts = [h.said[cut:] for cut in (1, 2) if len(h.said) - cut >= 4]
        hit = self.hospitals.lookup(cuts[0]) if cuts else None
        if hit:  # one character too many before a name said exactly (not one said by sound only)
            return HospitalMention(hit[0], cuts[0], h.end - len(cuts[0]), h.end, hit[1], 0.8)
        if h.canonical or h.confidence > 0.6:
            return h
        for rest in cuts:
            fuzzy = self.hospitals.fuzzy(rest)
            if fuzzy:
                return HospitalMention(fuzzy[0], rest, h.end - len(rest), h.end, fuzzy[1], fuzzy[2] / 100 * 0.8)
        return h

    def _dates(self, text: str, now: datetime, acts: _Acts, target: str | None, out: _Collector) -> None:
        found = dates_mod.find_dates(text, now)
        if not found:
            return
        # "不是前天，是昨天"; "上个月五号，哦不对，六号": the caller's last word on it
        fixed = len(found) > 1 and any(_SELF_FIX_RE.search(text, a.end, b.start) for a, b in zip(found, found[1:]))
        mention = found[-1] if acts.correction or fixed else found[0]
        if fixed and not acts.correction:
            mention = _within(found[-2], mention, now)
        if mention.value is not None:
            confidence = 0.95 if target == "incident_date" else 0.85
            out.put("incident_date", mention.value.isoformat(), confidence, mention.span)
        elif mention.problem:
            out.problem("incident_date", mention.problem, mention.span)

    def _relationship(self, text: str, target: str | None, expected: str | None, out: _Collector) -> None:
        found = self.relationships.classify(text)
        if found:
            out.put("relationship", found.value, found.confidence, found.span)
        elif target == "relationship" and _CALLER_IS_INSURED_RE.match(text):
            out.put("relationship", "本人", 0.8, text)
        elif target == "relationship" and (by_sound := self.relationships.classify_by_sound(text)):
            out.put("relationship", by_sound.value, by_sound.confidence, by_sound.span)
        elif expected is None and _SELF_EVENT_RE.search(text):
            # an opening about what happened to "我": the caller is the insured
            out.put("relationship", "本人", 0.7, text)

    def _names(self, text: str, target: str | None, acts: _Acts, out: _Collector, recognized: bool = False) -> None:
        def slot_of(role: str) -> str:
            if role == ROLE_SELF:
                return "reporter_name"
            if role == ROLE_INSURED:
                return "insured_name"
            # "姓韦，叫韦文博": the slot asked for, or with no name asked, the caller introducing themself
            return target if target in NAME_SLOTS else "reporter_name"

        mentions = self.names.find(text)
        if target in NAME_SLOTS and not any(slot_of(m.role) == target for m in mentions):
            bare = self.names.bare(text)  # "韦文博", "就是我，韦文博"
            if bare:
                mentions.append(bare)
        if (recognized and target in NAME_SLOTS and not any(slot_of(m.role) == target for m in mentions)
                and not self.names.surname_said(text)  # "是立早章": a spelled surname, read elsewhere
                and not (acts.correction and acts.hint)):  # "名字不对": which item, not a name
            # a surname heard as a character that only sounds like it ("我姓鹏叫朋玉小")
            respelled = self.name_prior.respell_surnames(text)
            if respelled != text:
                found = [m for m in self.names.find(respelled) if slot_of(m.role) == target]
                bare = None if found else self.names.bare(respelled)
                mentions += found or ([bare] if bare else [])
        for m in reversed(mentions) if acts.correction else mentions:
            confidence = m.confidence if m.role != ROLE_BARE or target in NAME_SLOTS else 0.6
            name = self.name_prior.normalize(m.name) if recognized else m.name
            if recognized and not self.name_prior.plausible(name):
                confidence = min(confidence, 0.4)  # heard, but not like a name: doubtful
            problem = name_problem(name)
            if problem:  # "我叫公元前一万年": a date, not a name; the flow can ask again
                out.problem(slot_of(m.role), problem, m.name, name)
                continue
            if m.role != ROLE_BARE and slot_of(m.role) not in out.values:
                out.introduced.add(slot_of(m.role))
            out.put(slot_of(m.role), name, confidence, m.name)
        # The caller reporting for themself: the insured is the reporter.
        rel = out.values.get("relationship")
        if rel and rel.value == "本人" and rel.confidence >= 0.8:
            name = out.values.get("reporter_name") or out.values.get("insured_name")
            if name:
                out.put("insured_name", name.value, name.confidence, name.span)
                if target != "insured_name":
                    out.put("reporter_name", name.value, name.confidence, name.span)

    def _incident(self, text: str, target: str | None, out: _Collector) -> None:
        # A bare illness answering another question ("医生说是突发心梗") says nothing of the type.
        found = self.incidents.classify(text, allow_weak=target in (None, "incident_type"))
        if found:
            out.put("incident_type", found.value, found.confidence, found.span)

    def _diagnosis(self, text: str, target: str | None, acts: _Acts, out: _Collector, recognized: bool = False) -> None:
        found = self.diagnoses.find(text)
        if found:
            d = found[-1] if acts.correction else found[0]
            if (target in ("diagnosis", "incident_type") or acts.correction) and not recognized:
                # typed: the words right before a term are the caller's (heard ones mostly noise)
                d = self.diagnoses.as_answered(text, d)
            out.put("diagnosis", d.value, d.confidence, d.span)
            return
        framed = self.diagnoses.framed(text)  # "诊断是胆管细胞癌": not in the lexicon
        if framed:
            out.put("diagnosis", framed.value, framed.confidence, framed.span)
        elif target == "diagnosis":
            bare = self.diagnoses.bare(text, recognized)
            if bare:
                out.put("diagnosis", bare.value, bare.confidence, bare.span)


_BARE_DAY_RE = re.compile(r"[^月]+[号日]")
_BARE_WEEKDAY_RE = re.compile(r"(?:周|星期|礼拜)[一二三四五六日天七]")


def _within(said: dates_mod.DateMention, fix: dates_mod.DateMention, now: datetime) -> dates_mod.DateMention:
    """A self-correction of the day alone keeps the month or week said first: "上个月五号，哦不对，
    六号" is last month's 6th, "上礼拜二，不对，礼拜三" last week's Wednesday."""
    if said.value is None or fix.value is None:
        return fix
    value = None
    if _BARE_DAY_RE.fullmatch(fix.span):
        with contextlib.suppress(ValueError):
            value = said.value.replace(day=fix.value.day)
    elif _BARE_WEEKDAY_RE.fullmatch(fix.span):
        value = said.value + timedelta(days=dates_mod.WEEKDAYS[fix.span[-1]] - said.value.weekday())
    if value is None or value > now.date():
        return fix
    return dates_mod.DateMention(value, None, fix.span, fix.start, fix.end)


def _self_corrected(text: str, runs: list[DigitRun]) -> list[DigitRun]:
    """Digit runs with a caller's own fix applied: "一八六二六零幺零三六八，哦不对，最后是零三六零"
    is 18626010360 (a shorter run after a no replaces the end of the run before it)."""
    out: list[DigitRun] = []
    for run in runs:
        if out and len(run.digits) < len(out[-1].digits) and _SELF_FIX_RE.search(text, out[-1].end, run.start):
            before = out.pop()
            run = DigitRun(before.digits[:-len(run.digits)] + run.digits, before.start, run.end)
        out.append(run)
    return out


def shanghai(started_at: datetime) -> datetime:
    """The call's start in Asia/Shanghai (a naive time is taken to be Shanghai time)."""
    if started_at.tzinfo is None:
        return started_at.replace(tzinfo=SHANGHAI)
    return started_at.astimezone(SHANGHAI)
