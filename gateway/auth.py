"""Who may open a call: API keys, loopback-only mode, Twilio signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Mapping


class Verdict(Enum):
    ALLOWED = "allowed"  # a valid key, or loopback-only mode and a loopback client
    DEFERRED = "deferred"  # no key on the upgrade; the protocol may still carry one
    DENIED = "denied"


@dataclass(frozen=True)
class Authenticator:
    api_keys: frozenset[str]

    @property
    def open_loopback_only(self) -> bool:
        return not self.api_keys

    def check_key(self, key: str | None) -> bool:
        if not key:
            return False
        # Constant-time comparison against every key.
        return any(hmac.compare_digest(key.encode(), k.encode()) for k in self.api_keys)

    def check_upgrade(self, client_host: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> Verdict:
        if self.open_loopback_only:
            return Verdict.ALLOWED if is_loopback(client_host) else Verdict.DENIED
        key = bearer_token(headers) or headers.get("x-api-key") or query.get("token")
        if key is None:
            return Verdict.DEFERRED
        return Verdict.ALLOWED if self.check_key(key) else Verdict.DENIED


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_bind(host: str) -> bool:
    """Would listening on this address serve only this machine?"""
    return is_loopback(host)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by sorted POST params."""
    payload = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def check_twilio_signature(auth_token: str, url: str, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url), signature)
