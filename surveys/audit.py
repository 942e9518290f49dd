"""The audit trail's hash chain: every event of an invitation hashed with the previous event's
hash, so an edited, removed or reordered event breaks the chain (verify says where).

hash = sha256(canonical JSON of {"prev", "kind", "at", "data"}), `at` in UTC ISO 8601 with
microseconds (a naive time is taken as UTC, as SQLite hands it back). Removing the *last* events
leaves a valid shorter chain: the store's seq numbers and the invitation's status cover that.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping, Sequence

from surveys.canonical import canonical_json, sha256_hex, utc_iso

GENESIS = "0" * 64
# The kinds the survey store records (documentation and a shared vocabulary: verify checks the
# chain, not the kinds, so a kind added later never breaks an old chain).
KINDS = (
    "invited", "sent", "opened", "session_started", "otp_sent", "otp_refused", "identity_passed",
    "identity_failed", "locked", "page_shown", "answers", "completed", "contact_requested", "liveness",
    "expired", "revoked", "voice_call", "voice_answers", "flagged",
)


def _at(at: datetime | str) -> str:
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return utc_iso(at)


def event_hash(prev_hash: str, kind: str, at: datetime | str, data: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({"prev": prev_hash, "kind": kind, "at": _at(at), "data": dict(data)}))


def chain(events: Sequence[Mapping[str, Any]], prev_hash: str = GENESIS) -> list[dict[str, Any]]:
    """The events ({kind, at, data}) with prev_hash and hash filled in, in order."""
    out = []
    for event in events:
        digest = event_hash(prev_hash, event["kind"], event["at"], event.get("data") or {})
        out.append({**event, "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
    return out


def verify(events: Sequence[Mapping[str, Any]]) -> int | None:
    """The index of the first event that breaks the chain, None when it holds.

    Each event needs kind, at, data, prev_hash and hash; a `seq` (when present) must count up by
    one. The first event's prev_hash is GENESIS.
    """
    prev = GENESIS
    seq = None
    for i, event in enumerate(events):
        try:
            if event.get("seq") is not None:
                if seq is not None and event["seq"] != seq + 1:
                    return i
                seq = event["seq"]
            if event["prev_hash"] != prev:
                return i
            data = event.get("data") or {}
            if isinstance(data, str):  # JSON text as some drivers hand it back
                data = json.loads(data)
            if event["hash"] != event_hash(prev, event["kind"], event["at"], data):
                return i
        except (KeyError, TypeError, ValueError, AttributeError):
            return i
        prev = event["hash"]
    return None
