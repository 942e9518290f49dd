"""The API's view of any flow result, personal data masked by what slot names and values look like.

Flows do not (yet) declare which slots are personal, so a key without PII scope
sees masked: every slot named like a name (`name`, `*_name`), a phone or an ID
number (`*phone*`, `*id_number*`), every other value that carries a phone- or
ID-length digit run, the caller's and the subject's numbers, and what the caller
said in the transcript; in the bot's turns, every such value wherever it appears (numbers
also read digit by digit in words) and every phone- or ID-length digit run. Policy numbers are shown, as the claims API shows them.
"""

from __future__ import annotations

from typing import Any, Mapping

from gateway.privacy import mask_number, mask_text, mask_transcript
from gateway.storage.results import iso_utc


def is_name_slot(slot: str) -> bool:
    return slot == "name" or slot.endswith("_name")


def is_number_slot(slot: str) -> bool:
    return "phone" in slot or "id_number" in slot


def mask_slot(slot: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if is_name_slot(slot):
        return value[0] + "*" * (len(value) - 1)
    if is_number_slot(slot):
        return mask_number(value)
    return mask_text(value)


def public(row: Mapping[str, Any], *, show_pii: bool) -> dict[str, Any]:
    """A stored flow result as `GET /api/results` answers it."""

    def shown(slot: str, value: Any) -> Any:
        return value if show_pii else mask_slot(slot, value)

    def number(value: str | None) -> str | None:
        return value if show_pii or not value else mask_number(value)

    details = {
        slot: {**detail, "value": shown(slot, detail.get("value"))} if isinstance(detail, dict) else detail
        for slot, detail in (row["details"] or {}).items()
    }
    if show_pii:
        transcript = row["transcript"]
    else:
        # The bot reads names and numbers back: mask each as its slot is masked, wherever it appears.
        values = [(slot, value) for slot, value in (row["slots"] or {}).items()]
        values += [(slot, d.get("value")) for slot, d in (row["details"] or {}).items() if isinstance(d, dict)]
        secrets = {value: mask_slot(slot, value) for slot, value in values
                   if isinstance(value, str) and value and (is_name_slot(slot) or is_number_slot(slot))}
        secrets |= {n: mask_number(n) for n in (row["caller_number"], row["subject_phone"]) if n}
        transcript = mask_transcript(row["transcript"] or [], secrets)
    return {
        "result_id": row["id"],
        "flow": row["flow"],
        "topic": row["topic"],
        "call_id": row["call_id"],
        "status": row["status"],
        "caller_number": number(row["caller_number"]),
        "subject_phone": number(row["subject_phone"]),
        "policy_number": row["policy_number"],
        "slots": {slot: shown(slot, value) for slot, value in (row["slots"] or {}).items()},
        "details": details,
        "transcript": transcript,
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
        "ended_at": iso_utc(row["ended_at"]),
        "pii_masked": not show_pii,
    }
