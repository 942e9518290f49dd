"""The scheduler's thin async shell: plan, reconcile, escalate, claim and send, one tick at a time.

Every decision is made by pure code (planner, rules, lifecycle) with the time passed in; this
module reads and writes rows (scheduler.store) and calls channels. A send is two-phase: the
claim commits the row as `sending` with a lease before the network call; the channel's answer
is committed after it. A row whose lease ran out while `sending` (the process died, or the
provider's answer never came) is reconciled, never resent blindly: a channel that can look a
send up by our delivery id (`lookup`) says whether it was sent; otherwise receipts are waited
for (`reconcile_wait_s`) and the row then goes to the dead letters for a human.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.privacy import mask_number
from gateway.storage import surveys as survey_store
from gateway.storage.database import utcnow
from gateway.storage.survey_service import SurveyLinks
from scheduler import planner, store
from scheduler.campaigns import Campaign
from scheduler.channels.base import Accepted, Channel, OutboundMessage, SendError
from scheduler.lifecycle import Change, Decision, Facts, Send, Stop, after_accepted, after_error, decide, needs_escalation
from scheduler.metrics import ReminderMetrics
from scheduler.rules import Rules, TokenBucket, with_opt_out_line
from scheduler.sink import ReminderSink, step_of

log = logging.getLogger(__name__)


class Lookup(Protocol):
    """Optional on a channel: was the send with this delivery id accepted? (None: never received)."""

    async def lookup(self, delivery_id: str) -> Accepted | None: ...


@dataclass(frozen=True)
class DispatchOptions:
    batch: int = 500  # rows claimed per send transaction
    concurrency: int = 64  # sends in flight
    lease_s: float = 120.0  # a claim's lease: longer than any send takes
    max_attempts: int = 5  # retryable errors, then dead
    retry_base_s: float = 30.0
    reconcile_wait_s: float = 900.0  # an unknown send without a lookup waits this long for receipts
    horizon: timedelta = timedelta(days=1)  # how far ahead rows are planned
    tick_budget_s: float = 30.0  # a tick sends until nothing is due or this much time passed
    rates: Mapping[str, float] = field(default_factory=dict)  # provider -> sends a second


@dataclass
class TickReport:
    planned: int = 0
    sent: int = 0
    reconciled: int = 0
    escalated: int = 0
    decided: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, engine: AsyncEngine, campaigns: Mapping[str, Campaign], channels: Mapping[str, Channel],
                 rules: Rules, *, instance_id: str, options: DispatchOptions = DispatchOptions(),
                 clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None,
                 metrics: ReminderMetrics | None = None, survey_links: SurveyLinks | None = None) -> None:
        self.engine = engine
        self.campaigns = dict(campaigns)
        self.channels = dict(channels)
        self.rules = rules
        self.instance_id = instance_id
        self.options = options
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics or ReminderMetrics()
        self.buckets = {name: TokenBucket(rate) for name, rate in options.rates.items() if rate > 0}
        self.exits = {name: c.exit for name, c in self.campaigns.items()}
        # Survey campaigns: the links' key and base URL (links are computed at send time, not stored).
        self.survey_links = survey_links
        self._warned: set[str] = set()
        self.stopping = False  # set by the service: the tick ends after the batch in flight
        self.sink = ReminderSink(engine, self.campaigns, self.next_row, clock, self._count_row)
        if engine.dialect.name == "sqlite":
            log.warning("reminders on SQLite: run exactly one scheduler process on this database "
                        "(several schedulers need PostgreSQL)")

    # Pure glue -------------------------------------------------------------
    def _count_row(self, row: Mapping[str, Any], status: str) -> None:
        self.metrics.count(str(row["campaign"]), str(row["channel"]), status)

    def next_row(self, row: Mapping[str, Any], now: datetime) -> planner.Planned | None:
        """The step's next channel for a row that did not get through (due now)."""
        campaign = self.campaigns.get(row["campaign"])
        step = step_of(self.campaigns, row)
        if campaign is None or step is None:
            return None
        index, _ = planner.next_channel(step, row["channel_index"], row["purpose"], row["context"])
        if index < 0:
            return None
        return planner.planned_row(campaign, step, row["step"], index, row["subject"], row["cycle"], row["context"],
                                   now, row["expires_at"])

    def _decide(self, now: datetime) -> Callable[[dict[str, Any], Facts], Decision]:
        def check(row: dict[str, Any], facts: Facts) -> Decision:
            if row["channel"] != "task" and row["provider"] not in self.channels:
                if row["provider"] not in self._warned:
                    self._warned.add(row["provider"])
                    log.warning("no channel %r is configured: its reminders go to the step's next channel",
                                row["provider"])
                return Stop("skipped", "no_channel", escalate=True)
            if row["campaign"] not in self.campaigns:
                return Stop("skipped", "no_campaign")
            if self.survey_links is None and row["context"].get("values", {}).get("survey_salt"):
                return Stop("skipped", "no_survey_link_key")
            return decide(row["channel"], row["due_at"], row["expires_at"], facts, self.rules, now)
        return check

    def _take(self, row: dict[str, Any]) -> bool:
        bucket = self.buckets.get(row["provider"])
        return bucket.take(time.monotonic()) if bucket else True

    def message(self, row: Mapping[str, Any]) -> OutboundMessage:
        step = step_of(self.campaigns, row)
        assert step is not None
        channel = step.channels[row["channel_index"]]
        values = row["context"].get("values", {})
        if self.survey_links is not None and values.get("survey_salt"):
            values = {**values, "link": self.survey_links.url(values["survey_salt"])}
        text = planner.render(channel.template.text, values)
        if row["purpose"] == "marketing" and row["channel"] == "sms":
            text = with_opt_out_line(text)
        return OutboundMessage(
            delivery_id=row["delivery_id"], kind=row["channel"], to=row["recipient"], template=channel.template.code,
            params={k: planner.render(v, values) for k, v in channel.template.params.items()}, text=text,
            purpose=row["purpose"], extra={**channel.extra, "campaign": row["campaign"], "step": row["step"]})

    def _task(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """What a task for a human agent carries besides the row: its template code and text."""
        message = self.message(row)
        return {"template": message.template, "text": message.text, "params": dict(message.params)}

    # Ticks -------------------------------------------------------------------
    async def plan(self, now: datetime | None = None) -> int:
        """Insert the rows the campaigns call for now (idempotent by dedupe key)."""
        now = now or self.clock()
        today = self.rules.local_day(now)
        sources = {c.source for c in self.campaigns.values()}
        leads = [-s.offset for c in self.campaigns.values() if c.source == "policies" for s in c.steps]
        subjects: list[planner.Subject] = []
        survey_subjects: list[planner.Subject] = []
        if "survey" in sources:
            await survey_store.expire_due(self.engine, now)  # past their deadline: expired before planning
        async with self.engine.connect() as conn:
            if "policies" in sources:
                lead = max(leads + [timedelta(0)])
                subjects += await store.policy_subjects(conn, today, today + lead + self.options.horizon + timedelta(days=1))
            if "missing_documents" in sources:
                subjects += await store.claim_subjects(conn, self.rules.zone)
            if "survey" in sources:
                survey_subjects = await store.survey_subjects(conn, self.rules.zone, now)
        rows = planner.plan([c for c in self.campaigns.values() if c.source != "survey"], subjects, now,
                            self.rules.zone, self.options.horizon)
        rows += self._survey_rows(survey_subjects, now, self.options.horizon)
        added = await store.insert_planned(self.engine, rows, now)
        if added:
            log.info("planned %d reminders", added)
        return added

    def _survey_rows(self, subjects: list[planner.Subject], now: datetime, horizon: timedelta) -> list[planner.Planned]:
        """Survey campaigns' rows: a step with a positive offset counts from the invitation day, one
        with a negative offset back from the deadline's day (-3d: three days before it); no row is
        due at or after the deadline, and every row expires at the deadline at the latest."""
        rows: list[planner.Planned] = []
        campaigns = [c for c in self.campaigns.values() if c.source == "survey"]
        keys = sorted({k for c in campaigns for s in c.steps for k in (s.when.get("values") or {})})
        groups: dict[tuple[str, ...], list[planner.Subject]] = {}
        for subject in subjects:
            groups.setdefault(tuple(str(subject.values.get(k, "")) for k in keys), []).append(subject)
        for campaign in campaigns:
            for group in groups.values():
                # Only the steps meant for these subjects (`when`: e.g. the invitation's channel), so
                # that a step for other subjects due at the same time does not end this one's validity.
                fitting = [s for s in campaign.steps if planner._when(s, 1, group[0].values)]
                for steps, from_deadline in (([s for s in fitting if s.offset >= timedelta(0)], False),
                                             ([s for s in fitting if s.offset < timedelta(0)], True)):
                    if not steps:
                        continue
                    part = dataclasses.replace(campaign, steps=tuple(steps))
                    anchored = [dataclasses.replace(s, anchor=datetime.fromisoformat(s.values["deadline_at"])
                                                    .astimezone(self.rules.zone).date()) if from_deadline else s
                                for s in group]
                    rows += planner.plan([part], anchored, now, self.rules.zone, horizon)
        out = []
        for p in rows:
            deadline = datetime.fromisoformat(p.context["values"]["deadline_at"])
            if p.due_at >= deadline:
                continue
            out.append(dataclasses.replace(p, expires_at=min(p.expires_at, deadline) if p.expires_at else deadline))
        return out

    async def _record_survey_sends(self, rows: list[dict[str, Any]], accepted: list[tuple[int, str | None, Any]],
                                   now: datetime) -> None:
        """A survey invitation's message accepted by the provider: a `sent` event on its audit trail."""
        by_id = {r["id"]: r for r in rows}
        for rid, provider_id, _ in accepted:
            row = by_id[rid]
            invitation_id = row["context"].get("values", {}).get("invitation_id")
            if not invitation_id or not row["context"].get("values", {}).get("survey_salt"):
                continue
            try:
                await survey_store.add_event(self.engine, invitation_id, "sent", {
                    "campaign": row["campaign"], "step": row["step"], "channel": row["channel"],
                    "provider": row["provider"], "provider_id": provider_id, "delivery_id": row["delivery_id"]},
                    now=now)
            except Exception:  # noqa: BLE001 - the send stands; its trail entry is what is missing
                log.exception("survey invitation %s: the sent event was not recorded", invitation_id)

    async def dispatch_once(self) -> tuple[int, dict[str, int]]:
        """One claim and its sends; how many rows were claimed and what was decided."""
        now = self.clock()
        claimed = await store.claim(
            self.engine, now=now, limit=self.options.batch, lease_s=self.options.lease_s, instance=self.instance_id,
            exits=self.exits, decide=self._decide(now), capped=lambda kind: bool(self.rules.caps_per_day.get(kind)),
            day=self.rules.day_bounds(now), take=self._take, escalate=self.next_row, task=self._task)
        for (campaign, channel, status), n in claimed.statuses.items():
            self.metrics.count(campaign, channel, status, n)
        if claimed.rows:
            await self._send_all(claimed.rows)
        return sum(claimed.decided.values()), claimed.decided

    async def _send_all(self, rows: list[dict[str, Any]]) -> None:
        gate = asyncio.Semaphore(self.options.concurrency)
        accepted: list[tuple[int, str | None, datetime | None]] = []
        changes: list[tuple[dict[str, Any], Change]] = []

        async def one(row: dict[str, Any]) -> None:
            async with gate:
                channel = self.channels[row["provider"]]
                try:
                    result = await channel.send(self.message(row))
                except SendError as exc:
                    self.metrics.count_error(exc.provider, exc.code)
                    changes.append((row, after_error(exc, row["attempts"], self.options.max_attempts,
                                                     self.options.retry_base_s, self.rng.random(), self.clock())))
                    return
                except Exception as exc:  # noqa: BLE001 - a channel bug: the send may have gone out
                    log.exception("channel %s raised on a send", row["provider"])
                    err = SendError(row["provider"], "exception", f"{type(exc).__name__}: {exc}", maybe_sent=True)
                    changes.append((row, after_error(err, row["attempts"], self.options.max_attempts,
                                                     self.options.retry_base_s, self.rng.random(), self.clock())))
                    return
                step = step_of(self.campaigns, row)
                escalate_at = self.clock() + step.escalate.within if step is not None and step.escalate else None
                accepted.append((row["id"], result.provider_id, escalate_at))

        await asyncio.gather(*(one(row) for row in rows))
        now = self.clock()
        await store.accept_many(self.engine, accepted, now)
        await self._record_survey_sends(rows, accepted, now)
        by_id = {r["id"]: r for r in rows}
        for rid, _, _ in accepted:
            self._count_row(by_id[rid], "accepted")
        await store.apply_changes(self.engine, changes, now, escalate=self.next_row)
        for row, change in changes:
            self._count_row(row, str(change.values.get("status")))

    async def reconcile(self) -> int:
        """Rows whose lease expired while sending: settled by lookup or receipts, never resent blindly."""
        now = self.clock()
        rows = await store.expired_leases(self.engine, now)
        changes: list[tuple[dict[str, Any], Change]] = []
        for row in rows:
            channel = self.channels.get(row["provider"])
            lookup = getattr(channel, "lookup", None)
            if lookup is not None:
                try:
                    found = await lookup(row["delivery_id"])
                except SendError as exc:
                    log.warning("lookup of reminder %s failed (%s); trying again later", row["id"], exc)
                    continue
                if found is not None:
                    changes.append((row, after_accepted(found, step_of(self.campaigns, row), now)))
                else:  # the provider never got it: sending it is no duplicate
                    changes.append((row, Change({"status": "due", "lease_until": None, "leased_by": None,
                                                 "attempts": max(row["attempts"] - 1, 0)},
                                                "reconciled: the provider never received it; due again")))
            elif row["lease_until"] + timedelta(seconds=self.options.reconcile_wait_s) <= now:
                changes.append((row, Change({"status": "dead", "lease_until": None, "final_at": now,
                                             "last_error": "send outcome unknown and no receipt came; not resent"},
                                            "dead: outcome unknown")))
        await store.apply_changes(self.engine, changes, now, escalate=self.next_row)
        if changes:
            log.info("reconciled %d reminders left sending", len(changes))
        return len(changes)

    async def escalate(self) -> int:
        now = self.clock()
        candidates = await store.escalation_candidates(self.engine, now)
        rows = [r for r in candidates
                if needs_escalation(r["status"], r["escalate_at"], r["delivered_at"], r["read_at"],
                                    step_of(self.campaigns, r), now) and self.next_row(r, now) is not None]
        # The last reachable channel of its step (or read in time): nothing to escalate to.
        await store.clear_escalation(self.engine, [r["id"] for r in candidates if r not in rows])
        if rows:
            await store.mark_escalated(self.engine, rows, now, self.next_row)
            for row in rows:
                self._count_row(row, "escalated")
        return len(rows)

    async def tick(self, *, plan: bool = True) -> TickReport:
        report = TickReport()
        if plan:
            report.planned = await self.plan()
        report.reconciled = await self.reconcile()
        report.escalated = await self.escalate()
        started = time.monotonic()
        while True:
            claimed, decided = await self.dispatch_once()
            report.sent += decided.get("sending", 0)
            for key, n in decided.items():
                report.decided[key] = report.decided.get(key, 0) + n
            stuck = set(decided) <= {"rate", "busy"}  # only rows left for later: nothing more to do now
            # Until a claim finds nothing: rows a claim escalated are due at once.
            if claimed == 0 or stuck or self.stopping or time.monotonic() - started > self.options.tick_budget_s:
                break
        self.metrics.ticks += 1
        if report.sent:
            log.info("tick: %d sent, %s", report.sent, report.decided)
        return report

    async def dry_run(self, day: date) -> dict[str, list[dict[str, Any]]]:
        """Who would be reminded on `day` (local), on which channel, and who is skipped and why.

        Rows already planned for that day and rows the campaigns would plan are judged as the send
        transaction would judge them at their due time with what the database says now (a
        reminder deferred past that day is named with the reason, e.g. quiet_hours or cap)."""
        start = datetime.combine(day, datetime.min.time(), self.rules.zone)
        end = start + timedelta(days=1)
        existing = await store.due_between(self.engine, start, end)
        subjects: list[planner.Subject] = []
        async with self.engine.connect() as conn:
            leads = [-s.offset for c in self.campaigns.values() if c.source == "policies" for s in c.steps]
            subjects += await store.policy_subjects(conn, day, day + max(leads + [timedelta(0)]) + timedelta(days=2))
            subjects += await store.claim_subjects(conn, self.rules.zone)
            survey_subjects = await store.survey_subjects(conn, self.rules.zone, start)
        known = {r["dedupe_key"] for r in existing}
        async with self.engine.connect() as conn:
            paused = await store.paused_campaigns(conn)
        candidates: list[dict[str, Any]] = [dict(r) for r in existing]
        skipped: list[dict[str, Any]] = []
        for p in [*planner.plan([c for c in self.campaigns.values() if c.source != "survey"], subjects, start,
                                self.rules.zone, timedelta(days=1)),
                  *self._survey_rows(survey_subjects, start, timedelta(days=1))]:
            if p.dedupe_key in known or p.due_at < start:
                continue
            row = {**p.__dict__, "id": -len(candidates) - 1, "attempts": 0, "delivery_id": "-"}
            if p.status == "skipped":
                skipped.append(self._dry_entry(row, p.skip_reason or "skipped"))
            else:
                candidates.append(row)
        facts = await store.facts_for(self.engine, candidates, self.exits, self.rules.day_bounds(start))
        would: list[dict[str, Any]] = []
        planned_sends: dict[tuple[str, str], int] = {}  # what this day's earlier sends add to the caps
        for row in sorted(candidates, key=lambda r: r["due_at"]):
            if row["campaign"] in paused:
                skipped.append(self._dry_entry(row, "paused"))
                continue
            at = max(row["due_at"], start)
            key = (row["recipient"], row["channel"])
            found = facts[row["id"]]
            found = Facts(found.exit_reason, found.opted_out, found.sent_today + planned_sends.get(key, 0))
            decision = self._decide(at)(row, found)
            if isinstance(decision, Send):
                planned_sends[key] = planned_sends.get(key, 0) + 1
            if isinstance(decision, Stop):
                skipped.append(self._dry_entry(row, decision.reason))
            elif hasattr(decision, "until"):
                until = decision.until  # type: ignore[union-attr]
                if until >= end:
                    skipped.append({**self._dry_entry(row, decision.reason), "until": until})  # type: ignore[union-attr]
                else:
                    would.append({**self._dry_entry(row, None), "at": until})
            else:
                would.append({**self._dry_entry(row, None), "at": at})
        return {"day": day.isoformat(), "send": would, "skip": skipped}  # type: ignore[dict-item]

    @staticmethod
    def _dry_entry(row: Mapping[str, Any], reason: str | None) -> dict[str, Any]:
        entry = {k: row[k] for k in ("campaign", "step", "subject", "channel", "provider", "recipient", "due_at")}
        if reason:
            entry["reason"] = reason
        return entry

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()


def masked(row: Mapping[str, Any]) -> str:
    return f"{row['campaign']}/{row['step']} {row['channel']} to {mask_number(str(row['recipient']))}"
