"""A survey definition as a voice call: the flow (plain data for `speech.dialogue.flow.parse_flow`)
that asks the same questions by phone, the values one call brings, and the answers it gives back.

Pure: no HTTP, database or gateway (the gateway registers the flows and stores the answers).

The flow `survey_<survey name>`:
- the intro, then the identity step before anything about the policy: the last four characters of
  the ID number (digits, X said as 叉 / 艾克斯 or keyed as *), by voice or keypad, checked against the
  call's value `expected_id_suffix` (the gateway's, from the policy record; never the caller's). A
  wrong answer is asked once more; then the call ends with the outcome `not_verified`;
- each answerable question in order, in its title's words (or its `voice.prompt`), no read-back;
  heard with a grammar from the question: boolean (是/对/没错/知道/清楚/了解 … or 不是/不对/没有/
  不知道/不清楚 …, keypad 1/2), radiogroup (the choices' texts and `voice.synonyms`, keypad 1..n),
  rating (the numbers, keypad), text/comment (free speech). Not understood: asked once more, then a
  person (a question that is not required is passed over instead). 转人工 at any time: a person;
- `visibleIf` (the page's and the question's): conditions on the product context are evaluated
  per call (`call_values`, a `show_<question>` value), conditions on earlier answers go into the
  flow (`ask_if`) and are honoured as the answers come in. Answer conditions must be conjunctions
  of `=`, `!=`, `anyof`, `empty`, `notempty` on boolean, radiogroup or rating questions; anything
  else is refused with a `VoiceSurveyError` naming the question (the web pages still run it);
- outcomes: `not_verified`, `problem` (a visible question answered other than its `correctAnswer`),
  else the engine's `complete`. The store decides the case's own outcome from the answers.

Titles with `{placeholders}` (product name, payment years, …) are rendered per call with
`surveys.definition.render_text` into a `q_<question>` value: the flow is one per survey, the
wording per policy. `voice` (a question's extension key) may hold `prompt` (the spoken question),
`reprompt` (the second try), `affirm` / `deny` (more ways to say yes / no) and `synonyms`
(choice value -> more ways to say it).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from surveys.definition import Question, Survey, render_text

FLOW_PREFIX = "survey_"
IDENTITY_SLOT = "id_suffix"
EXPECTED_PARAM = "expected_id_suffix"  # the call's value the identity answer must equal
INVITATION_PARAM = "invitation_id"  # what an outbound call (or an inbound caller) names the case by
POLICY_PARAM = "policy_number"  # ... or, inbound, the policy
NOT_VERIFIED = "not_verified"
PROBLEM = "problem"
YES, NO = "是", "否"
# How a policyholder says yes / no to "您是否知道…" / "是您本人签名吗？"; keypad 1 / 2.
YES_WORDS = ("是", "是的", "对", "对的", "没错", "知道", "知道的", "知道了", "清楚", "清楚的", "了解", "了解的",
             "明白", "确认", "有的", "1")
NO_WORDS = ("不是", "不是的", "不对", "没有", "没有的", "不知道", "不清楚", "不太清楚", "不了解", "不太了解",
            "不明白", "否", "2")
BOOLEAN_HOW = "请回答“是”或者“不是”，也可以按1或者按2。"  # said again after a yes/no not understood
# Heard beside a closed question's answers: a person please, and the commonest "not now".
ALWAYS_HINTS = ("转人工", "人工客服", "人工", "不方便")
SUPPORTED_TYPES = ("boolean", "radiogroup", "rating", "text", "comment")
PLACEHOLDER = re.compile(r"\{[^{}]+\}")
_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PUNCT = re.compile(r"[\s，,。.！!？?、；;：:“”\"'（）()《》]+")

INTRO = "您好，这里是保险公司客服中心，现在为您做{title}，耽误您一两分钟。回答时请说“是”或者“不是”，也可以按键，是按1，不是按2。"
IDENTITY_PROMPTS = (
    "为了确认是您本人，请说出投保人身份证号码的最后四位，也可以在按键上输入，字母X请按星号键。",
    "请说身份证号码的最后四位，比如“一二三四”，也可以在按键上输入。",
)
IDENTITY_PROBLEMS = {
    "mismatch": "您说的与我们的记录不一致，请再说一遍身份证号码的最后四位，也可以在按键上输入。",
    "digits_length": "请说身份证号码的最后四位，一共四位，比如“一二三四”，字母X请说“叉”。",
}
CLOSING_NOT_VERIFIED = "抱歉，身份核实没有通过，稍后会有工作人员与您联系，再见。"
CLOSING_PROBLEM = "感谢您的配合。您有的回答我们会安排专人与您进一步确认，再见。"
CLOSING = "回访已完成，感谢您的配合，祝您生活愉快，再见。"
TRANSFER = "好的，正在为您转接人工客服，请稍候。"
REFUSED = "好的，不打扰您了，稍后会有工作人员与您联系，再见。"


class VoiceSurveyError(ValueError):
    """A survey that cannot run as a voice call; the message names the survey and question."""


def flow_name(survey_name: str) -> str:
    return FLOW_PREFIX + survey_name


def survey_name(flow: str) -> str | None:
    """The survey a flow name is the voice call of, or None."""
    return flow[len(FLOW_PREFIX):] if flow.startswith(FLOW_PREFIX) else None


# ---------------------------------------------------------------- the flow


def survey_flow(survey: Survey) -> dict[str, Any]:
    """The survey's voice flow, as data for `parse_flow`."""
    questions = list(survey.questions())
    for q in questions:
        if q.type not in SUPPORTED_TYPES:
            raise VoiceSurveyError(f"survey {survey.name}: {q.name}: a {q.type!r} question cannot be asked by voice "
                                   f"(by voice: {', '.join(SUPPORTED_TYPES)})")
        if not _IDENT.fullmatch(q.name) or q.name == IDENTITY_SLOT or q.name == "confirm":
            raise VoiceSurveyError(f"survey {survey.name}: {q.name!r}: a question name by voice must be letters, "
                                   f"digits and _ (and not {IDENTITY_SLOT!r})")
    names = {q.name for q in questions}
    params: list[str] = [EXPECTED_PARAM]
    slots: list[dict[str, Any]] = [_identity_slot()]
    outcomes: list[dict[str, Any]] = [{"name": NOT_VERIFIED, "when": {IDENTITY_SLOT: None}}]
    closing: list[Any] = [{"when": {IDENTITY_SLOT: None}, "text": CLOSING_NOT_VERIFIED}]
    page_of = _pages_of(survey)
    for q in questions:
        slot, extra = _question_slot(survey, q, page_of[q.name], names, questions)
        params += extra
        slots.append(slot)
        wrong = _wrong_values(q)
        if wrong:
            outcomes.append({"name": PROBLEM, "when": {q.name: list(wrong)}})
            closing.append({"when": {q.name: list(wrong)}, "text": CLOSING_PROBLEM})
    closing.append(CLOSING)
    return {
        "name": flow_name(survey.name),
        "description": f"{survey.title}（电话回访，问卷 {survey.name} 版本 {survey.version}）",
        "params": params,
        "intro": INTRO.format(title=_plain(survey.title)),
        "ack": "好的，",
        "limits": {"max_turns": 2 * (len(questions) + 1) + 6, "no_match": 2, "no_input": 2},
        "no_match_prefix": ["抱歉，我没听清楚。"],
        "no_input_prefix": ["您还在吗？"],
        "slots": slots,
        "confirm": "none",
        "result": {"topic": "survey_voice"},
        "outcomes": outcomes,
        "closing": closing,
        "transfer": TRANSFER,
        "refused": REFUSED,
    }


# What the identity answer is heard with: the digits, X, and a person please. Every closed question
# gets its own `hints` like this, rather than its kind's grammar plus every "a person / no thanks"
# phrase of the dialogue acts: the recognizer hears the characters of those phrases alone too
# (真 for 三, 接 for 一, 不分 for 五分: measured on the recorded clips).
IDENTITY_HINTS = ("零", "幺", "一", "二", "两", "三", "四", "五", "六", "七", "八", "九", "叉", "艾克斯",
                  "转人工", "人工客服", "人工")
_NUMERALS = "零一二三四五六七八九十"


def _identity_slot() -> dict[str, Any]:
    return {
        "name": IDENTITY_SLOT,
        "kind": "digits",
        "options": {"length": 4, "x": True},
        "hints": list(IDENTITY_HINTS),
        "expect": EXPECTED_PARAM,
        "confirm": False,
        "prompts": list(IDENTITY_PROMPTS),
        "problems": dict(IDENTITY_PROBLEMS),
        "dtmf": {"after": 3, "prompt": IDENTITY_PROMPTS[1], "max_length": 4, "star": "X"},
        "limits": {"no_match": 2, "no_input": 2},
    }


def _question_slot(survey: Survey, q: Question, page: Any, names: set[str],
                   questions: list[Question]) -> tuple[dict[str, Any], list[str]]:
    voice = dict(q.voice or {})
    text = str(voice.get("prompt") or q.title or q.name)
    extra: list[str] = []
    if PLACEHOLDER.search(text):
        extra.append(text_param(q.name))  # rendered per call (call_values)
        said = "{" + text_param(q.name) + "}"
    else:
        said = _speakable(text)
    kind, options, how, dtmf = _grammar(q, voice)
    hints = _hints(q, options)
    again = str(voice.get("reprompt") or "")
    if again and PLACEHOLDER.search(again):
        raise VoiceSurveyError(f"survey {survey.name}: {q.name}: voice.reprompt: no placeholders in a reprompt")
    slot: dict[str, Any] = {
        "name": q.name,
        "kind": kind,
        "confirm": False,
        "optional": not q.is_required,
        "prompts": [said + how, again or (said + (how or BOOLEAN_HOW))],
        "limits": {"no_match": 2, "no_input": 2},
    }
    if options:
        slot["options"] = options
    if hints:
        slot["hints"] = list(hints)
    if dtmf is not None:
        slot["dtmf"] = dtmf
    condition, context_part = _visibility(survey, q, page, names, questions)
    if context_part:
        extra.append(show_param(q.name))
        condition[show_param(q.name)] = "1"
    if condition:
        slot["ask_if"] = condition
    return slot, extra


def _grammar(q: Question, voice: Mapping[str, Any]) -> tuple[str, dict, str, dict | None]:
    """kind, its options, how to answer (said after the question), the keypad."""
    if q.type == "boolean":
        yes = _words(YES_WORDS, voice.get("affirm"), q.label_true)
        no = _words(NO_WORDS, voice.get("deny"), q.label_false)
        yes = tuple(w for w in yes if w not in no)
        return ("choice", {"choices": {YES: list(yes), NO: list(no)}, "unasked": False}, "",
                {"after": 3, "prompt": "是请按1，不是请按2。", "max_length": 1})
    if q.type == "radiogroup":
        synonyms = voice.get("synonyms") or {}
        choices: dict[str, list[str]] = {}
        for i, choice in enumerate(q.choices, 1):
            value = _plain(choice.text) or choice.value
            if value in choices:
                raise VoiceSurveyError(f"{q.name}: two choices are both said {value!r}")
            more = synonyms.get(choice.value) or ()
            if isinstance(more, str):
                more = [more]
            keys = [str(i)] if i <= 9 else []
            choices[value] = list(_words((), [_plain(w) for w in more], *(keys)))
        listed = "、".join(f"{text}请按{i}" for i, text in enumerate(choices, 1) if i <= 9)
        return ("choice", {"choices": choices, "unasked": False}, f"{listed}。",
                {"after": 3, "prompt": f"{listed}。", "max_length": 1})
    if q.type == "rating":
        low, high = q.rate_min, q.rate_max
        return ("rating", {"min": low, "max": high}, f"请说{low}到{high}之间的数字，也可以在按键上按。",
                {"after": 3, "prompt": f"请在按键上按{low}到{high}。", "max_length": len(str(high))})
    return "free_text", {}, "", None


def _hints(q: Question, options: Mapping[str, Any]) -> tuple[str, ...]:
    """What a closed question's answer is heard with (None for free text: the full vocabulary)."""
    if q.type in ("boolean", "radiogroup"):
        words = [w for value, said in options["choices"].items() for w in (value, *said) if not w.isdigit()]
    elif q.type == "rating":
        numbers = [_NUMERALS[n] if n <= 10 else str(n) for n in range(q.rate_min, q.rate_max + 1)]
        words = [*numbers, *(f"{n}分" for n in numbers), "两", "两分", "满分"]
    else:
        return ()
    return tuple(dict.fromkeys((*words, *ALWAYS_HINTS)))


def _words(base: Iterable[str], more: Any, *labels: str) -> tuple[str, ...]:
    if isinstance(more, str):
        more = [more]
    out = [*base, *(str(w) for w in (more or ()) if str(w).strip()), *(_plain(l) for l in labels if l and _plain(l))]
    return tuple(dict.fromkeys(out))


def _wrong_values(q: Question) -> tuple[str, ...]:
    """The slot values that differ from the question's expected answer (none: any answer is fine)."""
    if q.correct_answer is None:
        return ()
    values = _slot_values(q)
    if values is None:
        return ()
    right = _slot_value(q, q.correct_answer)
    return tuple(v for v in values if v != right)


def _slot_values(q: Question) -> tuple[str, ...] | None:
    if q.type == "boolean":
        return (YES, NO)
    if q.type == "radiogroup":
        return tuple(_plain(c.text) or c.value for c in q.choices)
    if q.type == "rating":
        return tuple(str(n) for n in range(q.rate_min, q.rate_max + 1))
    return None


def _slot_value(q: Question, answer: Any) -> str | None:
    """A survey answer (True, a choice value, 4) as the flow's slot holds it."""
    if q.type == "boolean":
        if isinstance(answer, str):
            answer = {"true": True, "false": False}.get(answer.lower(), answer)
        return YES if answer is True else NO if answer is False else None
    if q.type == "radiogroup":
        for c in q.choices:
            if c.value == answer or str(c.value) == str(answer):
                return _plain(c.text) or c.value
        return None
    if q.type == "rating":
        return str(answer)
    return None if answer is None else str(answer)


# ---------------------------------------------------------------- visibility


def _pages_of(survey: Survey) -> dict[str, Any]:
    return {q.name: page for page in survey.pages for q in page.elements}


def _source(expression: Any) -> str:
    for attr in ("source", "text", "expression", "raw"):
        value = getattr(expression, attr, None)
        if isinstance(value, str):
            return value
    return str(expression)


def _conditions(page: Any, q: Question) -> list[str]:
    return [_source(e) for e in (getattr(page, "visible_if", None), q.visible_if) if e is not None]


def _visibility(survey: Survey, q: Question, page: Any, names: set[str],
                questions: list[Question]) -> tuple[dict[str, Any], bool]:
    """The `ask_if` on earlier answers, and whether a part on the context is left for the call."""
    condition: dict[str, Any] = {}
    context_part = False
    by_name = {x.name: x for x in questions}
    for text in _conditions(page, q):
        variables = {v.split(".")[0] for v in _VAR.findall(text)}
        if not variables & names:
            context_part = True  # only the product context: evaluated per call
            continue
        for part in _conjuncts(text, survey, q):
            part_vars = {v.split(".")[0] for v in _VAR.findall(part)}
            if not part_vars & names:
                context_part = True
                continue
            slot, accepted = _translate(part, by_name, survey, q)
            if slot in condition:  # two parts on one answer: both must hold
                before = condition[slot]
                accepted = None if before is None and accepted is None else [
                    v for v in (before or []) if accepted is not None and v in accepted] or [NEVER]
            condition[slot] = accepted
    return condition, context_part


def _conjuncts(text: str, survey: Survey, q: Question) -> list[str]:
    if re.search(r"\bor\b|\|\||\bnot\b|!(?!=)|[()]", text, re.IGNORECASE):
        raise VoiceSurveyError(f"survey {survey.name}: {q.name}: visibleIf {text!r}: by voice an answer condition "
                               f"must be a conjunction (and) of comparisons")
    return [p.strip() for p in re.split(r"\s+and\s+|\s*&&\s*", text.strip(), flags=re.IGNORECASE) if p.strip()]


_LITERAL = r"'[^']*'|\"[^\"]*\"|true|false|-?\d+(?:\.\d+)?"
_COMPARE = re.compile(rf"^\{{(?P<var>[A-Za-z_][A-Za-z0-9_]*)\}}\s*(?P<op>==|=|!=|<>)\s*(?P<lit>{_LITERAL})$",
                      re.IGNORECASE)
_ANYOF = re.compile(r"^\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)\}\s+(?P<op>anyof)\s*\[(?P<items>.*)\]$", re.IGNORECASE)
_EMPTY = re.compile(r"^\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)\}\s+(?P<op>empty|notempty)$", re.IGNORECASE)


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in ("'", '"'):
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


NEVER = "\u0000"  # a slot value no answer has: a condition that cannot hold


def _translate(part: str, by_name: Mapping[str, Question], survey: Survey,
               q: Question) -> tuple[str, list[str] | None]:
    """One comparison on an earlier answer as the slot values under which it holds (None: the
    answer is empty)."""
    problem = f"survey {survey.name}: {q.name}: visibleIf part {part!r}"
    m = _COMPARE.match(part) or _ANYOF.match(part) or _EMPTY.match(part)
    if m is None:
        raise VoiceSurveyError(f"{problem}: by voice only =, !=, anyof, empty, notempty on an answer")
    other = by_name.get(m.group("var"))
    if other is None:
        raise VoiceSurveyError(f"{problem}: names no question")
    values = _slot_values(other)
    if values is None:
        raise VoiceSurveyError(f"{problem}: by voice a condition may name boolean, radiogroup or rating answers")
    op = m.group("op").lower()
    if op == "empty":
        return other.name, None
    if op == "notempty":
        return other.name, list(values)
    if op == "anyof":
        items = [_literal(x) for x in re.findall(_LITERAL, m.group("items"), re.IGNORECASE)]
        chosen = {_slot_value(other, x) for x in items}
        return other.name, [v for v in values if v in chosen] or [NEVER]
    said = _slot_value(other, _literal(m.group("lit")))
    if op in ("=", "=="):
        return other.name, [v for v in values if v == said] or [NEVER]
    return other.name, [v for v in values if v != said] or [NEVER]


# ---------------------------------------------------------------- one call


def text_param(question: str) -> str:
    return f"q_{question}"


def show_param(question: str) -> str:
    return f"show_{question}"


def call_values(survey: Survey, context: Mapping[str, Any], *, expected_id_suffix: str) -> dict[str, str]:
    """What one call of the survey's flow brings, from the product context: the expected identity
    answer, each question's title rendered (`q_<name>`, where it has placeholders) and whether the
    product shows it (`show_<name>`: "1" or "0", where a visibleIf names the context)."""
    from surveys.expressions import parse  # the one evaluator of visibleIf, the pages' too

    values = {EXPECTED_PARAM: expected_id_suffix.strip().upper()}
    names = {q.name for q in survey.questions()}
    page_of = _pages_of(survey)
    for q in survey.questions():
        text = str((q.voice or {}).get("prompt") or q.title or q.name)
        if PLACEHOLDER.search(text):
            values[text_param(q.name)] = _speakable(render_text(text, context))
        shown = True
        context_part = False
        for source in _conditions(page_of[q.name], q):
            variables = {v.split(".")[0] for v in _VAR.findall(source)}
            if not variables & names:
                context_part = True
                shown = shown and parse(source).evaluate(context)
                continue
            for part in _conjuncts(source, survey, q):
                if not {v.split(".")[0] for v in _VAR.findall(part)} & names:
                    context_part = True
                    shown = shown and parse(part).evaluate(context)
        if context_part:
            values[show_param(q.name)] = "1" if shown else "0"
    return values


def answers_from_slots(survey: Survey, slots: Mapping[str, str]) -> dict[str, Any]:
    """The call's slot values as the survey's answers (typed as the pages store them: boolean
    True/False, a radiogroup's choice value, a rating's int, text as said)."""
    answers: dict[str, Any] = {}
    for q in survey.questions():
        said = slots.get(q.name)
        if not said:
            continue
        if q.type == "boolean":
            if said in (YES, NO):
                answers[q.name] = said == YES
        elif q.type == "radiogroup":
            value = next((c.value for c in q.choices if (_plain(c.text) or c.value) == said), None)
            if value is not None:
                answers[q.name] = value
        elif q.type == "rating":
            if said.isdigit():
                answers[q.name] = int(said)
        else:
            limit = q.max_length or (2000 if q.type == "comment" else 500)
            answers[q.name] = said.strip()[:limit]
    return answers


def identity_passed(slots: Mapping[str, str]) -> bool:
    """The identity step was passed: the engine keeps the answer only when it was the expected one."""
    return bool(slots.get(IDENTITY_SLOT))


def _plain(text: str) -> str:
    """Text without HTML tags and edge punctuation (a choice as said, a title as spoken)."""
    text = re.sub(r"<[^>]+>", "", text or "").strip()
    return _PUNCT.sub("", text) if len(text) <= 24 else text


def _speakable(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text or "").strip()
