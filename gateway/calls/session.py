"""The async shell around one call: it does the I/O, `CallCore` decides.

Accept and admission (capacity, decode lag) happen here; then every WebSocket
message goes through the adapter, its audio through the call's `SpeechStream`
to the recognizer (in the recognition pool), and everything else to the core,
whose actions — frames, prompts to synthesize, storage, the close — are
carried out here in order. The wait for the next message is the core's
`timeout`. However the call ends, the core gets `Finished` with the last
decoded audio, and the recognizer is freed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Sequence

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from speech.codecs import CodecError, Encoding
from speech.stream import RecognitionOutcome
from speech.vad import VadConfig

from gateway.auth import Verdict
from gateway.calls.core import CLOSE_TOO_BIG, CLOSE_TRY_AGAIN, CallCore
from gateway.calls.core_events import (
    Action, AudioOpened, CallStarted, ClearPlayback, Close, EndCallRow, Failed, Finished, Flushed, FlushAudio,
    OpenAudio, PromptPlayed, Publish, Recognized, SaveReport, Send, SetGrammar, Shutdown, Speak, StartCallRow,
    StoreSegment, Tick,
)
from gateway.calls.recognition import CallRecognition, merge
from gateway.calls.registry import LiveCall
from gateway.services import Services
from gateway.storage import reports, results
from gateway.telephony.base import Adapter, AudioIn, CallStart, CallStop, ConfigUpdate, FlushRequest, Frame, ProtocolError

log = logging.getLogger(__name__)

# A new call while the gateway drains for shutdown: "service restart", to be tried again (elsewhere).
CLOSE_SHUTTING_DOWN = 1012
SHUTTING_DOWN_REASON = "gateway shutting down, try again"


async def save_report(services: Services, save: SaveReport) -> None:
    """The one place a flow's report is stored; a final one wakes the delivery worker."""
    delivery = reports.delivery_for(save.topic, save.final_statuses)  # claim reports keep their own body
    queued = await results.save(
        services.database.engine, result_id=save.report_id, call_id=save.call_id, flow=save.flow,
        status=save.status, caller_number=save.caller_number, slots=save.slots, details=save.details,
        transcript=save.transcript, policy_number=save.policy_number, topic=delivery.topic,
        final_statuses=delivery.final_statuses, payload=delivery.payload, instance_id=services.instance_id,
    )
    if queued and services.outbox_wake is not None:
        services.outbox_wake.set()
    if queued:
        # Once per result, after it is stored: listeners the app wired (e.g. voice reminder outcomes).
        for listener in services.result_listeners:
            try:
                await listener(save)
            except Exception:  # a listener's failure must not end the call; the result is stored
                log.exception("result listener failed for %s", save.report_id)


async def prepare_call(services: Services, start: CallStart) -> dict[str, str]:
    """The gateway's own values for a call's flow, from the preparers the app wired (e.g. a survey
    call's expected identity answer, looked up by its invitation); a failing preparer adds nothing."""
    values: dict[str, str] = {}
    for prepare in services.call_preparers:
        try:
            values.update(await prepare(start))
        except Exception:  # noqa: BLE001 - the call goes on; the flow's params decide if it can
            log.exception("call preparer failed for call %s", start.call_id)
    return values


class CallSession:
    def __init__(self, websocket: WebSocket, adapter: Adapter, services: Services, verdict: Verdict) -> None:
        self.ws = websocket
        self.adapter = adapter
        self.services = services
        self.verdict = verdict
        self.core: CallCore | None = None
        self.live: LiveCall | None = None
        self.rec = CallRecognition(services, Encoding.PCM16, VadConfig())
        self.call_pk: int | None = None
        self.connected = True  # still reading the peer's messages
        self.can_send = True  # the peer may be gone while its last messages are still queued
        self.prompts_played = 0

    # Lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        svc, settings = self.services, self.services.settings
        await self.ws.accept()
        opened_at = time.monotonic()
        deferred = self.verdict is Verdict.DEFERRED
        # A connection authenticated on the upgrade takes its call slot now; one whose key may
        # come in the protocol holds none until it authenticates, and must do so in time.
        if not deferred and not await self._admit():
            return
        self.core = CallCore(self.adapter, settings, svc.metrics, opened_at=opened_at,
                             dialogues=svc.dialogues, new_report_id=reports.new_report_id,
                             start_by=opened_at + settings.auth_timeout_s if deferred else None)
        try:
            await self._receive_loop()
        except WebSocketDisconnect:
            # The peer closed while we were sending or closing: a hang-up, whatever the moment.
            self.connected = self.can_send = False
        except Exception:
            log.exception("call %s failed", self.core.call_id)
            await self._do(self.core.handle(Failed()))
        finally:
            try:
                outcome = await self.rec.flush()
                self._release()  # the peer's last audio is recognized: the rest holds no call slot
                position = self.rec.stream.position if self.rec.stream else 0.0
                await self._do(self.core.handle(Finished(outcome, position, time.monotonic())))
                await self.rec.close()
            finally:
                if self.live is not None:
                    svc.registry.close(self.live)

    async def _admit(self) -> bool:
        """Admission: a call slot unless recognition lags or the gateway is full (closed 1013)."""
        svc, settings = self.services, self.services.settings
        if svc.registry.draining:
            svc.metrics.count_refusal("shutdown")
            log.info("refused %s call: the gateway is shutting down", self.adapter.name)
            await self._close(CLOSE_SHUTTING_DOWN, SHUTTING_DOWN_REASON)
            return False
        lag = svc.registry.max_decode_lag()
        if settings.max_decode_lag_s and lag > settings.max_decode_lag_s:
            # Recognition already trails real time: one more call would degrade every call.
            svc.metrics.count_refusal("overload")
            log.warning("refused %s call: recognition is %.1f s behind real time", self.adapter.name, lag)
            await self._close(CLOSE_TRY_AGAIN, f"gateway overloaded (recognition {lag:.1f} s behind), try again later")
            return False
        self.live = svc.registry.open(self.adapter.name)
        if self.live is None:
            svc.metrics.count_refusal("capacity")
            log.warning("refused %s call: at capacity (%d calls)", self.adapter.name, settings.max_calls)
            await self._close(CLOSE_TRY_AGAIN, f"gateway at capacity ({settings.max_calls} calls), try again later")
            return False
        svc.metrics.count_call(self.adapter.name)
        return True

    async def _receive_loop(self) -> None:
        core, max_bytes = self.core, self.services.settings.max_message_bytes
        assert core is not None
        while self.connected:
            live = self.live  # None until a connection without a key on the upgrade authenticates
            if live is not None and live.ending is not None:
                reason, live.ending = live.ending, None  # the gateway ends the call (its drain's deadline)
                await self._do(core.handle(Shutdown(reason)))
                continue
            now = time.monotonic()
            wait = core.timeout(now)
            if wait <= 0:
                await self._do(core.handle(Tick(now)))
                continue
            if live is not None:
                live.waiting = True
            try:
                async with asyncio.timeout(wait) as waiting:  # cheaper than wait_for: no task per message
                    if live is not None:
                        live.wait = waiting  # LiveCall.end cuts it short
                    message = await self.ws.receive()
            except TimeoutError:
                now = time.monotonic()
                if live is not None:
                    live.caught_up(now)
                    if live.ending is not None:
                        continue  # not a timeout: the gateway ends the call
                await self._do(core.handle(Tick(now)))
                continue
            if message["type"] == "websocket.disconnect":
                self.connected = False
                return
            received_at = time.monotonic()
            if live is not None:
                live.waiting = False
                if received_at - now > 0.005:
                    live.caught_up(received_at)  # we waited for this message: nothing was queued
            data, text = message.get("bytes"), message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            if size > max_bytes:
                error = ProtocolError(f"message of {size} bytes exceeds the limit of {max_bytes}", CLOSE_TOO_BIG)
                await self._do(core.handle(error))
                return
            await self._handle(self.adapter.receive_bytes(data) if data is not None else self.adapter.receive_text(text or ""))

    async def _handle(self, events: list) -> None:
        """One message's events: audio to the recognizer, the rest to the core; then its reply."""
        core, rec = self.core, self.rec
        assert core is not None
        outcome: RecognitionOutcome | None = None
        audio_in = False
        for event in events:
            if type(event) is AudioIn:
                stream = rec.stream
                if stream is None or rec.recognizer is None:
                    await self._do(core.handle(ProtocolError("audio before the call started", 1008)))
                    return
                audio_in = True
                live = self.live
                assert live is not None
                if live.first_audio is None:
                    live.first_audio = time.monotonic()
                audio = stream.audio
                before = audio.seconds_in
                try:
                    batch = stream.feed(event.payload)
                except CodecError as exc:
                    await self._do(core.handle(ProtocolError(f"bad audio: {exc}", 1007)))
                    return
                after = audio.seconds_in
                self.services.metrics.audio_seconds_in += after - before
                if batch is not None:
                    outcome = await rec.recognize(outcome, batch)
                live.audio_seconds_processed = stream.earlier_s + after
                continue
            if isinstance(event, CallStart):
                authorized = self.verdict is not Verdict.DEFERRED or self.services.auth.check_key(event.token)
                if authorized and self.live is None and not await self._admit():
                    self.connected = False  # authenticated, but no slot: refused (1013) as on the upgrade
                    return
                svc = self.services
                server = await prepare_call(svc, event) if authorized else {}
                await self._do(core.handle(CallStarted(event, authorized, time.monotonic(), svc.now(), svc.records,
                                                       server)))
            elif isinstance(event, ConfigUpdate):
                outcome, error = await rec.configure(event, outcome)
                if error is not None:
                    await self._do(core.handle(ProtocolError(f"unsupported audio format: {error}", 1003)))
            elif isinstance(event, FlushRequest):
                if rec.ready:
                    outcome = await rec.recognize(outcome, rec.stream.take(), flush=True)  # type: ignore[union-attr]
            elif isinstance(event, CallStop):
                outcome = merge(outcome, await rec.flush())
                await self._do(core.handle(event))
            else:  # typed text, keypad, marks, protocol errors
                await self._do(core.handle(event))
            if not self.connected:
                return  # the core closed the call: the rest of the message is not part of it
        stream = rec.stream
        position, partial = (stream.position, stream.partial) if stream is not None else (0.0, None)
        actions = core.handle(Recognized(outcome, partial, position, audio_in, time.monotonic()))
        if actions:  # most frames: none, and no coroutine to await
            await self._do(actions)

    # Actions -----------------------------------------------------------------
    async def _do(self, actions: Sequence[Action]) -> None:
        """Carry out the core's actions in order; a request's answer goes straight back in."""
        core, db = self.core, self.services.database
        assert core is not None
        for action in actions:
            match action:
                case Send(frames) | ClearPlayback(frames):
                    await self._send(frames)
                case Publish(event):
                    self.services.registry.publish(event)
                case StoreSegment(number, text, start, end, confidence):
                    if self.call_pk is not None:
                        await db.add_segment(self.call_pk, number, text, start, end, confidence)
                case Speak(text):
                    seconds = await self._speak(text)
                    await self._do(core.handle(PromptPlayed(seconds, time.monotonic())))
                case SetGrammar(phrases, alternatives):
                    await self.rec.set_phrases(phrases, alternatives)
                case SaveReport():
                    await save_report(self.services, action)
                case OpenAudio(encoding, rate, vad, phrases, words, max_alternatives):
                    assert self.live is not None
                    self.live.call_id = core.call_id
                    self.rec.encoding, self.rec.vad = encoding, vad
                    error = await self.rec.open(rate, phrases, words, max_alternatives)
                    await self._do(core.handle(AudioOpened(error)))
                case FlushAudio():
                    await self._do(core.handle(Flushed(await self.rec.flush())))
                case StartCallRow(call_id, protocol, caller_number):
                    self.call_pk = await db.start_call(call_id, protocol, caller_number, self.services.instance_id)
                case EndCallRow(reason, audio_seconds):
                    if self.call_pk is not None:
                        await db.end_call(self.call_pk, reason, audio_seconds)
                case Close(code, reason, linger):
                    self.connected = False
                    if linger and self.ws.application_state == WebSocketState.CONNECTED:
                        await self._linger()
                    await self._close(code, reason)
                case _:
                    raise TypeError(f"unknown action {action!r}")

    async def _linger(self, seconds: float = 2.0) -> None:
        """After the bot hung up or transferred, let the peer close first (it may still be
        answering the last prompt); what it sends now is not part of the call."""
        deadline = time.monotonic() + seconds
        if self.live is not None:
            self.live.waiting = True  # nothing of the call is queued: lingering is not lagging
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(self.ws.receive(), remaining)
            except (TimeoutError, WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                self.can_send = False
                return

    async def _speak(self, text: str) -> float:
        """Play a prompt where the platform can; its duration in seconds (0 when not played)."""
        tts = self.services.tts
        if tts is None or not self.adapter.plays_audio or not text or not self.can_send:
            return 0.0
        try:
            pcm = await asyncio.to_thread(tts.synthesize, text)
        except Exception as exc:  # a broken TTS engine must not end the call: the text still went out
            log.warning("call %s: prompt not synthesized: %s", self.core.call_id if self.core else "-", exc)
            return 0.0
        self.prompts_played += 1
        await self._send(self.adapter.play(pcm, tts.sample_rate, mark=f"prompt-{self.prompts_played}"))
        return len(pcm) / 2 / tts.sample_rate

    # Output ------------------------------------------------------------------
    async def _send(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            if not self.can_send or self.ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                # Keep reading: audio the peer sent before hanging up still gets recognized.
                self.can_send = False
                return

    def _release(self) -> None:
        if self.live is not None:
            self.services.registry.release(self.live)

    async def _close(self, code: int, reason: str) -> None:
        self.connected = False
        self._release()  # before the close goes out: a peer that sees it may place its next call
        if self.can_send and self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason[:120])  # a close reason must fit in 123 bytes
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.can_send = False  # the peer closed first: the call is over either way
