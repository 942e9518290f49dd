"""A fake FreeSWITCH: an Event Socket server (inbound mode) on loopback, and a fake callee whose
answered call is streamed the way mod_audio_stream / mod_audio_fork do.

Per connection: `auth/request`; `auth <password>` -> +OK accepted (or -ERR invalid and close);
`event plain …` -> +OK; `bgapi originate {vars}sofia/gateway/<gw>/<number> &park()` with a
Job-UUID -> `+OK Job-UUID: …`, then events to every subscriber as the callee does:
  busy / no-answer / failed: BACKGROUND_JOB `-ERR USER_BUSY` (NO_ANSWER, …) and CHANNEL_HANGUP_COMPLETE
  answer: CHANNEL_PROGRESS, CHANNEL_ANSWER (the originate's variables as variable_*), BACKGROUND_JOB
  `+OK <uuid>`; on `uuid_audio_stream|uuid_audio_fork <uuid> start <url> mono 8k <metadata>` it
  connects to the URL (mod_audio_fork asks for the `audio.drachtio.org` subprotocol), sends the
  metadata as the first text frame, then L16 8 kHz at real-time pace: line silence, and the
  answer once the bot's prompts have "played"; when the gateway closes the stream,
  CHANNEL_HANGUP_COMPLETE NORMAL_CLEARING.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fakes.twilio import load_line_pcm
from scheduler.channels.esl import serialize_event, serialize_frame

FRAME_BYTES = 320  # 20 ms of L16 at 8 kHz
FRAME_S = 0.02
_ORIGINATE = re.compile(r"originate \{(?P<vars>[^}]*)\}(?P<dial>\S+) (?P<app>.+)")
_CAUSE = {"busy": "USER_BUSY", "no-answer": "NO_ANSWER", "failed": "UNALLOCATED_NUMBER"}


@dataclass
class EslCallee:
    result: str = "answer"  # answer | busy | no-answer | failed
    answer: Path | None = None  # a WAV clip said once the bot has asked
    after_prompts: int = 0  # answer once this many prompt audio messages have played ...
    after_s: float = 1.5  # ... or, with 0, this long after the stream started
    pause_s: float = 0.6
    max_s: float = 60.0


@dataclass
class EslCall:
    uuid: str
    number: str
    dial: str
    variables: dict[str, str]
    callee: EslCallee
    stream_command: str = ""
    metadata: dict | None = None
    subprotocol: str | None = None  # what the stream asked for (mod_audio_fork always asks)
    prompts: int = 0  # playAudio / streamAudio messages from the gateway
    transcripts: list[str] = field(default_factory=list)  # final transcription texts sent back
    hangup_cause: str = ""
    done: bool = False


class FakeFreeswitch:
    def __init__(self, password: str = "ClueCon") -> None:
        self.password = password
        self.port = 0
        self.callees: dict[str, EslCallee] = {}
        self.default_callee = EslCallee()
        self.calls: list[EslCall] = []
        self.commands: list[str] = []  # every command line received, auth masked
        self.auth_failures = 0
        self.drop_next_originates = 0  # close the connection on this many originates, unanswered
        self._subscribers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()

    def wait_done(self, count: int = 1, timeout: float = 120.0) -> list[EslCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [c for c in self.calls if c.done]
            if len(done) >= count:
                return done
            time.sleep(0.05)
        raise TimeoutError(f"{count} fake FreeSWITCH calls did not end in {timeout} s")

    # --- the socket -----------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(serialize_frame({"Content-Type": "auth/request"}))
        authed = False
        buffer = b""
        try:
            while data := await reader.read(65536):
                buffer += data
                # a command is its line, maybe header lines (Job-UUID: …), then a blank line
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    lines = block.decode("utf-8").replace("\r", "").split("\n")
                    text = lines[0]
                    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                    if not text:
                        continue
                    if not authed:
                        if text == f"auth {self.password}":
                            authed = True
                            self.commands.append("auth ***")
                            writer.write(_reply("+OK accepted"))
                        else:
                            self.auth_failures += 1
                            writer.write(_reply("-ERR invalid"))
                            await writer.drain()
                            writer.close()
                            return
                        continue
                    self.commands.append(text)
                    await self._command(text, headers, writer)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._subscribers.discard(writer)
            writer.close()

    async def _command(self, text: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        if text.startswith("event plain"):
            self._subscribers.add(writer)
            writer.write(_reply("+OK event listener enabled plain"))
            return
        if text.startswith("bgapi "):
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            if text.startswith("bgapi originate ") and self.drop_next_originates > 0:
                self.drop_next_originates -= 1  # the switch goes away before it answers
                writer.close()
                return
            writer.write(_reply(f"+OK Job-UUID: {job}"))
            self._spawn(self._job(text[len("bgapi "):], job))
            return
        if text.startswith("api "):
            body = b"+OK\n"
            writer.write(serialize_frame({"Content-Type": "api/response"}, body))
            return
        writer.write(_reply("-ERR command not found"))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, headers: dict[str, str], body: str = "") -> None:
        frame = serialize_event(headers, body)
        for writer in list(self._subscribers):
            writer.write(frame)

    def _channel_event(self, name: str, call: EslCall, **more: str) -> None:
        headers = {"Event-Name": name, "Core-UUID": "fake-core", "Unique-ID": call.uuid,
                   "Channel-Name": call.dial, "Caller-Destination-Number": call.number,
                   **{f"variable_{k}": v for k, v in call.variables.items()}, **more}
        self._emit(headers)

    def _job_done(self, job: str, command: str, body: str) -> None:
        self._emit({"Event-Name": "BACKGROUND_JOB", "Core-UUID": "fake-core", "Job-UUID": job,
                    "Job-Command": command.split(" ", 1)[0]}, body)

    # --- the calls -----------------------------------------------------------------
    async def _job(self, command: str, job: str) -> None:
        if command.startswith("originate "):
            await self._originate(command, job)
        elif command.startswith(("uuid_audio_stream ", "uuid_audio_fork ")):
            parts = command.split(" ", 6)  # <api> <uuid> start <url> <mix> <rate> <metadata>
            call = next((c for c in self.calls if c.uuid == parts[1]), None)
            if call is None or len(parts) < 7 or parts[2] != "start":
                self._job_done(job, command, "-ERR no such channel\n")
                return
            call.stream_command = command
            self._job_done(job, command, "+OK Success\n")
            self._spawn(self._stream(call, parts[3], parts[6], fork=parts[0] == "uuid_audio_fork"))
        elif command.startswith("uuid_kill "):
            self._job_done(job, command, "+OK\n")
        else:
            self._job_done(job, command, "-ERR unknown command\n")

    async def _originate(self, command: str, job: str) -> None:
        match = _ORIGINATE.match(command)
        if match is None:
            self._job_done(job, command, "-ERR INVALID_ARGS\n")
            return
        variables = dict(item.split("=", 1) for item in match.group("vars").split(",") if "=" in item)
        dial = match.group("dial")
        number = dial.rsplit("/", 1)[-1]
        call = EslCall(variables.get("origination_uuid") or str(uuidlib.uuid4()), number, dial, variables,
                       self.callees.get(number, self.default_callee))
        with self._lock:
            self.calls.append(call)
        await asyncio.sleep(0.05)
        if call.callee.result != "answer":
            cause = _CAUSE[call.callee.result]
            self._channel_event("CHANNEL_PROGRESS", call)
            self._job_done(job, command, f"-ERR {cause}\n")
            self._hangup(call, cause)
            return
        self._channel_event("CHANNEL_PROGRESS", call)
        await asyncio.sleep(0.05)
        self._channel_event("CHANNEL_ANSWER", call, **{"Answer-State": "answered"})
        self._job_done(job, command, f"+OK {call.uuid}\n")

    def _hangup(self, call: EslCall, cause: str) -> None:
        call.hangup_cause = cause
        self._channel_event("CHANNEL_HANGUP_COMPLETE", call, **{"Hangup-Cause": cause, "Answer-State": "hangup"})
        call.done = True

    async def _stream(self, call: EslCall, url: str, metadata: str, fork: bool) -> None:
        callee = call.callee
        subprotocols = ["audio.drachtio.org"] if fork else None
        try:
            call.metadata = json.loads(metadata)
            answer = load_line_pcm(callee.answer) if callee.answer is not None else b""
            async with connect(url, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
                call.subprotocol = subprotocols[0] if subprotocols else None
                await ws.send(metadata)
                playing_until = [0.0]
                state: dict = {"answer_at": None if callee.after_prompts else time.monotonic() + callee.after_s}

                async def listen() -> None:
                    async for raw in ws:
                        if not isinstance(raw, str):
                            continue
                        msg = json.loads(raw)
                        now = time.monotonic()
                        kind = msg.get("type")
                        if kind in ("playAudio", "streamAudio"):
                            data = msg["data"]
                            audio = base64.b64decode(data.get("audioContent") or data.get("audioData") or "")
                            playing_until[0] = max(playing_until[0], now) + len(audio) / 2 / data["sampleRate"]
                            call.prompts += 1
                            if callee.after_prompts and call.prompts == callee.after_prompts:
                                state["answer_at"] = playing_until[0] + callee.pause_s
                        elif kind == "killAudio":
                            playing_until[0] = now
                        elif kind == "transcription" and msg["data"].get("final"):
                            call.transcripts.append(msg["data"]["text"])

                listener = asyncio.create_task(listen())
                queue = bytearray()
                sent, chunk, t0 = False, 0, time.monotonic()
                try:
                    while not listener.done() and time.monotonic() - t0 < callee.max_s:
                        if not sent and state["answer_at"] is not None and time.monotonic() >= state["answer_at"]:
                            sent = True
                            queue += answer
                        frame = bytes(queue[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                        del queue[:FRAME_BYTES]
                        chunk += 1
                        await ws.send(frame)
                        await asyncio.sleep(max(0.0, t0 + chunk * FRAME_S - time.monotonic()))
                finally:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await listener
        except (ConnectionClosed, OSError):
            pass
        finally:  # whatever went wrong, the call hangs up and says so
            self._hangup(call, "NORMAL_CLEARING")


def _reply(text: str) -> bytes:
    return serialize_frame({"Content-Type": "command/reply", "Reply-Text": text})


@contextlib.contextmanager
def fake_freeswitch(password: str = "ClueCon") -> Iterator[FakeFreeswitch]:
    fake = FakeFreeswitch(password)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def serve() -> None:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        fake.port = server.sockets[0].getsockname()[1]
        holder["server"] = server
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True,
                              name="fake-freeswitch")
    thread.start()
    started.wait(10)
    try:
        yield fake
    finally:
        async def stop() -> None:
            holder["server"].close()
            for task in list(fake._tasks):
                task.cancel()
            for writer in list(fake._subscribers):
                writer.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
