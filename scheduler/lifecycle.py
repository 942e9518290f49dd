"""A reminder row's life, as pure decisions: send now or not, and what a result or receipt changes.

due -> sending (committed before the network call) -> accepted (the provider's id) ->
delivered / failed (from a receipt) -> escalated (the step's next channel took over). Also
final: skipped (opted out, unreachable, expired), cancelled (an exit condition: renewed,
documents received), dead (retries used up, or a send whose outcome nobody can tell).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from scheduler.campaigns import Step
from scheduler.channels.base import Accepted, Receipt, SendError
from scheduler.rules import Rules

ACTIVE = ("due", "sending", "accepted")
FINAL = ("delivered", "failed", "escalated", "skipped", "cancelled", "dead")
COUNTED = ("sending", "accepted", "delivered", "failed", "escalated")  # what a frequency cap counts
FAILED_RECEIPTS = ("failed", "busy", "no_answer", "machine")


@dataclass(frozen=True)
class Facts:
    """What the send transaction read about a row's subject and recipient."""

    exit_reason: str | None = None  # renewed, documents_received, survey_answered
    opted_out: bool = False
    sent_today: int = 0  # this recipient on this channel kind, today, across campaigns (caps)


@dataclass(frozen=True)
class Send:
    pass


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str  # quiet_hours, holiday, cap


@dataclass(frozen=True)
class Stop:
    status: str  # skipped or cancelled
    reason: str
    escalate: bool = False  # the next channel of the step may still reach the recipient


Decision = Send | Defer | Stop


def decide(kind: str, due_at: datetime, expires_at: datetime | None, facts: Facts, rules: Rules,
           now: datetime) -> Decision:
    """At send time: exit conditions, opt-out, expiry, quiet hours and holidays, caps, in that order."""
    if facts.exit_reason:
        return Stop("cancelled", facts.exit_reason)
    if facts.opted_out:
        return Stop("skipped", "opted_out", escalate=True)
    if expires_at is not None and now >= expires_at:
        return Stop("skipped", "expired")
    if kind == "task":
        return Send()
    at = max(now, due_at)
    allowed, why = rules.next_allowed(kind, at)
    cap = rules.caps_per_day.get(kind, 0)
    if allowed <= now and cap and facts.sent_today >= cap:
        allowed, why = rules.next_day_start(kind, now), "cap"
    if allowed > now:
        if expires_at is not None and allowed >= expires_at:
            return Stop("skipped", f"expired ({why})")
        return Defer(allowed, why or "quiet_hours")
    return Send()


@dataclass(frozen=True)
class Change:
    """Columns to set on the row, an event for its history, and whether the next channel takes over."""

    values: Mapping[str, Any]
    event: str
    escalate: bool = False
    opt_out: bool = False  # voice outcome refused: do-not-call


def retry_delay(attempts: int, base_s: float, jitter: float, cap_s: float = 3600.0) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), then 50-100 % of it (jitter in [0, 1))."""
    delay = min(base_s * 2 ** max(attempts - 1, 0), cap_s)
    return delay * (0.5 + jitter / 2)


def after_accepted(accepted: Accepted, step: Step | None, now: datetime) -> Change:
    escalate_at = now + step.escalate.within if step is not None and step.escalate else None
    return Change({"status": "accepted", "provider_id": accepted.provider_id, "accepted_at": now,
                   "escalate_at": escalate_at, "lease_until": None, "last_error": None},
                  f"accepted by {accepted.provider} ({accepted.provider_id or 'no id'})")


def after_error(error: SendError, attempts: int, max_attempts: int, base_s: float, jitter: float,
                now: datetime) -> Change:
    text = str(error)
    if error.maybe_sent:
        # The provider may have it: the reconciler decides from receipts, never a blind resend.
        return Change({"status": "sending", "lease_until": now, "last_error": f"maybe sent: {text}"},
                      f"maybe sent: {text}")
    if error.fall_through:
        return Change({"status": "failed", "last_error": text, "lease_until": None, "final_at": now},
                      f"fall through: {text}", escalate=True)
    if error.retryable and attempts < max_attempts:
        until = now + timedelta(seconds=retry_delay(attempts, base_s, jitter))
        return Change({"status": "due", "due_at": until, "last_error": text, "lease_until": None, "leased_by": None},
                      f"retry at {until.isoformat()}: {text}")
    if error.retryable:
        return Change({"status": "dead", "last_error": f"{attempts} attempts: {text}", "lease_until": None,
                       "final_at": now}, f"dead after {attempts} attempts: {text}")
    return Change({"status": "failed", "last_error": text, "lease_until": None, "final_at": now},
                  f"failed: {text}", escalate=True)


def after_receipt(status: str, escalate_at: datetime | None, step: Step | None, receipt: Receipt,
                  now: datetime) -> Change | None:
    """What a receipt changes on a row in `status` (None: nothing, e.g. a failure after delivery)."""
    unless = step.escalate.unless if step is not None and step.escalate else None
    values: dict[str, Any] = {}
    if receipt.provider_id:
        values["provider_id"] = receipt.provider_id
    if receipt.outcome:
        values["outcome"] = receipt.outcome
    refused = receipt.outcome == "refused"
    kind = receipt.status
    if kind in ("delivered", "read", "completed"):
        values["delivered_at"] = receipt.at
        if kind == "read":
            values["read_at"] = receipt.at
        if status in ("sending", "accepted", "delivered"):
            values["status"] = "delivered"
            values["lease_until"] = None
            values["final_at"] = now
            if unless == "delivered" or kind == "read" or unless is None:
                values["escalate_at"] = None
        return Change(values, f"receipt {kind}" + (f" ({receipt.outcome})" if receipt.outcome else ""),
                      opt_out=refused)
    if kind in FAILED_RECEIPTS:
        if status not in ("sending", "accepted"):
            return Change(values, f"receipt {kind} ignored (row is {status})", opt_out=refused) if values else None
        values.update({"status": "failed", "last_error": receipt.error or kind, "lease_until": None,
                       "escalate_at": None, "final_at": now})
        return Change(values, f"receipt {kind}: {receipt.error or ''}".rstrip(": "), escalate=True, opt_out=refused)
    # ringing, answered: progress only
    if status == "sending":
        values.update({"status": "accepted", "accepted_at": now, "lease_until": None})
    return Change(values, f"receipt {kind}", opt_out=refused)


def needs_escalation(status: str, escalate_at: datetime | None, delivered_at: datetime | None,
                     read_at: datetime | None, step: Step | None, now: datetime) -> bool:
    """Accepted (or delivered, when `read` was wanted) and the window passed without it."""
    if step is None or step.escalate is None or escalate_at is None or escalate_at > now:
        return False
    if status not in ("accepted", "delivered"):
        return False
    if step.escalate.unless == "read":
        return read_at is None
    return delivered_at is None
