"""A fake Twilio: a real HTTP server on loopback taking `Calls.create`, and a fake callee that
answers the way Twilio connects a call to a media stream.

    POST /2010-04-01/Accounts/{sid}/Calls.json   (basic auth)  -> 201 {"sid": "CA…", "status": "queued"}

then, per call, as Twilio does (every webhook signed with X-Twilio-Signature):
  status callbacks `initiated`, `ringing`; `busy` / `no-answer` / `failed` end there;
  else the `Url` is fetched with `AnsweredBy` (human, machine_start, …) and its TwiML parsed:
  <Hangup/> (and <Say>) end the call; <Connect><Stream url> opens the WebSocket like Media
  Streams: `connected`, `start` (customParameters = the <Parameter>s), μ-law 8 kHz `media` at
  real-time pace (line silence, and the callee's answer once the bot's prompt is over), `dtmf`;
  marks the gateway sends are echoed when the audio before them has "played". When the gateway
  ends the stream, the Connect `action` URL is fetched and `completed` is posted.

A callee's behaviour is a `Callee` per number (`FakeTwilio.callees`), else `default_callee`.
Usable from tests and benchmarks: `with fake_twilio(auth_token) as fake: fake.url …`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import twilio_signature
from speech.codecs import ulaw_encode
from speech.wavfile import read_wav
from speech.codecs import decode

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
FRAME_S = 0.02
SILENCE = b"\xff" * FRAME_BYTES  # μ-law zero


def load_line_pcm(path: Path) -> bytes:
    """A callee's clip as 16-bit PCM at 8 kHz (the line rate)."""
    encoding, rate, channels, payload = read_wav(path)
    if rate != 8000 or channels != 1:
        raise ValueError(f"{path}: expected mono 8 kHz, got {channels} channel(s) at {rate} Hz")
    return decode(encoding, payload)


@dataclass
class Callee:
    """What the called party does."""

    result: str = "answer"  # answer | busy | no-answer | failed
    answered_by: str = "human"  # AnsweredBy sent with the TwiML request: human, machine_start, …
    answer: Path | None = None  # a WAV clip said once the bot has asked
    dtmf: str | None = None  # keys pressed instead of (or after) the clip
    after_marks: int = 0  # answer once this many of the gateway's marks came back played ...
    after_s: float = 1.5  # ... or, with 0 marks, this long after the stream started
    pause_s: float = 0.6  # a breath between the prompt and the answer
    max_s: float = 60.0  # hang up after this long whatever happens


@dataclass
class FakeCall:
    sid: str
    form: dict[str, str]
    callee: Callee
    twiml: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    said: str | None = None  # a <Say> text
    media_in: int = 0  # media messages the gateway sent (prompt audio)
    marks: list[str] = field(default_factory=list)
    close_code: int | None = None
    action_twiml: str = ""
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, HTTP status of our post)
    done: bool = False


class FakeTwilio:
    def __init__(self, auth_token: str, account_sid: str = "AC" + "0" * 32) -> None:
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.url = ""
        self.callees: dict[str, Callee] = {}
        self.default_callee = Callee()
        self.calls: list[FakeCall] = []
        self.refused: list[dict[str, Any]] = []  # creates refused (auth, bad form)
        self.fail_next: int = 0  # answer this many creates with HTTP 503
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()

    # --- what tests read -------------------------------------------------------
    def wait_done(self, count: int = 1, timeout: float = 120.0) -> list[FakeCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [c for c in self.calls if c.done]
            if len(done) >= count:
                return done
            time.sleep(0.05)
        raise TimeoutError(f"{count} fake Twilio calls did not end in {timeout} s")

    # --- the REST API ------------------------------------------------------------
    async def create_call(self, request: Request) -> JSONResponse:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if request.path_params["sid"] != self.account_sid or request.headers.get("authorization") != expected:
            self.refused.append({"reason": "auth", "form": form})
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        missing = [k for k in ("To", "From") if not form.get(k)] + ([] if form.get("Url") or form.get("Twiml") else ["Url"])
        if missing:
            self.refused.append({"reason": "form", "form": form})
            return JSONResponse({"code": 21205, "message": f"missing {', '.join(missing)}", "status": 400},
                                status_code=400)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"code": 20500, "message": "Internal Server Error", "status": 500}, status_code=500)
        call = FakeCall("CA" + secrets.token_hex(16), form, self.callees.get(form["To"], self.default_callee))
        with self._lock:
            self.calls.append(call)
        task = asyncio.create_task(self._run(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse({"sid": call.sid, "status": "queued", "to": form["To"], "from": form["From"]},
                            status_code=201)

    # --- the call ------------------------------------------------------------------
    async def _post(self, client: httpx.AsyncClient, url: str, form: dict[str, str]) -> httpx.Response:
        signature = twilio_signature(self.auth_token, url, form)
        return await client.post(url, data=form, headers={"X-Twilio-Signature": signature})

    def _call_form(self, call: FakeCall, status: str, **more: str) -> dict[str, str]:
        return {"CallSid": call.sid, "AccountSid": self.account_sid, "From": call.form["From"], "To": call.form["To"],
                "Direction": "outbound-api", "CallStatus": status, "ApiVersion": "2010-04-01", **more}

    async def _status(self, client: httpx.AsyncClient, call: FakeCall, status: str, **more: str) -> None:
        url = call.form.get("StatusCallback")
        if not url:
            return
        response = await self._post(client, url, self._call_form(call, status, **more))
        call.statuses.append((status, response.status_code))

    async def _run(self, call: FakeCall) -> None:
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                await self._status(client, call, "initiated")
                await self._status(client, call, "ringing")
                callee = call.callee
                if callee.result != "answer":
                    await self._status(client, call, callee.result, CallDuration="0")
                    return
                started = time.monotonic()
                answered_by = {"AnsweredBy": callee.answered_by} if call.form.get("MachineDetection") else {}
                response = await self._post(client, call.form["Url"], self._call_form(call, "in-progress", **answered_by))
                call.twiml = response.text
                await self._status(client, call, "in-progress", **answered_by)
                root = ET.fromstring(call.twiml)
                say = root.find("Say")
                call.said = say.text if say is not None else None
                connect_el = root.find("Connect")
                stream = connect_el.find("Stream") if connect_el is not None else None
                if stream is not None:
                    call.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
                    await self._stream(call, stream.get("url", ""))
                    action = connect_el.get("action")
                    if action:
                        call.action_twiml = (await self._post(client, action, self._call_form(call, "in-progress"))).text
                duration = str(int(time.monotonic() - started))
                await self._status(client, call, "completed", CallDuration=duration, **answered_by)
        finally:
            call.done = True

    async def _stream(self, call: FakeCall, url: str) -> None:
        callee = call.callee
        stream_sid = "MZ" + secrets.token_hex(16)
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url)}
        answer = ulaw_encode(load_line_pcm(callee.answer)) if callee.answer is not None else b""
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(json.dumps({
                "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                "start": {"accountSid": self.account_sid, "streamSid": stream_sid, "callSid": call.sid,
                          "tracks": ["inbound"], "customParameters": call.parameters,
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            }))
            playing_until = [0.0]  # when the gateway's queued audio has played
            pending_marks: list[tuple[float, str]] = []
            state = {"answer_at": None if callee.after_marks else time.monotonic() + callee.after_s}

            async def listen() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    now = time.monotonic()
                    if msg.get("event") == "media":
                        call.media_in += 1
                        seconds = len(base64.b64decode(msg["media"]["payload"])) / 8000
                        playing_until[0] = max(playing_until[0], now) + seconds
                    elif msg.get("event") == "mark":
                        pending_marks.append((max(playing_until[0], now), msg["mark"]["name"]))
                    elif msg.get("event") == "clear":
                        playing_until[0] = now
                        pending_marks[:] = [(now, name) for _, name in pending_marks]

            listener = asyncio.create_task(listen())
            seq, chunk, sent_answer = 2, 0, False
            queue = bytearray()
            t0 = time.monotonic()
            try:
                while not listener.done() and time.monotonic() - t0 < callee.max_s:
                    now = time.monotonic()
                    for due, name in list(pending_marks):
                        if due <= now:
                            pending_marks.remove((due, name))
                            call.marks.append(name)
                            await ws.send(json.dumps({"event": "mark", "sequenceNumber": str(seq),
                                                      "streamSid": stream_sid, "mark": {"name": name}}))
                            seq += 1
                            if callee.after_marks and len(call.marks) == callee.after_marks:
                                state["answer_at"] = now + callee.pause_s
                    if not sent_answer and state["answer_at"] is not None and now >= state["answer_at"]:
                        sent_answer = True
                        queue += answer
                        if callee.dtmf:
                            for digit in callee.dtmf:
                                await ws.send(json.dumps({"event": "dtmf", "streamSid": stream_sid,
                                                          "sequenceNumber": str(seq),
                                                          "dtmf": {"track": "inbound_track", "digit": digit}}))
                                seq += 1
                    frame = bytes(queue[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\xff") if queue else SILENCE
                    del queue[:FRAME_BYTES]
                    chunk += 1
                    await ws.send(json.dumps({
                        "event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                        "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                  "payload": base64.b64encode(frame).decode()},
                    }))
                    seq += 1
                    # real time: the next frame when its 20 ms are due
                    await asyncio.sleep(max(0.0, t0 + chunk * FRAME_S - time.monotonic()))
                if not listener.done():  # the callee hangs up
                    await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq), "streamSid": stream_sid,
                                              "stop": {"accountSid": self.account_sid, "callSid": call.sid}}))
            except ConnectionClosed:
                pass
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await listener
                call.close_code = ws.close_code


@contextlib.contextmanager
def fake_twilio(auth_token: str = "tw-secret-token") -> Iterator[FakeTwilio]:
    fake = FakeTwilio(auth_token)
    app = Starlette(routes=[Route("/2010-04-01/Accounts/{sid}/Calls.json", fake.create_call, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-twilio")
    thread.start()
    while not server.started:
        time.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
