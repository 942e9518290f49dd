"""The survey pages' web security: the session cookie, CSRF and submission keys, response headers.

A link's token is traded once per visit for a session cookie named after the invitation
(`sv_<invitation id>`: two invitations open in one browser keep their own sessions), HttpOnly,
SameSite=Lax, Secure when the request came over https. Every form carries the session's CSRF
token (compared in constant time) and a `submission_key` made for that render: a random nonce
bound by HMAC to the session's CSRF token and the page, so a key cannot be made up for another
session or page, and the store records each key once (a double tap, a retry or a back-button
re-post is one submission). Every response carries the headers of `SECURITY_HEADERS`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Iterable, Mapping

from starlette.requests import Request
from starlette.responses import Response

COOKIE_PREFIX = "sv_"
NONCE_BYTES = 12


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """No script at all; styles and images from the gateway only; forms post to the gateway (and
    to a liveness provider's page when one is configured: a form's redirect there is a form action)."""
    targets = " ".join(["'self'", *form_targets])
    return ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
            f"form-action {targets}; base-uri 'none'; frame-ancestors 'none'")


def security_headers(form_targets: Iterable[str] = ()) -> dict[str, str]:
    return {
        "Referrer-Policy": "no-referrer",  # the clean URL and, before the redirect, the token stay here
        "Cache-Control": "no-store",  # nothing personal in a shared browser's cache or history snapshot
        "Content-Security-Policy": content_security_policy(form_targets),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def apply_headers(response: Response, headers: Mapping[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response


def cookie_name(invitation_id: str) -> str:
    return COOKIE_PREFIX + invitation_id


def is_https(request: Request) -> bool:
    """https as the customer sees it: the scheme, or the proxy's X-Forwarded-Proto in front of us."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_session_cookie(response: Response, request: Request, invitation_id: str, value: str) -> None:
    """A browser-session cookie (gone when the browser closes); the idle timeout is the server's,
    which extends a session while it is used (a Max-Age here would not follow)."""
    response.set_cookie(cookie_name(invitation_id), value, path="/", httponly=True, samesite="lax",
                        secure=is_https(request))


def session_cookie(request: Request, invitation_id: str) -> str | None:
    value = request.cookies.get(cookie_name(invitation_id))
    return value or None


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing value on either side is never equal."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _key_mac(csrf_token: str, page: str, nonce: str) -> str:
    mac = hmac.new(csrf_token.encode("utf-8"), f"submission|{page}|{nonce}".encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[:20]


def new_submission_key(csrf_token: str, page: str) -> str:
    nonce = secrets.token_urlsafe(NONCE_BYTES)
    return f"{nonce}.{_key_mac(csrf_token, page, nonce)}"


def submission_key_valid(key: str | None, csrf_token: str, page: str) -> bool:
    if not key or key.count(".") != 1 or len(key) > 100:
        return False
    nonce, mac = key.split(".")
    return hmac.compare_digest(mac, _key_mac(csrf_token, page, nonce))


def html_sha256(body: bytes) -> str:
    """The hash of the exact bytes served (the audit's `page_shown`)."""
    return hashlib.sha256(body).hexdigest()
