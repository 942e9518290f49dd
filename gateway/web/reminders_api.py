"""Admin API of the reminders: campaigns, a dry run, pause/resume, history, dead letters, opt-outs,
and a claim report's missing documents (a document received stops its reminders at once).

    GET  /api/reminders/campaigns                      campaigns, their steps, paused, rows by status
    POST /api/reminders/campaigns/{name}/pause|resume
    GET  /api/reminders/dry-run?day=YYYY-MM-DD         default tomorrow: who would be reminded, who skipped and why
    GET  /api/reminders/history?recipient=...          a phone number's or openid's reminders with their events
    GET  /api/reminders/dead                           dead letters
    POST /api/reminders/opt-outs                       {"recipient", "channel": sms|wechat|voice|*, "purpose": ...|*}
    GET  /api/claims/{result_id}/missing-documents
    POST /api/claims/{result_id}/missing-documents     {"documents": ["发票", ...]}
    POST /api/claims/{result_id}/documents-received    {"document": "发票"}
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.privacy import mask_number
from gateway.services import Services
from gateway.storage.results import iso_utc
from gateway.web.api import authorized, may_see_pii
from scheduler import store
from scheduler.optout import OptOut

CHANNELS = ("sms", "wechat", "voice", "*")
PURPOSES = ("service", "marketing", "*")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _guard(request: Request) -> tuple[Services, Any] | JSONResponse:
    services: Services = request.app.state.services
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    if services.reminders is None:
        return _error(503, "reminders are not configured")
    return services, services.reminders


def _plain(value: Any, show_pii: bool, key: str = "") -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        if key == "context":
            return {k: _plain(v, show_pii, k) for k, v in value.items() if k in ("values",) or show_pii}
        return {k: _plain(v, show_pii, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, show_pii) for v in value]
    if key == "recipient" and not show_pii and isinstance(value, str):
        return mask_number(value)
    return value


async def _json(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        data = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        return _error(400, f"malformed JSON: {exc}")
    if not isinstance(data, dict):
        return _error(400, "expected a JSON object")
    return data


async def campaigns(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, dispatcher = guard
    async with services.database.engine.connect() as conn:
        paused = await store.paused_campaigns(conn)
    counts: dict[str, dict[str, int]] = {}
    for campaign, _channel, status, n in await store.status_counts(services.database.engine):
        counts.setdefault(campaign, {})[status] = counts.setdefault(campaign, {}).get(status, 0) + n
    return JSONResponse({"campaigns": [
        {"name": c.name, "description": c.description, "purpose": c.purpose, "source": c.source, "exit": list(c.exit),
         "paused": c.name in paused, "file": c.path, "rows": counts.get(c.name, {}),
         "repeat": {"every_s": c.repeat.every.total_seconds(), "max": c.repeat.max} if c.repeat else None,
         "steps": [{"name": s.name, "offset_s": s.offset.total_seconds(), "at": s.at.isoformat("minutes"),
                    "channels": [{"channel": ch.kind, "provider": ch.provider, "template": ch.template.code,
                                  "configured": ch.kind == "task" or ch.provider in dispatcher.channels}
                                 for ch in s.channels],
                    "escalate": {"unless": s.escalate.unless, "within_s": s.escalate.within.total_seconds()}
                    if s.escalate else None} for s in c.steps]}
        for c in dispatcher.campaigns.values()]})


async def pause(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, dispatcher = guard
    name, action = request.path_params["name"], request.path_params["action"]
    if name not in dispatcher.campaigns:
        return _error(404, f"no campaign {name}")
    if action not in ("pause", "resume"):
        return _error(404, f"no action {action} (pause or resume)")
    await store.set_paused(services.database.engine, name, action == "pause", dispatcher.clock())
    return JSONResponse({"campaign": name, "paused": action == "pause"})


async def dry_run(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, dispatcher = guard
    text = request.query_params.get("day")
    try:
        day = date.fromisoformat(text) if text else dispatcher.rules.local_day(dispatcher.clock()) + timedelta(days=1)
    except ValueError:
        return _error(400, f"day must be YYYY-MM-DD, got {text!r}")
    result = await dispatcher.dry_run(day)
    return JSONResponse(_plain(result, may_see_pii(request, services)))


async def history(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, _ = guard
    recipient = request.query_params.get("recipient", "").strip()
    if not recipient:
        return _error(400, "recipient (a phone number or openid) is required")
    rows = await store.history(services.database.engine, recipient)
    return JSONResponse({"history": _plain(rows, may_see_pii(request, services))})


async def dead(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, _ = guard
    rows = await store.dead_letters(services.database.engine)
    return JSONResponse({"dead": _plain(rows, may_see_pii(request, services))})


async def add_opt_out(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    _, dispatcher = guard
    data = await _json(request)
    if isinstance(data, JSONResponse):
        return data
    recipient, channel, purpose = str(data.get("recipient") or ""), data.get("channel", "*"), data.get("purpose", "*")
    if not recipient or channel not in CHANNELS or purpose not in PURPOSES:
        return _error(400, f"expected recipient, channel ({'|'.join(CHANNELS)}) and purpose ({'|'.join(PURPOSES)})")
    added = await dispatcher.sink.opt_out(OptOut(recipient, channel, purpose, "api"))
    return JSONResponse({"added": added}, status_code=201 if added else 200)


async def missing_documents(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, dispatcher = guard
    result_id = request.path_params["result_id"]
    engine = services.database.engine
    if request.method == "POST":
        data = await _json(request)
        if isinstance(data, JSONResponse):
            return data
        docs = data.get("documents")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) and d.strip() for d in docs):
            return _error(400, 'expected {"documents": ["发票", ...]} (non-empty names)')
        try:
            await store.request_documents(engine, result_id, [d.strip() for d in docs], dispatcher.clock())
        except LookupError as exc:
            return _error(404, str(exc))
    rows = await store.documents(engine, result_id)
    body = {"result_id": result_id, "documents": [
        {"document": r["document"], "requested_at": iso_utc(r["requested_at"]), "received_at": iso_utc(r["received_at"])}
        for r in rows]}
    return JSONResponse(body, status_code=201 if request.method == "POST" else 200)


async def document_received(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, dispatcher = guard
    data = await _json(request)
    if isinstance(data, JSONResponse):
        return data
    document = str(data.get("document") or "").strip()
    if not document:
        return _error(400, 'expected {"document": "发票"}')
    outcome = await store.receive_document(services.database.engine, request.path_params["result_id"], document,
                                           dispatcher.clock())
    if not outcome["received"] and not any(r["document"] == document for r in
                                           await store.documents(services.database.engine,
                                                                 request.path_params["result_id"])):
        return _error(404, f"document {document!r} was not asked for on this claim")
    return JSONResponse(outcome)


def reminder_routes() -> list[Route]:
    return [
        Route("/api/reminders/campaigns", campaigns),
        Route("/api/reminders/campaigns/{name}/{action}", pause, methods=["POST"]),
        Route("/api/reminders/dry-run", dry_run),
        Route("/api/reminders/history", history),
        Route("/api/reminders/dead", dead),
        Route("/api/reminders/opt-outs", add_opt_out, methods=["POST"]),
        Route("/api/claims/{result_id}/missing-documents", missing_documents, methods=["GET", "POST"]),
        Route("/api/claims/{result_id}/documents-received", document_received, methods=["POST"]),
    ]
