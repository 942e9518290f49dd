"""Campaigns as data: config/campaigns/*.yaml read into typed steps, with errors naming file and path.

A campaign reminds the subjects of one source (policies before they expire, claims that lack
documents, survey invitations) in steps: each step is due at an offset from the subject's
anchor date, at a local time of day, on the first of its channels that can reach the
subject; `escalate` moves on to the step's next channel when the message was not delivered
(or read) within a window. Exit conditions stop every reminder of a subject; they are
checked again when a reminder is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Mapping

import yaml

CHANNEL_KINDS = ("sms", "wechat", "voice", "task")  # task: a to-do for a human agent (outbox)
PURPOSES = ("service", "marketing")
SOURCES = ("policies", "missing_documents", "survey")
EXITS = ("renewed", "documents_received", "opted_out", "survey_answered")
ESCALATE_UNLESS = ("delivered", "read")
_DURATION = re.compile(r"^\s*(-?\d+)\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class CampaignError(ValueError):
    """A campaign file that cannot be used: the message names the file and the path in it."""


@dataclass(frozen=True)
class Template:
    code: str  # the provider's template code / id
    params: Mapping[str, str]  # provider variable -> format string over the subject's values
    text: str  # the message as read or heard, a format string over the subject's values


@dataclass(frozen=True)
class ChannelStep:
    kind: str  # sms, wechat, voice, task
    provider: str  # a name in the channel registry ("outbox" for task)
    template: Template
    extra: Mapping[str, Any] = field(default_factory=dict)  # channel options (voice: flow, machine policy)


@dataclass(frozen=True)
class Escalation:
    unless: str  # delivered or read
    within: timedelta


@dataclass(frozen=True)
class Step:
    name: str
    offset: timedelta  # from the anchor date (and the repeat occurrence)
    at: time  # local time of day it is due
    channels: tuple[ChannelStep, ...]
    escalate: Escalation | None = None
    when: Mapping[str, Any] = field(default_factory=dict)  # occurrence_at_least, values: {name: value or [values]}


@dataclass(frozen=True)
class Repeat:
    every: timedelta
    max: int


@dataclass(frozen=True)
class Campaign:
    name: str
    purpose: str
    source: str
    steps: tuple[Step, ...]
    exit: tuple[str, ...] = ("opted_out",)
    repeat: Repeat | None = None
    description: str = ""
    path: str = ""

    def step(self, name: str) -> Step:
        base = name.split("#", 1)[0]  # repeated steps are named step#occurrence
        for step in self.steps:
            if step.name == base:
                return step
        raise KeyError(f"campaign {self.name} has no step {base!r}")


def parse_duration(value: Any, where: str) -> timedelta:
    if isinstance(value, int):
        return timedelta(days=value)
    match = _DURATION.match(str(value))
    if not match:
        raise CampaignError(f"{where}: {value!r} is not a duration (e.g. 30m, 24h, -15d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise CampaignError(f"{where}: {value!r} is not a time of day (HH:MM)") from None


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise CampaignError(f"{where}.{key}: missing")
    return data[key]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CampaignError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _known(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise CampaignError(f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(allowed))})")


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise CampaignError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _template(data: Any, where: str) -> Template:
    data = _mapping(data, where)
    _known(data, {"code", "params", "text"}, where)
    params = _mapping(data.get("params") or {}, f"{where}.params")
    template = Template(str(data.get("code") or ""), {str(k): str(v) for k, v in params.items()},
                        str(_require(data, "text", where)))
    for name, fmt in [("text", template.text), *((f"params.{k}", v) for k, v in template.params.items())]:
        try:
            fmt.format_map(_Probe())
        except (ValueError, IndexError) as exc:
            raise CampaignError(f"{where}.{name}: {fmt!r} is not a format string ({exc})") from None
    return template


class _Probe(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _channel(data: Any, where: str) -> ChannelStep:
    data = _mapping(data, where)
    _known(data, {"channel", "provider", "template", "extra"}, where)
    kind = _choice(_require(data, "channel", where), CHANNEL_KINDS, f"{where}.channel")
    provider = str(data.get("provider") or ("outbox" if kind == "task" else ""))
    if not provider:
        raise CampaignError(f"{where}.provider: missing (a provider name of the channel registry)")
    return ChannelStep(kind, provider, _template(_require(data, "template", where), f"{where}.template"),
                       dict(_mapping(data.get("extra") or {}, f"{where}.extra")))


def _step(data: Any, where: str) -> Step:
    data = _mapping(data, where)
    _known(data, {"name", "offset", "at", "channels", "escalate", "when"}, where)
    name = str(_require(data, "name", where))
    if not _NAME.match(name):
        raise CampaignError(f"{where}.name: {name!r}: lower-case letters, digits and underscores")
    channels = data.get("channels")
    if not isinstance(channels, list) or not channels:
        raise CampaignError(f"{where}.channels: expected a non-empty list")
    escalate = None
    if data.get("escalate") is not None:
        esc = _mapping(data["escalate"], f"{where}.escalate")
        _known(esc, {"unless", "within"}, f"{where}.escalate")
        escalate = Escalation(_choice(esc.get("unless", "delivered"), ESCALATE_UNLESS, f"{where}.escalate.unless"),
                              parse_duration(_require(esc, "within", f"{where}.escalate"), f"{where}.escalate.within"))
    when = dict(_mapping(data.get("when") or {}, f"{where}.when"))
    _known(when, {"occurrence_at_least", "values"}, f"{where}.when")
    return Step(name, parse_duration(data.get("offset", 0), f"{where}.offset"), _time(data.get("at", "10:00"), f"{where}.at"),
                tuple(_channel(c, f"{where}.channels[{i}]") for i, c in enumerate(channels)), escalate, when)


def parse_campaign(data: Any, path: str) -> Campaign:
    where = path
    data = _mapping(data, where)
    _known(data, {"campaign", "description", "purpose", "source", "exit", "repeat", "steps"}, where)
    name = str(_require(data, "campaign", where))
    if not _NAME.match(name):
        raise CampaignError(f"{where}.campaign: {name!r}: lower-case letters, digits and underscores")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise CampaignError(f"{where}.steps: expected a non-empty list")
    parsed = tuple(_step(s, f"{where}.steps[{i}]") for i, s in enumerate(steps))
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        raise CampaignError(f"{where}.steps: step names repeat ({', '.join(names)})")
    exits = data.get("exit") or ["opted_out"]
    if not isinstance(exits, list):
        raise CampaignError(f"{where}.exit: expected a list")
    repeat = None
    if data.get("repeat") is not None:
        rep = _mapping(data["repeat"], f"{where}.repeat")
        _known(rep, {"every", "max"}, f"{where}.repeat")
        every = parse_duration(_require(rep, "every", f"{where}.repeat"), f"{where}.repeat.every")
        count = rep.get("max", 1)
        if not isinstance(count, int) or count < 1 or every <= timedelta(0):
            raise CampaignError(f"{where}.repeat: every must be positive and max a whole number >= 1")
        repeat = Repeat(every, count)
    return Campaign(
        name=name,
        purpose=_choice(data.get("purpose", "service"), PURPOSES, f"{where}.purpose"),
        source=_choice(_require(data, "source", where), SOURCES, f"{where}.source"),
        steps=parsed,
        exit=tuple(_choice(e, EXITS, f"{where}.exit[{i}]") for i, e in enumerate(exits)),
        repeat=repeat,
        description=str(data.get("description") or ""),
        path=path,
    )


def load_campaigns(folder: Path) -> dict[str, Campaign]:
    """Every *.yaml in `folder` (none: no campaigns), by name; a bad file raises CampaignError."""
    found: dict[str, Campaign] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CampaignError(f"{path}: not valid YAML: {exc}") from None
        campaign = parse_campaign(data, str(path))
        if campaign.name in found:
            raise CampaignError(f"{path}.campaign: {campaign.name!r} is also defined in {found[campaign.name].path}")
        found[campaign.name] = campaign
    return found
