"""The claim vocabulary: which flows are claim reports, their statuses, delivery body, masking, JSON Schema.

Claim reports are flow results (gateway/storage/results.py) whose topic is
`claim_report`: the results of the claim flows (`claim_report`,
`claim_status_callback` in config/flows/), delivered to the claims system with
the body and masking the claims API has always had. Nothing else in storage
knows what a claim is.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Collection, Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from speech.understanding.claims import ROLES as SLOTS  # the claim contract's nine slots

from gateway.privacy import mask_transcript
from gateway.storage import results
from gateway.storage.results import iso_utc

STATUSES = ("in_progress", "complete", "partial", "transferred")
FINAL_STATUSES = ("complete", "partial", "transferred")
TOPIC = "claim_report"  # the event claim reports are delivered as, whichever claim flow made them (`result.topic`)
MASKED_SLOTS = {"reporter_name", "insured_name", "reporter_phone", "insured_id_number"}


def new_report_id() -> str:
    return uuid.uuid4().hex


def claim_payload(result: Mapping[str, Any], queued_at: datetime) -> dict[str, Any]:
    """The claims webhook's body, key for key as before flow results were generic."""
    return {
        "event": TOPIC, "report_id": result["id"], "call_id": result["call_id"], "flow": result["flow"],
        "status": result["status"], "caller_number": result["caller_number"], "policy_number": result["policy_number"],
        "slots": result["slots"], "details": result["details"], "transcript": result["transcript"],
        "created_at": queued_at.isoformat(),
    }


def delivery_for(topic: str, final_statuses: Collection[str] = FINAL_STATUSES) -> results.Delivery:
    """How results of a topic are delivered: claim reports in the claims webhook's own body, any other
    topic in the generic one; final from the flow's outcomes on."""
    if topic == TOPIC:
        return results.Delivery(topic=TOPIC, final_statuses=frozenset(final_statuses), payload=claim_payload)
    return results.Delivery(topic=topic, final_statuses=frozenset(final_statuses))


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
) -> bool:
    """Save a claim flow's result as before results were generic (new code calls results.save)."""
    delivery = delivery_for(TOPIC)
    return await results.save(
        engine, result_id=report_id, call_id=call_id, flow=flow, status=status, caller_number=caller_number,
        slots=slots, details=details, transcript=transcript, policy_number=policy_number, topic=delivery.topic,
        final_statuses=delivery.final_statuses, payload=delivery.payload,
    )


async def get(engine: AsyncEngine, report_id: str) -> dict[str, Any] | None:
    return await results.get(engine, report_id, topics=(TOPIC,))


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
    """Claim reports: the flow results delivered (or to be delivered) under the claim topic."""
    return await results.query(
        engine, topics=(TOPIC,), status=status, call_id=call_id, since=since, until=until, limit=limit, offset=offset
    )


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
    if show_pii:
        transcript = row["transcript"]
    else:
        # The bot reads names and numbers back: mask each as its slot is masked, wherever it appears.
        secrets = {value: mask_value(slot, value) for slot, value in (row["slots"] or {}).items()
                   if slot in MASKED_SLOTS and isinstance(value, str) and value}
        secrets |= {d["value"]: mask_value(slot, d["value"]) for slot, d in (row["details"] or {}).items()
                    if slot in MASKED_SLOTS and isinstance(d, dict) and isinstance(d.get("value"), str) and d["value"]}
        if row["caller_number"]:
            secrets[row["caller_number"]] = mask_value("reporter_phone", row["caller_number"])
        transcript = mask_transcript(row["transcript"] or [], secrets)
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
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
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
            "source": {"enum": ["speech", "text", "dtmf", "record", "caller_id", "derived"]},
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
