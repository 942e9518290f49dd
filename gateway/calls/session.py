"""The async shell around one call: WebSocket frames ↔ adapter ↔ audio input ↔ recognizer.

All protocol knowledge lives in the adapter and all signal processing in
`speech`; this module only moves bytes and events between them, enforces the
limits, and makes sure a call that ends in any way still yields its last
transcript and frees its recognizer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from speech.codecs import CodecError
from speech.pipeline import AudioInput
from speech.recognizer import Recognizer, grammar_phrases
from speech.results import Transcript
from speech.vad import SpeechAudio, SpeechEnd, VadConfig

from gateway.auth import Verdict
from gateway.calls.registry import LiveCall
from gateway.calls.flow_call import FlowCall
from gateway.calls.flow_call import Outcome as FlowOutcome
from gateway.privacy import mask_number
from gateway.services import Services
from gateway.telephony.base import (
    Adapter,
    AudioIn,
    CallStart,
    CallStop,
    ConfigUpdate,
    DtmfIn,
    FlushRequest,
    Frame,
    InboundEvent,
    MarkIn,
    ProtocolError,
    TextIn,
)

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013


@dataclass
class RecognitionOutcome:
    finals: list[Transcript] = field(default_factory=list)
    partial: Transcript | None = None
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    decode_cpu_s: float = 0.0  # thread CPU inside Vosk decoding
    partial_cpu_s: float = 0.0  # thread CPU inside Vosk partial results


def recognize(recognizer: Recognizer, gate_events: list[Any], flush: bool = False) -> RecognitionOutcome:
    """Feed gated audio to the recognizer (runs in the recognition pool)."""
    out = RecognitionOutcome()
    started = time.perf_counter()
    decode_cpu, partial_cpu = recognizer.decode_cpu_s, recognizer.partial_cpu_s
    for event in gate_events:
        if isinstance(event, SpeechAudio):
            result = recognizer.accept(event.pcm16, event.t)
            out.audio_seconds += len(event.pcm16) / 2 / recognizer.sample_rate
            if result is None:
                continue
            if result.final:
                if result.text:
                    out.finals.append(result)
                out.partial = None
            else:
                out.partial = result
        elif isinstance(event, SpeechEnd) and recognizer.utterance_has_audio:
            result = recognizer.finish()
            if result.text:
                out.finals.append(result)
            out.partial = None
    if flush and recognizer.utterance_has_audio:
        result = recognizer.finish()
        if result.text:
            out.finals.append(result)
        out.partial = None
    out.elapsed = time.perf_counter() - started
    out.decode_cpu_s = recognizer.decode_cpu_s - decode_cpu
    out.partial_cpu_s = recognizer.partial_cpu_s - partial_cpu
    return out


class CallSession:
    def __init__(self, websocket: WebSocket, adapter: Adapter, services: Services, verdict: Verdict) -> None:
        self.ws = websocket
        self.adapter = adapter
        self.services = services
        self.verdict = verdict
        self.live: LiveCall | None = None
        self.start: CallStart | None = None
        self.audio: AudioInput | None = None
        self.audio_rate = 0
        self.earlier_audio_seconds = 0.0  # audio received before a change of sample rate
        self.recognizer: Recognizer | None = None
        # Gated audio waiting to be decoded in one trip to the recognizer threads (each trip
        # costs ~80 us of event-loop time; a 20 ms Twilio frame apiece would be most of it).
        self.pending: list[Any] = []
        self.pending_s = 0.0
        self.call_pk: int | None = None
        self.segments = 0
        self.partial: Transcript | None = None
        self.last_published_partial = ""
        self.end_reason = "disconnect"
        self.connected = True  # still reading the peer's messages
        self.can_send = True  # the peer may be gone while its last messages are still queued
        self.flushed = False
        self.flow: FlowCall | None = None
        # When silence after a prompt counts as no input: by the clock (nothing arrives at all)
        # and by the call's own audio (frames keep coming; robust to recognition lagging behind).
        self.answer_deadline: float | None = None
        self.answer_due_audio: float | None = None
        self.playing_until = 0.0  # when the prompt audio sent to the platform ends (estimated)
        self.prompts_played = 0

    # Lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        settings = self.services.settings
        await self.ws.accept()
        lag = self.services.registry.max_decode_lag()
        if settings.max_decode_lag_s and lag > settings.max_decode_lag_s:
            # Recognition already trails real time: one more call would degrade every call.
            self.services.metrics.count_refusal("overload")
            log.warning("refused %s call: recognition is %.1f s behind real time", self.adapter.name, lag)
            await self._close(CLOSE_TRY_AGAIN, f"gateway overloaded (recognition {lag:.1f} s behind), try again later")
            return
        self.live = self.services.registry.open(self.adapter.name)
        if self.live is None:
            self.services.metrics.count_refusal("capacity")
            log.warning("refused %s call: at capacity (%d calls)", self.adapter.name, settings.max_calls)
            await self._close(CLOSE_TRY_AGAIN, f"gateway at capacity ({settings.max_calls} calls), try again later")
            return
        self.services.metrics.count_call(self.adapter.name)
        try:
            await self._receive_loop()
        except Exception:
            log.exception("call %s failed", self.call_id)
            self.end_reason = "internal error"
            await self._close(1011, "internal error")
        finally:
            try:
                await self._finish()
            finally:
                self.services.registry.close(self.live)

    @property
    def call_id(self) -> str:
        return self.start.call_id if self.start else "-"

    async def _receive_loop(self) -> None:
        settings = self.services.settings
        deadline = time.monotonic() + settings.max_call_s
        while self.connected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._end("maximum call duration reached", CLOSE_NORMAL)
                return
            wait = min(settings.idle_timeout_s, remaining)
            if self.answer_deadline is not None:
                wait = min(wait, max(self.answer_deadline - time.monotonic(), 0.0))
            waited_from = time.monotonic()
            if self.live is not None:
                self.live.waiting = True
            try:
                async with asyncio.timeout(wait):  # cheaper than wait_for: no task per message
                    message = await self.ws.receive()
            except TimeoutError:
                if self.live is not None:
                    self.live.caught_up(time.monotonic())
                if self.answer_deadline is not None and time.monotonic() >= self.answer_deadline:
                    await self._no_input()
                    continue
                if deadline - time.monotonic() <= 0:
                    await self._end("maximum call duration reached", CLOSE_NORMAL)
                else:
                    await self._end(f"no message for {settings.idle_timeout_s:g} s", CLOSE_POLICY, reason="idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                self.connected = False
                return
            received_at = time.monotonic()
            if self.live is not None:
                self.live.waiting = False
                if received_at - waited_from > 0.005:
                    self.live.caught_up(received_at)  # we waited for this message: nothing was queued
            data, text = message.get("bytes"), message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            if size > settings.max_message_bytes:
                await self._protocol_error(
                    ProtocolError(f"message of {size} bytes exceeds the limit of {settings.max_message_bytes}", CLOSE_TOO_BIG)
                )
                return
            events = self.adapter.receive_bytes(data) if data is not None else self.adapter.receive_text(text or "")
            await self._handle(events)

    # Events ------------------------------------------------------------------
    async def _handle(self, events: list[InboundEvent]) -> None:
        outcome = RecognitionOutcome()
        texts: list[TextIn | DtmfIn] = []  # typed caller input, for a flow after the transcripts went out
        for event in events:
            if isinstance(event, ProtocolError):
                await self._protocol_error(event)
                return
            if isinstance(event, CallStart):
                if not await self._start_call(event):
                    return
            elif isinstance(event, AudioIn):
                if not await self._audio(event, outcome):
                    return
            elif isinstance(event, ConfigUpdate):
                await self._configure(event, outcome)
            elif isinstance(event, FlushRequest):
                if self.recognizer is not None:
                    await self._recognize(outcome, flush=True)
            elif isinstance(event, CallStop):
                self.end_reason = event.reason
                self._merge(outcome, await self._flush())
                self.connected = False  # leave the loop after replying
            elif isinstance(event, DtmfIn):
                self._publish({"type": "dtmf", "digits": event.digits})
                texts.append(event)
            elif isinstance(event, MarkIn):
                self._publish({"type": "mark", "name": event.name})
            elif isinstance(event, TextIn):
                self._publish({"type": "text", "text": event.text})
                texts.append(event)
        # Every message gets the adapter's say; it knows which ones its protocol answers.
        partial = outcome.partial if outcome.partial is not None else self.partial
        await self._send(self.adapter.results(outcome.finals, partial))
        await self._deliver(outcome)
        if self.flow is not None:
            if outcome.audio_seconds > 0 or texts:
                await self._caller_speaks()
            await self._converse(outcome.finals, texts)
            if self.answer_due_audio is not None and self._audio_position() >= self.answer_due_audio:
                await self._no_input()
            elif self.answer_due_audio is not None and self.answer_deadline is not None:
                # Frames are arriving: the audio clock decides, the wall clock only when they stop.
                self.answer_deadline = time.monotonic() + (self.answer_due_audio - self._audio_position()) + 2.0
        if not self.connected and self.ws.application_state == WebSocketState.CONNECTED:
            if self.end_reason in {"hangup", "transfer"}:
                await self._linger()
            await self._close(CLOSE_NORMAL, self.end_reason)

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

    async def _converse(self, finals: list[Transcript], texts: list[TextIn | DtmfIn]) -> None:
        """Caller turns (recognized speech, typed text, keypad) go to the call's flow in order."""
        assert self.flow is not None
        for item in [*finals, *texts]:
            if self.flow.final_status is not None and self.flow.dialogue.finished:
                return
            if isinstance(item, Transcript):
                result = await self.flow.on_text(item.text, item.confidence)
            elif isinstance(item, TextIn):
                result = await self.flow.on_text(item.text)
            else:
                result = await self.flow.on_dtmf(item.digits)
            await self._flow_outcome(result)

    async def _flow_outcome(self, result: FlowOutcome) -> None:
        await self._send(result.frames)
        speaking_s = 0.0
        for prompt in result.prompts:
            speaking_s += await self._speak(prompt.text)
        if result.prompts and self.recognizer is not None:
            # The answer to the last prompt is recognized with that prompt's vocabulary, if any.
            hints = result.prompts[-1].hints
            await self.services.speech.run(self.recognizer.set_phrases, grammar_phrases(hints) if hints else None)
        if result.prompts and result.end is None:
            settings = self.services.settings
            if not speaking_s:  # not played by us: the platform or client shows or speaks the text
                speaking_s = sum(len(p.text) for p in result.prompts) / settings.prompt_chars_per_s
            wait_s = speaking_s + settings.no_input_s
            self.answer_deadline = time.monotonic() + wait_s
            self.answer_due_audio = self._audio_position() + wait_s
        if result.end is not None:
            self.end_reason = result.end
            self.connected = False

    async def _speak(self, text: str) -> float:
        """Play a prompt where the platform can; its duration in seconds (0 when not played)."""
        tts = self.services.tts
        if tts is None or not self.adapter.plays_audio or not text or not self.can_send:
            return 0.0
        try:
            pcm = await asyncio.to_thread(tts.synthesize, text)
        except Exception as exc:  # a broken TTS engine must not end the call: the text still went out
            log.warning("call %s: prompt not synthesized: %s", self.call_id, exc)
            return 0.0
        self.prompts_played += 1
        await self._send(self.adapter.play(pcm, tts.sample_rate, mark=f"prompt-{self.prompts_played}"))
        seconds = len(pcm) / 2 / tts.sample_rate
        self.playing_until = max(self.playing_until, time.monotonic()) + seconds
        return seconds

    def _audio_position(self) -> float:
        return self.earlier_audio_seconds + (self.audio.seconds_in if self.audio else 0.0)

    async def _caller_speaks(self) -> None:
        """Caller speech (or input) arrived: it answers the prompt, and barges in on playback."""
        self.answer_deadline = None
        self.answer_due_audio = None
        if time.monotonic() < self.playing_until:
            self.playing_until = 0.0
            await self._send(self.adapter.clear())

    async def _no_input(self) -> None:
        self.answer_deadline = None
        self.answer_due_audio = None
        # Silence means "no answer" only on a voice call; a chat user may take their time to type.
        voice_call = self.adapter.plays_audio or (self.live is not None and self.live.first_audio is not None)
        if voice_call and self.flow is not None and not self.flow.dialogue.finished:
            await self._flow_outcome(await self.flow.on_no_input())
            if not self.connected and self.ws.application_state == WebSocketState.CONNECTED:
                await self._linger()
                await self._close(CLOSE_NORMAL, self.end_reason)

    async def _start_call(self, event: CallStart) -> bool:
        svc = self.services
        if self.start is not None:
            await self._protocol_error(ProtocolError("the call was already started", CLOSE_POLICY))
            return False
        if self.verdict is Verdict.DEFERRED and not svc.auth.check_key(event.token):
            svc.metrics.count_refusal("auth")
            log.warning("refused %s call %s: missing or invalid API key", self.adapter.name, event.call_id)
            await self._end("missing or invalid API key", CLOSE_POLICY, reason="unauthorized")
            return False
        self.start = event
        assert self.live is not None
        self.live.call_id = event.call_id
        if not await self._open_audio(event.sample_rate, event.phrases, event.words, event.max_alternatives):
            return False
        log.info(
            "call %s started on %s from %s (%s %d Hz)",
            event.call_id, self.adapter.name, mask_number(event.caller_number), event.encoding.value, event.sample_rate,
        )
        self.call_pk = await svc.database.start_call(event.call_id, self.adapter.name, event.caller_number)
        self._publish(
            {"type": "call.started", "protocol": self.adapter.name, "caller_number": event.caller_number,
             "stream_id": event.stream_id, "params": event.params}
        )
        flow_name = FlowCall.flow_name(event)
        if flow_name:
            return await self._start_flow(flow_name, event)
        return True

    async def _start_flow(self, name: str, event: CallStart) -> bool:
        svc = self.services
        flows = svc.dialogues.flows if svc.dialogues is not None else {}
        if name not in flows:
            known = ", ".join(sorted(flows)) or "none configured"
            await self._protocol_error(ProtocolError(f"unknown flow {name!r} (flows: {known})", CLOSE_POLICY))
            return False
        try:
            started_at = datetime.fromisoformat(event.started_at) if event.started_at else svc.now()
        except ValueError:
            await self._protocol_error(ProtocolError(f"started_at {event.started_at!r} is not ISO 8601", 1007))
            return False
        if started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=svc.zone)
        self.flow = FlowCall(svc, self.adapter, event, flows[name], started_at)
        await self._flow_outcome(await self.flow.begin())
        return True

    async def _open_audio(
        self, rate: int, phrases: tuple[str, ...] | None, words: bool, max_alternatives: int
    ) -> bool:
        """Audio input and recognizer for the call's audio format."""
        assert self.start is not None
        speech = self.services.speech
        recognizer_rate = speech.input_rate(rate)
        self.audio_rate = rate
        if self.recognizer is not None:
            await speech.run(self.recognizer.close)
        try:
            self.audio = AudioInput(self.start.encoding, rate, recognizer_rate, self._vad_config(self.start))
        except ValueError as exc:
            await self._protocol_error(ProtocolError(f"unsupported audio format: {exc}", 1003))
            return False
        self.recognizer = await speech.run(
            lambda: speech.new_recognizer(
                recognizer_rate, phrases=phrases, words=words, max_alternatives=max_alternatives,
                partial_interval_s=self.services.settings.partial_interval_ms / 1000,
            )
        )
        return True

    def _vad_config(self, event: CallStart) -> VadConfig:
        s = self.services.settings
        params = event.params
        try:
            trailing = int(params.get("trailing_silence_ms", s.trailing_silence_ms))
            return VadConfig(
                enabled=params.get("vad", "on" if s.vad_enabled else "off").lower() not in {"off", "0", "false"},
                preroll_ms=s.vad_preroll_ms,
                trailing_silence_ms=trailing,
                hangover_ms=min(VadConfig.hangover_ms, trailing),
                max_utterance_s=float(params.get("max_utterance_s", s.max_utterance_s)),
            )
        except ValueError:
            log.warning("call %s: ignoring malformed endpointing parameters", event.call_id)
            return VadConfig(enabled=s.vad_enabled, preroll_ms=s.vad_preroll_ms,
                             trailing_silence_ms=s.trailing_silence_ms,
                             hangover_ms=min(VadConfig.hangover_ms, s.trailing_silence_ms),
                             max_utterance_s=s.max_utterance_s)

    async def _audio(self, event: AudioIn, outcome: RecognitionOutcome) -> bool:
        if self.audio is None or self.recognizer is None:
            await self._protocol_error(ProtocolError("audio before the call started", CLOSE_POLICY))
            return False
        assert self.live is not None
        if self.live.first_audio is None:
            self.live.first_audio = time.monotonic()
        before = self.audio.seconds_in
        try:
            gate_events = self.audio.feed(event.payload)
        except CodecError as exc:
            await self._protocol_error(ProtocolError(f"bad audio: {exc}", 1007))
            return False
        self.services.metrics.audio_seconds_in += self.audio.seconds_in - before
        if gate_events:  # silence the gate dropped costs no trip to the recognizer threads
            self.pending.extend(gate_events)
            self.pending_s += sum(len(e.pcm16) for e in gate_events if isinstance(e, SpeechAudio)) / 2 / self.audio.rate
            # An utterance's end goes at once: its final transcript is what callers wait for.
            if self.pending_s >= self.services.settings.recognize_batch_ms / 1000 or any(
                isinstance(e, SpeechEnd) for e in gate_events
            ):
                await self._recognize(outcome)
        self.live.audio_seconds_processed = self.earlier_audio_seconds + self.audio.seconds_in
        return True

    async def _configure(self, event: ConfigUpdate, outcome: RecognitionOutcome) -> None:
        if self.recognizer is None or self.start is None:
            return
        recognizer = self.recognizer
        await self._recognize(outcome)  # audio already received keeps the settings it came with
        if event.phrases is not None:
            await self.services.speech.run(recognizer.set_phrases, event.phrases or None)
        if event.words is not None or event.max_alternatives is not None:
            await self.services.speech.run(
                lambda: recognizer.set_output(words=event.words, max_alternatives=event.max_alternatives)
            )
        if event.sample_rate and event.sample_rate != self.audio_rate:
            # The input format changed: finish what was said, then decode at the new rate.
            self._merge(outcome, await self._flush())
            self.flushed = False
            self.earlier_audio_seconds += self.audio.seconds_in if self.audio else 0.0
            await self._open_audio(event.sample_rate, recognizer.phrases, recognizer.words, recognizer.max_alternatives)

    async def _flush(self) -> RecognitionOutcome:
        """End of audio: whatever is buffered goes through the recognizer one last time."""
        if self.flushed or self.audio is None or self.recognizer is None:
            return RecognitionOutcome()
        self.flushed = True
        outcome = RecognitionOutcome()
        await self._recognize(outcome, self.audio.flush(), flush=True)
        return outcome

    async def _recognize(self, outcome: RecognitionOutcome, more: list[Any] | tuple[()] = (), flush: bool = False) -> None:
        """Decode the pending gated audio (and `more`) now."""
        assert self.recognizer is not None
        events, self.pending, self.pending_s = [*self.pending, *more], [], 0.0
        if events or flush:
            self.services.metrics.recognizer_batches += 1
            self._merge(outcome, await self.services.speech.run(recognize, self.recognizer, events, flush))

    def _merge(self, outcome: RecognitionOutcome, more: RecognitionOutcome) -> None:
        outcome.finals.extend(more.finals)
        outcome.partial = more.partial
        outcome.audio_seconds += more.audio_seconds
        outcome.elapsed += more.elapsed
        outcome.decode_cpu_s += more.decode_cpu_s
        outcome.partial_cpu_s += more.partial_cpu_s
        if more.finals:
            self.partial = None
        if more.partial is not None:
            self.partial = more.partial

    # Output ------------------------------------------------------------------
    async def _deliver(self, outcome: RecognitionOutcome) -> None:
        """Publish and store what recognition produced."""
        metrics = self.services.metrics
        metrics.audio_seconds_decoded += outcome.audio_seconds
        metrics.recognizer_seconds += outcome.elapsed
        metrics.vosk_decode_cpu_s += outcome.decode_cpu_s
        metrics.vosk_partial_cpu_s += outcome.partial_cpu_s
        for final in outcome.finals:
            metrics.transcripts_final += 1
            self.segments += 1
            self._publish(
                {"type": "transcript", "final": True, "text": final.text, "start": final.start, "end": final.end,
                 "confidence": final.confidence, "words": [w.__dict__ for w in final.words]}
            )
            if self.call_pk is not None:
                await self.services.database.add_segment(
                    self.call_pk, self.segments, final.compact_text, final.start, final.end, final.confidence
                )
            self.last_published_partial = ""
        partial = outcome.partial
        if partial is not None and partial.text != self.last_published_partial:
            self.last_published_partial = partial.text
            self._publish({"type": "transcript", "final": False, "text": partial.text})

    def _publish(self, event: dict[str, Any]) -> None:
        if self.start is None:
            return
        self.services.registry.publish({"call_id": self.start.call_id, **event})

    async def _send(self, frames: list[Frame]) -> None:
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

    async def _close(self, code: int, reason: str) -> None:
        self.connected = False
        if self.can_send and self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason[:120])  # a close reason must fit in 123 bytes
            except (RuntimeError, OSError):
                pass

    async def _end(self, message: str, code: int, reason: str | None = None) -> None:
        self.end_reason = reason or message
        outcome = await self._flush()
        await self._send(self.adapter.results(outcome.finals, None) if outcome.finals else [])
        await self._deliver(outcome)
        await self._send(self.adapter.error(message) if code != CLOSE_NORMAL else [])
        await self._close(code, message)

    async def _protocol_error(self, error: ProtocolError) -> None:
        self.services.metrics.protocol_errors += 1
        log.warning("call %s on %s: protocol error: %s", self.call_id, self.adapter.name, error.message)
        await self._end(error.message, error.close_code, reason=f"protocol error: {error.message}")

    async def _finish(self) -> None:
        """However the call ended: last transcript out, recognizer freed, call row closed."""
        outcome = await self._flush()
        await self._deliver(outcome)
        if self.start is None:
            return
        if self.flow is not None:
            if outcome.finals and self.flow.final_status is None:
                self.can_send = False  # the caller is gone; their last words still count
                await self._converse(outcome.finals, [])
            await self.flow.on_hangup()
        audio_seconds = self.earlier_audio_seconds + (self.audio.seconds_in if self.audio else 0.0)
        if self.call_pk is not None:
            await self.services.database.end_call(self.call_pk, self.end_reason, audio_seconds)
        self._publish({"type": "call.ended", "reason": self.end_reason, "audio_seconds": round(audio_seconds, 3)})
        log.info("call %s ended: %s (%.1f s of audio)", self.call_id, self.end_reason, audio_seconds)
        if self.recognizer is not None:
            await self.services.speech.run(self.recognizer.close)
        self.recognizer = None
        self.audio = None
