"""Outbound reminder calls, the gateway's side: Twilio's TwiML and status webhooks, and the
reminder flow's outcome handed on as a receipt.

    POST /voice/twilio/answer?delivery_id=…&flow=…&machine=hangup|leave_message&p.<name>=…
        Twilio fetches it when the callee answers (form: CallSid, AnsweredBy, …). A person gets
        <Connect action="…/twilio/stream-ended"><Stream url="wss://…/ws/twilio"> with the
        delivery id, flow, provider and message params as <Parameter>s; a machine (AnsweredBy
        machine_*, fax) gets <Hangup/>, or with `machine=leave_message` the message said once.
    POST /voice/twilio/status?delivery_id=…
        Twilio's status callbacks (CallStatus queued … completed, busy, no-answer, failed,
        canceled; AnsweredBy) become `Receipt`s for the receipt sink.

Both verify `X-Twilio-Signature` (HMAC-SHA1 with the auth token over the public URL and the
sorted form). The sink is `Services.receipt_sink`, wired by the app (the scheduler's); the
reminder flow's result reaches it through `outcome_listener`, a result listener.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import twilio_signature
from gateway.calls.core_events import SaveReport
from gateway.calls.flow_turns import DELIVERY_PARAM
from gateway.services import Services
from scheduler.channels.base import Receipt, ReceiptSink, ReceiptStatus
from scheduler.channels.twilio_voice import PARAM_PREFIX, PROVIDER, STATUS_PATH, TWIML_PATH, http_base

log = logging.getLogger(__name__)

MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
# Twilio's CallStatus -> ours; queued and initiated say nothing the scheduler acts on.
_STATUSES: dict[str, ReceiptStatus] = {
    "ringing": "ringing", "in-progress": "answered", "answered": "answered", "completed": "completed",
    "busy": "busy", "no-answer": "no_answer", "failed": "failed", "canceled": "failed",
}
_RAW_KEYS = ("CallStatus", "AnsweredBy", "CallDuration", "SipResponseCode", "ErrorCode", "ErrorMessage",
             "Timestamp", "SequenceNumber")
# A flow's result status -> the receipt's outcome where the two words differ: a call transferred by
# voice ("转人工") asked for an agent; the keypad's "do not call" is a refusal like "别再打了".
OUTCOME_OF_STATUS = {"transferred": "agent", "do_not_call": "refused"}


def ws_base(public_url: str) -> str:
    url = http_base(public_url)
    return "wss://" + url[len("https://"):] if url.startswith("https://") else "ws://" + url[len("http://"):]


def _twiml(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


def stream_twiml(public_url: str, parameters: Mapping[str, str]) -> str:
    """<Connect><Stream> to our /ws/twilio, the call's parameters as <Parameter>s (pure)."""
    base = http_base(public_url)
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items())
    return _twiml(f"<Connect action={quoteattr(base + '/twilio/stream-ended')}>"
                  f"<Stream url={quoteattr(ws_base(public_url) + '/ws/twilio')}>{params}</Stream></Connect>")


def machine_twiml(message: str | None) -> str:
    """A machine answered: hang up, or (when the campaign allows) say the message once first."""
    say = f'<Say language="zh-CN">{escape(message)}</Say>' if message else ""
    return _twiml(say + "<Hangup/>")


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _form(request: Request) -> dict[str, str]:
    # Twilio posts application/x-www-form-urlencoded; parsed here to need no multipart library.
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def _signed(request: Request, services: Services, form: Mapping[str, str]) -> bool:
    token = services.settings.twilio_auth_token
    if not token:
        return True  # not configured: loopback development (the app logs it at start)
    url = http_base(services.settings.public_url) + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    given = request.headers.get("x-twilio-signature") or ""
    return hmac.compare_digest(twilio_signature(token, url, form), given)


async def _deliver(services: Services, receipt: Receipt) -> bool:
    sink: ReceiptSink | None = services.receipt_sink
    if sink is None:
        log.warning("voice receipt for %s (%s) not taken: no receipt sink is wired", receipt.delivery_id,
                    receipt.status)
        return False
    await sink.receipts([receipt])
    return True


async def twilio_answer(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await _form(request)
    if not _signed(request, services, form):
        log.warning("refused %s: bad or missing X-Twilio-Signature", request.url.path)
        return Response("invalid signature", status_code=403)
    query = request.query_params
    delivery_id, flow = query.get("delivery_id", ""), query.get("flow", "")
    if not delivery_id or not flow:
        log.warning("twilio answer for call %s without delivery_id or flow: hanging up", form.get("CallSid", "-"))
        return Response(machine_twiml(None), media_type="application/xml")
    params = {k[len(PARAM_PREFIX):]: v for k, v in query.multi_items() if k.startswith(PARAM_PREFIX)}
    answered_by = form.get("AnsweredBy", "")
    if answered_by in MACHINE_ANSWERS:
        leave = query.get("machine") == "leave_message"
        log.info("reminder %s: answered by %s, %s", delivery_id, answered_by,
                 "leaving the message" if leave else "hanging up without a message")
        await _deliver(services, Receipt(PROVIDER, "machine", _now(), provider_id=form.get("CallSid") or None,
                                         delivery_id=delivery_id, raw={"AnsweredBy": answered_by}))
        return Response(machine_twiml(params.get("message") if leave else None), media_type="application/xml")
    parameters = {DELIVERY_PARAM: delivery_id, "flow": flow, "provider": PROVIDER, **params}
    if form.get("To"):
        parameters["caller"] = form["To"]  # the other party: whom the call's result is about
    if services.settings.api_keys:
        parameters["token"] = services.settings.api_keys[0]  # /ws/twilio authenticates in the protocol
    return Response(stream_twiml(services.settings.public_url, parameters), media_type="application/xml")


def receipt_of_status(form: Mapping[str, str], delivery_id: str | None, at: datetime) -> Receipt | None:
    """A Twilio status callback as a receipt (None for queued / initiated) (pure)."""
    status = _STATUSES.get(form.get("CallStatus", ""))
    if status is None:
        return None
    answered_by = form.get("AnsweredBy", "")
    if status == "completed" and answered_by in MACHINE_ANSWERS:
        status = "machine"
    error = None
    if form.get("CallStatus") in ("failed", "canceled"):
        error = form.get("ErrorCode") or form.get("SipResponseCode") or form.get("CallStatus")
    return Receipt(PROVIDER, status, at, provider_id=form.get("CallSid") or None, delivery_id=delivery_id,
                   error=error, raw={k: form[k] for k in _RAW_KEYS if k in form})


async def twilio_status(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await _form(request)
    if not _signed(request, services, form):
        log.warning("refused %s: bad or missing X-Twilio-Signature", request.url.path)
        return Response("invalid signature", status_code=403)
    receipt = receipt_of_status(form, request.query_params.get("delivery_id") or None, _now())
    if receipt is not None and not await _deliver(services, receipt):
        return Response("no receipt sink", status_code=503)
    return Response(status_code=204)


def outcome_listener(sink: ReceiptSink) -> Callable[[SaveReport], Awaitable[None]]:
    """A result listener: a stored final result of a call placed for a delivery -> a `completed`
    receipt with the flow's outcome; results of other calls are none of its business."""

    async def listen(save: SaveReport) -> None:
        delivery_id = save.params.get(DELIVERY_PARAM)
        if not delivery_id:
            return
        outcome = OUTCOME_OF_STATUS.get(save.status, save.status)
        raw: dict[str, Any] = {"flow": save.flow, "status": save.status, "result_id": save.report_id,
                               "slots": dict(save.slots)}
        await sink.receipts([Receipt(save.params.get("provider") or "voice", "completed", _now(),
                                     provider_id=save.call_id, delivery_id=delivery_id, outcome=outcome, raw=raw)])

    return listen


def voice_routes() -> list[Route]:
    return [
        Route(TWIML_PATH, twilio_answer, methods=["POST"]),
        Route(STATUS_PATH, twilio_status, methods=["POST"]),
    ]
