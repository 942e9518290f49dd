"""A fake Tencent Cloud SMS (SendSms, 2021-01-11) on loopback, for tests and benchmarks.

It checks TC3-HMAC-SHA256 the way Tencent's gateway does (recomputed here from the documentation,
not with scheduler/channels/tc3.py): the SecretId, the credential date against X-TC-Timestamp,
a timestamp more than five minutes off, the signature over the signed headers and the body.
Errors come back as Tencent sends them: HTTP 200 with `Response.Error`, or a per-number `Code` in
`SendStatusSet`. Every request and every accepted send is logged (SessionContext = our delivery
id). It can be slow, fail with a 5xx, answer an error code, or hold the answer past the client's
timeout after accepting; it pushes status and reply callbacks to a webhook.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .aliyun_sms import Behaviour, RawHttpServer, Sent, shanghai_time


def tc3_expected_signature(secret_key: str, headers: dict[str, str], signed: list[str], body: bytes,
                           timestamp: int, service: str) -> str:
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    block = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
    canonical = "\n".join(["POST", "/", "", block, ";".join(signed), hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeTencentSms:
    def __init__(self, secret_id: str = "AKID-test-id", secret_key: str = "tencent-test-key",
                 app_id: str = "1400000001", *, echo_session_context: bool = False) -> None:
        self.secret_id, self.secret_key, self.app_id = secret_id, secret_key, app_id
        # Whether status callbacks carry the send's SessionContext (the documented ones do not).
        self.echo_session_context = echo_session_context
        self.delay_s = 0.0
        self.auto_report_url: str | None = None  # push a status callback for every accepted send here
        self.auto_report_success = True
        self._pushes: set[asyncio.Task] = set()
        self.requests: list[dict[str, Any]] = []
        self.sends: list[Sent] = []
        self._script: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self._counter = 0
        self._server = RawHttpServer([Route("/", self._endpoint, methods=["POST"])])
        self.url = self._server.url

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    @property
    def settings(self) -> dict[str, str]:
        return {"tencent_sms_endpoint": self.url, "tencent_secret_id": self.secret_id,
                "tencent_secret_key": self.secret_key, "tencent_sms_app_id": self.app_id}

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        with self._lock:
            self._script.extend(Behaviour("status", status=status) for _ in range(n))

    def error_next(self, code: str, n: int = 1, *, request_level: bool = False) -> None:
        """The next sends fail with `code`: per number in SendStatusSet, or for the whole request."""
        with self._lock:
            self._script.extend(Behaviour("error" if request_level else "code", code=code) for _ in range(n))

    def hang_next(self, seconds: float, n: int = 1) -> None:
        with self._lock:
            self._script.extend(Behaviour("hang", seconds=seconds) for _ in range(n))

    def count(self, session_context: str) -> int:
        with self._lock:
            return sum(1 for s in self.sends if s.out_id == session_context)

    def duplicates(self) -> int:
        with self._lock:
            seen = collections.Counter(s.out_id for s in self.sends)
        return sum(n - 1 for n in seen.values() if n > 1)

    # -- the endpoint ----------------------------------------------------------------------
    def _answer(self, response: dict[str, Any], fields: dict[str, Any], outcome: str) -> JSONResponse:
        with self._lock:
            self.requests.append({"fields": fields, "outcome": outcome})
        response["RequestId"] = str(uuid.uuid4())
        return JSONResponse({"Response": response})

    def _error(self, code: str, message: str, fields: dict[str, Any]) -> JSONResponse:
        return self._answer({"Error": {"Code": code, "Message": message}}, fields, code)

    def _verify(self, request: Request, body: bytes) -> tuple[str, str] | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        algorithm, _, rest = headers.get("authorization", "").partition(" ")
        parts = dict(p.strip().partition("=")[::2] for p in rest.split(",") if "=" in p)
        credential = parts.get("Credential", "").split("/")
        if algorithm != "TC3-HMAC-SHA256" or len(credential) != 4 or "Signature" not in parts:
            return "AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256."
        if credential[0] != self.secret_id:
            return "AuthFailure.SecretIdNotFound", "The SecretId is not found."
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return "MissingParameter", "X-TC-Timestamp is missing."
        if abs(time.time() - timestamp) > 300:
            return "AuthFailure.SignatureExpire", "The signature expired (timestamp more than 5 minutes off)."
        if credential[1] != datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d") or credential[2] != "sms":
            return "AuthFailure.SignatureFailure", "The credential scope does not match the timestamp or service."
        signed = [h for h in parts.get("SignedHeaders", "").split(";") if h]
        if not {"content-type", "host"} <= set(signed):
            return "AuthFailure.SignatureFailure", "content-type and host must be signed."
        expected = tc3_expected_signature(self.secret_key, headers, signed, body, timestamp, "sms")
        if not hmac.compare_digest(expected, parts["Signature"]):
            return "AuthFailure.SignatureFailure", "The provided credentials could not be validated."
        return None

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        refused = self._verify(request, body)
        if refused:
            return self._error(*refused, fields)
        if request.headers.get("x-tc-action") != "SendSms" or request.headers.get("x-tc-version") != "2021-01-11":
            return self._error("InvalidAction", "The action or version is not supported.", fields)
        if not isinstance(fields, dict) or fields.get("SmsSdkAppId") != self.app_id:
            return self._error("InvalidParameterValue.SdkAppIdNotExist", "SmsSdkAppId does not exist.", fields)
        with self._lock:
            behaviour = self._script.popleft() if self._script else None
        if behaviour and behaviour.kind == "status":
            with self._lock:
                self.requests.append({"fields": fields, "outcome": f"http_{behaviour.status}"})
            return Response("bad gateway", status_code=behaviour.status)
        if behaviour and behaviour.kind == "error":
            return self._error(behaviour.code, f"fake error {behaviour.code}", fields)
        statuses = []
        for number in fields.get("PhoneNumberSet") or []:
            code = behaviour.code if behaviour and behaviour.kind == "code" else self._check(fields, number)
            if code != "Ok":
                statuses.append({"SerialNo": "", "PhoneNumber": number, "Fee": 0,
                                 "SessionContext": fields.get("SessionContext", ""), "Code": code,
                                 "Message": f"fake {code}", "IsoCode": "CN"})
                continue
            with self._lock:
                self._counter += 1
                serial = f"5000:{104571066915705365784949 + self._counter}"
                sent = Sent("SendSms", str(fields.get("SessionContext", "")), number, str(fields.get("TemplateId")),
                            {"params": list(fields.get("TemplateParamSet") or [])}, serial, datetime.now(timezone.utc),
                            fields)
                self.sends.append(sent)
            if self.auto_report_url:
                task = asyncio.create_task(self._auto_report(sent))
                self._pushes.add(task)
                task.add_done_callback(self._pushes.discard)
            statuses.append({"SerialNo": serial, "PhoneNumber": number, "Fee": 1,
                             "SessionContext": fields.get("SessionContext", ""), "Code": "Ok",
                             "Message": "send success", "IsoCode": "CN"})
        if behaviour and behaviour.kind == "hang":
            await asyncio.sleep(behaviour.seconds)
        outcome = ",".join(s["Code"] for s in statuses) or "empty"
        return self._answer({"SendStatusSet": statuses}, fields, outcome)

    async def _auto_report(self, sent: Sent) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(self.auto_report_url or "", json=[self.status_item(sent, self.auto_report_success)])
        except httpx.HTTPError:
            pass

    @staticmethod
    def _check(fields: dict[str, Any], number: str) -> str:
        if not (isinstance(number, str) and number.startswith("+86") and len(number) == 14 and number[3:].isdigit()):
            return "InvalidParameterValue.IncorrectPhoneNumber"
        if not str(fields.get("TemplateId", "")).isdigit():
            return "FailedOperation.TemplateIncorrectOrUnapproved"
        if not fields.get("SignName"):
            return "FailedOperation.SignatureIncorrectOrUnapproved"
        if not all(isinstance(p, str) for p in fields.get("TemplateParamSet") or []):
            return "InvalidParameterValue.TemplateParameterFormatError"
        return "Ok"

    # -- callbacks ---------------------------------------------------------------------------
    def status_item(self, sent: Sent, success: bool = True, errmsg: str = "DELIVRD",
                    at: datetime | None = None) -> dict[str, Any]:
        item = {
            "user_receive_time": shanghai_time(at),
            "nationcode": "86",
            "mobile": sent.to.removeprefix("+86"),
            "report_status": "SUCCESS" if success else "FAIL",
            "errmsg": errmsg if not success or errmsg != "DELIVRD" else "DELIVRD",
            "description": "用户短信送达成功" if success else "用户短信接收失败",
            "sid": sent.provider_id,
        }
        if self.echo_session_context:
            item["session_context"] = sent.out_id
        return item

    @staticmethod
    def reply_item(mobile: str, text: str, at: datetime | None = None, sign: str = "保险服务") -> dict[str, Any]:
        return {"extend": "", "mobile": mobile, "nationcode": "86", "sign": sign, "text": text,
                "time": int((at or datetime.now(timezone.utc)).timestamp())}

    @staticmethod
    def push(url: str, body: Any) -> httpx.Response:
        return httpx.post(url, json=body, timeout=10)
