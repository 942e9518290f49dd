"""A fake face/liveness provider on loopback, speaking gateway/web/survey_liveness.py's interface.

    POST /checks         (Bearer api key) {"reference", "return_url"} -> {"check_id", "url"}
    GET  /h5/{check_id}  the customer's page: here the check is done at once (with `score`,
                         passed when score >= `threshold`) and the browser is sent back (303)
    GET  /checks/{id}    (Bearer api key) -> {"status", "result_id", "score", "passed"}

    with FakeLiveness(api_key="k", score=0.98) as fake:
        settings = settings.replace(survey_liveness_url=fake.url, survey_liveness_api_key="k")
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fakes.aliyun_sms import LoopbackServer


@dataclass
class FakeCheck:
    check_id: str
    reference: str
    return_url: str
    status: str = "pending"
    result_id: str | None = None
    score: float | None = None


class FakeLiveness:
    def __init__(self, api_key: str = "liveness-key", score: float = 0.97, threshold: float = 0.8) -> None:
        self.api_key = api_key
        self.score = score
        self.threshold = threshold
        self.checks: dict[str, FakeCheck] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[
            Route("/checks", self._start, methods=["POST"]),
            Route("/checks/{check_id}", self._result, methods=["GET"]),
            Route("/h5/{check_id}", self._page, methods=["GET"]),
        ])
        self._server = LoopbackServer(app)
        self.url = self._server.url

    def __enter__(self) -> "FakeLiveness":
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _start(self, request: Request) -> Response:
        self.requests.append(("start", request.headers.get("authorization", "")))
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        check = FakeCheck(uuid.uuid4().hex, str(body.get("reference", "")), str(body.get("return_url", "")))
        with self._lock:
            self.checks[check.check_id] = check
        return JSONResponse({"check_id": check.check_id, "url": f"{self.url}/h5/{check.check_id}"})

    async def _page(self, request: Request) -> Response:
        with self._lock:
            check = self.checks.get(request.path_params["check_id"])
            if check is None:
                return Response("unknown check", status_code=404)
            check.status, check.score, check.result_id = "done", self.score, "LV-" + check.check_id[:12]
        return RedirectResponse(check.return_url, status_code=303)

    async def _result(self, request: Request) -> Response:
        self.requests.append(("result", request.headers.get("authorization", "")))
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        with self._lock:
            check = self.checks.get(request.path_params["check_id"])
        if check is None:
            return JSONResponse({"error": "unknown check"}, status_code=404)
        return JSONResponse({"status": check.status, "result_id": check.result_id, "score": check.score,
                             "passed": check.status == "done" and (check.score or 0) >= self.threshold})
