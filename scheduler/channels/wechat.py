"""WeChat official-account template messages, and the events WeChat pushes back.

`POST /cgi-bin/message/template/send?access_token=...` with touser (the openid), template_id,
url, data and `client_msg_id` = our delivery id (WeChat sends one message per openid and
client_msg_id within ten minutes, so a resend in that window is not a duplicate). The token comes
from the shared holder (wechat_token.py); a 40001 / 42001 answer (token invalid or expired)
refreshes it once and retries once. 43004 (not following) and 43101 (user refused) mean this
channel cannot reach the recipient: `fall_through`, the step's next channel goes at once.

WeChat pushes XML to our server URL, signed: signature = sha1 of token, timestamp and nonce sorted
and joined. `TEMPLATESENDJOBFINISH` is the receipt (success, `failed:user block`,
`failed: system failed`); a user block is also a `block` reply, `unsubscribe` an `unsubscribe`
reply, a text message a reply with its text (opt-out words are the scheduler's business).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from typing import Any, Mapping

import httpx

from scheduler.channels.base import Accepted, OutboundMessage, Receipt, Reply, SendError
from scheduler.channels.wechat_token import StableTokenClient, WechatTokenHolder

log = logging.getLogger(__name__)

PROVIDER = "wechat"
TOKEN_ERRORS = frozenset({40001, 42001, 40014})  # invalid credential, token expired, invalid token
FALL_THROUGH = frozenset({43004, 43101, 40003})  # not following, refused template messages, not an openid here
RETRYABLE = frozenset({-1, 45009, 45011, 45047, 45015})  # system busy, rate and frequency limits
MAX_EVENT_BYTES = 64 * 1024


def _masked(openid: str) -> str:
    return openid[:4] + "***" + openid[-2:] if len(openid) > 8 else "***"


def classify(errcode: int, errmsg: str, http_status: int = 200) -> SendError:
    code = str(errcode)
    if errcode in FALL_THROUGH:
        return SendError(PROVIDER, code, errmsg, fall_through=True)
    if errcode in RETRYABLE or errcode in TOKEN_ERRORS:
        return SendError(PROVIDER, code, errmsg, retryable=True)
    return SendError(PROVIDER, code, errmsg, retryable=http_status >= 500)


class WechatTemplateChannel:
    name = PROVIDER
    kind = "wechat"

    def __init__(self, api_base: str, tokens: WechatTokenHolder, *, client: httpx.AsyncClient | None = None,
                 timeout_s: float = 10.0, close_client: bool | None = None) -> None:
        self.url = api_base.rstrip("/") + "/cgi-bin/message/template/send"
        self.tokens = tokens
        # Closed by aclose() when made here (or when the factory hands over one it made).
        self._own_client = client is None if close_client is None else close_client
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    @staticmethod
    def body(message: OutboundMessage) -> dict[str, Any]:
        data = {}
        for key, value in message.params.items():
            data[key] = dict(value) if isinstance(value, Mapping) else {"value": str(value)}
        body: dict[str, Any] = {"touser": message.to, "template_id": message.template, "data": data,
                                "client_msg_id": message.delivery_id}
        if message.extra.get("url"):
            body["url"] = str(message.extra["url"])
        if message.extra.get("miniprogram"):
            body["miniprogram"] = dict(message.extra["miniprogram"])
        return body

    async def _post(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], httpx.Response]:
        try:
            response = await self._client.post(self.url, params={"access_token": token}, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SendError(PROVIDER, "network", f"{type(exc).__name__}: {exc}", retryable=True) from None
        except httpx.HTTPError as exc:
            raise SendError(PROVIDER, "timeout", f"{type(exc).__name__} after sending: {exc}", maybe_sent=True) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if response.status_code >= 500:
                raise SendError(PROVIDER, f"http_{response.status_code}", response.text[:200], retryable=True)
            raise SendError(PROVIDER, "unreadable_response", response.text[:200], maybe_sent=response.status_code == 200)
        try:
            errcode = int(answer.get("errcode", 0))
        except (TypeError, ValueError):
            raise SendError(PROVIDER, "unreadable_response", str(answer)[:200], maybe_sent=True) from None
        return errcode, answer, response

    async def send(self, message: OutboundMessage) -> Accepted:
        body = self.body(message)
        token = await self.tokens.token()
        errcode, answer, response = await self._post(token, body)
        if errcode in TOKEN_ERRORS:
            log.info("wechat token refused (%s): refreshing once", errcode)
            token = await self.tokens.invalidate(token)
            errcode, answer, response = await self._post(token, body)
        if errcode == 0:
            log.debug("wechat template %s to %s: msgid %s", message.delivery_id, _masked(message.to), answer.get("msgid"))
            msgid = answer.get("msgid")
            return Accepted(PROVIDER, str(msgid) if msgid is not None else None)
        raise classify(errcode, str(answer.get("errmsg", "")), response.status_code)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


# --- pushes from WeChat ---------------------------------------------------------------------

def push_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def check_signature(token: str, signature: str | None, timestamp: str | None, nonce: str | None) -> bool:
    if not token or not signature or timestamp is None or nonce is None:
        return False
    return hmac.compare_digest(push_signature(token, timestamp, nonce), signature.lower())


def parse_push(body: bytes) -> tuple[list[Receipt], list[Reply]]:
    """One pushed XML message as receipts and replies; ValueError when it is not WeChat's XML.
    Messages of no interest (menu clicks, location, ...) give nothing."""
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"push of {len(body)} bytes is larger than {MAX_EVENT_BYTES}")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValueError("XML with a DOCTYPE or entities is refused")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "xml":
        raise ValueError(f"root element is <{root.tag}>, expected <xml>")
    fields = {child.tag: (child.text or "").strip() for child in root}
    sender = fields.get("FromUserName")
    if not sender or "MsgType" not in fields:
        raise ValueError("push without FromUserName or MsgType")
    try:
        at = datetime.fromtimestamp(int(fields.get("CreateTime", "")), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"CreateTime {fields.get('CreateTime')!r} is not a UNIX timestamp") from None
    msg_type = fields["MsgType"].lower()
    event = fields.get("Event", "")
    receipts: list[Receipt] = []
    replies: list[Reply] = []
    if msg_type == "event" and event == "TEMPLATESENDJOBFINISH":
        status = fields.get("Status", "")
        msg_id = fields.get("MsgID") or fields.get("MsgId")
        if not status or not msg_id:
            raise ValueError("TEMPLATESENDJOBFINISH without Status or MsgID")
        ok = status == "success"
        error = None if ok else status.partition(":")[2].strip() or status
        receipts.append(Receipt(provider=PROVIDER, status="delivered" if ok else "failed", at=at,
                                provider_id=msg_id, error=error, raw=fields))
        if error == "user block":
            replies.append(Reply(provider=PROVIDER, sender=sender, at=at, event="block", raw=fields))
    elif msg_type == "event" and event.lower() in ("unsubscribe", "subscribe"):
        replies.append(Reply(provider=PROVIDER, sender=sender, at=at, event=event.lower(), raw=fields))
    elif msg_type == "event" and event in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
        # Subscription notices: a "reject" for any template is the user refusing our messages.
        if any((node.text or "").strip() == "reject" for node in root.iter("SubscribeStatusString")):
            replies.append(Reply(provider=PROVIDER, sender=sender, at=at, event="block", raw=fields))
    elif msg_type == "text":
        replies.append(Reply(provider=PROVIDER, sender=sender, at=at, text=fields.get("Content", ""), raw=fields))
    return receipts, replies


def from_settings(settings: Any, engine: Any, *, client: httpx.AsyncClient | None = None) -> WechatTemplateChannel:
    """The channel with its token holder on the gateway's database engine."""
    http = client or httpx.AsyncClient(timeout=settings.provider_timeout_s)
    fetch = StableTokenClient(settings.wechat_api_base, settings.wechat_app_id, settings.wechat_app_secret, http)
    tokens = WechatTokenHolder(engine, fetch, name=f"wechat:{settings.wechat_app_id}")
    return WechatTemplateChannel(settings.wechat_api_base, tokens, client=http, close_client=client is None)
