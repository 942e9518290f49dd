"""A fake Aliyun voice notification service (Dyvmsapi 2017-05-25 `SingleCallByTts`) on loopback.

The same gateway checks as the fake SMS service (ACS3 signature, AccessKeyId, body hash, nonce),
the same controls (slow, 5xx, error codes, hanging after accepting) and the same log of accepted
calls by OutId; it pushes `VoiceReport` items to a webhook.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from .aliyun_sms import FakeAliyunBase, Sent, _valid_number, shanghai_time


class FakeAliyunVoice(FakeAliyunBase):
    actions = ("SingleCallByTts",)

    @property
    def settings(self) -> dict[str, str]:
        return {"aliyun_voice_endpoint": self.url, **self.credentials}

    def validate(self, action: str, fields: dict[str, str]) -> tuple[str, str] | None:
        if not _valid_number(fields.get("CalledNumber", "")):
            return "isv.MOBILE_NUMBER_ILLEGAL", "号码格式非法"
        if not fields.get("TtsCode", "").startswith("TTS_"):
            return "isv.TTS_TEMPLATE_ILLEGAL", "TTS模板不存在"
        try:
            params = json.loads(fields.get("TtsParam") or "{}")
        except ValueError:
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法"
        if not isinstance(params, dict):
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法"
        return None

    def accept(self, action: str, fields: dict[str, str]) -> Sent:
        n = self._next_id()
        sent = Sent(action, fields.get("OutId", ""), fields["CalledNumber"], fields["TtsCode"],
                    json.loads(fields.get("TtsParam") or "{}"), f"116012354148^{102813780 + n}",
                    datetime.now(timezone.utc), fields)
        with self._lock:
            self.sends.append(sent)
        return sent

    def answer(self, sent: Sent) -> dict[str, Any]:
        return {"Code": "OK", "Message": "OK", "CallId": sent.provider_id, "RequestId": "FAKE-" + sent.provider_id}

    def report(self, sent: Sent, success: bool = True, status_code: str | None = None, status_msg: str | None = None,
               duration_s: int = 12, **kwargs: Any) -> dict[str, Any]:
        """The VoiceReport item for one call: answered and heard by default, else the given status."""
        start = sent.at + timedelta(seconds=5)
        answered = success and status_code in (None, "200000")
        return {
            "call_id": sent.provider_id,
            "start_time": shanghai_time(start) if answered else "",
            "end_time": shanghai_time(start + timedelta(seconds=duration_s)) if answered else "",
            "originate_time": shanghai_time(sent.at),
            "status_time": shanghai_time(start + timedelta(seconds=duration_s)),
            "duration": str(duration_s if answered else 0),
            "status_code": status_code or ("200000" if success else "200005"),
            "status_msg": status_msg or ("用户听音挂断" if answered else "用户未接听"),
            "out_id": sent.out_id,
            "callee": sent.to,
            "caller": sent.fields.get("CalledShowNumber", ""),
            "hangup_direction": "用户",
            "voice_type": "voice",
            **kwargs,
        }
