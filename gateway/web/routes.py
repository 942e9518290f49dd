"""HTTP and WebSocket endpoints."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import Verdict, check_twilio_signature
from gateway.services import Services
from gateway.storage.results import iso_utc
from gateway.calls.session import CLOSE_SHUTTING_DOWN, SHUTTING_DOWN_REASON, CallSession
from gateway.telephony.base import Adapter
from gateway.telephony.freeswitch import FreeswitchAdapter
from gateway.telephony.generic import GenericCallAdapter
from gateway.telephony.twilio import TwilioAdapter
from gateway.telephony.vosk_server import VoskServerAdapter
from gateway.web.provider_hooks import provider_hook_routes

log = logging.getLogger(__name__)


def _services(conn: Request | WebSocket) -> Services:
    return conn.app.state.services


async def _authorize(ws: WebSocket, services: Services) -> Verdict:
    host = ws.client.host if ws.client else None
    verdict = services.auth.check_upgrade(host, ws.headers, ws.query_params)
    if verdict is Verdict.DENIED:
        services.metrics.count_refusal("auth")
        log.warning("refused %s upgrade from %s: %s", ws.url.path, host,
                    "not a loopback client and no API keys configured" if services.auth.open_loopback_only
                    else "invalid API key")
        # Closing before accept makes the server answer the upgrade with HTTP 403.
        await ws.close(code=1008)
    return verdict


def _call_endpoint(make_adapter: Callable[[WebSocket, Services], Adapter]):
    async def endpoint(ws: WebSocket) -> None:
        services = _services(ws)
        verdict = await _authorize(ws, services)
        if verdict is Verdict.DENIED:
            return
        if services.registry.draining:
            services.metrics.count_refusal("shutdown")
            await ws.accept()  # to close with a code and reason, as while starting
            await ws.close(code=CLOSE_SHUTTING_DOWN, reason=SHUTTING_DOWN_REASON)
            return
        if not services.startup.ready:
            # Accepted only to close with a code and reason the platform can act on (before
            # accepting, the server could only answer HTTP 403).
            services.metrics.count_refusal("starting")
            await ws.accept()
            await ws.close(code=1013, reason="starting, try again")
            return
        await CallSession(ws, make_adapter(ws, services), services, verdict).run()

    return endpoint


def _call_id(ws: WebSocket) -> str:
    return ws.query_params.get("call_id") or ws.headers.get("x-call-id") or f"ws-{id(ws):x}"


async def twilio_endpoint(ws: WebSocket) -> None:
    services = _services(ws)
    token = services.settings.twilio_auth_token
    if token:
        url = services.settings.public_url.rstrip("/") + ws.url.path
        if ws.url.query:
            url += "?" + ws.url.query
        if not check_twilio_signature(token, url, ws.headers.get("x-twilio-signature")):
            services.metrics.count_refusal("auth")
            log.warning("refused /ws/twilio upgrade: bad or missing X-Twilio-Signature")
            await ws.close(code=1008)
            return
    await _call_endpoint(lambda _ws, _s: TwilioAdapter())(ws)


async def events_endpoint(ws: WebSocket) -> None:
    """Live call events for supervisors and downstream systems (optionally one call: ?call_id=)."""
    services = _services(ws)
    verdict = await _authorize(ws, services)
    if verdict is Verdict.DENIED:
        return
    if verdict is Verdict.DEFERRED:
        await ws.close(code=1008)
        return
    await ws.accept()
    sub = services.registry.subscribe(ws.query_params.get("call_id"))

    async def pump() -> None:
        while True:
            await ws.send_json(await sub.queue.get())

    sender = asyncio.create_task(pump())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        services.registry.unsubscribe(sub)


async def livez(request: Request) -> Response:
    """Liveness: the process runs and serves (whether or not it is ready for calls)."""
    return JSONResponse({"status": "alive"})


async def healthz(request: Request) -> Response:
    """Readiness: 503 while the model and recognizers are prepared or while draining, then database and calls."""
    services = _services(request)
    if services.registry.draining:  # shutting down: send no new calls here
        return JSONResponse({"status": "draining", "active_calls": services.registry.active}, status_code=503)
    if not services.startup.ready or services.speech is None:
        return JSONResponse({"status": "starting", "doing": services.startup.doing}, status_code=503)
    try:
        await services.database.ping()
    except Exception as exc:  # the database being down is exactly what this reports
        return JSONResponse({"status": "unhealthy", "database": str(exc)}, status_code=503)
    return JSONResponse(
        {"status": "ok", "active_calls": services.registry.active, "max_calls": services.settings.max_calls,
         "model": services.speech.model_path.name}
    )


async def metrics(request: Request) -> Response:
    services = _services(request)
    speech = services.speech  # None while starting: no recognizers yet
    body = services.metrics.render(
        active_calls=services.registry.active,
        max_calls=services.settings.max_calls,
        decode_lag=services.registry.max_decode_lag(),
        recognizers_idle=speech.pool.idle if speech else 0,
        recognizers_warming=speech.warming if speech else 0,
        static_graph=speech.static_graph if speech else False,
    )
    if services.reminders is not None:
        from scheduler.store import status_counts

        body += services.reminders.metrics.render(await status_counts(services.database.engine))
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


async def call_transcript(request: Request) -> Response:
    services = _services(request)
    if not _http_authorized(request, services):
        return JSONResponse({"error": "missing or invalid API key"}, status_code=401)
    call_id = request.path_params["call_id"]
    call = await services.database.get_call(call_id)
    if call is None:
        return JSONResponse({"error": f"no call {call_id}"}, status_code=404)
    segments = await services.database.call_transcript(call_id)
    return JSONResponse(
        {
            "call_id": call_id,
            "protocol": call["protocol"],
            "started_at": iso_utc(call["started_at"]),
            "ended_at": iso_utc(call["ended_at"]),
            "end_reason": call["end_reason"],
            "segments": [
                {"seq": s["seq"], "text": s["text"], "start": s["start_s"], "end": s["end_s"], "confidence": s["confidence"]}
                for s in segments
            ],
        }
    )


async def index(request: Request) -> Response:
    """What a plain GET / finds: which gateway this is and where its protocols are."""
    return PlainTextResponse(
        "insurance voice gateway: WebSocket on / (and /ws/asr) speaks the vosk-server protocol; "
        "/ws/call, /ws/twilio, /ws/freeswitch, /ws/events; GET /livez, /healthz, /metrics, /api/...\n"
    )


def _http_authorized(request: Request, services: Services) -> bool:
    host = request.client.host if request.client else None
    return services.auth.check_upgrade(host, request.headers, request.query_params) is Verdict.ALLOWED


def routes() -> list[Route | WebSocketRoute]:
    vosk_server = _call_endpoint(lambda ws, s: VoskServerAdapter(call_id=_call_id(ws)))
    return [
        Route("/", index),
        # vosk-server clients connect to the server's root (ws://host:2700): same protocol as /ws/asr.
        WebSocketRoute("/", vosk_server),
        Route("/livez", livez),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/calls/{call_id}/transcript", call_transcript),
        WebSocketRoute("/ws/asr", vosk_server),
        WebSocketRoute("/ws/twilio", twilio_endpoint),
        WebSocketRoute(
            "/ws/freeswitch",
            _call_endpoint(lambda ws, s: FreeswitchAdapter.for_connection(_call_id(ws), ws.query_params,
                                                                          ws.scope.get("subprotocols", []))),
        ),
        WebSocketRoute("/ws/call", _call_endpoint(lambda ws, s: GenericCallAdapter())),
        WebSocketRoute("/ws/events", events_endpoint),
        # Provider receipts and replies go to the sink the scheduler puts on app.state.receipt_sink (503 until then).
        *provider_hook_routes(lambda request: getattr(request.app.state, "receipt_sink", None),
                              lambda request: _services(request).settings),
    ]
