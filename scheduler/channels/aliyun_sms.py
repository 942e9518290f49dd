"""Aliyun SMS (dysmsapi 2017-05-25): `SendSms` signed with ACS3-HMAC-SHA256, and the `SmsReport`
receipts and `SmsUp` replies Aliyun pushes to our webhooks.

A send carries our delivery id as `OutId`; Aliyun answers `{"Code": "OK", "BizId": ...}` or an error
code, which decides whether trying again can help (throttling, platform errors, 5xx, network: yes;
a bad number, template or signature: no). A timeout after the request went out may hide an
accepted send: that is `maybe_sent`, reconciled from the receipt (which echoes `out_id`), never
blindly resent. The RPC client here is shared with the voice notification channel (dyvmsapi).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from gateway.privacy import mask_number
from scheduler.channels import acs3, sms_text
from scheduler.channels.base import Accepted, OutboundMessage, Receipt, Reply, SendError

log = logging.getLogger(__name__)

PROVIDER = "aliyun_sms"
SMS_VERSION = "2017-05-25"

# Codes after which the same request may succeed later (rate limits, the platform's own trouble).
RETRYABLE_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL",  # per-number / per-minute flow control
    "isv.DAY_LIMIT_CONTROL",
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "isp.OUT_OF_SERVICE",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "ServiceUnavailable",
    "InternalError",
})
# Known codes that never get better by trying again: the number, the template, the signature,
# the account or our credentials are wrong.
PERMANENT_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT", "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS", "isv.TEMPLATE_PARAMS_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL", "isv.INVALID_PARAMETERS", "isv.INVALID_JSON_PARAM", "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE",
    "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL", "isv.SMS_CONTENT_ILLEGAL", "isv.DENY_IP_RANGE",
    "isv.EXTEND_CODE_ERROR", "isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "isp.RAM_PERMISSION_DENY",
    "SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
    "IncompleteSignature", "MissingParameter", "InvalidParameter", "Forbidden.RAM",
})


@dataclass(frozen=True)
class AliyunConfig:
    endpoint: str  # e.g. https://dysmsapi.aliyuncs.com (tests: the fake's loopback URL)
    access_key_id: str
    access_key_secret: str
    timeout_s: float = 10.0


def classify(provider: str, code: str, message: str, http_status: int) -> SendError:
    """The SendError an Aliyun error code means."""
    if code in RETRYABLE_CODES or code.startswith("Throttling"):
        return SendError(provider, code, message, retryable=True)
    if code in PERMANENT_CODES:
        return SendError(provider, code, message)
    # Unknown: the platform's side (isp.*, 5xx) is worth another try, ours (isv.*, 4xx) is not.
    return SendError(provider, code, message, retryable=http_status >= 500 or code.startswith("isp."))


class AliyunRpc:
    """POST / with a signed form body to one Aliyun RPC endpoint; answers the parsed JSON or raises SendError."""

    def __init__(self, provider: str, version: str, config: AliyunConfig, *,
                 client: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.provider = provider
        self.version = version
        self.config = config
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=config.timeout_s)
        self._clock = clock
        self._nonce = nonce
        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{provider}: endpoint {config.endpoint!r} is not an http(s) URL")
        self._url = f"{parts.scheme}://{parts.netloc}/"
        self._host = parts.netloc  # signed exactly as httpx sends it (with the port when there is one)

    async def call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        if not self.config.access_key_id or not self.config.access_key_secret:
            raise SendError(self.provider, "not_configured", "aliyun_access_key_id / aliyun_access_key_secret are not set")
        signed = acs3.sign_rpc(host=self._host, action=action, version=self.version, params=params,
                               access_key_id=self.config.access_key_id,
                               access_key_secret=self.config.access_key_secret,
                               at=self._clock(), nonce=self._nonce())
        try:
            response = await self._client.post(self._url, content=signed.body, headers=signed.headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the provider: safe to try again.
            raise SendError(self.provider, "network", f"{type(exc).__name__}: {exc}", retryable=True) from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError) as exc:
            # The request (or part of it) went out: the provider may have accepted it.
            raise SendError(self.provider, "timeout", f"{type(exc).__name__} after sending: {exc}",
                            maybe_sent=True) from None
        except httpx.HTTPError as exc:
            raise SendError(self.provider, "network", f"{type(exc).__name__}: {exc}", maybe_sent=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.status_code >= 500:
                raise SendError(self.provider, f"http_{response.status_code}", response.text[:200], retryable=True)
            if response.status_code == 200:
                # A 200 we cannot read may still be an accepted send.
                raise SendError(self.provider, "unreadable_response", response.text[:200], maybe_sent=True)
            raise SendError(self.provider, f"http_{response.status_code}", response.text[:200])
        code = str(body.get("Code", ""))
        if response.status_code == 200 and code == "OK":
            return body
        raise classify(self.provider, code or f"http_{response.status_code}", str(body.get("Message", "")),
                       response.status_code)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def mainland_number(to: str) -> str:
    """Aliyun's PhoneNumbers form: 11 digits for the mainland, 00<country><number> abroad."""
    number = to.strip().replace(" ", "").replace("-", "")
    if number.startswith("+86"):
        return number[3:]
    if number.startswith("+"):
        return "00" + number[1:]
    return number


class AliyunSmsChannel:
    name = PROVIDER
    kind = "sms"

    def __init__(self, config: AliyunConfig, sign_name: str, *, opt_out_line: str = sms_text.DEFAULT_OPT_OUT,
                 client: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.sign_name = sign_name
        self.opt_out_line = opt_out_line
        self._rpc = AliyunRpc(PROVIDER, SMS_VERSION, config, client=client, clock=clock, nonce=nonce)

    def params(self, message: OutboundMessage) -> dict[str, str]:
        return {
            "PhoneNumbers": mainland_number(message.to),
            "SignName": str(message.extra.get("sign_name") or self.sign_name),
            "TemplateCode": message.template,
            "TemplateParam": json.dumps(dict(message.params), ensure_ascii=False, separators=(",", ":")),
            "OutId": message.delivery_id,
        }

    async def send(self, message: OutboundMessage) -> Accepted:
        params = self.params(message)
        _, parts = sms_text.compose(message.text, sign_name=params["SignName"], purpose=message.purpose,
                                    opt_out_line=self.opt_out_line)
        body = await self._rpc.call("SendSms", params)
        log.debug("aliyun SendSms %s to %s: BizId %s", message.delivery_id, mask_number(params["PhoneNumbers"]),
                  body.get("BizId"))
        return Accepted(PROVIDER, str(body.get("BizId") or "") or None, segments=max(parts, 1))

    async def aclose(self) -> None:
        await self._rpc.aclose()


# --- receipts and replies -------------------------------------------------------------------

def provider_time(value: Any, zone: str = "Asia/Shanghai") -> datetime:
    """Aliyun's 'YYYY-MM-DD HH:MM:SS' local times as aware datetimes (UTC); ValueError otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a time: {value!r}")
    return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def json_items(payload: Any, what: str) -> list[Mapping[str, Any]]:
    if isinstance(payload, Mapping):  # one item, not in a list: accepted
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(i, Mapping) for i in payload):
        raise ValueError(f"{what}: expected a JSON array of objects")
    return list(payload)


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def parse_sms_report(payload: Any, zone: str = "Asia/Shanghai") -> list[Receipt]:
    """SmsReport items (phone_number, success, biz_id, out_id, err_code, err_msg, report_time, ...)."""
    receipts = []
    for n, item in enumerate(json_items(payload, "SmsReport")):
        if "success" not in item or not (item.get("biz_id") or item.get("out_id")):
            raise ValueError(f"SmsReport item {n}: needs success and biz_id or out_id")
        ok = _truthy(item["success"])
        at = provider_time(item.get("report_time") or item.get("send_time"), zone)
        receipts.append(Receipt(
            provider=PROVIDER, status="delivered" if ok else "failed", at=at,
            provider_id=str(item["biz_id"]) if item.get("biz_id") else None,
            delivery_id=str(item["out_id"]) if item.get("out_id") else None,
            error=None if ok else str(item.get("err_code") or item.get("err_msg") or "failed"),
            raw=dict(item),
        ))
    return receipts


def parse_sms_up(payload: Any, zone: str = "Asia/Shanghai") -> list[Reply]:
    """SmsUp items (phone_number, content, send_time, sign_name, dest_code, sequence_id)."""
    replies = []
    for n, item in enumerate(json_items(payload, "SmsUp")):
        if not item.get("phone_number") or "content" not in item:
            raise ValueError(f"SmsUp item {n}: needs phone_number and content")
        replies.append(Reply(provider=PROVIDER, sender=str(item["phone_number"]),
                             at=provider_time(item.get("send_time"), zone), text=str(item["content"]),
                             raw=dict(item)))
    return replies


def aliyun_config(settings: Any, endpoint: str) -> AliyunConfig:
    return AliyunConfig(endpoint=endpoint, access_key_id=settings.aliyun_access_key_id,
                        access_key_secret=settings.aliyun_access_key_secret, timeout_s=settings.provider_timeout_s)


def from_settings(settings: Any, *, client: httpx.AsyncClient | None = None) -> AliyunSmsChannel:
    """The channel the scheduler's registry builds (gateway.settings.Settings)."""
    return AliyunSmsChannel(aliyun_config(settings, settings.aliyun_sms_endpoint), settings.aliyun_sms_sign_name,
                            opt_out_line=settings.sms_opt_out_line, client=client)

