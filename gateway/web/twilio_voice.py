"""Twilio voice webhooks around the media stream.

Twilio hands a call to the gateway with TwiML like

    <Response>
      <Connect action="https://gw.example.com/twilio/stream-ended">
        <Stream url="wss://gw.example.com/ws/twilio">
          <Parameter name="flow" value="claim_report"/>
          <Parameter name="token" value="API-KEY"/>
        </Stream>
      </Connect>
    </Response>

A media stream cannot transfer a call itself; when the bot ends the stream,
Twilio requests the `action` URL, and the answer depends on how the call ended:
a transfer dials the agent line (`GATEWAY_TRANSFER_NUMBER`), anything else
hangs up.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import twilio_signature
from gateway.services import Services


def _twiml(body: str) -> Response:
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', media_type="application/xml")


async def stream_ended(request: Request) -> Response:
    services: Services = request.app.state.services
    # Twilio posts application/x-www-form-urlencoded; parsed here to need no multipart library.
    params = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    token = services.settings.twilio_auth_token
    if token:
        url = services.settings.public_url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")
        url += request.url.path + (f"?{request.url.query}" if request.url.query else "")
        expected = twilio_signature(token, url, params)
        given = request.headers.get("x-twilio-signature") or ""
        if not hmac.compare_digest(expected, given):
            return Response("invalid signature", status_code=403)
    call_sid = params.get("CallSid", "")
    call = await services.database.get_call(call_sid) if call_sid else None
    number = services.settings.transfer_number
    if call is not None and call["end_reason"] == "transfer" and number:
        return _twiml(f"<Dial>{escape(number)}</Dial>")
    return _twiml("<Hangup/>")


def twilio_routes() -> list[Route]:
    return [Route("/twilio/stream-ended", stream_ended, methods=["POST"])]
