"""Claim reports as stored work orders: saved turn by turn, queried by the API, masked for display."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from speech.understanding.types import SLOTS

from gateway.storage.database import claim_reports, outbox, utcnow

STATUSES = ("in_progress", "complete", "partial", "transferred")
FINAL_STATUSES = ("complete", "partial", "transferred")
DELIVERY_EVENT = "claim_report"
MASKED_SLOTS = {"reporter_name", "insured_name", "reporter_phone", "insured_id_number"}


def new_report_id() -> str:
    return uuid.uuid4().hex


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; everything is stored in UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


async def save(
    engine: AsyncEngine,
    *,
    report_id: str,
    call_id: str,
    flow: str,
    status: str,
    caller_number: str | None,
    slots: dict[str, str],
    details: dict[str, Any],
    transcript: list[dict[str, Any]],
    policy_number: str | None = None,
) -> None:
    """Insert or update the report; a final status also queues its delivery, atomically."""
    now = utcnow()
    values = dict(
        status=status, slots=slots, details=details, transcript=transcript, policy_number=policy_number,
        updated_at=now,
    )
    async with engine.begin() as conn:
        result = await conn.execute(update(claim_reports).where(claim_reports.c.id == report_id).values(**values))
        if result.rowcount == 0:
            await conn.execute(
                insert(claim_reports).values(
                    id=report_id, call_id=call_id, flow=flow, caller_number=caller_number, created_at=now, **values
                )
            )
        if status in FINAL_STATUSES:
            already = (
                await conn.execute(
                    select(outbox.c.id).where(outbox.c.report_id == report_id, outbox.c.event == DELIVERY_EVENT)
                )
            ).first()
            if already is None:
                payload = {
                    "event": DELIVERY_EVENT, "report_id": report_id, "call_id": call_id, "flow": flow,
                    "status": status, "caller_number": caller_number, "policy_number": policy_number,
                    "slots": slots, "details": details, "transcript": transcript, "created_at": now.isoformat(),
                }
                await conn.execute(
                    insert(outbox).values(
                        report_id=report_id, event=DELIVERY_EVENT, payload=payload, created_at=now, attempts=0,
                        next_attempt_at=now,
                    )
                )


async def get(engine: AsyncEngine, report_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(claim_reports).where(claim_reports.c.id == report_id))).mappings().first()
    return dict(row) if row else None


async def listing(
    engine: AsyncEngine,
    *,
    status: str | None = None,
    call_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    query = select(claim_reports)
    counting = select(func.count()).select_from(claim_reports)
    conditions = []
    if status:
        conditions.append(claim_reports.c.status == status)
    if call_id:
        conditions.append(claim_reports.c.call_id == call_id)
    if since:
        conditions.append(claim_reports.c.created_at >= since)
    if until:
        conditions.append(claim_reports.c.created_at < until)
    for condition in conditions:
        query, counting = query.where(condition), counting.where(condition)
    query = query.order_by(claim_reports.c.created_at.desc(), claim_reports.c.id).limit(limit).offset(offset)
    async with engine.connect() as conn:
        total = int((await conn.execute(counting)).scalar_one())
        rows = (await conn.execute(query)).mappings().all()
    return total, [dict(r) for r in rows]


def mask_value(slot: str, value: str) -> str:
    if not value or slot not in MASKED_SLOTS:
        return value
    if slot.endswith("_name"):
        return value[0] + "*" * (len(value) - 1)
    keep_head, keep_tail = (3, 4) if slot == "insured_id_number" else (3, 2)
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + value[-keep_tail:]


def public(row: dict[str, Any], *, show_pii: bool) -> dict[str, Any]:
    """The API's view of a stored report."""

    def shown(slot: str, value: Any) -> Any:
        return value if show_pii or not isinstance(value, str) else mask_value(slot, value)

    details = {
        slot: {**detail, "value": shown(slot, detail.get("value"))} for slot, detail in (row["details"] or {}).items()
    }
    transcript = row["transcript"] if show_pii else [
        {**turn, "text": "(masked)"} if turn.get("speaker") == "caller" else turn for turn in row["transcript"] or []
    ]
    return {
        "report_id": row["id"],
        "call_id": row["call_id"],
        "flow": row["flow"],
        "status": row["status"],
        "caller_number": shown("reporter_phone", row["caller_number"] or ""),
        "policy_number": row["policy_number"],
        "slots": {slot: shown(slot, value) for slot, value in (row["slots"] or {}).items()},
        "details": details,
        "transcript": transcript,
        "created_at": as_utc(row["created_at"]).isoformat(),
        "updated_at": as_utc(row["updated_at"]).isoformat(),
        "pii_masked": not show_pii,
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema of a report as the API and the claims webhook deliver it."""
    slot_patterns = {
        "reporter_phone": r"^(1[3-9]\d{9}|0\d{2,3}-\d{7,8})$",
        "insured_id_number": r"^\d{17}[\dX]$",
        "incident_date": r"^\d{4}-\d{2}-\d{2}$",
    }
    enums = {
        "relationship": ["本人", "配偶", "父母", "子女", "其他"],
        "incident_type": ["住院", "门诊", "意外", "重疾", "身故"],
    }
    slot_schemas: dict[str, Any] = {}
    for slot in SLOTS:
        schema: dict[str, Any] = {"type": "string"}
        if slot in slot_patterns:
            schema["pattern"] = slot_patterns[slot]
        if slot in enums:
            schema["enum"] = enums[slot]
        slot_schemas[slot] = schema
    detail = {
        "type": "object",
        "properties": {
            "value": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "turn": {"type": "integer", "minimum": 0},
            "source": {"enum": ["speech", "dtmf", "record", "caller_id", "derived"]},
        },
        "required": ["value", "confidence", "turn", "source"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Claim report (报案)",
        "type": "object",
        "properties": {
            "report_id": {"type": "string"},
            "call_id": {"type": "string"},
            "flow": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "caller_number": {"type": "string"},
            "policy_number": {"type": ["string", "null"]},
            "slots": {"type": "object", "properties": slot_schemas, "additionalProperties": False},
            "details": {"type": "object", "additionalProperties": detail},
            "transcript": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"speaker": {"enum": ["bot", "caller"]}, "text": {"type": "string"},
                                   "slot": {"type": ["string", "null"]}, "at": {"type": "string"}},
                },
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["report_id", "call_id", "flow", "status", "slots"],
    }
