"""Alibaba Cloud's V3 request signature (ACS3-HMAC-SHA256), as pure functions.

The signature covers the method, the path, the sorted and percent-encoded query, every signed
header (host, content-type and all x-acs-* headers, names lower-cased and sorted, values trimmed),
and the SHA-256 of the body:

    CanonicalRequest = METHOD \\n URI \\n QUERY \\n "name:value\\n"... \\n name;name... \\n hex(sha256(body))
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))
    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,Signature=<hex>

RPC-style APIs (dysmsapi, dyvmsapi) are called as POST / with their parameters in a form body
(`x-acs-action` and `x-acs-version` name the operation). No clock and no randomness in here: the
caller passes the time and the nonce.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"


def percent_encode(value: str) -> str:
    """RFC 3986: letters, digits and -_.~ stay; everything else (space too) is %XX of its UTF-8."""
    return quote(value, safe="-_.~")


def form_body(params: Mapping[str, str]) -> bytes:
    """The parameters as an application/x-www-form-urlencoded body, in Alibaba's encoding."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())).encode()


def canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query.items()))


def canonical_headers(headers: Mapping[str, str | Sequence[str]]) -> tuple[str, str]:
    """(the canonical header block, the signed header names): host, content-type and x-acs-*;
    names lower-cased (the same name twice: values sorted and joined by commas)."""
    values: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in ("host", "content-type") or lowered.startswith("x-acs-"):
            items = [value] if isinstance(value, str) else list(value)
            values.setdefault(lowered, []).extend(v.strip() for v in items)
    names = sorted(values)
    block = "".join(f"{n}:{','.join(sorted(values[n]))}\n" for n in names)
    return block, ";".join(names)


def canonical_request(method: str, path: str, query: Mapping[str, str],
                      headers: Mapping[str, str | Sequence[str]], hashed_payload: str) -> tuple[str, str]:
    """(CanonicalRequest, SignedHeaders)."""
    block, signed = canonical_headers(headers)
    uri = quote(path or "/", safe="/~")
    return f"{method.upper()}\n{uri}\n{canonical_query(query)}\n{block}\n{signed}\n{hashed_payload}", signed


def signature(access_key_secret: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str | Sequence[str]],
                  hashed_payload: str, access_key_id: str, access_key_secret: str) -> str:
    canonical, signed = canonical_request(method, path, query, headers, hashed_payload)
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature(access_key_secret, canonical)}"


def acs_date(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    headers: dict[str, str]  # every header to send, Authorization included
    body: bytes


def sign_rpc(*, host: str, action: str, version: str, params: Mapping[str, str], access_key_id: str,
             access_key_secret: str, at: datetime, nonce: str) -> SignedRequest:
    """An RPC call (POST / with a form body) signed for `host` (exactly the Host header sent)."""
    body = form_body(params)
    hashed = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "content-type": "application/x-www-form-urlencoded",
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": acs_date(at),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashed,
    }
    headers["authorization"] = authorization("POST", "/", {}, headers, hashed, access_key_id, access_key_secret)
    return SignedRequest("POST", "/", headers, body)


@dataclass(frozen=True)
class ParsedAuthorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an Authorization header; ValueError when it is not ACS3's shape."""
    algorithm, _, rest = value.strip().partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
    if algorithm != ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise ValueError(f"not an {ALGORITHM} Authorization header")
    return ParsedAuthorization(algorithm, fields["Credential"],
                               tuple(h for h in fields["SignedHeaders"].split(";") if h), fields["Signature"])
