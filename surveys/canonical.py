"""Canonical JSON and its sha256: one byte form for hashing definitions and audit events.

Sorted keys, UTF-8 as is (ensure_ascii=False), no spaces; datetimes as UTC ISO 8601 with
microseconds (naive ones are taken as UTC, as the storage layer reads them back from SQLite),
dates as YYYY-MM-DD, tuples and sets as lists (sets sorted).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from typing import Any


def utc_iso(at: datetime) -> str:
    """`at` in UTC, always with microseconds and a Z: 2026-12-02T04:23:43.000000Z."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_default,
                      allow_nan=False)


def sha256_hex(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()
