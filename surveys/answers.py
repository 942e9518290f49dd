"""Answers: a posted page read into typed answers and Chinese error messages, and what the answers
mean: problems (answers other than the expected one), completeness and the outcome.

Typed answers: boolean True/False (from "true"/"false"), rating int, checkbox a list of choice
values (in the choices' order), radiogroup a choice value, text/comment the stripped text. A value
that is not among the choices (or out of range, or too long) is an error and is never stored.
Only the page's visible questions are read; other form fields (csrf, submission_key, ...) are
ignored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Collection, Literal, Mapping, Sequence

from surveys.definition import Page, Question, Survey

REQUIRED = "此题为必答题"
CHOOSE_ONE = "请选择一项"
CHOOSE_SOME = "请至少选择一项"
BAD_CHOICE = "所选选项无效，请重新选择"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class PageRead:
    answers: dict[str, Any] = field(default_factory=dict)  # question name -> typed answer
    errors: dict[str, str] = field(default_factory=dict)  # question name -> message for the customer

    @property
    def ok(self) -> bool:
        return not self.errors


# A case's outcome: success and problem from the answers; the store closes unanswered cases as
# not_completed, or outside_cooling_off when the deadline passed.
OUTCOMES = ("success", "problem", "not_completed", "outside_cooling_off")


@dataclass(frozen=True)
class Problem:
    question: str
    expected: Any
    given: Any

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question, "expected": self.expected, "given": self.given}


def _given(form: Mapping[str, Any], name: str) -> list[str]:
    getlist = getattr(form, "getlist", None)  # a multi-dict (Starlette's FormData): every value
    raw = getlist(name) if callable(getlist) else form.get(name, ())
    items = [raw] if isinstance(raw, str) else list(raw)
    return [str(v) for v in items if str(v).strip() != ""]


def _clean(text: str, multiline: bool) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    if not multiline:
        text = " ".join(text.split("\n"))
    return text.strip()


def _rating_message(q: Question) -> str:
    return f"请选择{q.rate_min}到{q.rate_max}之间的分数"


def read_answer(q: Question, given: list[str]) -> tuple[Any | None, str | None]:
    """(answer, None), (None, error) or (None, None) for an optional question left empty."""
    if not given:
        if not q.is_required:
            return None, None
        return None, {"radiogroup": CHOOSE_ONE, "boolean": CHOOSE_ONE, "checkbox": CHOOSE_SOME,
                      "rating": _rating_message(q)}.get(q.type, REQUIRED)
    if q.type == "checkbox":
        values = {v.strip() for v in given}
        if any(q.choice(v) is None for v in values):
            return None, BAD_CHOICE
        return [c.value for c in q.choices if c.value in values], None
    if len(set(v.strip() for v in given)) > 1 and q.type in ("radiogroup", "boolean", "rating"):
        return None, CHOOSE_ONE if q.type != "rating" else _rating_message(q)
    value = given[0]
    if q.type == "radiogroup":
        return (value.strip(), None) if q.choice(value.strip()) else (None, BAD_CHOICE)
    if q.type == "boolean":
        word = value.strip().lower()
        if word in ("true", "false"):
            return word == "true", None
        return None, f"请选择“{q.label_true}”或“{q.label_false}”"
    if q.type == "rating":
        word = unicodedata.normalize("NFKC", value).strip()
        if word.isascii() and word.isdigit() and q.rate_min <= int(word) <= q.rate_max:
            return int(word), None
        return None, _rating_message(q)
    text = _clean(value, multiline=q.type == "comment")
    if not text:
        return (None, REQUIRED) if q.is_required else (None, None)
    if len(text) > q.limit:
        return None, f"最多填写{q.limit}个字（现有{len(text)}个字）"
    return text, None


def read_page(survey: Survey, page: Page, form: Mapping[str, Sequence[str]], answers: Mapping[str, Any],
              context: Mapping[str, Any]) -> PageRead:
    """This page's visible questions read from the posted form: name -> list of values, or a
    multi-dict with getlist (Starlette's FormData as it comes)."""
    out = PageRead()
    for q in survey.visible_questions(page, answers, context):
        value, error = read_answer(q, _given(form, q.name))
        if error:
            out.errors[q.name] = error
        elif value is not None:
            out.answers[q.name] = value
    return out


def _answered(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != ()


def visible_questions(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[Question]:
    """Every question shown, page by page, given these answers."""
    return [q for page in survey.visible_pages(answers, context)
            for q in survey.visible_questions(page, answers, context)]


def visible_answers(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The answers to questions still shown (an answer that hid a later one drops that one's)."""
    return {q.name: answers[q.name] for q in visible_questions(survey, answers, context)
            if _answered(answers.get(q.name))}


def _same(q: Question, given: Any) -> bool:
    if q.type == "checkbox":
        return isinstance(given, (list, tuple)) and set(map(str, given)) == set(q.correct_answer)
    if q.type == "text":
        return isinstance(given, str) and given.strip() == q.correct_answer
    if q.type == "boolean":
        return isinstance(given, bool) and given == q.correct_answer
    if q.type == "rating":
        return not isinstance(given, bool) and given == q.correct_answer
    return given == q.correct_answer


def problems(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[Problem]:
    """Visible questions with a correctAnswer answered otherwise (unanswered ones: not complete)."""
    out = []
    for q in visible_questions(survey, answers, context):
        if q.correct_answer is None or not _answered(answers.get(q.name)):
            continue
        given = answers[q.name]
        if not _same(q, given):
            expected = list(q.correct_answer) if isinstance(q.correct_answer, tuple) else q.correct_answer
            out.append(Problem(question=q.name, expected=expected, given=given))
    return out


def missing(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    """Visible required questions not answered yet, in order."""
    return [q.name for q in visible_questions(survey, answers, context)
            if q.is_required and not _answered(answers.get(q.name))]


def is_complete(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    return not missing(survey, answers, context)


def outcome(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any]) -> Literal["success", "problem"]:
    """Call only when complete: any problem makes a problem case (问题件)."""
    return "problem" if problems(survey, answers, context) else "success"


def next_page(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any],
              submitted: Collection[str]) -> Page | None:
    """The first visible page not yet submitted, or one with a required question still open
    (resuming); None when every visible page is done."""
    open_questions = set(missing(survey, answers, context))
    for page in survey.visible_pages(answers, context):
        if page.name not in submitted or any(q.name in open_questions for q in page.questions):
            return page
    return None


def progress(survey: Survey, answers: Mapping[str, Any], context: Mapping[str, Any], page: Page) -> tuple[int, int]:
    """(this page's 1-based number, how many pages are shown) for "第2页/共4页"."""
    pages = [p.name for p in survey.visible_pages(answers, context)]
    return (pages.index(page.name) + 1 if page.name in pages else len(pages)), len(pages)


def display(q: Question, value: Any) -> str:
    """An answer as the customer saw it (evidence pages, CSV): labels and choice texts, not values."""
    if value is None or value == "" or value == []:
        return ""
    if q.type == "boolean":
        return q.label_true if value is True else q.label_false if value is False else str(value)
    if q.type == "radiogroup":
        choice = q.choice(str(value))
        return choice.text if choice else str(value)
    if q.type == "checkbox":
        items = value if isinstance(value, (list, tuple)) else [value]
        return "、".join((q.choice(str(v)).text if q.choice(str(v)) else str(v)) for v in items)
    return str(value)
