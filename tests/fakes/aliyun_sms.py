"""A fake Aliyun SMS (dysmsapi 2017-05-25) on loopback, for tests and benchmarks.

A real HTTP server (uvicorn in a thread of its own) that checks each request the way Aliyun's
gateway does — the ACS3-HMAC-SHA256 signature recomputed here independently of
scheduler/channels/acs3.py, the body hash, the AccessKeyId, a nonce used twice — then answers
`SendSms` in Aliyun's shape. Every request is logged (`requests`) and every accepted send too
(`sends`, with the OutId, for counting duplicates). It can be told to be slow, to fail the next
requests with a 5xx, to answer an error code, or to hold a response past the client's timeout
(after accepting the send, as a real timeout may). It pushes `SmsReport` receipts and `SmsUp`
replies to a webhook, by call or automatically after each accepted send.

The fakes in this folder share `RawHttpServer` (a small keep-alive HTTP/1.1 server, ~1 ms of CPU
per request, so a benchmark measures the scheduler rather than the fake); `LoopbackServer` runs an
ASGI app (our own webhooks) under uvicorn the same way.

    with FakeAliyunSms() as fake:
        settings = settings.replace(aliyun_sms_endpoint=fake.url, **fake.credentials)

A benchmark can run it in a process of its own (no shared GIL): `python tests/fakes/aliyun_sms.py
[--port N]` prints `{"url": ...}` and serves until SIGTERM; `GET <url>/_fake/log` answers the
accepted sends as [OutId, BizId] pairs with the duplicate count.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SHANGHAI = ZoneInfo("Asia/Shanghai")


class LoopbackServer:
    """Runs a Starlette app on 127.0.0.1 (an ephemeral port) in a thread of its own."""

    def __init__(self, app: Any, port: int = 0) -> None:
        # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it every response waits ~40 ms for a delayed ACK (Nagle).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.port}", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve(sockets=[self._sock]))

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake provider server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class _Url:
    def __init__(self, target: str) -> None:
        self.path, _, self.query = target.partition("?")


class RawRequest:
    """The few attributes of a Starlette Request the fakes read, over a request parsed by hand."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.url = _Url(target)
        self.headers = headers  # lower-case names
        self.query_params = {k: v[-1] for k, v in parse_qs(self.url.query, keep_blank_values=True).items()}
        self._body = body

    async def body(self) -> bytes:
        return self._body

    async def json(self) -> Any:
        return json.loads(self._body)


class RawHttpServer:
    """A small HTTP/1.1 server (keep-alive, Content-Length bodies) on 127.0.0.1 in a thread of its own,
    for the fakes: several times cheaper per request than uvicorn + h11, so a benchmark measures the
    scheduler, not the fake. Routes are Starlette `Route`s matched by exact path; endpoints get a
    `RawRequest` and answer Starlette responses (their rendered body and media type are sent)."""

    def __init__(self, routes: list[Route], port: int = 0) -> None:
        self._routes = {r.path: r for r in routes}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.port}", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._sock.listen(512)
        server = await asyncio.start_server(self._connection, sock=self._sock, limit=4 * 1024 * 1024)
        self._started.set()
        await self._stopping.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                response = await self._dispatch(RawRequest(method, target, headers, body))
                payload = bytes(response.body)
                media = response.headers.get("content-type", "application/octet-stream")
                writer.write(f"HTTP/1.1 {response.status_code} X\r\ncontent-type: {media}\r\n"
                             f"content-length: {len(payload)}\r\n\r\n".encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def _dispatch(self, request: RawRequest) -> Response:
        route = self._routes.get(request.url.path)
        if route is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if route.methods and request.method not in route.methods:
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        return await route.endpoint(request)

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(20):
            raise RuntimeError("fake provider server did not start")

    def stop(self) -> None:
        if self.loop and self._stopping:
            self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._sock.close()


def shanghai_time(at: datetime | None = None) -> str:
    return (at or datetime.now(timezone.utc)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def acs3_expected_signature(secret: str, method: str, path: str, query: dict[str, list[str]],
                            headers: dict[str, str], signed: list[str], hashed_payload: str) -> str:
    """Aliyun's side of ACS3-HMAC-SHA256, written from the documentation (not from our signer)."""
    cq = "&".join(f"{_encode(k)}={_encode(v)}" for k in sorted(query) for v in sorted(query[k]))
    ch = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    cr = "\n".join([method, path, cq, ch, ";".join(signed), hashed_payload])
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(cr.encode()).hexdigest()
    return hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()


@dataclass
class Behaviour:
    """What the next request gets instead of the normal answer."""

    kind: str  # "status" (HTTP error), "code" (an Aliyun error code), "hang" (accept, answer late)
    status: int = 200
    code: str = ""
    seconds: float = 0.0


@dataclass
class Sent:
    """One accepted send (the provider's log)."""

    action: str
    out_id: str
    to: str
    template: str
    params: dict[str, Any]
    provider_id: str
    at: datetime
    fields: dict[str, str] = field(default_factory=dict)


class FakeAliyunBase:
    """An Aliyun RPC endpoint that checks ACS3 signatures; subclasses implement their actions."""

    version = "2017-05-25"
    actions: tuple[str, ...] = ()

    def __init__(self, access_key_id: str = "LTAI-test-key", access_key_secret: str = "test-secret-0123456789",
                 *, check_time: bool = True, port: int = 0) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.check_time = check_time
        self.delay_s = 0.0  # every answer waits this long (slow provider)
        self.requests: list[dict[str, Any]] = []  # every request: action, fields, outcome
        self.sends: list[Sent] = []
        self.auto_report_url: str | None = None  # push a receipt for every accepted send here
        self.auto_report_success = True
        self._script: collections.deque[Behaviour] = collections.deque()
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._counter = 0
        self._pushes: set[asyncio.Task] = set()
        self._server = RawHttpServer([Route("/", self._endpoint, methods=["POST", "GET"]),
                                      Route("/_fake/log", self._log_endpoint)], port)
        self.url = self._server.url

    # -- control ---------------------------------------------------------------------------
    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    start = __enter__

    def stop(self) -> None:
        self._server.stop()

    @property
    def credentials(self) -> dict[str, str]:
        return {"aliyun_access_key_id": self.access_key_id, "aliyun_access_key_secret": self.access_key_secret}

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._script.extend(Behaviour("status", status=status) for _ in range(n))

    def error_next(self, code: str, n: int = 1) -> None:
        with self._lock:
            self._script.extend(Behaviour("code", code=code) for _ in range(n))

    def hang_next(self, seconds: float, n: int = 1) -> None:
        """Accept the next sends but answer only after `seconds` (past the client's timeout)."""
        with self._lock:
            self._script.extend(Behaviour("hang", seconds=seconds) for _ in range(n))

    def count(self, out_id: str) -> int:
        with self._lock:
            return sum(1 for s in self.sends if s.out_id == out_id)

    def duplicates(self) -> int:
        """Accepted sends beyond the first for the same OutId."""
        with self._lock:
            seen = collections.Counter(s.out_id for s in self.sends)
        return sum(n - 1 for n in seen.values() if n > 1)

    def sent_ids(self) -> set[str]:
        with self._lock:
            return {s.out_id for s in self.sends}

    async def _log_endpoint(self, request: Request) -> Response:
        """The provider's log for a fake in another process: [out_id, provider_id] of every accepted send."""
        with self._lock:
            sends = [[s.out_id, s.provider_id] for s in self.sends]
            requests = len(self.requests)
        return JSONResponse({"sends": sends, "requests": requests, "duplicates": self.duplicates()})

    # -- the endpoint ----------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str, fields: dict[str, str], action: str) -> JSONResponse:
        with self._lock:
            self.requests.append({"action": action, "fields": fields, "outcome": code})
        return JSONResponse({"RequestId": str(uuid.uuid4()).upper(), "HostId": "fake.aliyuncs.com",
                             "Code": code, "Message": message}, status_code=status)

    def _verify(self, request: Request, body: bytes) -> tuple[int, str, str] | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        algorithm, _, rest = auth.partition(" ")
        parts = dict(p.strip().partition("=")[::2] for p in rest.split(",") if "=" in p)
        if algorithm != "ACS3-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
            return 400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."
        for required in ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
            if required not in headers:
                return 400, "MissingParameter", f"{required} is mandatory for this action."
        if parts["Credential"] != self.access_key_id:
            return 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        if hashlib.sha256(body).hexdigest() != headers["x-acs-content-sha256"]:
            return 400, "ContentSHA256NotMatched", "The content sha256 does not match the body."
        signed = [h for h in parts["SignedHeaders"].split(";") if h]
        if signed != sorted(signed) or "host" not in signed or any(
                h.startswith("x-acs-") and h not in signed for h in headers):
            return 400, "IncompleteSignature", "Every x-acs-* header and host must be signed, in order."
        query = parse_qs(request.url.query, keep_blank_values=True)
        expected = acs3_expected_signature(self.access_key_secret, request.method, request.url.path or "/",
                                           query, headers, signed, headers["x-acs-content-sha256"])
        if not hmac.compare_digest(expected, parts["Signature"]):
            return 400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
        if self.check_time:
            try:
                when = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                return 400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            if abs(datetime.now(timezone.utc) - when) > timedelta(minutes=15):
                return 400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
        nonce = headers["x-acs-signature-nonce"]
        with self._lock:
            if nonce in self._nonces:
                return 400, "SignatureNonceUsed", "Specified signature nonce was used already."
            self._nonces.add(nonce)
        return None

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        action = request.headers.get("x-acs-action", "")
        raw = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        fields = {k: v[-1] for k, v in raw.items()}
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        refused = self._verify(request, body)
        if refused:
            return self._error(*refused, fields, action)
        if action not in self.actions or request.headers.get("x-acs-version") != self.version:
            return self._error(404, "InvalidAction.NotFound", f"Specified api {action} is not found.", fields, action)
        with self._lock:
            behaviour = self._script.popleft() if self._script else None
        if behaviour and behaviour.kind == "status":
            with self._lock:
                self.requests.append({"action": action, "fields": fields, "outcome": f"http_{behaviour.status}"})
            return Response("<html><body>Service Unavailable</body></html>", status_code=behaviour.status,
                            media_type="text/html")
        if behaviour and behaviour.kind == "code":
            return self._error(200, behaviour.code, f"fake error {behaviour.code}", fields, action)
        problem = self.validate(action, fields)
        if problem:
            return self._error(200, problem[0], problem[1], fields, action)
        sent = self.accept(action, fields)
        with self._lock:
            self.requests.append({"action": action, "fields": fields, "outcome": "OK"})
        if self.auto_report_url:
            task = asyncio.create_task(self._auto_report(sent))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        if behaviour and behaviour.kind == "hang":
            await asyncio.sleep(behaviour.seconds)
        return JSONResponse(self.answer(sent))

    async def _auto_report(self, sent: Sent) -> None:
        item = self.report(sent, success=self.auto_report_success)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(self.auto_report_url or "", json=[item])
        except httpx.HTTPError:
            pass  # the receiver being down is its problem; tests read its side

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    # -- per product -------------------------------------------------------------------------
    def validate(self, action: str, fields: dict[str, str]) -> tuple[str, str] | None:
        raise NotImplementedError

    def accept(self, action: str, fields: dict[str, str]) -> Sent:
        raise NotImplementedError

    def answer(self, sent: Sent) -> dict[str, Any]:
        raise NotImplementedError

    def report(self, sent: Sent, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    # -- pushing to webhooks -----------------------------------------------------------------
    @staticmethod
    def push(url: str, items: list[dict[str, Any]] | Any, **kwargs: Any) -> httpx.Response:
        """POST a JSON body to a webhook, as Aliyun's HTTP batch push does."""
        return httpx.post(url, json=items, timeout=10, **kwargs)


def _valid_number(number: str) -> bool:
    return (len(number) == 11 and number.isdigit() and number.startswith("1")) or (
        number.startswith("00") and number[2:].isdigit() and 8 <= len(number) <= 19)


class FakeAliyunSms(FakeAliyunBase):
    actions = ("SendSms",)

    def __init__(self, *args: Any, templates: set[str] | None = None, sign_names: set[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.templates = templates  # None: any SMS_* code
        self.sign_names = sign_names  # None: any non-empty name

    def validate(self, action: str, fields: dict[str, str]) -> tuple[str, str] | None:
        numbers = [n for n in fields.get("PhoneNumbers", "").split(",") if n]
        if not numbers or not all(_valid_number(n) for n in numbers):
            return "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"
        sign = fields.get("SignName", "")
        if not sign or (self.sign_names is not None and sign not in self.sign_names):
            return "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"
        template = fields.get("TemplateCode", "")
        if not template.startswith("SMS_") or (self.templates is not None and template not in self.templates):
            return "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"
        try:
            params = json.loads(fields.get("TemplateParam") or "{}")
        except ValueError:
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"
        return None

    def accept(self, action: str, fields: dict[str, str]) -> Sent:
        n = self._next_id()
        sent = Sent(action, fields.get("OutId", ""), fields["PhoneNumbers"], fields["TemplateCode"],
                    json.loads(fields.get("TemplateParam") or "{}"), f"{900000 + n}^0", datetime.now(timezone.utc),
                    fields)
        with self._lock:
            self.sends.append(sent)
        return sent

    def answer(self, sent: Sent) -> dict[str, Any]:
        return {"Code": "OK", "Message": "OK", "BizId": sent.provider_id, "RequestId": str(uuid.uuid4()).upper()}

    def report(self, sent: Sent, success: bool = True, err_code: str = "DELIVERED", at: datetime | None = None,
               **kwargs: Any) -> dict[str, Any]:
        """The SmsReport item Aliyun pushes for one send."""
        return {
            "phone_number": sent.to,
            "send_time": shanghai_time(sent.at),
            "report_time": shanghai_time(at),
            "success": success,
            "err_code": err_code if not success or err_code != "DELIVERED" else "DELIVERED",
            "err_msg": "用户接收成功" if success else "用户接收失败",
            "sms_size": "1",
            "biz_id": sent.provider_id,
            "out_id": sent.out_id,
            **kwargs,
        }

    @staticmethod
    def reply_item(phone_number: str, content: str, at: datetime | None = None, sign_name: str = "【保险服务】",
                   sequence_id: int = 1) -> dict[str, Any]:
        """The SmsUp item Aliyun pushes for one reply."""
        return {"phone_number": phone_number, "send_time": shanghai_time(at), "content": content,
                "sign_name": sign_name, "dest_code": "1234", "sequence_id": sequence_id}



def main() -> None:  # pragma: no cover - the benchmark's way of running the fake in a process of its own
    """`python tests/fakes/aliyun_sms.py [--port N]`: serve until stopped; GET /_fake/log gives the sends."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--access-key-id", default="LTAI-test-key")
    parser.add_argument("--access-key-secret", default="test-secret-0123456789")
    args = parser.parse_args()
    fake = FakeAliyunSms(args.access_key_id, args.access_key_secret, port=args.port)
    fake.start()
    print(json.dumps({"url": fake.url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
