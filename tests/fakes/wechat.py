"""A fake WeChat official-account API on loopback: `/cgi-bin/stable_token` and
`/cgi-bin/message/template/send`, for tests and benchmarks.

Tokens behave like stable_token's: the normal mode answers the current token while it is valid,
`force_refresh` issues a new one and invalidates the old; an unknown token is 40001, an expired
one 42001. Template sends check the token, the openid (followers / refused), the template and
the data; `client_msg_id` deduplicates per openid for ten minutes as WeChat does (a repeat is
answered with the first msgid and logged, not delivered twice). It can be slow, fail with 5xx,
answer an errcode, or hang past the client's timeout after accepting. It pushes signed XML
events (TEMPLATESENDJOBFINISH, unsubscribe, text) to our server URL.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .aliyun_sms import Behaviour, RawHttpServer, Sent

DEDUPE_S = 600.0


@dataclass
class Token:
    value: str
    expires_at: float


class FakeWechat:
    def __init__(self, app_id: str = "wx-test-app", app_secret: str = "wx-test-secret", *,
                 expires_in: int = 7200, followers: set[str] | None = None, refused: set[str] | None = None,
                 templates: set[str] | None = None) -> None:
        self.app_id, self.app_secret = app_id, app_secret
        self.expires_in = expires_in
        self.followers = followers  # None: every openid starting with "o" follows
        self.refused = refused or set()  # openids that refused template messages (43101)
        self.templates = templates  # None: any non-empty template id
        self.delay_s = 0.0
        # Push TEMPLATESENDJOBFINISH for every delivered send to this URL, signed with this token.
        self.auto_event_url: str | None = None
        self.auto_event_token = ""
        self.auto_event_status = "success"
        self._pushes: set[asyncio.Task] = set()
        self.requests: list[dict[str, Any]] = []
        self.sends: list[Sent] = []
        self.token_requests: list[bool] = []  # force_refresh of each stable_token call
        self._tokens: list[Token] = []
        self._dedupe: dict[tuple[str, str], tuple[float, int]] = {}
        self._script: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self._msgid = 200000000
        self._server = RawHttpServer([
            Route("/cgi-bin/stable_token", self._stable_token, methods=["POST"]),
            Route("/cgi-bin/message/template/send", self._template_send, methods=["POST"]),
        ])
        self.url = self._server.url

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    @property
    def settings(self) -> dict[str, str]:
        return {"wechat_api_base": self.url, "wechat_app_id": self.app_id, "wechat_app_secret": self.app_secret}

    # -- control ---------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._script.extend(Behaviour("status", status=status) for _ in range(n))

    def error_next(self, errcode: int, n: int = 1) -> None:
        with self._lock:
            self._script.extend(Behaviour("code", code=str(errcode)) for _ in range(n))

    def hang_next(self, seconds: float, n: int = 1) -> None:
        with self._lock:
            self._script.extend(Behaviour("hang", seconds=seconds) for _ in range(n))

    def expire_tokens(self) -> None:
        """Every issued token expires now (the next send with one gets 42001)."""
        with self._lock:
            for token in self._tokens:
                token.expires_at = time.time() - 1

    def revoke_tokens(self) -> None:
        """Every issued token becomes unknown (40001), as when another party force-refreshed."""
        with self._lock:
            self._tokens.clear()

    def count(self, client_msg_id: str) -> int:
        with self._lock:
            return sum(1 for s in self.sends if s.out_id == client_msg_id)

    def duplicates(self) -> int:
        with self._lock:
            seen = collections.Counter((s.to, s.out_id) for s in self.sends)
        return sum(n - 1 for n in seen.values() if n > 1)

    # -- endpoints -------------------------------------------------------------------------
    def _current(self) -> Token | None:
        now = time.time()
        live = [t for t in self._tokens if t.expires_at > now]
        return live[-1] if live else None

    async def _stable_token(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"errcode": 47001, "errmsg": "data format error"})
        if body.get("grant_type") != "client_credential":
            return JSONResponse({"errcode": 40002, "errmsg": "invalid grant_type"})
        if body.get("appid") != self.app_id:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
        if body.get("secret") != self.app_secret:
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        force = bool(body.get("force_refresh"))
        with self._lock:
            self.token_requests.append(force)
            current = self._current()
            if force or current is None:
                if force:
                    self._tokens.clear()  # the old token stops working at once
                current = Token("ACCESS_" + secrets.token_hex(12), time.time() + self.expires_in)
                self._tokens.append(current)
            remaining = max(1, int(current.expires_at - time.time()))
        return JSONResponse({"access_token": current.value, "expires_in": remaining})

    def _log(self, body: Any, outcome: str) -> None:
        with self._lock:
            self.requests.append({"body": body, "outcome": outcome})

    async def _template_send(self, request: Request) -> Response:
        raw = await request.body()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        token = request.query_params.get("access_token", "")
        with self._lock:
            known = [t for t in self._tokens if t.value == token]
        if not token or not known:
            self._log(None, "40001")
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"})
        if known[0].expires_at <= time.time():
            self._log(None, "42001")
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        with self._lock:
            behaviour = self._script.popleft() if self._script else None
        try:
            body = json.loads(raw)
        except ValueError:
            self._log(None, "47001")
            return JSONResponse({"errcode": 47001, "errmsg": "data format error"})
        if behaviour and behaviour.kind == "status":
            self._log(body, f"http_{behaviour.status}")
            return Response("<html>503 Service Temporarily Unavailable</html>", status_code=behaviour.status)
        if behaviour and behaviour.kind == "code":
            self._log(body, behaviour.code)
            return JSONResponse({"errcode": int(behaviour.code), "errmsg": f"fake error {behaviour.code}"})
        problem = self._check(body)
        if problem:
            self._log(body, str(problem[0]))
            return JSONResponse({"errcode": problem[0], "errmsg": problem[1]})
        openid, client_msg_id = body["touser"], str(body.get("client_msg_id") or "")
        now = time.time()
        with self._lock:
            earlier = self._dedupe.get((openid, client_msg_id)) if client_msg_id else None
            if earlier and now - earlier[0] < DEDUPE_S:
                msgid, outcome = earlier[1], "deduplicated"
            else:
                self._msgid += 1
                msgid, outcome = self._msgid, "ok"
                if client_msg_id:
                    self._dedupe[(openid, client_msg_id)] = (now, msgid)
                sent = Sent("template_send", client_msg_id, openid, body["template_id"],
                            body.get("data") or {}, str(msgid), datetime.now(timezone.utc), body)
                self.sends.append(sent)
                if self.auto_event_url:
                    task = asyncio.create_task(self._auto_event(sent))
                    self._pushes.add(task)
                    task.add_done_callback(self._pushes.discard)
            self.requests.append({"body": body, "outcome": outcome})
        if behaviour and behaviour.kind == "hang":
            await asyncio.sleep(behaviour.seconds)
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def _auto_event(self, sent: Sent) -> None:
        query = self.signed_query(self.auto_event_token)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(self.auto_event_url or "", params=query,
                                  content=self.template_finished(sent, self.auto_event_status),
                                  headers={"Content-Type": "text/xml"})
        except httpx.HTTPError:
            pass

    def _check(self, body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict):
            return 47001, "data format error"
        openid = body.get("touser")
        if not isinstance(openid, str) or not openid.startswith("o"):
            return 40003, "invalid openid"
        if (self.followers is not None and openid not in self.followers):
            return 43004, "require subscribe"
        if openid in self.refused:
            return 43101, "user refuse to accept the msg"
        template = body.get("template_id")
        if not template or (self.templates is not None and template not in self.templates):
            return 40037, "invalid template_id"
        data = body.get("data")
        if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), str)
                                                 for v in data.values()):
            return 47003, "argument invalid! data.value invalid"
        return None

    # -- pushes ----------------------------------------------------------------------------
    @staticmethod
    def event_xml(openid: str, msg_type: str = "event", *, event: str | None = None, at: float | None = None,
                  to: str = "gh_fake_account", **fields: Any) -> bytes:
        parts = [f"<ToUserName><![CDATA[{to}]]></ToUserName>", f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
                 f"<CreateTime>{int(at or time.time())}</CreateTime>", f"<MsgType><![CDATA[{msg_type}]]></MsgType>"]
        if event:
            parts.append(f"<Event><![CDATA[{event}]]></Event>")
        for name, value in fields.items():
            parts.append(f"<{name}>{value}</{name}>" if isinstance(value, int) else f"<{name}><![CDATA[{value}]]></{name}>")
        return ("<xml>" + "".join(parts) + "</xml>").encode()

    def template_finished(self, sent: Sent, status: str = "success") -> bytes:
        """TEMPLATESENDJOBFINISH for one send: "success", "failed:user block", "failed: system failed"."""
        return self.event_xml(sent.to, event="TEMPLATESENDJOBFINISH", MsgID=int(sent.provider_id), Status=status)

    @staticmethod
    def signed_query(token: str, *, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or uuid.uuid4().hex[:10]
        signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
        return {"signature": signature, "timestamp": timestamp, "nonce": nonce}

    @classmethod
    def push(cls, url: str, token: str, xml: bytes, *, openid: str | None = None,
             signature: str | None = None) -> httpx.Response:
        """POST an event to our server URL the way WeChat does (plaintext mode), signed with `token`."""
        query = cls.signed_query(token)
        if signature is not None:
            query["signature"] = signature
        if openid:
            query["openid"] = openid
        return httpx.post(url, params=query, content=xml, headers={"Content-Type": "text/xml"}, timeout=10)
