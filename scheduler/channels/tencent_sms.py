"""Tencent Cloud SMS (`SendSms`, API 2021-01-11) signed with TC3-HMAC-SHA256, and the status and
reply callbacks Tencent pushes to our webhooks.

Our delivery id travels as `SessionContext`. Tencent answers `Response.SendStatusSet[]` (one per
number: `Code` "Ok" with a `SerialNo` and the billed `Fee`, or an error code) or `Response.Error`
for the whole request (signature, rate limit). Error codes decide whether trying again can help,
as in the Aliyun channel; a timeout after the request went out is `maybe_sent`.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import httpx

from gateway.privacy import mask_number
from scheduler.channels import sms_text, tc3
from scheduler.channels.aliyun_sms import provider_time
from scheduler.channels.base import Accepted, OutboundMessage, Receipt, Reply, SendError

log = logging.getLogger(__name__)

PROVIDER = "tencent_sms"
VERSION = "2021-01-11"
SERVICE = "sms"

RETRYABLE_CODES = frozenset({
    "RequestLimitExceeded", "RequestLimitExceeded.GlobalRegionUinLimit", "ResourceUnavailable",
    "FailedOperation.MarketingSendTimeConstraint",  # marketing outside 08:00-22:00: later works
    "InternalError.Timeout", "InternalError.OtherError", "InternalError.RequestTimeException",
    "InternalError.RestApiInterfaceNotExist", "InternalError.SendAndRecvFail",
})
PERMANENT_PREFIXES = ("AuthFailure", "UnauthorizedOperation", "InvalidParameter", "UnsupportedOperation",
                      "MissingParameter", "FailedOperation")


def classify(code: str, message: str, http_status: int = 200) -> SendError:
    if code in RETRYABLE_CODES or code.startswith(("LimitExceeded", "InternalError", "RequestLimitExceeded")):
        return SendError(PROVIDER, code, message, retryable=True)
    if code.startswith(PERMANENT_PREFIXES):
        return SendError(PROVIDER, code, message)
    return SendError(PROVIDER, code, message, retryable=http_status >= 500)


def e164(to: str) -> str:
    number = to.strip().replace(" ", "").replace("-", "")
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    return "+86" + number


def template_params(params: Mapping[str, str]) -> list[str]:
    """Tencent's templates take positional parameters ({1}, {2}, ...): numbered keys in number
    order, otherwise the mapping's own order."""
    if params and all(k.isdigit() for k in params):
        return [str(params[k]) for k in sorted(params, key=int)]
    return [str(v) for v in params.values()]


class TencentSmsChannel:
    name = PROVIDER
    kind = "sms"

    def __init__(self, *, endpoint: str, secret_id: str, secret_key: str, app_id: str, sign_name: str,
                 region: str = "ap-guangzhou", timeout_s: float = 10.0, opt_out_line: str = sms_text.DEFAULT_OPT_OUT,
                 client: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{PROVIDER}: endpoint {endpoint!r} is not an http(s) URL")
        self._url = f"{parts.scheme}://{parts.netloc}/"
        self._host = parts.netloc
        self.secret_id, self.secret_key = secret_id, secret_key
        self.app_id, self.sign_name, self.region = app_id, sign_name, region
        self.opt_out_line = opt_out_line
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._clock = clock

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "PhoneNumberSet": [e164(message.to)],
            "SmsSdkAppId": self.app_id,
            "SignName": str(message.extra.get("sign_name") or self.sign_name),
            "TemplateId": message.template,
            "TemplateParamSet": template_params(message.params),
            "SessionContext": message.delivery_id,
        }

    async def send(self, message: OutboundMessage) -> Accepted:
        if not (self.secret_id and self.secret_key and self.app_id):
            raise SendError(PROVIDER, "not_configured", "tencent_secret_id / tencent_secret_key / tencent_sms_app_id are not set")
        body = self.body(message)
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(self._clock())
        headers = {
            "Authorization": tc3.authorization(secret_id=self.secret_id, secret_key=self.secret_key, service=SERVICE,
                                               host=self._host, timestamp=timestamp, payload=payload),
            "Content-Type": tc3.JSON_CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": "SendSms",
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.region,
        }
        try:
            response = await self._client.post(self._url, content=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SendError(PROVIDER, "network", f"{type(exc).__name__}: {exc}", retryable=True) from None
        except httpx.HTTPError as exc:
            raise SendError(PROVIDER, "timeout", f"{type(exc).__name__} after sending: {exc}", maybe_sent=True) from None
        try:
            answer = response.json().get("Response")
        except (ValueError, AttributeError):
            answer = None
        if not isinstance(answer, dict):
            if response.status_code >= 500:
                raise SendError(PROVIDER, f"http_{response.status_code}", response.text[:200], retryable=True)
            raise SendError(PROVIDER, "unreadable_response", response.text[:200],
                            maybe_sent=response.status_code == 200)
        error = answer.get("Error")
        if isinstance(error, dict):
            raise classify(str(error.get("Code", "")), str(error.get("Message", "")), response.status_code)
        statuses = answer.get("SendStatusSet")
        if not isinstance(statuses, list) or not statuses or not isinstance(statuses[0], dict):
            raise SendError(PROVIDER, "unreadable_response", "no SendStatusSet", maybe_sent=True)
        status = statuses[0]
        code = str(status.get("Code", ""))
        if code.lower() != "ok":
            raise classify(code, str(status.get("Message", "")))
        _, parts = sms_text.compose(message.text, sign_name=body["SignName"], purpose=message.purpose,
                                    opt_out_line=self.opt_out_line)
        log.debug("tencent SendSms %s to %s: SerialNo %s", message.delivery_id, mask_number(body["PhoneNumberSet"][0]),
                  status.get("SerialNo"))
        fee = status.get("Fee")
        return Accepted(PROVIDER, str(status.get("SerialNo") or "") or None,
                        segments=int(fee) if isinstance(fee, int) and fee > 0 else max(parts, 1))

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


# --- callbacks ------------------------------------------------------------------------------

def _items(payload: Any, what: str) -> list[Mapping[str, Any]]:
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(i, Mapping) for i in payload):
        raise ValueError(f"{what}: expected a JSON array of objects")
    return list(payload)


def _sender(item: Mapping[str, Any]) -> str:
    mobile = str(item.get("mobile") or "")
    code = str(item.get("nationcode") or "86")
    return mobile if code == "86" else f"+{code}{mobile}"


def parse_status_callback(payload: Any, zone: str = "Asia/Shanghai") -> list[Receipt]:
    """The status callback (user_receive_time, nationcode, mobile, report_status SUCCESS/FAIL,
    errmsg, description, sid = the SerialNo). Where the callback carries the send's session
    context (`session_context`, or `ext.session_context`), it is our delivery id."""
    receipts = []
    for n, item in enumerate(_items(payload, "status callback")):
        status = str(item.get("report_status", "")).upper()
        if status not in ("SUCCESS", "FAIL") or not item.get("sid"):
            raise ValueError(f"status callback item {n}: needs sid and report_status SUCCESS or FAIL")
        ext = item.get("ext") if isinstance(item.get("ext"), Mapping) else {}
        context = item.get("session_context") or item.get("SessionContext") or ext.get("session_context")
        receipts.append(Receipt(
            provider=PROVIDER, status="delivered" if status == "SUCCESS" else "failed",
            at=provider_time(item.get("user_receive_time"), zone), provider_id=str(item["sid"]),
            delivery_id=str(context) if context else None,
            error=None if status == "SUCCESS" else str(item.get("errmsg") or item.get("description") or "FAIL"),
            raw=dict(item),
        ))
    return receipts


def parse_reply_callback(payload: Any) -> list[Reply]:
    """The reply callback (mobile, nationcode, text, sign, extend, time as a UNIX timestamp)."""
    replies = []
    for n, item in enumerate(_items(payload, "reply callback")):
        if not item.get("mobile") or "text" not in item:
            raise ValueError(f"reply callback item {n}: needs mobile and text")
        try:
            at = datetime.fromtimestamp(int(item.get("time")), timezone.utc)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ValueError(f"reply callback item {n}: time {item.get('time')!r} is not a UNIX timestamp") from None
        replies.append(Reply(provider=PROVIDER, sender=_sender(item), at=at, text=str(item["text"]), raw=dict(item)))
    return replies


def from_settings(settings: Any, *, client: httpx.AsyncClient | None = None) -> TencentSmsChannel:
    return TencentSmsChannel(endpoint=settings.tencent_sms_endpoint, secret_id=settings.tencent_secret_id,
                             secret_key=settings.tencent_secret_key, app_id=settings.tencent_sms_app_id,
                             sign_name=settings.tencent_sms_sign_name, region=settings.tencent_sms_region,
                             timeout_s=settings.provider_timeout_s, opt_out_line=settings.sms_opt_out_line,
                             client=client)
