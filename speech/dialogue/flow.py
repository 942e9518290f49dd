"""A form-filling flow as data: slots and their kinds, wordings, limits, read-back, outcomes.

Loaded from YAML and validated.

Every error names the file and the key path (`claim_report.yaml: slots[3].dtmf.after: ...`), so a
flow author never has to read this code. Unknown keys are errors too: a typo must not silently
turn a feature off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from speech.dialogue.records import PolicyRecord

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")
RECORD_FIELDS = tuple(f.name for f in fields(PolicyRecord))
DEFAULT_SOURCES = ("caller_number",)
VALUE_SOURCES = ("speech", "text", "dtmf", "record", "caller_id", "derived")


class FlowError(ValueError):
    """A flow file is missing, unreadable or invalid; the message names the file and key."""


# A condition on slot values: slot -> accepted values; an empty tuple means "the slot is empty".
Condition = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Variant:
    """A text used when `when` holds (slot values) and, for read-backs, when the slot came `from` a source."""

    text: str
    when: Condition = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class PromptSet:
    when: Condition
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class DtmfSpec:
    after: int  # failures (no-match + no-input) on the slot before the keypad is offered
    prompt: str
    max_length: int | None = None  # entry ends by itself at this length; otherwise at '#'
    star: str = "*"  # what '*' stands for (X in an ID number)


@dataclass(frozen=True)
class Derivation:
    """A slot that follows from others: a copy of `source_slot`, or the constant `value`, when
    `when` holds and the two `equal` slots (if given) have one value."""

    source_slot: str | None
    value: str | None
    when: Condition
    equal: tuple[str, ...] = ()

    def holds(self, values: Mapping[str, str]) -> bool:
        if not holds(self.when, values):
            return False
        if self.equal:
            first = values.get(self.equal[0])
            return bool(first) and all(values.get(slot) == first for slot in self.equal[1:])
        return True


@dataclass(frozen=True)
class Limits:
    no_match: int
    no_input: int


@dataclass(frozen=True)
class SlotSpec:
    name: str
    prompts: tuple[str, ...]
    prompts_when: tuple[PromptSet, ...] = ()
    problems: Mapping[str, str] = field(default_factory=dict)
    hints: tuple[str, ...] | None = None
    dtmf: DtmfSpec | None = None
    optional: bool = False
    derive: Derivation | None = None
    default: str | None = None  # "caller_number": used, and read back, if still empty at confirmation
    # False: in a voice call the default is not assumed but asked for (with `hints`): a correction
    # of it at the read-back would be heard in free speech
    default_by_voice: bool = True
    caller_number: bool = False  # "就用这个号码" fills this slot
    # what the slot holds (speech.understanding.kinds: how it is read, checked, heard); slots of
    # one kind (e.g. person names) also share ambiguous corrections
    kind: str | None = None
    role: str | None = None  # the claim role the joint claim reader fills it in (kinds/claim.py)
    options: Mapping[str, Any] = field(default_factory=dict)  # the kind's (rating max, choices…)
    confirm: bool = True  # False: not read back at the end (a survey answer)
    more_hints: tuple[str, ...] = ()  # phrases added to the kind's default grammar
    aliases: tuple[str, ...] = ()  # words naming the slot ("电话"), for "电话不对" at the read-back
    limits: Limits = Limits(3, 3)
    readback: tuple[Variant, ...] = ()
    # Asked once more, with `hints`, when the value was recognized without them (in free speech,
    # e.g. the caller's opening or a read-back correction) and no policy record confirms it.
    recheck: str | None = None
    # ... only when understanding was less sure of the value than this (e.g. a hospital kept as
    # said, not found in the directory); None: whatever its confidence
    recheck_below: float | None = None
    # Asked only when this holds on the call's params and the values so far (a survey question
    # shown by the answers before it or by the product); otherwise passed over, left empty.
    ask_if: Condition = field(default_factory=dict)
    # A check, not a question: the answer must equal the call's value of this param (compared
    # without case; e.g. an ID number's last four characters); any other is the problem
    # `mismatch`, and when the slot's no-match limit is reached the call ends without it.
    expect: str | None = None
    # By voice, a value the caller said and no policy record confirmed is read back alone in these
    # words before the whole read-back (a name by its surname's spelling: "您姓张，弓长张，对吗？");
    # `spell_again`: the narrower question when the caller says no without a new value.
    spell: str | None = None
    spell_again: str | None = None
    # The narrower question when a repair of this slot failed once (the caller rejected it at the
    # read-back and the first re-ask did not fix it): never the same question a third time. A slot
    # with `dtmf` offers the keypad with it.
    repair: str | None = None

    def prompts_for(self, values: Mapping[str, str]) -> tuple[str, ...]:
        for prompt_set in self.prompts_when:
            if holds(prompt_set.when, values):
                return prompt_set.prompts
        return self.prompts


@dataclass(frozen=True)
class DigitsFormat:
    groups: tuple[int, ...] | None  # None: no grouping (used with `tail`)
    words: str  # ten digit words 0-9
    x: str = "X"
    separator: str = " "
    tail: int | None = None


@dataclass(frozen=True)
class DateFormat:
    same_year: str
    other_year: str


@dataclass(frozen=True)
class MapFormat:
    mapping: Mapping[str, str]


@dataclass(frozen=True)
class PrefixFormat:
    """The value's longest start found in a table ("张伟" → "张" → "弓长张"); none: its first character."""

    mapping: Mapping[str, str]

    def say(self, value: str) -> str:
        for length in (2, 1):
            if value[:length] in self.mapping:
                return self.mapping[value[:length]]
        return value[:1]


@dataclass(frozen=True)
class SayFormat:
    """A slot kind's own read-back wording ("4" → "4分"), set when the flow is bound to its kinds."""

    say: Callable[[str], str]


Format = DigitsFormat | DateFormat | MapFormat | PrefixFormat | SayFormat


@dataclass(frozen=True)
class ConfirmSpec:
    intro: str
    question: str
    separator: str
    order: tuple[str, ...]  # empty: no read-back (`confirm: none`, or no section)
    changed: str  # "{changes}" = the read-back of the changed slots
    which: str  # asked after a bare "no"
    hints: tuple[str, ...] | None
    dtmf_yes: str | None
    dtmf_no: str | None
    limit: int  # failed read-back rounds before a transfer
    # one read-back item asked alone ("{item}" = its read-back), once the whole read-back and
    # "which" have failed; empty: no item-by-item confirmation
    item: str = ""
    # said before the closing when an item the caller rejected could not be got right (the call ends
    # with it marked unconfirmed); empty: such a call goes to an agent
    unresolved: str = ""
    # asked instead of the whole read-back a third time when two answers to it were neither a yes
    # nor a no we know (then item by item); empty: the read-back again
    yes_no: str = ""


NO_CONFIRM = ConfirmSpec("", "", "", (), "{changes}", "", None, None, None, 1)


@dataclass(frozen=True)
class ResultSpec:
    """What the final report stores: `store` slots (empty: all), delivered under `topic`."""

    topic: str
    store: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutcomeRule:
    """A flow-defined outcome (the report's status) chosen when `when` holds at the end."""

    name: str
    when: Condition


BUILTIN_OUTCOMES = ("complete", "partial", "transferred", "refused")


@dataclass(frozen=True)
class SelfRule:
    """When the record's insured is the caller: set `sets`, take `take` from the record, suggest `suggest`."""

    when: Condition
    same_person: Mapping[str, str]  # record field -> slot: equal values mean the caller is the insured
    take: Mapping[str, str]  # slot -> record field (overrides recognition)
    suggest: Mapping[str, str]  # slot -> record field (fills only an empty or defaulted slot)


@dataclass(frozen=True)
class HolderRule:
    """When the caller is the record's policy holder and the holder is not the insured (a parent
    reporting for a child, a husband for his wife): by voice the caller's name is known by sound
    (engine: `_holder_by_sound`), and `suggest` fills from the record - only where the record's
    fields are the holder's (in the claim records the phone is the insured's: nothing suggested)."""

    same_person: Mapping[str, str]  # record field -> slot: equal values mean the caller is the holder
    suggest: Mapping[str, str]  # slot -> record field (fills only an empty or defaulted slot)


@dataclass(frozen=True)
class RecordSpec:
    query: Mapping[str, tuple[str, ...]]  # find() argument (id_number, phone, name) -> slots tried in order
    take: Mapping[str, str]  # slot -> record field
    self_rule: SelfRule | None
    # slot -> record fields: a name the caller gave that sounds like one of them is that name,
    # spelled as the record spells it (the recognizer writes homophones: 假钞 for 贾超)
    sounds_like: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    holder_rule: HolderRule | None = None


@dataclass(frozen=True)
class Flow:
    name: str
    path: Path | None
    greeting: str
    ack: str
    no_match_prefix: tuple[str, ...]
    no_input_prefix: tuple[str, ...]
    max_turns: int
    slots: tuple[SlotSpec, ...]
    formats: Mapping[str, Format]
    confirm: ConfirmSpec
    closing: tuple[Variant, ...]
    transfer: tuple[Variant, ...]
    records: RecordSpec | None = None
    # False: the call's first prompt listens with the full vocabulary whatever its slot's hints
    # (callers open with their story: "我爸昨天住院了…", not only what the prompt asks).
    start_hints: bool = True
    intro: str = ""  # said before the first question, as a prompt of its own
    result: ResultSpec | None = None  # None: every slot, under the flow's name
    outcomes: tuple[OutcomeRule, ...] = ()  # first that holds; else "complete"
    refused: tuple[Variant, ...] = ()  # said when the caller declines; none: declining is not heard
    # Values the call must bring (an outbound reminder's product, expiry date…): `{name}` in the
    # intro, greeting, questions and endings, filled per call by `with_params`.
    params: tuple[str, ...] = ()
    # What callers say before they answer anything: a greeting, what they call about ("喂，你好，
    # 我要报案"). Heard with nothing else before any slot is filled, it is acknowledged and the
    # question asked again, not taken for an answer that failed ("抱歉，我没听清楚").
    preamble: tuple[str, ...] = ()
    # The call's values of `params` (set by `with_params`): what `ask_if` and `expect` look at.
    values: Mapping[str, str] = field(default_factory=dict)

    def missing_params(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The declared params a call did not bring (or brought empty)."""
        return tuple(name for name in self.params if not str(values.get(name, "")).strip())

    def with_params(self, values: Mapping[str, str]) -> "Flow":
        """This flow for one call: its `{param}` placeholders filled, slot placeholders left alone."""
        if not self.params:
            return self
        given = {name: str(values.get(name, "")) for name in self.params}

        def fill(text: str) -> str:
            return fill_params(text, given, self.formats)

        def variants(items: tuple[Variant, ...]) -> tuple[Variant, ...]:
            return tuple(replace(v, text=fill(v.text)) for v in items)

        slots = tuple(replace(spec, prompts=tuple(fill(t) for t in spec.prompts),
                              problems={code: fill(t) for code, t in spec.problems.items()})
                      for spec in self.slots)
        return replace(self, intro=fill(self.intro), greeting=fill(self.greeting), slots=slots,
                       closing=variants(self.closing), transfer=variants(self.transfer), refused=variants(self.refused),
                       values=given)

    @property
    def topic(self) -> str:
        """Where the flow's results are delivered: `result.topic`, or the flow's own name."""
        return self.result.topic if self.result is not None and self.result.topic else self.name

    @property
    def final_statuses(self) -> frozenset[str]:
        """Every outcome the flow can end with: a result in one of them is final and delivered."""
        return frozenset(BUILTIN_OUTCOMES) | {rule.name for rule in self.outcomes}

    def slot(self, name: str) -> SlotSpec:
        for spec in self.slots:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.slots)


def holds(condition: Condition, values: Mapping[str, str]) -> bool:
    for slot, accepted in condition.items():
        value = values.get(slot)
        if not accepted:
            if value:
                return False
        elif value not in accepted:
            return False
    return True


def pick(variants: tuple[Variant, ...], values: Mapping[str, str], source: str | None = None) -> Variant | None:
    for variant in variants:
        if holds(variant.when, values) and (variant.source is None or variant.source == source):
            return variant
    return None


# ---------------------------------------------------------------- formatting


def render(template: str, values: Mapping[str, str], formats: Mapping[str, Format], today: date | None = None) -> str:
    """Fill `{slot}` / `{slot:format}` placeholders (no str.format: flow text is data, not code)."""

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1), "")
        name = match.group(2)
        return format_value(value, formats[name], today) if name and value else value

    return PLACEHOLDER.sub(one, template)


def fill_params(template: str, values: Mapping[str, str], formats: Mapping[str, Format]) -> str:
    """Fill only the placeholders named in `values` (a call's params); the rest stay for `render`."""

    def one(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name not in values:
            return match.group(0)
        value = values[name]
        return format_value(value, formats[fmt]) if fmt and value else value

    return PLACEHOLDER.sub(one, template)


def format_value(value: str, fmt: Format, today: date | None = None) -> str:
    if isinstance(fmt, MapFormat):
        return fmt.mapping.get(value, value)
    if isinstance(fmt, (SayFormat, PrefixFormat)):
        return fmt.say(value)
    if isinstance(fmt, DateFormat):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value
        template = fmt.same_year if today is None or today.year == day.year else fmt.other_year
        return template.replace("{year}", str(day.year)).replace("{month}", str(day.month)).replace("{day}", str(day.day))
    return _format_digits(value, fmt)


def _format_digits(value: str, fmt: DigitsFormat) -> str:
    def words(chars: str) -> str:
        return "".join(fmt.words[int(c)] if c.isdigit() else fmt.x if c.upper() == "X" else c for c in chars)

    if fmt.tail:
        return words(value.replace("-", "")[-fmt.tail:])
    if "-" in value:  # a landline: its own groups (area code, number)
        return fmt.separator.join(words(part) for part in value.split("-"))
    if not fmt.groups:
        return words(value)
    parts, start = [], 0
    for size in fmt.groups:
        if start >= len(value):
            break
        parts.append(value[start:start + size])
        start += size
    if start < len(value):
        parts.append(value[start:])
    return fmt.separator.join(words(part) for part in parts)


# ---------------------------------------------------------------- loading


class _Reader:
    """Typed access to a YAML mapping with error messages that name file and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> FlowError:
        return FlowError(f"{self.source}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        for name in value:
            if isinstance(name, bool):
                raise self.fail(key, f"keys must be text, got {name!r} (YAML reads yes/no/on/off as true/false)")
            if not isinstance(name, str):
                raise self.fail(key, f"keys must be text, got {name!r}")
            if allowed is not None and name not in allowed:
                raise self.fail(f"{key}.{name}", f"unknown key (known: {', '.join(sorted(allowed))})")
        for name in sorted(required):
            if name not in value:
                raise self.fail(f"{key}.{name}", "missing")
        return value

    def text(self, value: Any, key: str, empty_ok: bool = False) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # YAML reads keypad keys such as 1 as numbers
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {_kind(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def texts(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list of texts, got {_kind(value)}")
        return tuple(self.text(item, f"{key}[{i}]") for i, item in enumerate(value))

    def integer(self, value: Any, key: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(type(value), type(value).__name__)


TOP_KEYS = {
    "name", "description", "greeting", "ack", "no_match_prefix", "no_input_prefix", "limits",
    "formats", "slots", "confirm", "closing", "transfer", "records", "start_hints",
    "intro", "result", "outcomes", "refused", "params", "preamble",
}
SLOT_KEYS = {
    "name", "prompts", "prompts_when", "problems", "hints", "dtmf", "optional", "derive", "default",
    "caller_number", "kind", "aliases", "limits", "readback", "description", "hints_files", "recheck",
    "default_by_voice", "role", "options", "confirm", "more_hints", "ask_if", "expect",
    "spell", "spell_again", "repair",
}


def load_flow(path: str | Path) -> Flow:
    """Load and validate one flow file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FlowError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise FlowError(f"{path}: not valid YAML: {e}") from None
    return parse_flow(raw, source=str(path), path=path)


def load_flows(directory: str | Path) -> dict[str, Flow]:
    """Every `*.yaml` flow in a directory, by flow name."""
    flows: dict[str, Flow] = {}
    for file in sorted(Path(directory).glob("*.yaml")):
        flow = load_flow(file)
        if flow.name in flows:
            raise FlowError(f"{file}: name: flow {flow.name!r} is also defined in {flows[flow.name].path}")
        flows[flow.name] = flow
    return flows


def parse_flow(raw: Any, source: str = "<flow>", path: Path | None = None) -> Flow:
    r = _Reader(source)
    top = r.mapping(raw, "(top)", TOP_KEYS, {"name", "slots", "closing", "transfer"})
    name = r.text(top["name"], "name")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise r.fail("name", f"use lower case letters, digits and _ (got {name!r})")

    limits = r.mapping(top.get("limits", {}), "limits", {"max_turns", "no_match", "no_input"})
    max_turns = r.integer(limits.get("max_turns", 16), "limits.max_turns", 2)
    default_limits = Limits(
        r.integer(limits.get("no_match", 3), "limits.no_match"),
        r.integer(limits.get("no_input", 3), "limits.no_input"),
    )

    base = path.parent if path is not None else Path.cwd()
    formats = {
        fname: _parse_format(r, spec, f"formats.{fname}", base)
        for fname, spec in r.mapping(top.get("formats", {}), "formats").items()
    }

    raw_slots = top["slots"]
    if not isinstance(raw_slots, list) or not raw_slots:
        raise r.fail("slots", f"expected a non-empty list of slots, got {_kind(raw_slots)}")
    names: list[str] = []
    for i, item in enumerate(raw_slots):
        slot_name = r.text(r.mapping(item, f"slots[{i}]", None, {"name"})["name"], f"slots[{i}].name")
        if slot_name in names or slot_name == "confirm":
            raise r.fail(f"slots[{i}].name", f"slot {slot_name!r} is defined twice or reserved")
        names.append(slot_name)
    known = set(names)
    params = _parse_params(r, top.get("params", []), known)
    slots = tuple(
        _parse_slot(r, item, f"slots[{i}]({item['name']})", known, formats, default_limits, base, set(params))
        for i, item in enumerate(raw_slots)
    )

    confirmed = [spec.name for spec in slots if spec.confirm]
    raw_confirm = top.get("confirm")
    if raw_confirm is None or raw_confirm == "none":
        confirm = NO_CONFIRM
    else:
        confirm = _parse_confirm(r, raw_confirm, confirmed, known, formats)
    flow = Flow(
        name=name,
        path=path,
        greeting=_check_template(r, r.text(top.get("greeting", ""), "greeting", empty_ok=True), "greeting", known,
                                 formats, set(params)),
        ack=r.text(top.get("ack", ""), "ack", empty_ok=True),
        no_match_prefix=r.texts(top.get("no_match_prefix", ["抱歉，我没听清楚。"]), "no_match_prefix"),
        no_input_prefix=r.texts(top.get("no_input_prefix", ["您还在吗？"]), "no_input_prefix"),
        max_turns=max_turns,
        slots=slots,
        formats=formats,
        confirm=confirm,
        closing=_parse_variants(r, top["closing"], "closing", known, formats, extra=set(params)),
        transfer=_parse_variants(r, top["transfer"], "transfer", known, formats, extra=set(params)),
        records=_parse_records(r, top["records"], known) if top.get("records") is not None else None,
        start_hints=r.flag(top.get("start_hints", True), "start_hints"),
        intro=_check_template(r, r.text(top.get("intro", ""), "intro", empty_ok=True), "intro", known, formats,
                              set(params)),
        result=_parse_result(r, top["result"], known) if top.get("result") is not None else None,
        outcomes=_parse_outcomes(r, top.get("outcomes", []), known),
        refused=(_parse_variants(r, top["refused"], "refused", known, formats, extra=set(params))
                 if top.get("refused") is not None else ()),
        params=params,
        preamble=r.texts(top["preamble"], "preamble") if top.get("preamble") is not None else (),
    )
    variant_keys = [("closing", flow.closing), ("transfer", flow.transfer)] + ([("refused", flow.refused)] if flow.refused else [])
    for key, variants in variant_keys:
        if variants[-1].when:
            raise r.fail(key, "the last text must have no `when` (it is the default)")
    return flow


def _parse_result(r: _Reader, value: Any, known: set[str]) -> ResultSpec:
    spec = r.mapping(value, "result", {"topic", "store"})
    topic = r.text(spec["topic"], "result.topic") if spec.get("topic") is not None else ""
    # as in the settings' [webhooks.<topic>] and GATEWAY_WEBHOOKS_<TOPIC>_URL, which route it
    if topic and not re.fullmatch(r"[a-z][a-z0-9_]*", topic):
        raise r.fail("result.topic", f"use lower case letters, digits and _ (got {topic!r})")
    store: tuple[str, ...] = ()
    if spec.get("store") is not None:
        if not isinstance(spec["store"], list) or not spec["store"]:
            raise r.fail("result.store", f"expected a non-empty list of slot names, got {_kind(spec['store'])}")
        store = tuple(_slot_ref(r, s, f"result.store[{i}]", known) for i, s in enumerate(spec["store"]))
    return ResultSpec(topic, store)


def _parse_outcomes(r: _Reader, value: Any, known: set[str]) -> tuple[OutcomeRule, ...]:
    if not isinstance(value, list):
        raise r.fail("outcomes", f"expected a list of {{name, when}} entries, got {_kind(value)}")
    rules = []
    for i, item in enumerate(value):
        k = f"outcomes[{i}]"
        item = r.mapping(item, k, {"name", "when"}, {"name", "when"})
        name = r.text(item["name"], f"{k}.name")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in BUILTIN_OUTCOMES or name == "in_progress":
            raise r.fail(f"{k}.name", f"a name of its own in lower case letters, digits and _ "
                                      f"(not {', '.join(BUILTIN_OUTCOMES)}; got {name!r})")
        when = _parse_condition(r, item["when"], f"{k}.when", known)
        if not when:
            raise r.fail(f"{k}.when", "needs a condition on slot values")
        rules.append(OutcomeRule(name, when))
    return tuple(rules)


def _parse_format(r: _Reader, spec: Any, key: str, base: Path | None = None) -> Format:
    spec = r.mapping(spec, key, {"groups", "words", "x", "separator", "tail", "date", "other_year", "map",
                                 "prefixes"})
    if "prefixes" in spec:  # a YAML file (relative to the flow): value start -> words
        file = ((base or Path.cwd()) / r.text(spec["prefixes"], f"{key}.prefixes")).resolve()
        try:
            table = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise r.fail(f"{key}.prefixes", f"cannot read {file}: {e}") from None
        if not isinstance(table, dict) or not table:
            raise r.fail(f"{key}.prefixes", f"{file} holds no mapping")
        return PrefixFormat({str(k): str(v) for k, v in table.items()})
    if "map" in spec:
        mapping = r.mapping(spec["map"], f"{key}.map")
        return MapFormat({str(k): r.text(v, f"{key}.map.{k}") for k, v in mapping.items()})
    if "date" in spec:
        same = r.text(spec["date"], f"{key}.date")
        return DateFormat(same, r.text(spec.get("other_year", same), f"{key}.other_year"))
    if "words" not in spec:
        raise r.fail(key, "a format needs `words` (digits), `date` or `map`")
    words = r.text(spec["words"], f"{key}.words")
    if len(words) != 10:
        raise r.fail(f"{key}.words", f"expected ten digit words for 0-9, got {len(words)} characters")
    groups = None
    if "groups" in spec:
        if not isinstance(spec["groups"], list) or not spec["groups"]:
            raise r.fail(f"{key}.groups", "expected a list of group sizes")
        groups = tuple(r.integer(g, f"{key}.groups[{i}]") for i, g in enumerate(spec["groups"]))
    tail = r.integer(spec["tail"], f"{key}.tail") if "tail" in spec else None
    return DigitsFormat(
        groups=groups,
        words=words,
        x=r.text(spec.get("x", "X"), f"{key}.x"),
        separator=r.text(spec.get("separator", " "), f"{key}.separator", empty_ok=True),
        tail=tail,
    )


def _check_template(r: _Reader, text: str, key: str, known: set[str], formats: Mapping[str, Format],
                    extra: set[str] = frozenset()) -> str:
    for match in PLACEHOLDER.finditer(text):
        slot, fmt = match.group(1), match.group(2)
        if slot not in known and slot not in extra:
            raise r.fail(key, f"placeholder {{{slot}}} names no slot of this flow")
        if fmt and fmt not in formats:
            raise r.fail(key, f"placeholder {{{slot}:{fmt}}} names no format under `formats`")
    return text


def _parse_condition(r: _Reader, value: Any, key: str, known: set[str]) -> Condition:
    condition: dict[str, tuple[str, ...]] = {}
    for slot, accepted in r.mapping(value, key).items():
        if slot not in known:
            raise r.fail(f"{key}.{slot}", "names no slot of this flow")
        if accepted is None:
            condition[slot] = ()
        elif isinstance(accepted, list):
            condition[slot] = tuple(r.text(v, f"{key}.{slot}[{i}]") for i, v in enumerate(accepted))
        else:
            condition[slot] = (r.text(accepted, f"{key}.{slot}"),)
    return condition


def _parse_params(r: _Reader, value: Any, known: set[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise r.fail("params", f"expected a list of parameter names, got {_kind(value)}")
    names = []
    for i, item in enumerate(value):
        name = r.text(item, f"params[{i}]")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in known or name in names:
            raise r.fail(f"params[{i}]", f"a name of its own (letters, digits, _; not a slot's), got {name!r}")
        names.append(name)
    return tuple(names)


def _parse_variants(r: _Reader, value: Any, key: str, known: set[str], formats: Mapping[str, Format],
                    text_key: str = "text", empty_ok: bool = False, extra: set[str] = frozenset()) -> tuple[Variant, ...]:
    if isinstance(value, str):
        return (Variant(_check_template(r, r.text(value, key, empty_ok), key, known, formats, extra)),)
    if not isinstance(value, list) or not value:
        raise r.fail(key, f"expected text or a list of {{when, {text_key}}} entries, got {_kind(value)}")
    variants = []
    for i, item in enumerate(value):
        k = f"{key}[{i}]"
        if isinstance(item, str):
            variants.append(Variant(_check_template(r, r.text(item, k, empty_ok), k, known, formats, extra)))
            continue
        item = r.mapping(item, k, {"when", "from", text_key}, {text_key})
        source = None
        if "from" in item:
            source = r.text(item["from"], f"{k}.from")
            if source not in VALUE_SOURCES:
                raise r.fail(f"{k}.from", f"unknown source {source!r} (known: {', '.join(VALUE_SOURCES)})")
        variants.append(Variant(
            text=_check_template(r, r.text(item[text_key], f"{k}.{text_key}", empty_ok), f"{k}.{text_key}", known,
                                 formats, extra),
            when=_parse_condition(r, item.get("when", {}), f"{k}.when", known),
            source=source,
        ))
    return tuple(variants)


def _parse_slot(r: _Reader, item: dict, key: str, known: set[str], formats: Mapping[str, Format],
                default_limits: Limits, base: Path | None = None, params: set[str] = frozenset()) -> SlotSpec:
    name = item["name"]
    r.mapping(item, key, SLOT_KEYS)
    if "prompts" not in item:
        raise r.fail(f"{key}.prompts", "missing")
    prompts = r.texts(item["prompts"], f"{key}.prompts")
    for i, text in enumerate(prompts):
        _check_template(r, text, f"{key}.prompts[{i}]", known, formats, params)

    prompts_when = []
    raw_when = item.get("prompts_when", [])
    if not isinstance(raw_when, list):
        raise r.fail(f"{key}.prompts_when", f"expected a list, got {_kind(raw_when)}")
    for i, entry in enumerate(raw_when):
        k = f"{key}.prompts_when[{i}]"
        entry = r.mapping(entry, k, {"when", "prompts"}, {"when", "prompts"})
        prompts_when.append(PromptSet(_parse_condition(r, entry["when"], f"{k}.when", known),
                                      r.texts(entry["prompts"], f"{k}.prompts")))

    problems = {
        code: r.text(text, f"{key}.problems.{code}")
        for code, text in r.mapping(item.get("problems", {}), f"{key}.problems").items()
    }
    hints = r.texts(item["hints"], f"{key}.hints") if item.get("hints") is not None else None
    if item.get("hints_files") is not None:
        hints = (*(hints or ()), *_hint_files(r, item["hints_files"], f"{key}.hints_files", base or Path.cwd()))
        hints = tuple(dict.fromkeys(hints))
    recheck = recheck_below = None
    if isinstance(item.get("recheck"), dict):
        rc = r.mapping(item["recheck"], f"{key}.recheck", {"say", "below"}, {"say"})
        recheck = r.text(rc["say"], f"{key}.recheck.say")
        if "below" in rc:
            below = rc["below"]
            if isinstance(below, bool) or not isinstance(below, (int, float)) or not 0 < below <= 1:
                raise r.fail(f"{key}.recheck.below", f"expected a confidence in (0, 1], got {below!r}")
            recheck_below = float(below)
    elif item.get("recheck") is not None:
        recheck = r.text(item["recheck"], f"{key}.recheck")
    if recheck is not None and not hints:
        raise r.fail(f"{key}.recheck", "needs `hints` (or `hints_files`): it asks again with them")
    spell, spell_again, repair = (
        _check_template(r, r.text(item[k], f"{key}.{k}"), f"{key}.{k}", known, formats, params)
        if item.get(k) is not None else None
        for k in ("spell", "spell_again", "repair"))
    if spell_again is not None and spell is None:
        raise r.fail(f"{key}.spell_again", "needs `spell`")

    dtmf = None
    if item.get("dtmf") is not None:
        d = r.mapping(item["dtmf"], f"{key}.dtmf", {"after", "prompt", "max_length", "star"}, {"after", "prompt"})
        star = r.text(d.get("star", "*"), f"{key}.dtmf.star")
        dtmf = DtmfSpec(
            after=r.integer(d["after"], f"{key}.dtmf.after"),
            prompt=r.text(d["prompt"], f"{key}.dtmf.prompt"),
            max_length=r.integer(d["max_length"], f"{key}.dtmf.max_length") if "max_length" in d else None,
            star=star,
        )

    derive = None
    if item.get("derive") is not None:
        d = r.mapping(item["derive"], f"{key}.derive", {"from", "value", "when", "equal"})
        if ("from" in d) == ("value" in d):
            raise r.fail(f"{key}.derive", "needs either `from` (a slot to copy) or `value` (a constant)")
        source_slot = value = None
        if "from" in d:
            source_slot = r.text(d["from"], f"{key}.derive.from")
            if source_slot not in known or source_slot == name:
                raise r.fail(f"{key}.derive.from", f"names no other slot of this flow: {source_slot!r}")
        else:
            value = r.text(d["value"], f"{key}.derive.value")
        equal: tuple[str, ...] = ()
        if d.get("equal") is not None:
            if not isinstance(d["equal"], list) or len(d["equal"]) < 2:
                raise r.fail(f"{key}.derive.equal", "expected a list of two or more slots")
            equal = tuple(_slot_ref(r, s, f"{key}.derive.equal[{i}]", known) for i, s in enumerate(d["equal"]))
        derive = Derivation(source_slot, value, _parse_condition(r, d.get("when", {}), f"{key}.derive.when", known), equal)
        if not derive.when and not derive.equal:
            raise r.fail(f"{key}.derive", "needs `when` or `equal`: a condition on other slots")

    default = None
    if item.get("default") is not None:
        default = r.text(item["default"], f"{key}.default")
        if default not in DEFAULT_SOURCES:
            raise r.fail(f"{key}.default", f"unknown default {default!r} (known: {', '.join(DEFAULT_SOURCES)})")

    limits = r.mapping(item.get("limits", {}), f"{key}.limits", {"no_match", "no_input"})
    readback = ()
    if item.get("readback") is not None:
        readback = _parse_variants(r, item["readback"], f"{key}.readback", known, formats, "say", empty_ok=True)

    ask_if = _parse_condition(r, item.get("ask_if", {}), f"{key}.ask_if", known | params)
    if name in ask_if:
        raise r.fail(f"{key}.ask_if.{name}", "a slot's condition cannot name the slot itself")
    expect = None
    if item.get("expect") is not None:
        expect = r.text(item["expect"], f"{key}.expect")
        if expect not in params:
            raise r.fail(f"{key}.expect", f"names no param of this flow: {expect!r} (declare it under `params`)")

    options = r.mapping(item.get("options", {}), f"{key}.options")
    if options and item.get("kind") is None:
        raise r.fail(f"{key}.options", "options are a kind's: give the slot a `kind`")
    return SlotSpec(
        name=name,
        prompts=prompts,
        prompts_when=tuple(prompts_when),
        problems=problems,
        hints=hints,
        dtmf=dtmf,
        optional=r.flag(item.get("optional", False), f"{key}.optional"),
        derive=derive,
        default=default,
        caller_number=r.flag(item.get("caller_number", False), f"{key}.caller_number"),
        kind=r.text(item["kind"], f"{key}.kind") if item.get("kind") is not None else None,
        role=r.text(item["role"], f"{key}.role") if item.get("role") is not None else None,
        options=options,
        confirm=r.flag(item.get("confirm", True), f"{key}.confirm"),
        more_hints=r.texts(item["more_hints"], f"{key}.more_hints") if item.get("more_hints") is not None else (),
        aliases=r.texts(item["aliases"], f"{key}.aliases") if item.get("aliases") is not None else (),
        limits=Limits(
            r.integer(limits.get("no_match", default_limits.no_match), f"{key}.limits.no_match"),
            r.integer(limits.get("no_input", default_limits.no_input), f"{key}.limits.no_input"),
        ),
        readback=readback,
        recheck=recheck,
        recheck_below=recheck_below,
        spell=spell,
        spell_again=spell_again,
        repair=repair,
        default_by_voice=r.flag(item.get("default_by_voice", True), f"{key}.default_by_voice"),
        ask_if=ask_if,
        expect=expect,
    )


_PATTERN_CHARS = frozenset("()[]{}|?*+\\^$")


def _hint_files(r: _Reader, value: Any, key: str, base: Path) -> tuple[str, ...]:
    """Hint phrases from files, paths relative to the flow file: a text file has one phrase a
    line (`#` comments); a YAML dictionary gives every text in it that is not a key (the names,
    aliases and cities of hospitals.yaml, the words of relationships.yaml)."""
    phrases: list[str] = []
    for i, name in enumerate(r.texts(value, key)):
        file = (base / name).resolve()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as e:
            raise r.fail(f"{key}[{i}]", f"cannot read {file}: {e.strerror or e}") from None
        if file.suffix in (".yaml", ".yml"):
            try:
                # words, not the patterns a dictionary may also hold (incident_types.yaml's regexes)
                phrases += [t for t in _leaf_texts(yaml.safe_load(text)) if not _PATTERN_CHARS & set(t)]
            except yaml.YAMLError as e:
                raise r.fail(f"{key}[{i}]", f"{file} is not valid YAML: {e}") from None
        else:
            phrases += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not phrases:
        raise r.fail(key, "the files hold no phrases")
    return tuple(phrases)


def _leaf_texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [t for v in node.values() for t in _leaf_texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _leaf_texts(v)]
    if isinstance(node, (str, int)) and not isinstance(node, bool) and str(node).strip():
        return [str(node).strip()]
    return []


def _parse_confirm(r: _Reader, value: Any, names: list[str], known: set[str], formats: Mapping[str, Format]) -> ConfirmSpec:
    c = r.mapping(value, "confirm", {"intro", "question", "separator", "order", "changed", "which", "item", "hints",
                                     "dtmf", "limit", "unresolved", "yes_no"},
                  {"question", "changed", "which"})
    order = tuple(names)
    if "order" in c:
        if not isinstance(c["order"], list):
            raise r.fail("confirm.order", f"expected a list of slot names, got {_kind(c['order'])}")
        order = tuple(r.text(s, f"confirm.order[{i}]") for i, s in enumerate(c["order"]))
        unknown = [s for s in order if s not in known]
        if unknown:
            raise r.fail("confirm.order", f"names no slot of this flow: {', '.join(unknown)}")
        unconfirmed = [s for s in order if s not in names]
        if unconfirmed:
            raise r.fail("confirm.order", f"names slots with `confirm: false`: {', '.join(unconfirmed)}")
        missing = [s for s in names if s not in order]
        if missing:
            raise r.fail("confirm.order", f"leaves out {', '.join(missing)}")
    changed = _check_template(r, r.text(c["changed"], "confirm.changed"), "confirm.changed", known, formats, {"changes"})
    if "{changes}" not in changed:
        raise r.fail("confirm.changed", "must contain {changes}")
    dtmf_yes = dtmf_no = None
    if c.get("dtmf") is not None:
        # not yes/no: YAML reads those keys as true/false
        d = r.mapping(c["dtmf"], "confirm.dtmf", {"affirm", "deny"}, {"affirm", "deny"})
        dtmf_yes, dtmf_no = r.text(d["affirm"], "confirm.dtmf.affirm"), r.text(d["deny"], "confirm.dtmf.deny")
    for k in ("intro", "question", "which"):
        if isinstance(c.get(k), str):
            _check_template(r, c[k], f"confirm.{k}", known, formats)
    item = ""
    if c.get("item") is not None:
        item = _check_template(r, r.text(c["item"], "confirm.item"), "confirm.item", known, formats, {"item"})
        if "{item}" not in item:
            raise r.fail("confirm.item", "must contain {item}")
    unresolved = ""
    if c.get("unresolved") is not None:
        unresolved = _check_template(r, r.text(c["unresolved"], "confirm.unresolved"), "confirm.unresolved", known,
                                     formats)
    yes_no = ""
    if c.get("yes_no") is not None:
        yes_no = _check_template(r, r.text(c["yes_no"], "confirm.yes_no"), "confirm.yes_no", known, formats)
    return ConfirmSpec(
        intro=r.text(c.get("intro", ""), "confirm.intro", empty_ok=True),
        question=r.text(c["question"], "confirm.question"),
        separator=r.text(c.get("separator", "，"), "confirm.separator", empty_ok=True),
        order=order,
        changed=changed,
        which=r.text(c["which"], "confirm.which"),
        hints=r.texts(c["hints"], "confirm.hints") if c.get("hints") is not None else None,
        dtmf_yes=dtmf_yes,
        dtmf_no=dtmf_no,
        limit=r.integer(c.get("limit", 4), "confirm.limit"),
        item=item,
        unresolved=unresolved,
        yes_no=yes_no,
    )


def _parse_records(r: _Reader, value: Any, known: set[str]) -> RecordSpec:
    spec = r.mapping(value, "records", {"query", "take", "self", "holder", "sounds_like"}, {"query", "take"})
    query = {}
    for arg, slots in r.mapping(spec["query"], "records.query", {"id_number", "phone", "name"}).items():
        slots = slots if isinstance(slots, list) else [slots]
        query[arg] = tuple(_slot_ref(r, slot, f"records.query.{arg}", known) for slot in slots)
        if not query[arg]:
            raise r.fail(f"records.query.{arg}", "names no slot")
    take = _slot_fields(r, spec["take"], "records.take", known)
    self_rule = None
    if spec.get("self") is not None:
        s = r.mapping(spec["self"], "records.self", {"when", "same_person", "take", "suggest"}, {"when"})
        self_rule = SelfRule(
            when=_parse_condition(r, s["when"], "records.self.when", known),
            same_person=_same_person(r, s.get("same_person", {}), "records.self.same_person", known),
            take=_slot_fields(r, s.get("take", {}), "records.self.take", known),
            suggest=_slot_fields(r, s.get("suggest", {}), "records.self.suggest", known),
        )
        if not self_rule.when or any(len(v) != 1 for v in self_rule.when.values()):
            raise r.fail("records.self.when", "must give one value per slot (they are set when the caller is the insured)")
    holder_rule = None
    if spec.get("holder") is not None:
        h = r.mapping(spec["holder"], "records.holder", {"same_person", "suggest"}, {"same_person"})
        holder_rule = HolderRule(
            same_person=_same_person(r, h["same_person"], "records.holder.same_person", known),
            suggest=_slot_fields(r, h.get("suggest", {}), "records.holder.suggest", known),
        )
        if not holder_rule.same_person:
            raise r.fail("records.holder.same_person", "names no record field")
    sounds_like = {}
    for slot, rec_fields in r.mapping(spec.get("sounds_like", {}), "records.sounds_like").items():
        _slot_ref(r, slot, f"records.sounds_like.{slot}", known)
        rec_fields = r.texts(rec_fields, f"records.sounds_like.{slot}")
        for rec_field in rec_fields:
            if rec_field not in RECORD_FIELDS:
                raise r.fail(f"records.sounds_like.{slot}", f"no such record field {rec_field!r} (known: {', '.join(RECORD_FIELDS)})")
        sounds_like[slot] = rec_fields
    return RecordSpec(query=query, take=take, self_rule=self_rule, sounds_like=sounds_like, holder_rule=holder_rule)


def _same_person(r: _Reader, value: Any, key: str, known: set[str]) -> dict[str, str]:
    """record field -> slot, both checked."""
    same = {}
    for rec_field, slot in r.mapping(value, key).items():
        if rec_field not in RECORD_FIELDS:
            raise r.fail(f"{key}.{rec_field}", f"no such record field (known: {', '.join(RECORD_FIELDS)})")
        same[rec_field] = _slot_ref(r, slot, f"{key}.{rec_field}", known)
    return same


def _slot_ref(r: _Reader, value: Any, key: str, known: set[str]) -> str:
    slot = r.text(value, key)
    if slot not in known:
        raise r.fail(key, f"names no slot of this flow: {slot!r}")
    return slot


def _slot_fields(r: _Reader, value: Any, key: str, known: set[str]) -> dict[str, str]:
    out = {}
    for slot, rec_field in r.mapping(value, key).items():
        if slot not in known:
            raise r.fail(f"{key}.{slot}", "names no slot of this flow")
        rec_field = r.text(rec_field, f"{key}.{slot}")
        if rec_field not in RECORD_FIELDS:
            raise r.fail(f"{key}.{slot}", f"no such record field {rec_field!r} (known: {', '.join(RECORD_FIELDS)})")
        out[slot] = rec_field
    return out
