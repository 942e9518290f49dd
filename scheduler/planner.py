"""Which reminder rows should exist: campaigns x subjects x now, pure.

Each (campaign, subject, cycle, step, channel) has one dedupe key, so planning twice plans
nothing new (the store inserts with ON CONFLICT DO NOTHING). A step is planned when it is due
within the horizon and its time has not passed (it expires when the campaign's next step is
due); it goes to the first of its channels that can reach the subject (an address, no refused
consent), the rest are for escalation (`next_channel`). A step nobody can be reached on is
planned as skipped, with the reason, so the history says why nothing was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from scheduler.campaigns import Campaign, Step

TASK_RECIPIENT = "agents"  # a task for a human agent has no address


@dataclass(frozen=True)
class Subject:
    """Someone a campaign reminds, about one thing, as read from the database by the store."""

    source: str  # policies, missing_documents, survey
    id: str  # policy number, claim (flow result) id, survey id
    anchor: date  # expiry date, documents first requested, invitation day
    cycle: str  # what one round of the campaign is about (e.g. the expiry date)
    addresses: Mapping[str, str]  # channel kind -> phone number / openid
    consent: Mapping[str, bool | None] = field(default_factory=dict)  # sms, wechat, voice, marketing
    values: Mapping[str, str] = field(default_factory=dict)  # template values


@dataclass(frozen=True)
class Planned:
    dedupe_key: str
    campaign: str
    step: str
    channel_index: int
    subject: str
    cycle: str
    channel: str
    provider: str
    recipient: str
    purpose: str
    context: Mapping[str, Any]
    due_at: datetime
    expires_at: datetime | None
    status: str = "due"  # or skipped
    skip_reason: str | None = None


def dedupe_key(campaign: str, subject: str, cycle: str, step: str, channel_index: int, provider: str) -> str:
    return f"{campaign}|{subject}|{cycle}|{step}|{channel_index}:{provider}"


def reachable(kind: str, purpose: str, addresses: Mapping[str, str], consent: Mapping[str, Any]) -> str | None:
    """Why `kind` cannot be used for this subject (None: it can)."""
    if kind == "task":
        return None
    if not addresses.get(kind):
        return "no_address"
    if consent.get(kind) is False or (purpose == "marketing" and consent.get("marketing") is False):
        return "no_consent"
    return None


def next_channel(step: Step, after: int, purpose: str, context: Mapping[str, Any]) -> tuple[int, str | None]:
    """The first channel of `step` after index `after` that can reach the subject: (index, None);
    (-1, reason of the last one tried) when none can."""
    reason = "no_channel"
    for index in range(after + 1, len(step.channels)):
        reason = reachable(step.channels[index].kind, purpose, context.get("addresses", {}), context.get("consent", {}))
        if reason is None:
            return index, None
    return -1, reason


def planned_row(campaign: Campaign, step: Step, step_name: str, index: int, subject: str, cycle: str,
                context: Mapping[str, Any], due_at: datetime, expires_at: datetime | None) -> Planned:
    channel = step.channels[index]
    recipient = TASK_RECIPIENT if channel.kind == "task" else context["addresses"][channel.kind]
    return Planned(dedupe_key(campaign.name, subject, cycle, step_name, index, channel.provider), campaign.name,
                   step_name, index, subject, cycle, channel.kind, channel.provider, recipient, campaign.purpose,
                   context, due_at, expires_at)


def _occurrences(campaign: Campaign) -> list[tuple[int, timedelta]]:
    if campaign.repeat is None:
        return [(1, timedelta(0))]
    return [(k + 1, campaign.repeat.every * k) for k in range(campaign.repeat.max)]


def _when(step: Step, occurrence: int, values: Mapping[str, str]) -> bool:
    if occurrence < int(step.when.get("occurrence_at_least", 1)):
        return False
    for name, wanted in (step.when.get("values") or {}).items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if values.get(name) not in [str(a) for a in allowed]:
            return False
    return True


def schedule(campaign: Campaign, subject: Subject, zone: ZoneInfo) -> list[tuple[Step, str, int, datetime, datetime]]:
    """Every (step, step name, occurrence, due, expires) of the campaign for a subject, in time order."""
    times = []
    for occurrence, shift in _occurrences(campaign):
        for step in campaign.steps:
            day = subject.anchor + shift + step.offset
            due = datetime.combine(day, step.at, zone)
            name = step.name if campaign.repeat is None else f"{step.name}#{occurrence}"
            times.append((step, name, occurrence, due))
    times.sort(key=lambda t: t[3])
    out = []
    for i, (step, name, occurrence, due) in enumerate(times):
        # A step is worth sending until the next one is due; the last for a day, or up to the
        # anchor's end (a renewal reminder is useful until the policy lapses).
        expires = times[i + 1][3] if i + 1 < len(times) else \
            max(due + timedelta(days=1), datetime.combine(subject.anchor + timedelta(days=1), time(0), zone))
        out.append((step, name, occurrence, due, max(expires, due + timedelta(hours=1))))
    return out


def plan(campaigns: Iterable[Campaign], subjects: Iterable[Subject], now: datetime, zone: ZoneInfo,
         horizon: timedelta = timedelta(days=1), catch_up: timedelta = timedelta(days=1)) -> list[Planned]:
    """The rows that should exist for steps due before now + horizon and not expired. A step that
    was due more than `catch_up` ago is not planned late (a subject imported at T-16 does not get
    the T-30 reminder); rows planned in time are still sent until they expire."""
    by_source: dict[str, list[Campaign]] = {}
    for campaign in campaigns:
        by_source.setdefault(campaign.source, []).append(campaign)
    rows: list[Planned] = []
    for subject in subjects:
        for campaign in by_source.get(subject.source, ()):
            for step, name, occurrence, due, expires in schedule(campaign, subject, zone):
                if due >= now + horizon or expires <= now or due < now - catch_up:
                    continue
                if not _when(step, occurrence, subject.values):
                    continue
                values = {**subject.values, "days_left": str((subject.anchor - due.date()).days)}
                context = {"addresses": dict(subject.addresses), "consent": dict(subject.consent), "values": values}
                index, reason = next_channel(step, -1, campaign.purpose, context)
                if index < 0:
                    first = step.channels[0]
                    rows.append(Planned(
                        dedupe_key(campaign.name, subject.id, subject.cycle, name, 0, first.provider), campaign.name,
                        name, 0, subject.id, subject.cycle, first.kind, first.provider,
                        subject.addresses.get(first.kind) or "-", campaign.purpose, context, due, expires,
                        "skipped", reason))
                else:
                    rows.append(planned_row(campaign, step, name, index, subject.id, subject.cycle, context, due, expires))
    return rows


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(text: str, values: Mapping[str, Any]) -> str:
    """A template format string filled with the subject's values (a missing value is empty)."""
    return text.format_map(_Values(values))
