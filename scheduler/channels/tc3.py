"""Tencent Cloud's API 3.0 request signature (TC3-HMAC-SHA256), as pure functions.

    CanonicalRequest = METHOD \\n / \\n QUERY \\n "content-type:...\\nhost:...\\n" \\n content-type;host \\n hex(sha256(body))
    StringToSign     = "TC3-HMAC-SHA256" \\n timestamp \\n <UTC date>/<service>/tc3_request \\n hex(sha256(CanonicalRequest))
    key              = HMAC("TC3" + SecretKey, date) -> HMAC(service) -> HMAC("tc3_request")
    Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<scope>, SignedHeaders=content-type;host, Signature=<hex>

The date is the UTC date of the timestamp (a local date fails at midnight). The caller passes the
timestamp; nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

ALGORITHM = "TC3-HMAC-SHA256"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def canonical_request(method: str, query: str, headers: Mapping[str, str], payload: bytes) -> tuple[str, str]:
    """(CanonicalRequest, SignedHeaders) over the given headers (names and values lower-cased, trimmed)."""
    items = sorted((k.lower().strip(), v.strip().lower()) for k, v in headers.items())
    block = "".join(f"{k}:{v}\n" for k, v in items)
    signed = ";".join(k for k, _ in items)
    return f"{method.upper()}\n/\n{query}\n{block}\n{signed}\n{hashlib.sha256(payload).hexdigest()}", signed


def string_to_sign(canonical: str, timestamp: int, service: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret_key: str, to_sign: str, timestamp: int, service: str) -> str:
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), utc_date(timestamp)), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(*, secret_id: str, secret_key: str, service: str, host: str, timestamp: int, payload: bytes,
                  content_type: str = JSON_CONTENT_TYPE, method: str = "POST", query: str = "") -> str:
    canonical, signed = canonical_request(method, query, {"content-type": content_type, "host": host}, payload)
    sig = signature(secret_key, string_to_sign(canonical, timestamp, service), timestamp, service)
    return (f"{ALGORITHM} Credential={secret_id}/{utc_date(timestamp)}/{service}/tc3_request, "
            f"SignedHeaders={signed}, Signature={sig}")


@dataclass(frozen=True)
class ParsedAuthorization:
    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an Authorization header; ValueError when it is not TC3's shape."""
    algorithm, _, rest = value.strip().partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
    credential = fields.get("Credential", "").split("/")
    if algorithm != ALGORITHM or len(credential) != 4 or credential[3] != "tc3_request" or "Signature" not in fields:
        raise ValueError(f"not a {ALGORITHM} Authorization header")
    return ParsedAuthorization(credential[0], credential[1], credential[2],
                               tuple(fields.get("SignedHeaders", "").split(";")), fields["Signature"])
