"""Aliyun voice notification (Dyvmsapi 2017-05-25 `SingleCallByTts`): Aliyun dials the number and
reads an approved TTS template; no gateway, no speech recognition — a channel of kind "voice" for
reminders that only need to be heard. `OutId` carries our delivery id; the `VoiceReport` Aliyun
pushes after the call says whether it was answered, busy or not picked up.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

from scheduler.channels.aliyun_sms import (
    AliyunConfig,
    AliyunRpc,
    aliyun_config,
    json_items,
    mainland_number,
    provider_time,
)
from scheduler.channels.base import Accepted, OutboundMessage, Receipt, ReceiptStatus

PROVIDER = "aliyun_voice"
VERSION = "2017-05-25"

# smart_status_code (when Aliyun sends it) and status_code, mapped onto our receipt words.
SMART_STATUS: dict[str, ReceiptStatus] = {
    "ANSWERED": "delivered", "BUSY": "busy", "NO_ANSWER": "no_answer", "NOANSWER": "no_answer",
    "NOT_ANSWERED": "no_answer", "REJECTED": "busy", "POWER_OFF": "failed", "NOT_EXIST": "failed",
}
ANSWERED_CODES = frozenset({"200000", "200100"})  # the callee heard the message (then hung up)


def report_status(item: dict[str, Any]) -> ReceiptStatus:
    smart = str(item.get("smart_status_code") or "").upper()
    if smart in SMART_STATUS:
        return SMART_STATUS[smart]
    code = str(item.get("status_code") or "")
    if code in ANSWERED_CODES:
        return "delivered"
    message = str(item.get("status_msg") or "")
    if "忙" in message or "拒接" in message:
        return "busy"
    if "未接" in message or "无应答" in message or "无人接听" in message:
        return "no_answer"
    return "failed"


class AliyunVoiceChannel:
    name = PROVIDER
    kind = "voice"

    def __init__(self, config: AliyunConfig, show_number: str = "", *, client: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), **kwargs: Any) -> None:
        self.show_number = show_number
        self._rpc = AliyunRpc(PROVIDER, VERSION, config, client=client, clock=clock, **kwargs)

    def params(self, message: OutboundMessage) -> dict[str, str]:
        params = {
            "CalledNumber": mainland_number(message.to),
            "TtsCode": message.template,
            "TtsParam": json.dumps(dict(message.params), ensure_ascii=False, separators=(",", ":")),
            "OutId": message.delivery_id,
        }
        show = str(message.extra.get("show_number") or self.show_number)
        if show:
            params["CalledShowNumber"] = show
        for option, name in (("play_times", "PlayTimes"), ("volume", "Volume"), ("speed", "Speed")):
            if option in message.extra:
                params[name] = str(message.extra[option])
        return params

    async def send(self, message: OutboundMessage) -> Accepted:
        body = await self._rpc.call("SingleCallByTts", self.params(message))
        return Accepted(PROVIDER, str(body.get("CallId") or "") or None)

    async def aclose(self) -> None:
        await self._rpc.aclose()


def parse_voice_report(payload: Any, zone: str = "Asia/Shanghai") -> list[Receipt]:
    """VoiceReport items (call_id, status_code, status_msg, out_id, start_time, end_time, duration, ...)."""
    receipts = []
    for n, item in enumerate(json_items(payload, "VoiceReport")):
        if not (item.get("call_id") or item.get("out_id")) or not (item.get("status_code") or item.get("smart_status_code")):
            raise ValueError(f"VoiceReport item {n}: needs call_id or out_id, and status_code")
        status = report_status(dict(item))
        when = item.get("end_time") or item.get("status_time") or item.get("start_time") or item.get("originate_time")
        receipts.append(Receipt(
            provider=PROVIDER, status=status, at=provider_time(when, zone),
            provider_id=str(item["call_id"]) if item.get("call_id") else None,
            delivery_id=str(item["out_id"]) if item.get("out_id") else None,
            error=None if status == "delivered" else f"{item.get('status_code', '')} {item.get('status_msg', '')}".strip(),
            raw=dict(item),
        ))
    return receipts


def from_settings(settings: Any, *, client: httpx.AsyncClient | None = None) -> AliyunVoiceChannel:
    return AliyunVoiceChannel(aliyun_config(settings, settings.aliyun_voice_endpoint), settings.aliyun_voice_show_number,
                              client=client)
