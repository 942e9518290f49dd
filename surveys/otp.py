"""One-time codes for the identity step, pure: the codes, their hashes and the limits on sending
and guessing (the times come from the store; nothing here reads a clock).

Limits: at most `per_minute` codes in any 60 s and `per_hour` in any hour per invitation; an
invitation with `max_wrong` wrong codes within an hour is locked until the oldest of those is an
hour old. A code is good for `ttl_s` after it was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class OtpPolicy:
    length: int = 6
    ttl_s: float = 300.0
    per_minute: int = 1
    per_hour: int = 5
    max_wrong: int = 5

    @classmethod
    def from_settings(cls, settings: Any) -> "OtpPolicy":
        """From the gateway's settings (survey_otp_*), read by attribute."""
        return cls(ttl_s=settings.survey_otp_ttl_s, per_minute=settings.survey_otp_per_minute,
                   per_hour=settings.survey_otp_per_hour, max_wrong=settings.survey_otp_max_wrong)


def new_code(rng: random.SystemRandom, length: int = 6) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(length))


def normalize_code(code: str) -> str:
    """Full-width digits and spaces (a phone keyboard, a pasted SMS) forgiven: "１２３ ４５６" -> "123456"."""
    return "".join(unicodedata.normalize("NFKC", code or "").split())


def code_hash(invitation_id: str, code: str) -> str:
    return hashlib.sha256(f"{invitation_id}:{normalize_code(code)}".encode("utf-8")).hexdigest()


def code_matches(invitation_id: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(code_hash(invitation_id, code), stored_hash)


def expires_at(policy: OtpPolicy, sent_at: datetime) -> datetime:
    return sent_at + timedelta(seconds=policy.ttl_s)


def _within(times: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    return sorted(t for t in times if t > now - window)  # a time ahead of ours (another clock) counts


def send_refusal(policy: OtpPolicy, sent_at: Sequence[datetime], now: datetime) -> str | None:
    """None when a code may be sent now, else "hour_limit" or "wait_minute"."""
    if len(_within(sent_at, now, HOUR)) >= policy.per_hour:
        return "hour_limit"
    if len(_within(sent_at, now, MINUTE)) >= policy.per_minute:
        return "wait_minute"
    return None


def retry_after(policy: OtpPolicy, sent_at: Sequence[datetime], now: datetime) -> float:
    """Seconds until a code may be sent (0 when it may be now)."""
    wait = 0.0
    hour = _within(sent_at, now, HOUR)
    if len(hour) >= policy.per_hour:
        wait = max(wait, (hour[len(hour) - policy.per_hour] + HOUR - now).total_seconds())
    minute = _within(sent_at, now, MINUTE)
    if len(minute) >= policy.per_minute:
        wait = max(wait, (minute[len(minute) - policy.per_minute] + MINUTE - now).total_seconds())
    return wait


def locked(policy: OtpPolicy, wrong_at: Sequence[datetime], now: datetime) -> bool:
    """`max_wrong` wrong codes within the last hour."""
    return len(_within(wrong_at, now, HOUR)) >= policy.max_wrong


def locked_until(policy: OtpPolicy, wrong_at: Sequence[datetime], now: datetime) -> datetime | None:
    """When the lock lifts (None when not locked)."""
    recent = _within(wrong_at, now, HOUR)
    if len(recent) < policy.max_wrong:
        return None
    return recent[len(recent) - policy.max_wrong] + HOUR
