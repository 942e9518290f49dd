"""A pluggable face/liveness check over HTTP: the interface a provider implements.

Configured by `survey_liveness_url` (and `survey_liveness_api_key`, sent as a Bearer token).
The customer, after the identity step and a separate consent, is sent to the provider's own page;
the provider sends them back to us and we ask for the result. Only the result id and the score
are kept (in the case's audit trail), never an image.

    POST {url}/checks          {"reference": <invitation id>, "return_url": <our URL>}
                               -> {"check_id": "...", "url": "<the provider's page for the customer>"}
    GET  {url}/checks/{id}     -> {"status": "pending" | "done", "result_id": "...", "score": 0.97,
                                   "passed": true}

The provider appends nothing to `return_url`; the case's latest started check is the one asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx


class LivenessError(Exception):
    """The provider could not be reached or answered something else than the interface says."""


@dataclass(frozen=True)
class Check:
    check_id: str
    url: str  # where the customer's browser goes


@dataclass(frozen=True)
class LivenessResult:
    status: str  # pending | done
    result_id: str | None
    score: float | None
    passed: bool


class LivenessProvider:
    def __init__(self, url: str, api_key: str = "", *, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the provider's pages (the pages' CSP lets forms go there)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise LivenessError(f"liveness provider unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise LivenessError(f"liveness provider answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise LivenessError("liveness provider answered no JSON") from exc
        if not isinstance(body, dict):
            raise LivenessError("liveness provider answered no JSON object")
        return body

    async def start(self, reference: str, return_url: str) -> Check:
        body = await self._json("POST", "/checks", json={"reference": reference, "return_url": return_url})
        check_id, url = body.get("check_id"), body.get("url")
        if not isinstance(check_id, str) or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise LivenessError("liveness provider's start answer lacks check_id or url")
        return Check(check_id, url)

    async def result(self, check_id: str) -> LivenessResult:
        body = await self._json("GET", f"/checks/{check_id}")
        status = body.get("status")
        if status not in ("pending", "done"):
            raise LivenessError(f"liveness provider's status {status!r} is not pending or done")
        score = body.get("score")
        result_id = body.get("result_id")
        return LivenessResult(status, result_id if isinstance(result_id, str) else None,
                              float(score) if isinstance(score, (int, float)) else None,
                              status == "done" and body.get("passed") is True)

    async def aclose(self) -> None:
        await self._client.aclose()
