"""The reminders' rows in the database: planning inserts, the claim (send transaction), results,
receipts, opt-outs, missing documents, and what the admin API reads.

Claiming: on PostgreSQL due rows are selected `FOR UPDATE SKIP LOCKED`, so several scheduler
processes share one database without taking the same row; on SQLite one scheduler runs (the
write lock serializes the rest, the claim is a compare-and-set). Inside the claim transaction
each row's exit conditions, opt-outs and the recipient's sends today are read again (caps are
counted in SQL; on PostgreSQL a transaction advisory lock per recipient and channel makes the
count hold across processes), and the rows to send are committed as `sending` with a lease
before any network call.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

from sqlalchemy import and_, bindparam, case, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage import outbox
from gateway.storage.database import (
    campaign_states, claim_documents, flow_results, opt_outs, policies, reminder_events, reminder_receipts, reminders,
    survey_invitations, utcnow,
)
from scheduler.lifecycle import COUNTED, Change, Decision, Defer, Facts, Send, Stop
from scheduler.optout import OptOut
from scheduler.planner import Planned, Subject

INSERT_CHUNK = 5000
TASK_TOPIC = "reminder_task"  # the outbox topic of a task for a human agent


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """PostgreSQL: an ordinary transaction (claimed rows are locked FOR UPDATE SKIP LOCKED). SQLite:
    the write lock from the start (BEGIN IMMEDIATE), so a second writer waits (busy timeout)
    instead of failing when it upgrades a read, and a second scheduler cannot select the same rows."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


def _insert(conn: AsyncConnection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive (they were stored as UTC)."""
    if value is None or value.tzinfo is not None:
        return value

    return value.replace(tzinfo=timezone.utc)


def utc(value: Any) -> Any:
    """Datetimes are stored in UTC (SQLite keeps the wall time it is given, without the zone)."""
    return value.astimezone(timezone.utc) if isinstance(value, datetime) and value.tzinfo else value


def utc_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: utc(v) for k, v in values.items()}


def row_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in ("due_at", "expires_at", "lease_until", "escalate_at", "created_at", "updated_at", "sent_at",
                 "accepted_at", "delivered_at", "read_at", "final_at"):
        if name in out:
            out[name] = aware(out[name])
    return out


async def add_events(conn: AsyncConnection, items: Sequence[tuple[int, str, str]], now: datetime) -> None:
    if items:
        await conn.execute(reminder_events.insert(), [
            {"reminder_id": rid, "at": now, "status": status, "detail": detail} for rid, status, detail in items])


# Planning ---------------------------------------------------------------

def _planned_values(p: Planned, now: datetime) -> dict[str, Any]:
    final = p.status != "due"
    return {
        "delivery_id": str(uuid.uuid4()), "dedupe_key": p.dedupe_key, "campaign": p.campaign, "step": p.step,
        "channel_index": p.channel_index, "subject": p.subject, "cycle": p.cycle, "channel": p.channel,
        "provider": p.provider, "recipient": p.recipient, "purpose": p.purpose, "context": dict(p.context),
        "due_at": utc(p.due_at), "expires_at": utc(p.expires_at), "status": p.status, "attempts": 0,
        "skip_reason": p.skip_reason, "created_at": now, "updated_at": now, "final_at": now if final else None,
    }


async def insert_planned(engine: AsyncEngine, rows: Sequence[Planned], now: datetime | None = None) -> int:
    """Insert the planned rows that do not exist yet (by dedupe key); how many were new."""
    now = now or utcnow()
    added = 0
    async with write_transaction(engine) as conn:
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = [_planned_values(p, now) for p in rows[start:start + INSERT_CHUNK]]
            # executemany of one compiled statement (a multi-VALUES statement compiles slowly).
            result = await conn.execute(
                _insert(conn)(reminders).on_conflict_do_nothing(index_elements=["dedupe_key"]), chunk)
            added += max(result.rowcount or 0, 0)
    return added


async def policy_subjects(conn: AsyncConnection, first: date, last: date) -> list[Subject]:
    """Policies expiring in [first, last]: the renewal campaign's subjects (cycle: the expiry date)."""
    rows = (await conn.execute(select(policies).where(policies.c.expiry_date.between(first, last)))).mappings().all()
    return [
        Subject("policies", r["policy_number"], r["expiry_date"], r["expiry_date"].isoformat(),
                {k: v for k, v in {"sms": r["phone"], "voice": r["phone"], "wechat": r["wechat_openid"]}.items() if v},
                {"sms": r["consent_sms"], "wechat": r["consent_wechat"], "voice": r["consent_voice"],
                 "marketing": r["consent_marketing"]},
                {"policy_number": r["policy_number"], "product": r["product"] or "", "holder_name": r["holder_name"] or "",
                 "insured_name": r["insured_name"], "expiry_date": r["expiry_date"].isoformat()})
        for r in rows
    ]


async def claim_subjects(conn: AsyncConnection, zone: Any) -> list[Subject]:
    """Claim reports with outstanding documents (cycle: the day they were first asked for)."""
    query = (
        select(claim_documents.c.result_id, claim_documents.c.document, claim_documents.c.requested_at,
               flow_results.c.caller_number, flow_results.c.subject_phone, flow_results.c.policy_number,
               policies.c.wechat_openid, policies.c.product, policies.c.insured_name, policies.c.phone,
               policies.c.consent_sms, policies.c.consent_wechat, policies.c.consent_voice)
        .join(flow_results, flow_results.c.id == claim_documents.c.result_id)
        .outerjoin(policies, policies.c.policy_number == flow_results.c.policy_number)
        .where(claim_documents.c.received_at.is_(None))
        .order_by(claim_documents.c.result_id, claim_documents.c.requested_at)
    )
    grouped: dict[str, list[Any]] = {}
    for r in (await conn.execute(query)).mappings().all():
        grouped.setdefault(r["result_id"], []).append(r)
    subjects = []
    for result_id, docs in grouped.items():
        r = docs[0]
        phone = r["subject_phone"] or r["caller_number"] or r["phone"] or ""
        first = min(aware(d["requested_at"]) for d in docs).astimezone(zone).date()
        subjects.append(Subject(
            "missing_documents", result_id, first, first.isoformat(),
            {k: v for k, v in {"sms": phone, "voice": phone, "wechat": r["wechat_openid"]}.items() if v},
            {"sms": r["consent_sms"], "wechat": r["consent_wechat"], "voice": r["consent_voice"]},
            {"claim_id": result_id, "policy_number": r["policy_number"] or "", "product": r["product"] or "",
             "insured_name": r["insured_name"] or "", "documents": "、".join(d["document"] for d in docs),
             "requested_at": first.isoformat()}))
    return subjects


SURVEY_OPEN = ("issued", "opened", "verified")  # survey cases still to be answered (gateway/storage/surveys.py)


async def survey_subjects(conn: AsyncConnection, zone: Any, now: datetime) -> list[Subject]:
    """Open survey invitations before their deadline: the survey campaign's subjects (subject: the
    invitation id; anchor: the day it was made; cycle: the survey). Values carry the token's salt
    (`survey_salt`), not the link: the dispatcher computes the link with the key when it sends."""
    query = (
        select(survey_invitations.c.id, survey_invitations.c.survey, survey_invitations.c.policy_number,
               survey_invitations.c.channel, survey_invitations.c.phone, survey_invitations.c.token_salt,
               survey_invitations.c.deadline, survey_invitations.c.created_at, survey_invitations.c.context,
               policies.c.wechat_openid, policies.c.product, policies.c.holder_name, policies.c.consent_sms,
               policies.c.consent_wechat, policies.c.consent_voice)
        .outerjoin(policies, policies.c.policy_number == survey_invitations.c.policy_number)
        .where(survey_invitations.c.status.in_(SURVEY_OPEN), survey_invitations.c.deadline > now)
    )
    subjects = []
    for r in (await conn.execute(query)).mappings().all():
        deadline = aware(r["deadline"])
        context = r["context"] or {}
        subjects.append(Subject(
            "survey", r["id"], aware(r["created_at"]).astimezone(zone).date(), r["survey"],
            {k: v for k, v in {"sms": r["phone"], "voice": r["phone"], "wechat": r["wechat_openid"]}.items() if v},
            {"sms": r["consent_sms"], "wechat": r["consent_wechat"], "voice": r["consent_voice"]},
            {"invitation_id": r["id"], "survey": r["survey"], "policy_number": r["policy_number"],
             "channel": r["channel"], "product": str(context.get("product_name") or r["product"] or ""),
             "product_name": str(context.get("product_name") or r["product"] or ""),
             "deadline": deadline.astimezone(zone).date().isoformat(), "deadline_at": deadline.isoformat(),
             "deadline_short": f"{deadline.astimezone(zone).month}月{deadline.astimezone(zone).day}日",
             "survey_salt": r["token_salt"]}))
    return subjects


# A row -> its step's next channel, planned (None: the step has no further channel that can reach).
Escalate = Callable[[dict[str, Any], datetime], "Planned | None"]


def _no_escalation(row: dict[str, Any], now: datetime) -> None:
    return None


# The send transaction -----------------------------------------------------

@dataclass
class Claimed:
    """What one claim produced: rows to send now (committed as sending), and the counts decided."""

    rows: list[dict[str, Any]]
    decided: dict[str, int]  # sending, deferred:<reason>, skipped:<reason>, cancelled:<reason>, task
    statuses: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (campaign, channel, new status)


async def _exit_reasons(conn: AsyncConnection, rows: list[dict[str, Any]], exits: Mapping[str, tuple[str, ...]]
                        ) -> dict[int, str]:
    """Row id -> the exit condition that holds for its subject now (renewed, documents_received)."""
    out: dict[int, str] = {}
    renewal = [r for r in rows if "renewed" in exits.get(r["campaign"], ())]
    if renewal:
        expiry = dict((await conn.execute(
            select(policies.c.policy_number, policies.c.expiry_date)
            .where(policies.c.policy_number.in_({r["subject"] for r in renewal})))).all())
        for r in renewal:
            current = expiry.get(r["subject"])
            if current is not None and current.isoformat() != r["cycle"]:
                out[r["id"]] = "renewed"  # the expiry date moved: this cycle is over
    documents = [r for r in rows if "documents_received" in exits.get(r["campaign"], ())]
    if documents:
        open_claims = set((await conn.execute(
            select(claim_documents.c.result_id).where(
                claim_documents.c.result_id.in_({r["subject"] for r in documents}),
                claim_documents.c.received_at.is_(None)).distinct())).scalars().all())
        for r in documents:
            if r["subject"] not in open_claims:
                out[r["id"]] = "documents_received"
    answered = [r for r in rows if "survey_answered" in exits.get(r["campaign"], ())]
    if answered:
        still_open = set((await conn.execute(select(survey_invitations.c.id).where(
            survey_invitations.c.id.in_({r["subject"] for r in answered}),
            survey_invitations.c.status.in_(SURVEY_OPEN)))).scalars().all())
        for r in answered:
            if r["subject"] not in still_open:
                out[r["id"]] = "survey_answered"  # completed, expired or revoked: nothing more to remind of
    return out


async def opted_out(conn: AsyncConnection, pairs: Iterable[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which (recipient, channel, purpose) are opted out (a '*' channel or purpose covers all)."""
    pairs = set(pairs)
    if not pairs:
        return set()
    found = (await conn.execute(
        select(opt_outs.c.recipient, opt_outs.c.channel, opt_outs.c.purpose)
        .where(opt_outs.c.recipient.in_({p[0] for p in pairs})))).all()
    return {(r, c, p) for (r, c, p) in pairs
            if any(fr == r and fc in (c, "*") and fp in (p, "*") for fr, fc, fp in found)}


async def sent_counts(conn: AsyncConnection, keys: set[tuple[str, str]], start: datetime, end: datetime
                      ) -> dict[tuple[str, str], int]:
    """Sends per (recipient, channel) in [start, end) across campaigns and processes."""
    if not keys:
        return {}
    rows = (await conn.execute(
        select(reminders.c.recipient, reminders.c.channel, func.count())
        .where(reminders.c.recipient.in_({k[0] for k in keys}), reminders.c.channel.in_({k[1] for k in keys}),
               reminders.c.sent_at >= start, reminders.c.sent_at < end, reminders.c.status.in_(COUNTED))
        .group_by(reminders.c.recipient, reminders.c.channel))).all()
    return {(r, c): n for r, c, n in rows}


async def _lock_caps(conn: AsyncConnection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """PostgreSQL: the (recipient, channel) whose cap this transaction may count and use; others
    are being decided by another scheduler right now and wait for the next tick."""
    if conn.dialect.name != "postgresql" or not keys:
        return keys
    joined = sorted(f"{r}|{c}" for r, c in keys)
    got = (await conn.execute(
        text("SELECT k FROM unnest(CAST(:keys AS text[])) AS k WHERE pg_try_advisory_xact_lock(hashtext('reminder_cap|' || k))"),
        {"keys": joined})).scalars().all()
    return {tuple(k.split("|", 1)) for k in got}  # type: ignore[misc]


def _due_filter(now: datetime, paused: Iterable[str]):
    cond = and_(reminders.c.status == "due", reminders.c.due_at <= now)
    paused = list(paused)
    return and_(cond, reminders.c.campaign.not_in(paused)) if paused else cond


async def facts_for(engine: AsyncEngine, rows: list[dict[str, Any]], exits: Mapping[str, tuple[str, ...]],
                    day: tuple[datetime, datetime]) -> dict[int, Facts]:
    """Facts as the send transaction would read them now, for rows keyed by "id" (a dry run)."""
    async with engine.connect() as conn:
        reasons = await _exit_reasons(conn, rows, exits)
        out = await opted_out(conn, ((r["recipient"], r["channel"], r["purpose"]) for r in rows))
        counts = await sent_counts(conn, {(r["recipient"], r["channel"]) for r in rows}, *day)
    return {r["id"]: Facts(reasons.get(r["id"]), (r["recipient"], r["channel"], r["purpose"]) in out,
                           counts.get((r["recipient"], r["channel"]), 0)) for r in rows}


async def due_between(engine: AsyncEngine, start: datetime, end: datetime, limit: int = 10000) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(reminders).where(reminders.c.status == "due", reminders.c.due_at >= start,
                                                           reminders.c.due_at < end)
                                   .order_by(reminders.c.due_at).limit(limit))).all()
    return [row_dict(r) for r in rows]


async def paused_campaigns(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(campaign_states.c.campaign).where(campaign_states.c.paused.is_(True))))
               .scalars().all())


async def claim(engine: AsyncEngine, *, now: datetime, limit: int, lease_s: float, instance: str,
                exits: Mapping[str, tuple[str, ...]], decide: Callable[[dict[str, Any], Facts], Decision],
                capped: Callable[[str], bool], day: tuple[datetime, datetime],
                take: Callable[[dict[str, Any]], bool] = lambda row: True,
                escalate: Escalate = _no_escalation,
                task: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: {}) -> Claimed:
    """Claim due rows, decide each again inside this transaction, commit the sends as `sending`.

    `decide(row, facts)` is the pure rule check; `take(row)` a provider rate limit (False: left due
    for the next tick, untouched); task rows are done here (an outbox delivery in this transaction)."""
    decided: dict[str, int] = {}
    statuses: dict[tuple[str, str, str], int] = {}
    lease = now + timedelta(seconds=lease_s)
    async with write_transaction(engine) as conn:
        paused = await paused_campaigns(conn)
        query = select(reminders).where(_due_filter(now, paused)).order_by(reminders.c.due_at, reminders.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = [row_dict(r) for r in (await conn.execute(query)).all()]
        if not rows:
            return Claimed([], decided)
        reasons = await _exit_reasons(conn, rows, exits)
        out = await opted_out(conn, ((r["recipient"], r["channel"], r["purpose"]) for r in rows))
        cap_keys = {(r["recipient"], r["channel"]) for r in rows if capped(r["channel"])}
        locked = await _lock_caps(conn, cap_keys)
        counts = await sent_counts(conn, locked, *day)
        sending: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        events: list[tuple[int, str, str]] = []
        escalations: list[dict[str, Any]] = []
        for row in rows:
            key = (row["recipient"], row["channel"])
            if key in cap_keys and key not in locked:
                decided["busy"] = decided.get("busy", 0) + 1
                continue
            facts = Facts(reasons.get(row["id"]), (row["recipient"], row["channel"], row["purpose"]) in out,
                          counts.get(key, 0))
            decision = decide(row, facts)
            if isinstance(decision, Send):
                if not take(row):
                    decided["rate"] = decided.get("rate", 0) + 1
                    continue
                if key in locked:
                    counts[key] = counts.get(key, 0) + 1  # the next row of this recipient in the batch sees it
                if row["channel"] == "task":
                    await outbox.enqueue(conn, topic=TASK_TOPIC, aggregate_id=row["delivery_id"], payload={
                        "delivery_id": row["delivery_id"], "campaign": row["campaign"], "step": row["step"],
                        "subject": row["subject"], "cycle": row["cycle"], "values": row["context"].get("values", {}),
                        **task(row)})
                    updates.append({"_id": row["id"], "status": "delivered", "sent_at": now, "accepted_at": now,
                                    "delivered_at": now, "final_at": now, "attempts": row["attempts"] + 1,
                                    "lease_until": None, "leased_by": None, "due_at": row["due_at"],
                                    "skip_reason": None})
                    events.append((row["id"], "delivered", f"task queued on the outbox ({TASK_TOPIC})"))
                    decided["task"] = decided.get("task", 0) + 1
                    continue
                updates.append({"_id": row["id"], "status": "sending", "sent_at": now, "accepted_at": None,
                                "delivered_at": None, "final_at": None, "attempts": row["attempts"] + 1,
                                "lease_until": lease, "leased_by": instance, "due_at": row["due_at"],
                                "skip_reason": None})
                sending.append({**row, "status": "sending", "attempts": row["attempts"] + 1, "lease_until": lease})
                decided["sending"] = decided.get("sending", 0) + 1
            elif isinstance(decision, Defer):
                updates.append({"_id": row["id"], "status": "due", "sent_at": None, "accepted_at": None,
                                "delivered_at": None, "final_at": None, "attempts": row["attempts"],
                                "lease_until": None, "leased_by": None, "due_at": utc(decision.until),
                                "skip_reason": decision.reason})
                events.append((row["id"], "due", f"deferred to {decision.until.isoformat()}: {decision.reason}"))
                decided[f"deferred:{decision.reason}"] = decided.get(f"deferred:{decision.reason}", 0) + 1
            elif isinstance(decision, Stop):
                updates.append({"_id": row["id"], "status": decision.status, "sent_at": None, "accepted_at": None,
                                "delivered_at": None, "final_at": now, "attempts": row["attempts"],
                                "lease_until": None, "leased_by": None, "due_at": row["due_at"],
                                "skip_reason": decision.reason})
                events.append((row["id"], decision.status, decision.reason))
                decided[f"{decision.status}:{decision.reason}"] = decided.get(f"{decision.status}:{decision.reason}", 0) + 1
                if decision.escalate:
                    escalations.append(row)
        by_id = {r["id"]: r for r in rows}
        for u in updates:
            key3 = (by_id[u["_id"]]["campaign"], by_id[u["_id"]]["channel"], u["status"])
            statuses[key3] = statuses.get(key3, 0) + 1
        if updates:
            await conn.execute(
                update(reminders).where(reminders.c.id == bindparam("_id")).values(
                    status=bindparam("status"), sent_at=bindparam("sent_at"), accepted_at=bindparam("accepted_at"),
                    delivered_at=bindparam("delivered_at"), final_at=bindparam("final_at"),
                    attempts=bindparam("attempts"), lease_until=bindparam("lease_until"),
                    leased_by=bindparam("leased_by"), due_at=bindparam("due_at"),
                    skip_reason=bindparam("skip_reason"), updated_at=now),
                updates)
        # Sends and accepts are on the row itself (sent_at, attempts, leased_by, accepted_at, provider_id);
        # the history holds what the row cannot (deferrals, skips, errors, receipts, escalations).
        await add_events(conn, events, now)
        if escalations:
            await escalate_rows(conn, escalations, now, escalate)
    return Claimed(sending, decided, statuses)


# Escalation ----------------------------------------------------------------

async def escalate_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]], now: datetime,
                        escalate: Escalate) -> int:
    """Insert each row's next channel (due now); rows that have none are left as they are."""
    planned = [p for p in (escalate(r, now) for r in rows) if p is not None]
    if not planned:
        return 0
    result = await conn.execute(_insert(conn)(reminders).on_conflict_do_nothing(index_elements=["dedupe_key"]),
                                [_planned_values(p, now) for p in planned])
    return max(result.rowcount or 0, 0)


async def apply_changes(engine: AsyncEngine, changes: Sequence[tuple[dict[str, Any], Change]], now: datetime,
                        *, escalate: Escalate = _no_escalation, only_if_status: str | None = "sending") -> None:
    """Results of sends: each row's columns set (if it is still in `only_if_status`), its event, and
    its next channel when the change escalates. One transaction for the batch."""
    if not changes:
        return
    async with write_transaction(engine) as conn:
        events, escalations = [], []
        for row, change in changes:
            stmt = update(reminders).where(reminders.c.id == row["id"])
            if only_if_status:
                stmt = stmt.where(reminders.c.status == only_if_status)
            values = utc_values(change.values)
            result = await conn.execute(stmt.values(**values, updated_at=now))
            if result.rowcount == 0 and only_if_status:
                # A receipt came first (the row is delivered or failed already): keep its state, learn the id.
                if values.get("provider_id"):
                    await conn.execute(update(reminders).where(reminders.c.id == row["id"],
                                                               reminders.c.provider_id.is_(None))
                                       .values(provider_id=values["provider_id"], updated_at=now))
                events.append((row["id"], str(values.get("status", "")), change.event + " (after a receipt)"))
                continue
            events.append((row["id"], str(values.get("status", row.get("status", ""))), change.event))
            if change.escalate:
                escalations.append(row)
        await add_events(conn, events, now)
        if escalations:
            await escalate_rows(conn, escalations, now, escalate)


async def accept_many(engine: AsyncEngine, items: Sequence[tuple[int, str | None, datetime | None]], now: datetime
                      ) -> None:
    """The hot path of apply_changes: rows accepted (id, provider id, escalate at), in one statement."""
    if not items:
        return
    async with write_transaction(engine) as conn:
        await conn.execute(
            update(reminders).where(reminders.c.id == bindparam("_id")).values(
                status=case((reminders.c.status == "sending", literal_column("'accepted'")), else_=reminders.c.status),
                provider_id=func.coalesce(reminders.c.provider_id, bindparam("pid")),
                accepted_at=now, escalate_at=bindparam("esc"), lease_until=None, last_error=None, updated_at=now),
            [{"_id": rid, "pid": pid, "esc": esc} for rid, pid, esc in items])


async def expired_leases(engine: AsyncEngine, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Rows left `sending` by a process that died or timed out: to be reconciled, not resent blindly."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(reminders).where(reminders.c.status == "sending", reminders.c.lease_until < now)
            .order_by(reminders.c.id).limit(limit))).all()
    return [row_dict(r) for r in rows]


async def escalation_candidates(engine: AsyncEngine, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(reminders).where(reminders.c.status.in_(("accepted", "delivered")),
                                    reminders.c.escalate_at.is_not(None), reminders.c.escalate_at <= now)
            .order_by(reminders.c.id).limit(limit))).all()
    return [row_dict(r) for r in rows]


async def clear_escalation(engine: AsyncEngine, ids: Sequence[int]) -> None:
    if ids:
        async with write_transaction(engine) as conn:
            await conn.execute(update(reminders).where(reminders.c.id.in_(list(ids))).values(escalate_at=None))


async def mark_escalated(engine: AsyncEngine, rows: Sequence[dict[str, Any]], now: datetime,
                         escalate: Escalate) -> None:
    async with write_transaction(engine) as conn:
        for row in rows:
            result = await conn.execute(
                update(reminders).where(reminders.c.id == row["id"], reminders.c.status == row["status"],
                                        reminders.c.escalate_at.is_not(None))
                .values(status="escalated", escalate_at=None, final_at=now, updated_at=now))
            if result.rowcount:
                await add_events(conn, [(row["id"], "escalated", "not delivered or read in time: next channel")], now)
                await escalate_rows(conn, [row], now, escalate)
            else:
                await conn.execute(update(reminders).where(reminders.c.id == row["id"]).values(escalate_at=None))


# Receipts and replies --------------------------------------------------------

async def find_for_receipt(conn: AsyncConnection, provider: str, provider_id: str | None, delivery_id: str | None
                           ) -> dict[str, Any] | None:
    if delivery_id:
        row = (await conn.execute(select(reminders).where(reminders.c.delivery_id == delivery_id))).first()
        if row:
            return row_dict(row)
    if provider_id:
        row = (await conn.execute(select(reminders).where(reminders.c.provider == provider,
                                                          reminders.c.provider_id == provider_id))).first()
        if row:
            return row_dict(row)
    return None


async def record_receipt(conn: AsyncConnection, key: str, reminder_id: int | None, values: Mapping[str, Any]
                         ) -> bool:
    """Insert the receipt; False when it was seen before (a replay: change nothing)."""
    result = await conn.execute(_insert(conn)(reminder_receipts).values(receipt_key=key, reminder_id=reminder_id,
                                                                        **utc_values(values))
                                .on_conflict_do_nothing(index_elements=["receipt_key"]))
    return (result.rowcount or 0) == 1


async def add_opt_out(conn: AsyncConnection, opt_out: OptOut, now: datetime) -> bool:
    result = await conn.execute(_insert(conn)(opt_outs).values(
        recipient=opt_out.recipient, channel=opt_out.channel, purpose=opt_out.purpose, source=opt_out.source, at=now)
        .on_conflict_do_nothing(index_elements=["recipient", "channel", "purpose"]))
    return (result.rowcount or 0) == 1


# Documents and campaigns -------------------------------------------------------

async def request_documents(engine: AsyncEngine, result_id: str, documents: Sequence[str], now: datetime) -> int:
    async with write_transaction(engine) as conn:
        if (await conn.execute(select(flow_results.c.id).where(flow_results.c.id == result_id))).first() is None:
            raise LookupError(f"no claim report {result_id}")
        result = await conn.execute(_insert(conn)(claim_documents).values(
            [{"result_id": result_id, "document": d, "requested_at": now} for d in documents])
            .on_conflict_do_nothing(index_elements=["result_id", "document"]))
        return max(result.rowcount or 0, 0)


async def receive_document(engine: AsyncEngine, result_id: str, document: str, now: datetime) -> dict[str, int]:
    """Mark a document received; when none is missing any more, the claim's due reminders stop now."""
    async with write_transaction(engine) as conn:
        found = await conn.execute(update(claim_documents).where(
            claim_documents.c.result_id == result_id, claim_documents.c.document == document,
            claim_documents.c.received_at.is_(None)).values(received_at=now))
        missing = (await conn.execute(select(func.count()).select_from(claim_documents).where(
            claim_documents.c.result_id == result_id, claim_documents.c.received_at.is_(None)))).scalar_one()
        cancelled = 0
        if missing == 0:
            ids = (await conn.execute(select(reminders.c.id).where(
                reminders.c.subject == result_id, reminders.c.campaign == "missing_documents",
                reminders.c.status == "due"))).scalars().all()
            if ids:
                await conn.execute(update(reminders).where(reminders.c.id.in_(ids), reminders.c.status == "due").values(
                    status="cancelled", skip_reason="documents_received", final_at=now, updated_at=now))
                await add_events(conn, [(i, "cancelled", "documents_received") for i in ids], now)
                cancelled = len(ids)
        return {"received": found.rowcount or 0, "missing": int(missing), "cancelled": cancelled}


async def documents(engine: AsyncEngine, result_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(claim_documents).where(claim_documents.c.result_id == result_id)
                                   .order_by(claim_documents.c.id))).all()
    return [row_dict(r) for r in rows]


async def set_paused(engine: AsyncEngine, campaign: str, paused: bool, now: datetime) -> None:
    async with write_transaction(engine) as conn:
        await conn.execute(_insert(conn)(campaign_states).values(campaign=campaign, paused=paused, updated_at=now)
                           .on_conflict_do_update(index_elements=["campaign"],
                                                  set_={"paused": paused, "updated_at": now}))


async def status_counts(engine: AsyncEngine) -> list[tuple[str, str, str, int]]:
    """(campaign, channel, status, rows): what /metrics and the campaign list show."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(reminders.c.campaign, reminders.c.channel, reminders.c.status, func.count())
                                   .group_by(reminders.c.campaign, reminders.c.channel, reminders.c.status))).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def history(engine: AsyncEngine, recipient: str, limit: int = 200) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = [row_dict(r) for r in (await conn.execute(
            select(reminders).where(reminders.c.recipient == recipient).order_by(reminders.c.due_at, reminders.c.id)
            .limit(limit))).all()]
        ids = [r["id"] for r in rows]
        events: dict[int, list[dict[str, Any]]] = {}
        if ids:
            for e in (await conn.execute(select(reminder_events).where(reminder_events.c.reminder_id.in_(ids))
                                         .order_by(reminder_events.c.id))).all():
                events.setdefault(e.reminder_id, []).append({"at": aware(e.at), "status": e.status, "detail": e.detail})
        outs = (await conn.execute(select(opt_outs).where(opt_outs.c.recipient == recipient))).all()
    for r in rows:
        r["events"] = events.get(r["id"], [])
    return rows + [{"opt_out": {"channel": o.channel, "purpose": o.purpose, "source": o.source, "at": aware(o.at)}}
                   for o in outs]


async def dead_letters(engine: AsyncEngine, limit: int = 200) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(reminders).where(reminders.c.status == "dead")
                                   .order_by(reminders.c.final_at.desc(), reminders.c.id).limit(limit))).all()
    return [row_dict(r) for r in rows]


async def rows_for(engine: AsyncEngine, where: Any = None) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        query = select(reminders).order_by(reminders.c.id)
        if where is not None:
            query = query.where(where)
        return [row_dict(r) for r in (await conn.execute(query)).all()]

