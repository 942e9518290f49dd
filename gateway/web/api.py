"""HTTP API: policy records in; claim reports and any flow's results out."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.storage import policies, reports, result_view, results
from gateway.auth import Verdict
from gateway.services import Services

MAX_IMPORT_BYTES = 64 * 1024 * 1024


def _services(request: Request) -> Services:
    return request.app.state.services


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _key(request: Request) -> str | None:
    from gateway.auth import bearer_token

    return bearer_token(request.headers) or request.headers.get("x-api-key") or request.query_params.get("token")


def authorized(request: Request, services: Services) -> bool:
    host = request.client.host if request.client else None
    return services.auth.check_upgrade(host, request.headers, request.query_params) is Verdict.ALLOWED


def may_see_pii(request: Request, services: Services) -> bool:
    """Unmasked personal data needs a key listed in pii_api_keys (or the keyless loopback mode)."""
    if services.auth.open_loopback_only:
        return True
    key = _key(request)
    return bool(key) and key in services.settings.pii_api_keys


async def _body(request: Request) -> bytes | JSONResponse:
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        return _error(413, f"body over {MAX_IMPORT_BYTES} bytes; split the import")
    return body


async def import_policies(request: Request) -> Response:
    """POST text/csv (header line with the policy columns) or JSON (a list, or {"policies": [...]})."""
    services = _services(request)
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    today = services.today()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "the body is not UTF-8 text")
    try:
        if content_type in {"text/csv", "application/csv", "text/plain"}:
            rows, errors = policies.parse_csv(text, today)
        elif content_type in {"application/json", ""}:
            data = json.loads(text)
            if isinstance(data, dict):
                data = data.get("policies")
            if not isinstance(data, list):
                return _error(400, 'expected a JSON list of policies or {"policies": [...]}')
            rows, errors = policies.validate_rows(data, today)
        else:
            return _error(415, f"unsupported content type {content_type!r}; send text/csv or application/json")
    except json.JSONDecodeError as exc:
        return _error(400, f"malformed JSON: {exc}")
    except policies.PolicyImportError as exc:
        return _error(400, str(exc))
    imported = await policies.upsert(services.database.engine, rows)
    await services.reload_records()
    status = 200 if not errors else 207  # some rows were refused; the good ones were imported
    return JSONResponse(
        {"imported": imported, "rejected": len(errors), "errors": errors[:100],
         "total": await policies.count(services.database.engine)},
        status_code=status,
    )


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date or time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)


async def list_reports(request: Request) -> Response:
    services = _services(request)
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    q = request.query_params
    status = q.get("status")
    if status and status not in reports.STATUSES:
        return _error(400, f"status must be one of {', '.join(reports.STATUSES)}")
    try:
        limit, offset, since, until = _page_and_period(q)
    except ValueError as exc:
        return _error(400, str(exc) if "ISO" in str(exc) else "limit and offset must be whole numbers")
    total, rows = await reports.listing(
        services.database.engine, status=status, call_id=q.get("call_id"), since=since, until=until,
        limit=limit, offset=offset,
    )
    show = may_see_pii(request, services)
    return JSONResponse({"total": total, "limit": limit, "offset": offset,
                         "reports": [reports.public(r, show_pii=show) for r in rows]})


def _page_and_period(q) -> tuple[int, int, datetime | None, datetime | None]:
    """?limit= (1..500), ?offset=, ?since=, ?until= of a listing; ValueError names what is wrong."""
    limit = min(max(int(q.get("limit", 50)), 1), 500)
    offset = max(int(q.get("offset", 0)), 0)
    return limit, offset, _parse_time(q.get("since"), "since"), _parse_time(q.get("until"), "until")


async def get_report(request: Request) -> Response:
    services = _services(request)
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    row = await reports.get(services.database.engine, request.path_params["report_id"])
    if row is None:
        return _error(404, f"no report {request.path_params['report_id']}")
    return JSONResponse(reports.public(row, show_pii=may_see_pii(request, services)))


async def report_schema(request: Request) -> Response:
    return JSONResponse(reports.json_schema())


async def list_results(request: Request) -> Response:
    """Every flow's results: ?flow=&status=&call_id=&since=&until=&policy_number=&phone=&limit=&offset=."""
    services = _services(request)
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    q = request.query_params
    try:
        limit, offset, since, until = _page_and_period(q)
    except ValueError as exc:
        return _error(400, str(exc) if "ISO" in str(exc) else "limit and offset must be whole numbers")
    total, rows = await results.query(
        services.database.engine, flow=q.get("flow"), status=q.get("status"), call_id=q.get("call_id"),
        since=since, until=until, policy_number=q.get("policy_number"), phone=q.get("phone"),
        limit=limit, offset=offset,
    )
    show = may_see_pii(request, services)
    return JSONResponse({"total": total, "limit": limit, "offset": offset,
                         "results": [result_view.public(r, show_pii=show) for r in rows]})


async def get_result(request: Request) -> Response:
    services = _services(request)
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    row = await results.get(services.database.engine, request.path_params["result_id"])
    if row is None:
        return _error(404, f"no result {request.path_params['result_id']}")
    return JSONResponse(result_view.public(row, show_pii=may_see_pii(request, services)))


def api_routes() -> list[Route]:
    return [
        Route("/api/policies", import_policies, methods=["POST"]),
        Route("/api/reports", list_reports),
        Route("/api/reports/schema", report_schema),
        Route("/api/reports/{report_id}", get_report),
        Route("/api/results", list_results),
        Route("/api/results/{result_id}", get_result),
    ]
