"""Survey definitions: a subset of the SurveyJS JSON schema (config/surveys/*.json) read into
frozen dataclasses, refusing at load anything outside the subset with the file and JSON path.

The subset (so SurveyJS editors can author the files):
- top level: `pages`, `title`, `description`, `completedHtml`, and our keys `name` (default: the
  file's stem) and `version` (required: every response records it, with the file's hash);
- a page: `name`, `title`, `description`, `visibleIf`, `elements`;
- an element: `type` (ELEMENT_TYPES), `name`, `title`, `description`, `isRequired`, `visibleIf`,
  and by type: `choices` (strings or {value, text}) for radiogroup and checkbox; `correctAnswer`
  (the expected answer: any other makes a problem case) for radiogroup, checkbox, boolean, rating
  and text; `labelTrue`/`labelFalse` (boolean); `rateMin`/`rateMax` (rating); `maxLength` (text,
  comment); `html` (html); and our key `voice` (an object for surveys/voice.py: spoken prompts,
  synonyms) on every answerable element.

Rules beyond the schema, because the pages work without JavaScript and a problem case must be
decidable: a `visibleIf` may name context variables (products.CONTEXT_VARIABLES) and questions of
*earlier* pages only; a question with a `correctAnswer` must be `isRequired`; `{placeholders}` in
texts must be context variables; question names are unique, `[A-Za-z_][A-Za-z0-9_]*`, and neither
a context variable nor a name the pages' forms use (RESERVED_NAMES).
"""

from __future__ import annotations

import html as _html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from surveys.canonical import canonical_json, sha256_hex
from surveys.errors import SurveyError
from surveys.expressions import Expression, ExpressionError, parse
from surveys.products import CONTEXT_VARIABLES

__all__ = ["SurveyError", "Choice", "Question", "Page", "Survey", "load_survey", "parse_survey",
           "load_surveys", "render_text", "render_html", "ELEMENT_TYPES", "CONTEXT_VARIABLES", "RESERVED_NAMES"]

ELEMENT_TYPES = ("radiogroup", "boolean", "checkbox", "rating", "text", "comment", "html")
ANSWERABLE = ELEMENT_TYPES[:-1]
# Form fields of the pages (and the verification form): no question may be named so.
RESERVED_NAMES = ("csrf", "submission_key", "action", "id_suffix", "otp", "contact", "page", "note")
TEXT_LIMITS = {"text": 500, "comment": 2000}  # characters, when no maxLength is given
RATE_SPAN = 10  # at most 11 steps (0-10)

_TOP_KEYS = ("name", "version", "title", "description", "completedHtml", "pages")
_PAGE_KEYS = ("name", "title", "description", "visibleIf", "elements")
_COMMON = ("type", "name", "title", "description", "isRequired", "visibleIf", "voice")
_ELEMENT_KEYS = {
    "radiogroup": _COMMON + ("choices", "correctAnswer"),
    "checkbox": _COMMON + ("choices", "correctAnswer"),
    "boolean": _COMMON + ("labelTrue", "labelFalse", "correctAnswer"),
    "rating": _COMMON + ("rateMin", "rateMax", "correctAnswer"),
    "text": _COMMON + ("maxLength", "correctAnswer"),
    "comment": _COMMON + ("maxLength",),
    "html": ("type", "name", "html", "visibleIf"),
}
_SURVEY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_QUESTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


@dataclass(frozen=True)
class Choice:
    value: str
    text: str


@dataclass(frozen=True)
class Question:
    name: str
    type: str  # ELEMENT_TYPES
    title: str = ""  # may hold {var} placeholders (render_text)
    is_required: bool = False
    choices: tuple[Choice, ...] = ()
    visible_if: Expression | None = None
    correct_answer: Any | None = None  # None: any answer is fine; checkbox: a tuple of values
    rate_min: int = 1
    rate_max: int = 5
    label_true: str = "是"
    label_false: str = "否"
    html: str = ""
    description: str = ""
    max_length: int | None = None  # text/comment; None: TEXT_LIMITS
    # not hashed: a mapping; questions stay usable as set members and dict keys
    voice: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def answerable(self) -> bool:
        return self.type != "html"

    @property
    def limit(self) -> int:
        """The most characters a text or comment answer may have."""
        return self.max_length or TEXT_LIMITS.get(self.type, 0)

    def choice(self, value: str) -> Choice | None:
        return next((c for c in self.choices if c.value == value), None)

    def visible(self, values: Mapping[str, Any]) -> bool:
        return self.visible_if is None or self.visible_if.evaluate(values)


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    elements: tuple[Question, ...]
    visible_if: Expression | None = None
    description: str = ""

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(e for e in self.elements if e.answerable)


def _values(answers: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    return {**answers, **context}  # names never collide (checked at load); context cannot be spoofed


@dataclass(frozen=True)
class Survey:
    name: str
    title: str
    version: str
    hash: str  # sha256 hex of the canonical JSON of the file's content
    pages: tuple[Page, ...]
    path: Path | None = None
    completed_html: str = ""
    description: str = ""

    def questions(self) -> tuple[Question, ...]:
        return tuple(q for page in self.pages for q in page.questions)

    def question(self, name: str) -> Question:
        for q in self.questions():
            if q.name == name:
                return q
        raise KeyError(name)

    def page(self, name: str) -> Page:
        for page in self.pages:
            if page.name == name:
                return page
        raise KeyError(name)

    def visible_elements(self, page: Page, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[Question]:
        """The page's elements shown (html ones too), in order."""
        values = _values(answers, context)
        return [e for e in page.elements if e.visible(values)]

    def visible_questions(self, page: Page, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[Question]:
        """The page's answerable questions shown (not html), in order."""
        return [e for e in self.visible_elements(page, answers, context) if e.answerable]

    def visible_pages(self, answers: Mapping[str, Any], context: Mapping[str, Any]) -> list[Page]:
        """Pages whose visibleIf holds and that show at least one element."""
        values = _values(answers, context)
        return [p for p in self.pages
                if (p.visible_if is None or p.visible_if.evaluate(values)) and any(e.visible(values) for e in p.elements)]


def render_text(text: str, context: Mapping[str, Any]) -> str:
    """`{var}` replaced from the context (None as nothing); unknown placeholders stay as written."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in context:
            return match.group(0)
        value = context[name]
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(one, text or "")


def render_html(markup: str, context: Mapping[str, Any]) -> str:
    """render_text for an html element: the markup is the definition's (trusted), the values
    substituted are escaped (a policy's product name or holder name is data, not markup)."""
    escaped = {name: _html.escape("" if value is None else str(value)) for name, value in context.items()}
    return render_text(markup, escaped)


# --- loading ---------------------------------------------------------------------------------


class _Reader:
    """Walks the raw JSON, keeping the source name for errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> SurveyError:
        return SurveyError(self.source, path, problem)

    def keys(self, raw: Mapping[str, Any], path: str, allowed: tuple[str, ...], what: str) -> None:
        for key in raw:
            if key not in allowed:
                raise self.fail(_at(path, key),
                                f"{key!r} is not supported in {what} (use {', '.join(allowed)})")

    def text(self, raw: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = raw.get(key, default)
        if isinstance(value, Mapping) and "default" in value:
            # SurveyJS localizable strings {"default": ..., "zh-cn": ...}: only one language here
            raise self.fail(_at(path, key), "localized texts are not supported (write the Chinese text)")
        if not isinstance(value, str):
            raise self.fail(_at(path, key), f"expected text, not {_kind(value)}")
        for match in _PLACEHOLDER.finditer(value):
            if match.group(1) not in CONTEXT_VARIABLES:
                raise self.fail(_at(path, key), f"{{{match.group(1)}}} is not a context variable "
                                                 f"(use {', '.join(CONTEXT_VARIABLES)})")
        return value

    def flag(self, raw: Mapping[str, Any], key: str, path: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(_at(path, key), f"expected true or false, not {_kind(value)}")
        return value

    def integer(self, raw: Mapping[str, Any], key: str, path: str, default: int | None) -> int | None:
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise self.fail(_at(path, key), f"expected a whole number, not {_kind(value)}")
        return value

    def condition(self, raw: Mapping[str, Any], path: str, known: set[str]) -> Expression | None:
        if "visibleIf" not in raw:
            return None
        text = raw["visibleIf"]
        where = f"{path}.visibleIf"
        if not isinstance(text, str):
            raise self.fail(where, f"expected an expression (text), not {_kind(text)}")
        try:
            expression = parse(text)
        except ExpressionError as exc:
            raise self.fail(where, f"does not parse: {exc}") from exc
        for name in sorted(expression.variables):
            if name.split(".")[0] not in known and name not in known:
                raise self.fail(where, f"{{{name}}} is neither a question of an earlier page nor a context "
                                       f"variable ({', '.join(CONTEXT_VARIABLES)})")
        return expression


def _at(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _choices(reader: _Reader, raw: Mapping[str, Any], path: str) -> tuple[Choice, ...]:
    where = f"{path}.choices"
    items = raw.get("choices")
    if not isinstance(items, list) or not items:
        raise reader.fail(where, "expected a non-empty list of choices (strings or {value, text})")
    out: list[Choice] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(item, Mapping):
            for key in item:
                if key not in ("value", "text"):
                    raise reader.fail(f"{at}.{key}", f"{key!r} is not supported in a choice (use value, text)")
            value = item.get("value")
            text = item.get("text", value)
        else:
            value, text = item, item
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise reader.fail(at, "a choice's value is non-empty text or a whole number")
        if not isinstance(text, (str, int)) or isinstance(text, bool):
            raise reader.fail(f"{at}.text", f"expected text, not {_kind(text)}")
        value = str(value)
        if any(c.value == value for c in out):
            raise reader.fail(at, f"the value {value!r} appears twice")
        out.append(Choice(value=value, text=str(text)))
    return tuple(out)


def _correct(reader: _Reader, raw: Mapping[str, Any], path: str, q: dict[str, Any]) -> Any:
    if "correctAnswer" not in raw:
        return None
    where = f"{path}.correctAnswer"
    value = raw["correctAnswer"]
    kind = q["type"]
    values = [c.value for c in q.get("choices", ())]
    if kind == "radiogroup":
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) not in values:
            raise reader.fail(where, f"{value!r} is not among the choices ({', '.join(values)})")
        value = str(value)
    elif kind == "checkbox":
        if not isinstance(value, list) or not value:
            raise reader.fail(where, "expected a non-empty list of choice values")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)) or str(item) not in values:
                raise reader.fail(where, f"{item!r} is not among the choices ({', '.join(values)})")
        value = tuple(sorted({str(v) for v in value}, key=values.index))
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise reader.fail(where, f"expected true or false, not {_kind(value)}")
    elif kind == "rating":
        if isinstance(value, bool) or not isinstance(value, int) or not q["rate_min"] <= value <= q["rate_max"]:
            raise reader.fail(where, f"{value!r} is not a rating from {q['rate_min']} to {q['rate_max']}")
    elif kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise reader.fail(where, "expected non-empty text")
        value = value.strip()
    if not q["is_required"]:
        raise reader.fail(where, "a question with a correctAnswer must be isRequired "
                                 "(an unanswered check decides nothing)")
    return value


def _voice(reader: _Reader, raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    value = raw.get("voice", {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise reader.fail(f"{path}.voice", "expected an object (voice prompts and synonyms)")
    return MappingProxyType(json.loads(json.dumps(value)))  # a private copy


def _element(reader: _Reader, raw: Any, path: str, page_name: str, index: int, known: set[str],
             names: dict[str, str]) -> Question:
    if not isinstance(raw, Mapping):
        raise reader.fail(path, f"expected an element (an object), not {_kind(raw)}")
    kind = raw.get("type")
    if kind not in ELEMENT_TYPES:
        shown = "missing" if kind is None else f"{kind!r} is not supported"
        raise reader.fail(f"{path}.type", f"{shown} (use {', '.join(ELEMENT_TYPES)})")
    reader.keys(raw, path, _ELEMENT_KEYS[kind], f"a {kind} element")
    name = raw.get("name", f"{page_name}_html{index + 1}" if kind == "html" else None)
    if not isinstance(name, str) or not _QUESTION_NAME.match(name):
        problem = "missing" if name is None else f"{name!r} is not a name"
        raise reader.fail(f"{path}.name", f"{problem} (letters, digits and _, not starting with a digit)")
    if name in names:
        raise reader.fail(f"{path}.name", f"{name!r} is already the name of {names[name]}")
    if name in CONTEXT_VARIABLES or name in RESERVED_NAMES:
        raise reader.fail(f"{path}.name", f"{name!r} is reserved (context variables and form fields: "
                                          f"{', '.join(CONTEXT_VARIABLES + RESERVED_NAMES)})")
    names[name] = path
    q: dict[str, Any] = {"name": name, "type": kind, "visible_if": reader.condition(raw, path, known)}
    if kind == "html":
        html = reader.text(raw, "html", path)
        if not html.strip():
            raise reader.fail(f"{path}.html", "missing (an html element shows its html)")
        return Question(**q, html=html)
    q["title"] = reader.text(raw, "title", path, name)
    q["description"] = reader.text(raw, "description", path)
    q["is_required"] = reader.flag(raw, "isRequired", path)
    q["voice"] = _voice(reader, raw, path)
    if kind in ("radiogroup", "checkbox"):
        q["choices"] = _choices(reader, raw, path)
    if kind == "boolean":
        q["label_true"] = reader.text(raw, "labelTrue", path, "是")
        q["label_false"] = reader.text(raw, "labelFalse", path, "否")
        if not q["label_true"].strip() or not q["label_false"].strip() or q["label_true"] == q["label_false"]:
            raise reader.fail(f"{path}.labelTrue", "labelTrue and labelFalse are two different non-empty texts")
    if kind == "rating":
        low = reader.integer(raw, "rateMin", path, 1)
        high = reader.integer(raw, "rateMax", path, 5)
        assert low is not None and high is not None
        if low < 0 or high <= low or high - low > RATE_SPAN:
            raise reader.fail(f"{path}.rateMax", f"a rating runs from rateMin to a larger rateMax, at most "
                                                 f"{RATE_SPAN} apart, from 0 up (not {low} to {high})")
        q["rate_min"], q["rate_max"] = low, high
    if kind in ("text", "comment"):
        limit = reader.integer(raw, "maxLength", path, None)
        if limit is not None and not 1 <= limit <= TEXT_LIMITS["comment"]:
            raise reader.fail(f"{path}.maxLength", f"{limit} is not from 1 to {TEXT_LIMITS['comment']}")
        q["max_length"] = limit
    q["correct_answer"] = _correct(reader, raw, path, q)
    return Question(**q)


def parse_survey(raw: Any, source: str = "<survey>", *, default_name: str | None = None,
                 path: Path | None = None) -> Survey:
    """A survey from its parsed JSON; `source` names it in errors."""
    reader = _Reader(source)
    if not isinstance(raw, Mapping):
        raise reader.fail("$", f"expected a survey (an object), not {_kind(raw)}")
    reader.keys(raw, "$", _TOP_KEYS, "a survey")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not _SURVEY_NAME.match(name):
        problem = "missing" if name is None else f"{name!r} is not a survey name"
        raise reader.fail("name", f"{problem} ([a-z][a-z0-9_]*; default: the file name)")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip():
        raise reader.fail("version", "missing (every response records the definition's version)"
                          if version is None else f"expected text, not {_kind(version)}")
    pages_raw = raw.get("pages")
    if not isinstance(pages_raw, list) or not pages_raw:
        raise reader.fail("pages", "expected a non-empty list of pages")
    known: set[str] = set(CONTEXT_VARIABLES)
    names: dict[str, str] = {}
    page_names: set[str] = set()
    pages: list[Page] = []
    for p, page_raw in enumerate(pages_raw):
        where = f"pages[{p}]"
        if not isinstance(page_raw, Mapping):
            raise reader.fail(where, f"expected a page (an object), not {_kind(page_raw)}")
        reader.keys(page_raw, where, _PAGE_KEYS, "a page")
        page_name = page_raw.get("name", f"page{p + 1}")
        if not isinstance(page_name, str) or not _QUESTION_NAME.match(page_name):
            raise reader.fail(f"{where}.name", f"{page_name!r} is not a name (letters, digits and _)")
        if page_name in page_names:
            raise reader.fail(f"{where}.name", f"the page name {page_name!r} appears twice")
        page_names.add(page_name)
        visible_if = reader.condition(page_raw, where, known)
        elements_raw = page_raw.get("elements")
        if not isinstance(elements_raw, list) or not elements_raw:
            raise reader.fail(f"{where}.elements", "expected a non-empty list of elements")
        elements = tuple(_element(reader, e, f"{where}.elements[{i}]", page_name, i, known, names)
                         for i, e in enumerate(elements_raw))
        known |= {e.name for e in elements if e.answerable}  # later pages may depend on these
        pages.append(Page(name=page_name, title=reader.text(page_raw, "title", where), elements=elements,
                          visible_if=visible_if, description=reader.text(page_raw, "description", where)))
    if not any(page.questions for page in pages):
        raise reader.fail("pages", "no question to answer (only html)")
    return Survey(name=name, title=reader.text(raw, "title", "$"),
                  version=str(version).strip(), hash=sha256_hex(canonical_json(raw)), pages=tuple(pages),
                  path=path, completed_html=reader.text(raw, "completedHtml", "$"),
                  description=reader.text(raw, "description", "$"))


def load_survey(path: str | Path) -> Survey:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SurveyError(source, "$", f"cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SurveyError(source, "$", "not UTF-8") from exc
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise SurveyError(source, "$", f"the key {exc.args[0]!r} appears twice in one object") from exc
    except json.JSONDecodeError as exc:
        raise SurveyError(source, "$", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    return parse_survey(raw, source, default_name=path.stem, path=path)


def load_surveys(directory: str | Path) -> dict[str, Survey]:
    """Every *.json in the directory, by survey name (a name defined twice is an error)."""
    if not Path(directory).is_dir():
        raise SurveyError(str(directory), "$", "not a directory of survey definitions")
    found: dict[str, Survey] = {}
    for path in sorted(Path(directory).glob("*.json")):
        survey = load_survey(path)
        if survey.name in found:
            raise SurveyError(str(path), "name", f"{survey.name!r} is also defined in {found[survey.name].path}")
        found[survey.name] = survey
    return found


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out
