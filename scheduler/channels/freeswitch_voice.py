"""Outbound reminder calls through FreeSWITCH: originate over the Event Socket, then stream the
answered call to the gateway's /ws/freeswitch, where it runs its flow.

One TCP connection in inbound mode (FreeSWITCH's :8021): `auth`, `event plain BACKGROUND_JOB
CHANNEL_PROGRESS CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE`, then per reminder

    bgapi originate {origination_uuid=<delivery id>,reminder_delivery_id=…,reminder_call=…,
                     originate_timeout=30,ignore_early_media=true}sofia/gateway/<gw>/<number> &park()

Our delivery id is the call's uuid. The call's flow and params ride along as a channel variable
(`reminder_call`, base64url JSON), so the events alone say what to do; every Event Socket client
hears every call's events, so only the channel that placed a call (`reminder_owner`, its
instance id) streams it — several scheduler processes never stream one call twice. On
CHANNEL_ANSWER the channel sends `uuid_audio_stream <uuid> start <ws url> mono 8k <metadata>`
(or `uuid_audio_fork`, per `freeswitch_stream_module`), the metadata JSON carrying delivery_id,
flow and params as the gateway's FreeSWITCH adapter reads them. Progress, answer and
CHANNEL_HANGUP_COMPLETE (Hangup-Cause) become `Receipt`s for the sink given at construction;
a failed originate's BACKGROUND_JOB (-ERR USER_BUSY, …) too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import uuid as uuidlib
from datetime import datetime, timezone
from typing import Any, Mapping

from gateway.settings import Settings
from scheduler.channels.base import Accepted, OutboundMessage, Receipt, ReceiptSink, ReceiptStatus, SendError
from scheduler.channels.esl import (
    Authenticated, AuthFailed, Disconnected, EslClient, EslError, EslEvent, Reply, originate,
)
from scheduler.channels.twilio_voice import call_params, flow_of

log = logging.getLogger(__name__)

PROVIDER = "freeswitch_voice"
EVENTS = ("BACKGROUND_JOB", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE")
MODULES = {"audio_stream": "uuid_audio_stream", "audio_fork": "uuid_audio_fork"}
STREAM_RATE = 8000
DELIVERY_VAR = "reminder_delivery_id"
CALL_VAR = "reminder_call"
OWNER_VAR = "reminder_owner"
_NUMBER = re.compile(r"\+?[0-9]{3,20}")
_UUID = re.compile(r"[A-Za-z0-9-]{8,64}")

# Hangup-Cause -> receipt status; anything else is `failed` with the cause as its error.
_CAUSES: dict[str, ReceiptStatus] = {
    "NORMAL_CLEARING": "completed",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "busy",
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "PROGRESS_TIMEOUT": "no_answer",
}


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        return None
    return data if isinstance(data, dict) else None


def originate_command(message: OutboundMessage, *, gateway: str, ring_timeout_s: int,
                      caller_id: str = "", owner: str = "") -> str:
    """The originate for one reminder (pure): our delivery id as the call's uuid."""
    if not _UUID.fullmatch(message.delivery_id):
        raise SendError(PROVIDER, "bad_delivery_id", "the delivery id is the call's uuid: 8-64 letters, digits and -")
    if not _NUMBER.fullmatch(message.to):
        raise SendError(PROVIDER, "bad_number", "a phone number of digits, optionally with a leading +")
    if not gateway:
        raise SendError(PROVIDER, "no_gateway", "freeswitch_gateway is not set")
    call = {"flow": flow_of(message), "params": call_params(message), "to": message.to}
    variables = {DELIVERY_VAR: message.delivery_id, CALL_VAR: _b64(call),
                 "originate_timeout": str(ring_timeout_s), "ignore_early_media": "true"}
    if caller_id:
        variables["origination_caller_id_number"] = caller_id
    if owner:
        variables[OWNER_VAR] = owner
    try:
        return originate(message.delivery_id, f"sofia/gateway/{gateway}/{message.to}", variables)
    except EslError as exc:
        raise SendError(PROVIDER, "bad_originate", str(exc)) from None


def stream_metadata(uuid: str, delivery_id: str, call: Mapping[str, Any], module: str) -> str:
    """The metadata the stream module sends as its first text frame: one JSON token, no spaces."""
    params = {str(k): str(v) for k, v in (call.get("params") or {}).items()}
    data = {**params, "callId": uuid, "delivery_id": delivery_id, "flow": str(call.get("flow", "")),
            "provider": PROVIDER, "caller": str(call.get("to", "")), "sampleRate": STREAM_RATE, "module": module}
    # Compact JSON has spaces only inside strings, where \u0020 means the same: the command line
    # splits on spaces, and the metadata must stay its last argument.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace(" ", "\\u0020")


def stream_command(event: EslEvent, *, module: str, stream_url: str, owner: str = "") -> str | None:
    """On CHANNEL_ANSWER of a call this channel (`owner`) placed: the command that streams it."""
    delivery_id = event.get("variable_" + DELIVERY_VAR)
    call = _unb64(event.get("variable_" + CALL_VAR))
    if event.name != "CHANNEL_ANSWER" or not delivery_id or event.get("variable_" + OWNER_VAR) != owner:
        return None
    uuid = event.unique_id
    if call is None:
        log.warning("call %s answered without its reminder variables; hanging up", uuid)
        return f"uuid_kill {uuid} NORMAL_CLEARING"
    sep = "&" if "?" in stream_url else "?"
    url = f"{stream_url}{sep}module={module}&sample_rate={STREAM_RATE}&call_id={uuid}"
    metadata = stream_metadata(uuid, delivery_id, call, module)
    return f"{MODULES[module]} {uuid} start {url} mono 8k {metadata}"


def receipt_of_event(event: EslEvent, at: datetime, jobs: Mapping[str, str] | None = None) -> Receipt | None:
    """A channel event of one of our calls (or our failed originate's job) as a receipt (pure)."""
    if event.name == "BACKGROUND_JOB":
        delivery_id = (jobs or {}).get(event.get("Job-UUID"))
        body = event.body.strip()
        if delivery_id is None or not body.startswith("-ERR"):
            return None  # +OK: the call's own events tell the rest
        cause = body.removeprefix("-ERR").strip() or "ORIGINATE_FAILED"
        return Receipt(PROVIDER, _CAUSES.get(cause, "failed"), at, provider_id=delivery_id, delivery_id=delivery_id,
                       error=None if cause in _CAUSES else cause, raw={"job": body})
    delivery_id = event.get("variable_" + DELIVERY_VAR)
    if not delivery_id:
        return None  # not a reminder call (inbound calls share the switch)
    uuid = event.unique_id or delivery_id
    if event.name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
        return Receipt(PROVIDER, "ringing", at, provider_id=uuid, delivery_id=delivery_id)
    if event.name == "CHANNEL_ANSWER":
        return Receipt(PROVIDER, "answered", at, provider_id=uuid, delivery_id=delivery_id)
    if event.name == "CHANNEL_HANGUP_COMPLETE":
        cause = event.get("Hangup-Cause")
        status = _CAUSES.get(cause, "failed")
        raw = {k: event.get(k) for k in ("Hangup-Cause", "variable_billsec", "variable_sip_term_status")
               if event.get(k)}
        return Receipt(PROVIDER, status, at, provider_id=uuid, delivery_id=delivery_id,
                       error=None if cause in _CAUSES else cause or "UNKNOWN", raw=raw)
    return None


class FreeswitchVoice:
    """The FreeSWITCH voice channel over one Event Socket connection (reconnected when lost)."""

    name = PROVIDER
    kind = "voice"

    def __init__(self, *, host: str, port: int, password: str, gateway: str, stream_url: str, sink: ReceiptSink,
                 module: str = "audio_stream", ring_timeout_s: int = 30, caller_id: str = "",
                 timeout_s: float = 10.0, instance_id: str | None = None) -> None:
        if module not in MODULES:
            raise ValueError(f"freeswitch_stream_module must be one of {', '.join(MODULES)}, got {module!r}")
        if not stream_url:
            raise ValueError("freeswitch_voice needs the ws:// URL FreeSWITCH streams to (freeswitch_stream_url "
                             "or public_url)")
        self.host, self.port, self.gateway = host, port, gateway
        self.stream_url, self.module, self.sink = stream_url, module, sink
        self.ring_timeout_s, self.caller_id, self.timeout_s = ring_timeout_s, caller_id, timeout_s
        self._password = password
        self._client: EslClient | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._ready: asyncio.Future | None = None
        self._replies: dict[str, asyncio.Future] = {}
        self._jobs: dict[str, str] = {}  # Job-UUID -> delivery id, for failed originates
        self._lock = asyncio.Lock()
        self.instance_id = instance_id or uuidlib.uuid4().hex  # whose calls this channel streams

    # Connection ----------------------------------------------------------------
    async def connect(self) -> None:
        """Connect, authenticate and subscribe (at start, so live calls' events are heard)."""
        async with self._lock:
            await self._connect()

    async def _connect(self) -> None:
        if self._client is not None and self._client.state == "ready":
            return
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            raise SendError(PROVIDER, "network", f"Event Socket {self.host}:{self.port}: {exc}", retryable=True) from None
        self._client = EslClient(self._password)
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._reader_task = asyncio.create_task(self._read(reader, self._client, writer))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.timeout_s)
        except TimeoutError:
            await self._drop()
            raise SendError(PROVIDER, "timeout", "no Event Socket authentication in time", retryable=True) from None
        except SendError:
            await self._drop()
            raise
        try:
            await self._command("subscribe", self._client.subscribe_frame(EVENTS))
        except (TimeoutError, OSError, SendError) as exc:
            await self._drop()  # nothing was originated on it: the send may be tried again
            raise SendError(PROVIDER, "network", f"Event Socket subscription: {exc!r}", retryable=True) from None

    async def _command(self, tag: str, frame: bytes) -> Reply:
        assert self._writer is not None
        future = asyncio.get_running_loop().create_future()
        self._replies[tag] = future
        self._writer.write(frame)
        await self._writer.drain()
        return await asyncio.wait_for(future, self.timeout_s)

    async def _drop(self) -> None:
        task, self._reader_task = self._reader_task, None
        if self._writer is not None:
            self._writer.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._client, self._writer = None, None

    async def _read(self, reader: asyncio.StreamReader, client: EslClient, writer: asyncio.StreamWriter) -> None:
        ready = self._ready
        try:
            while data := await reader.read(65536):
                events, answer = client.receive(data)
                if answer:
                    writer.write(answer)
                for item in events:
                    await self._on(item, client, writer, ready)
        except EslError as exc:
            log.error("Event Socket %s:%d: %s; reconnecting on the next send", self.host, self.port, exc)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            lost = SendError(PROVIDER, "connection_lost", "the Event Socket closed before answering", maybe_sent=True)
            for tag in client.abandon():
                future = self._replies.pop(tag, None)
                if future is not None and not future.done():
                    future.set_exception(lost)
            if ready is not None and not ready.done():
                ready.set_exception(SendError(PROVIDER, "network", "the Event Socket closed", retryable=True))
            if self._client is client:
                self._client = None

    async def _on(self, item: Any, client: EslClient, writer: asyncio.StreamWriter, ready: asyncio.Future | None) -> None:
        if isinstance(item, Authenticated):
            if ready is not None and not ready.done():
                ready.set_result(None)
        elif isinstance(item, AuthFailed):
            log.error("Event Socket %s:%d refused the password", self.host, self.port)
            if ready is not None and not ready.done():
                ready.set_exception(SendError(PROVIDER, "auth", f"Event Socket authentication: {item.reply}"))
        elif isinstance(item, Reply):
            future = self._replies.pop(item.tag, None)
            if future is not None and not future.done():
                future.set_result(item)
            elif not item.ok:
                log.warning("FreeSWITCH refused %s: %s", item.tag, item.text)
        elif isinstance(item, EslEvent):
            await self._on_event(item, client, writer)
        elif isinstance(item, Disconnected):
            log.warning("Event Socket %s:%d disconnects: %s", self.host, self.port, item.notice)

    async def _on_event(self, event: EslEvent, client: EslClient, writer: asyncio.StreamWriter) -> None:
        line = stream_command(event, module=self.module, stream_url=self.stream_url, owner=self.instance_id)
        if line is not None:
            # Not awaited: the reply comes through this very reader; a refusal is logged.
            writer.write(client.bgapi_frame(line, job_uuid=f"stream-{event.unique_id}"))
        receipt = receipt_of_event(event, datetime.now(timezone.utc), self._jobs)
        if event.name == "BACKGROUND_JOB":
            self._jobs.pop(event.get("Job-UUID"), None)
        if receipt is not None:
            try:
                await self.sink.receipts([receipt])
            except Exception:  # the sink's trouble must not stop the event stream
                log.exception("receipt sink failed on %s %s", receipt.delivery_id, receipt.status)

    # Channel -------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> Accepted:
        line = originate_command(message, gateway=self.gateway, ring_timeout_s=self.ring_timeout_s,
                                 caller_id=self.caller_id, owner=self.instance_id)
        async with self._lock:
            await self._connect()
            assert self._client is not None
            job = message.delivery_id
            self._jobs[job] = message.delivery_id
            try:
                reply = await self._command(job, self._client.bgapi_frame(line, job_uuid=job))
            except TimeoutError:
                raise SendError(PROVIDER, "timeout", "no answer to bgapi originate", maybe_sent=True) from None
            except OSError as exc:
                raise SendError(PROVIDER, "connection_lost", str(exc), maybe_sent=True) from None
        if not reply.ok:
            self._jobs.pop(job, None)
            raise SendError(PROVIDER, "refused", reply.text)
        log.info("reminder %s: FreeSWITCH originate queued", message.delivery_id)
        return Accepted(PROVIDER, message.delivery_id)

    async def aclose(self) -> None:
        await self._drop()


def stream_url_of(settings: Settings) -> str:
    if settings.freeswitch_stream_url:
        return settings.freeswitch_stream_url
    if not settings.public_url:
        return ""
    from scheduler.channels.twilio_voice import http_base

    base = http_base(settings.public_url)
    return ("wss://" + base[len("https://"):] if base.startswith("https://") else "ws://" + base[len("http://"):]) \
        + "/ws/freeswitch"


def from_settings(settings: Settings, sink: ReceiptSink) -> FreeswitchVoice:
    return FreeswitchVoice(
        host=settings.freeswitch_esl_host, port=settings.freeswitch_esl_port, password=settings.freeswitch_esl_password,
        gateway=settings.freeswitch_gateway, stream_url=stream_url_of(settings), sink=sink,
        module=settings.freeswitch_stream_module, ring_timeout_s=settings.voice_ring_timeout_s,
    )
