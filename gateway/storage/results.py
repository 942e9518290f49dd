"""Flow results: what any flow (claim report, survey, reminder call, ...) collected on a call.

A result is saved after every caller turn (status `in_progress`), so a crash or
hang-up never loses what was said. When it is saved with a final status, its
delivery is queued in the outbox in the same transaction, once per result and
topic. This module knows no flow's vocabulary: statuses are free text, the
topic and its payload come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Mapping

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import flow_results, utcnow
from gateway.storage.outbox import enqueue

FINAL_STATUSES = frozenset({"complete", "partial", "transferred", "refused"})

# Builds a delivery's payload from the saved result (a row of flow_results) and the moment it
# was queued.
Payload = Callable[[Mapping[str, Any], datetime], dict[str, Any]]


def default_payload(result: Mapping[str, Any], queued_at: datetime) -> dict[str, Any]:
    """The body a flow result is delivered with unless its flow shapes its own."""
    return {
        "event": result["topic"], "result_id": result["id"], "call_id": result["call_id"], "flow": result["flow"],
        "status": result["status"], "caller_number": result["caller_number"],
        "policy_number": result["policy_number"], "subject_phone": result["subject_phone"],
        "slots": result["slots"], "details": result["details"], "transcript": result["transcript"],
        "created_at": as_utc(result["created_at"]).isoformat(), "ended_at": queued_at.isoformat(),
    }


@dataclass(frozen=True)
class Delivery:
    """How a flow's results are delivered: under which topic, from which statuses on, in what shape."""

    topic: str
    final_statuses: frozenset[str] = FINAL_STATUSES
    payload: Payload = field(default=default_payload)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; everything is stored in UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso_utc(value: datetime | None) -> str | None:
    """How every API response writes a stored time: ISO 8601 in UTC with its offset (+00:00)."""
    return as_utc(value).astimezone(timezone.utc).isoformat() if value is not None else None


def _utc(value: datetime) -> datetime:
    # Stored times are UTC; SQLite compares them as text, so a bound must be in UTC too.
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


async def save(
    engine: AsyncEngine,
    *,
    result_id: str,
    call_id: str,
    flow: str,
    status: str,
    caller_number: str | None,
    slots: dict[str, str],
    details: dict[str, Any],
    transcript: list[dict[str, Any]],
    policy_number: str | None = None,
    subject_phone: str | None = None,
    topic: str | None = None,
    final_statuses: Collection[str] = FINAL_STATUSES,
    payload: Payload = default_payload,
    instance_id: str | None = None,
) -> bool:
    """Insert or update the result; a final status also queues its delivery, atomically.

    `topic` defaults to the flow's name, `subject_phone` (who the result is about) to the
    caller's number, `instance_id` names the process running the call (gateway/storage/recovery.py
    closes a dead one's). A final result is never overwritten: it is what was delivered (also when
    recovery finalized it while its call still ran). True when this save queued a delivery.
    """
    now = utcnow()
    final = status in final_statuses
    values: dict[str, Any] = dict(
        status=status, slots=slots, details=details, transcript=transcript, policy_number=policy_number,
        updated_at=now,
    )
    if final:
        values["ended_at"] = now
    async with engine.begin() as conn:
        updated = await conn.execute(
            update(flow_results).where(flow_results.c.id == result_id, flow_results.c.ended_at.is_(None)).values(**values)
        )
        if updated.rowcount == 0:
            if (await conn.execute(select(flow_results.c.id).where(flow_results.c.id == result_id))).first():
                return False  # final already
            await conn.execute(
                insert(flow_results).values(
                    id=result_id, call_id=call_id, flow=flow, topic=topic or flow, caller_number=caller_number,
                    subject_phone=subject_phone or caller_number, created_at=now, instance_id=instance_id, **values,
                )
            )
        if not final:
            return False
        row = (await conn.execute(select(flow_results).where(flow_results.c.id == result_id))).mappings().one()
        # The payload carries what this save was given, as the caller sees the result now.
        result = {**row, "call_id": call_id, "flow": flow, "caller_number": caller_number, "status": status,
                  "slots": slots, "details": details, "transcript": transcript, "policy_number": policy_number}
        return await enqueue(conn, topic=row["topic"], aggregate_id=result_id, payload=payload(result, now))


async def get(engine: AsyncEngine, result_id: str, *, topics: Collection[str] | None = None) -> dict[str, Any] | None:
    query = select(flow_results).where(flow_results.c.id == result_id)
    if topics is not None:
        query = query.where(flow_results.c.topic.in_(list(topics)))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def query(
    engine: AsyncEngine,
    *,
    flow: str | None = None,
    topics: Collection[str] | None = None,
    status: str | None = None,
    call_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    policy_number: str | None = None,
    phone: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """Results matching every given filter, newest first, and how many match in all.

    `phone` matches who the result is about or who called; times are of creation
    (`since` inclusive, `until` exclusive).
    """
    conditions = []
    if flow:
        conditions.append(flow_results.c.flow == flow)
    if topics is not None:
        conditions.append(flow_results.c.topic.in_(list(topics)))
    if status:
        conditions.append(flow_results.c.status == status)
    if call_id:
        conditions.append(flow_results.c.call_id == call_id)
    if since:
        conditions.append(flow_results.c.created_at >= _utc(since))
    if until:
        conditions.append(flow_results.c.created_at < _utc(until))
    if policy_number:
        conditions.append(flow_results.c.policy_number == policy_number)
    if phone:
        conditions.append(or_(flow_results.c.subject_phone == phone, flow_results.c.caller_number == phone))
    rows_query = select(flow_results).where(*conditions)
    rows_query = rows_query.order_by(flow_results.c.created_at.desc(), flow_results.c.id).limit(limit).offset(offset)
    counting = select(func.count()).select_from(flow_results).where(*conditions)
    async with engine.connect() as conn:
        total = int((await conn.execute(counting)).scalar_one())
        rows = (await conn.execute(rows_query)).mappings().all()
    return total, [dict(r) for r in rows]
