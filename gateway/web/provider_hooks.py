"""Webhooks the message providers push receipts and replies to, handed to a `ReceiptSink`.

    POST /hooks/aliyun/sms-report/{secret}    Aliyun SmsReport (delivery receipts)
    POST /hooks/aliyun/sms-up/{secret}        Aliyun SmsUp (replies)
    POST /hooks/aliyun/voice-report/{secret}  Aliyun VoiceReport (voice notification results)
    POST /hooks/tencent/sms-status/{secret}   Tencent SMS status callback
    POST /hooks/tencent/sms-reply/{secret}    Tencent SMS reply callback
    GET  /hooks/wechat                        WeChat server URL check (echostr)
    POST /hooks/wechat                        WeChat pushes (events, messages)

WeChat signs its pushes (sha1 of our token, timestamp and nonce), and that is checked. Aliyun and
Tencent do not sign theirs, so their URLs end in a secret path segment (`provider_hook_secret`),
compared in constant time; the access log masks it. Each answers as its provider expects
(Aliyun `{"code": 0, "msg": "成功"}`, Tencent `{"result": 0, "errmsg": "OK"}`, WeChat `success`)
only once the sink took the items: a malformed body is a 400 with the reason, a sink failure a
500, no sink configured a 503 — the provider keeps the push and sends it again, nothing is lost.
Receipts may arrive twice (providers retry); the sink makes applying one idempotent.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from scheduler.channels import aliyun_sms, aliyun_voice, tencent_sms, wechat
from scheduler.channels.base import ReceiptSink, Receipt, Reply

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

SinkSource = ReceiptSink | Callable[[Request], ReceiptSink | None] | None
SettingsSource = Any  # gateway.settings.Settings, or a function of the request giving it


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _aliyun_answer(status: int = 200, reason: str = "") -> Response:
    if status == 200:
        return JSONResponse({"code": 0, "msg": "成功"})
    return JSONResponse({"code": status, "msg": reason}, status_code=status)


def _tencent_answer(status: int = 200, reason: str = "") -> Response:
    if status == 200:
        return JSONResponse({"result": 0, "errmsg": "OK"})
    return JSONResponse({"result": status, "errmsg": reason}, status_code=status)


class ProviderHooks:
    def __init__(self, sink: SinkSource, settings: SettingsSource) -> None:
        self._sink_source = sink
        self._settings_source = settings

    def _settings(self, request: Request) -> Any:
        source = self._settings_source
        return source(request) if callable(source) else source

    def _sink(self, request: Request) -> ReceiptSink:
        source = self._sink_source
        sink = source if source is None or hasattr(source, "receipts") else source(request)  # type: ignore[operator]
        if sink is None:
            raise _Refused(503, "no receipt sink is configured (the scheduler is not running here)")
        return sink

    def _check_secret(self, request: Request) -> None:
        expected = self._settings(request).provider_hook_secret
        if not expected:
            raise _Refused(403, "provider_hook_secret is not set: provider webhooks are closed")
        given = request.path_params.get("secret", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise _Refused(403, "wrong webhook secret")

    @staticmethod
    async def _body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
        return body

    async def _json(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise _Refused(400, f"body is not JSON: {exc}") from None

    async def _hand(self, sink: ReceiptSink, receipts: Sequence[Receipt], replies: Sequence[Reply],
                    where: str) -> None:
        try:
            if receipts:
                await sink.receipts(receipts)
            if replies:
                await sink.replies(replies)
        except Exception as exc:  # noqa: BLE001 - the provider must send it again: answer 500
            log.exception("%s: the receipt sink failed; answering 500 so the provider retries", where)
            raise _Refused(500, f"could not record the push: {type(exc).__name__}") from exc

    def json_hook(self, parse: Callable[[Any, str], list], kind: str, answer: Callable[..., Response],
                   where: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                self._check_secret(request)
                sink = self._sink(request)
                payload = await self._json(request)
                zone = self._settings(request).timezone
                try:
                    items = parse(payload, zone)
                except ValueError as exc:
                    raise _Refused(400, f"{where}: {exc}") from None
                await self._hand(sink, items if kind == "receipts" else [], items if kind == "replies" else [], where)
            except _Refused as refused:
                if refused.status != 500:
                    log.warning("%s push refused: %s %s", where, refused.status, refused.reason)
                return answer(refused.status, refused.reason)
            return answer()

        return endpoint

    async def wechat(self, request: Request) -> Response:
        settings = self._settings(request)
        query = request.query_params
        if not settings.wechat_token:
            log.warning("wechat push refused: wechat_token is not set")
            return PlainTextResponse("wechat_token is not set", status_code=403)
        if not wechat.check_signature(settings.wechat_token, query.get("signature"), query.get("timestamp"),
                                      query.get("nonce")):
            log.warning("wechat push refused: bad signature")
            return PlainTextResponse("bad signature", status_code=403)
        if request.method == "GET":  # the server URL check when the account is configured
            return PlainTextResponse(query.get("echostr", ""))
        try:
            sink = self._sink(request)
            body = await self._body(request)
            try:
                receipts, replies = wechat.parse_push(body)
            except ValueError as exc:
                if query.get("encrypt_type") == "aes":
                    raise _Refused(400, "safe (encrypted) mode is not supported: use plaintext or compatible mode") from None
                raise _Refused(400, f"wechat: {exc}") from None
            await self._hand(sink, receipts, replies, "wechat")
        except _Refused as refused:
            if refused.status != 500:
                log.warning("wechat push refused: %s %s", refused.status, refused.reason)
            return PlainTextResponse(refused.reason, status_code=refused.status)
        return PlainTextResponse("success")


def _tencent_status(payload: Any, zone: str) -> list:
    return tencent_sms.parse_status_callback(payload, zone)


def _tencent_reply(payload: Any, zone: str) -> list:
    return tencent_sms.parse_reply_callback(payload)


def provider_hook_routes(sink: SinkSource, settings: SettingsSource) -> list[Route]:
    """The webhook routes. `sink` and `settings` may be given, or be functions of the request (the
    gateway looks them up on the running app: `app.state.receipt_sink`, the services' settings)."""
    hooks = ProviderHooks(sink, settings)
    return [
        Route("/hooks/aliyun/sms-report/{secret}", hooks.json_hook(aliyun_sms.parse_sms_report, "receipts",
                                                                    _aliyun_answer, "aliyun SmsReport"), methods=["POST"]),
        Route("/hooks/aliyun/sms-up/{secret}", hooks.json_hook(aliyun_sms.parse_sms_up, "replies",
                                                                _aliyun_answer, "aliyun SmsUp"), methods=["POST"]),
        Route("/hooks/aliyun/voice-report/{secret}", hooks.json_hook(aliyun_voice.parse_voice_report, "receipts",
                                                                      _aliyun_answer, "aliyun VoiceReport"),
              methods=["POST"]),
        Route("/hooks/tencent/sms-status/{secret}", hooks.json_hook(_tencent_status, "receipts", _tencent_answer,
                                                                     "tencent status"), methods=["POST"]),
        Route("/hooks/tencent/sms-reply/{secret}", hooks.json_hook(_tencent_reply, "replies", _tencent_answer,
                                                                    "tencent reply"), methods=["POST"]),
        Route("/hooks/wechat", hooks.wechat, methods=["GET", "POST"]),
    ]
