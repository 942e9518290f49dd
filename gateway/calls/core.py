"""One call as a sans-I/O state machine: events and the time in, actions out.

`CallCore` holds everything a call decides — when it starts and how it ends,
its limits (maximum duration, idle timeout), what recognized speech and typed
input publish and store, the flow's turns, the no-input deadline (by the wall
clock and by the call's own audio), barge-in, and the close code — and none
of the I/O: no sockets, clocks, threads or awaits. The async shell
(gateway.calls.session) receives frames, runs the adapter and the recognizer,
and hands the core `core_events` events; it carries out the actions it gets
back, in order, and asks `timeout(now)` how long it may wait for the peer.

Guarantees:
- `handle` returns actions to carry out in order; a `Request` is always the
  last of them, and the shell answers it before handing in anything else;
- the per-frame path (`Recognized` with nothing decoded, nothing typed, nothing
  due) returns a shared empty tuple, or one `Send` when the protocol answers
  every message;
- however the call ends, `Finished` still delivers the last words (to the
  subscribers, the transcript store and the flow) and ends the call row;
- one `Close` per call, with the code and reason of its end.

An outbound call (one the gateway placed) will use the same core: the shell
that dials hands in `CallStarted` once the callee answers, and the flow's first
prompt comes back at once — the bot speaks first, as it does with a flow's
greeting on an inbound call. Nothing here depends on who dialled.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Generator, Mapping, Sequence

from speech.recognizer import grammar_phrases
from speech.results import Transcript
from speech.stream import RecognitionOutcome
from speech.vad import VadConfig

from gateway.calls.core_events import (
    NOTHING, Action, AudioOpened, CallStarted, ClearPlayback, Close, EndCallRow, Event, Failed, Finished, Flushed,
    FlushAudio, OpenAudio, PromptPlayed, Publish, Recognized, Request, Send, SetGrammar, Shutdown, Speak,
    StartCallRow, StoreSegment, Tick,
)
from gateway.calls.flow_turns import FlowStep, FlowTurns
from gateway.log_redaction import without_credentials
from gateway.metrics import Metrics
from gateway.privacy import mask_number
from gateway.settings import Settings
from gateway.privacy import mask_text
from gateway.telephony.base import Adapter, CallStart, CallStop, DtmfIn, Ignored, MarkIn, ProtocolError, TextIn
from gateway.telephony.pacing import PaceCheck

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

# Frames keep coming while the caller is silent: the audio clock decides when the answer is
# overdue; the wall clock, this much later, only when they stop.
WALL_CLOCK_SLACK_S = 2.0

# A bare "no" at the read-back ("不对") is mostly followed, after a pause the recognizer ends an
# utterance in, by the correction ("…，电话是…"): that much more call audio is awaited for the rest,
# so the two are one answer, heard with the read-back's vocabulary, not the next question's.
HOLD_FOR_REST_S = 1.2

# A routine: a generator of actions; a `Request` it yields is answered by the event sent back in.
Routine = Generator[Action, Any, Any]
_ANSWERS: dict[type, type] = {OpenAudio: AudioOpened, Speak: PromptPlayed, FlushAudio: Flushed}


class CallCore:
    def __init__(self, adapter: Adapter, settings: Settings, metrics: Metrics, *, opened_at: float,
                 dialogues: Any = None,
                 new_report_id: Callable[[], str] | None = None, start_by: float | None = None) -> None:
        """`opened_at`: when the connection was accepted (the maximum duration counts from it);
        `dialogues`: the configured flows (gateway.calls.flow_call.Dialogues), if any;
        `start_by`: a connection not yet authenticated must start (with its key) by then."""
        self.adapter = adapter
        self.settings = settings
        self.metrics = metrics
        self.dialogues = dialogues
        self.new_report_id = new_report_id
        self.start: CallStart | None = None
        self.flow: FlowTurns | None = None
        self.end_reason = "disconnect"
        self.ending = False  # the call ends once the current message is answered
        self.closed = False  # the Close went out
        self.segments = 0
        self.last_published_partial = ""
        # When silence after a prompt counts as no input: by the clock (nothing arrives at all)
        # and by the call's own audio (frames keep coming; robust to recognition lagging behind).
        self.answer_deadline: float | None = None
        self.answer_due_audio: float | None = None
        self.playing_until = 0.0  # when the prompt audio sent to the platform ends (estimated)
        self._ends_at = opened_at + settings.max_call_s
        self._start_by = start_by
        self._now = opened_at
        self._position = 0.0
        self._heard_audio = False
        self._pace: PaceCheck | None = None  # real-time streams: does the audio fit its sample rate?
        self._caller_gone = False  # the connection is over: nothing is sent or spoken any more
        self._peer_stopped = False  # the peer ended the call (its protocol's stop)
        self._typed: list[TextIn | DtmfIn] = []  # typed caller input, for the flow after the transcripts
        self._wall0: datetime | None = None  # the wall clock at CallStarted (UTC) ...
        self._mono0 = 0.0  # ... and the monotonic time then
        self._zone: Any = None
        self._held: Transcript | None = None  # a bare "no", waiting for the rest of the answer
        self._held_until = 0.0  # ... until this much call audio (more speech extends it)
        self._held_deadline = 0.0  # ... or, when audio stops coming, this wall-clock time
        self._waiting: Routine | None = None  # a routine waiting for the answer to its request
        self._answer: type = type(None)  # ... and the event that answers it

    @property
    def call_id(self) -> str:
        return self.start.call_id if self.start else "-"

    # Time ------------------------------------------------------------------------
    def timeout(self, now: float) -> float:
        """How long the shell may wait for the peer's next message (0: tick now)."""
        remaining = self._ends_at - now
        if remaining <= 0:
            return 0.0
        wait = min(self.settings.idle_timeout_s, remaining)
        if self.start is None and self._start_by is not None:
            wait = min(wait, max(self._start_by - now, 0.0))
        if self.answer_deadline is not None:
            wait = min(wait, max(self.answer_deadline - now, 0.0))
        if self._held is not None:
            wait = min(wait, max(self._held_deadline - now, 0.0))
        return wait

    def _wall(self) -> datetime:
        assert self._wall0 is not None
        return (self._wall0 + timedelta(seconds=self._now - self._mono0)).astimezone(self._zone)

    # Events ----------------------------------------------------------------------
    def handle(self, event: Event) -> Sequence[Action]:
        if self._waiting is not None:
            routine, self._waiting = self._waiting, None
            if isinstance(event, (Failed, Finished)):
                routine.close()  # the shell gave up on the request: so does the routine
            elif type(event) is not self._answer:
                raise TypeError(f"{type(event).__name__} while a request waits for {self._answer.__name__}")
            else:
                return self._drive(routine, event)
        kind = type(event)
        if kind is Recognized:
            return self._recognized(event)  # type: ignore[arg-type]
        if kind is TextIn or kind is DtmfIn:
            self._typed.append(event)  # type: ignore[arg-type]
            if kind is TextIn:
                return self._publish({"type": "text", "text": event.text})  # type: ignore[union-attr]
            return self._publish({"type": "dtmf", "digits": event.digits})  # type: ignore[union-attr]
        if kind is MarkIn:
            return self._publish({"type": "mark", "name": event.name})  # type: ignore[union-attr]
        if kind is Ignored:
            self.metrics.count_ignored(self.adapter.name)
            log.info("call %s on %s: %s", self.call_id, self.adapter.name, mask_text(event.message))  # type: ignore[union-attr]
            return NOTHING
        if kind is CallStop:
            self.end_reason = event.reason  # type: ignore[union-attr]
            self.ending = True  # the message gets its reply first
            self._peer_stopped = True
            return NOTHING
        if kind is Tick:
            self._now = event.now  # type: ignore[union-attr]
            return self._drive(self._tick(), None)
        if kind is CallStarted:
            return self._drive(self._call_started(event), None)  # type: ignore[arg-type]
        if kind is ProtocolError:
            return self._drive(self._protocol_error(event), None)  # type: ignore[arg-type]
        if kind is Finished:
            return self._drive(self._finished(event), None)  # type: ignore[arg-type]
        if kind is Failed:
            self.end_reason = "internal error"
            return self._close(1011, "internal error")
        if kind is Shutdown:  # what was said is still decoded, delivered and stored: the flow's partial
            return self._drive(self._end("gateway shutting down", CLOSE_GOING_AWAY, reason=event.reason), None)  # type: ignore[union-attr]
        raise TypeError(f"{kind.__name__} is not an event the call core takes now")

    def _drive(self, routine: Routine, answer: Any) -> list[Action]:
        """Run a routine until it finishes or waits for the answer to a request."""
        out: list[Action] = []
        try:
            action = routine.send(answer)
            while True:
                out.append(action)
                if isinstance(action, Request):
                    self._waiting, self._answer = routine, _ANSWERS[type(action)]
                    return out
                action = routine.send(None)
        except StopIteration:
            return out

    def _recognized(self, event: Recognized) -> Sequence[Action]:
        self._now = event.now
        self._position = event.position
        if event.audio_in:
            self._heard_audio = True
            if self._pace is not None:
                self._check_pace(event.now, event.position)
        held_due = False
        if self._held is not None:
            if event.partial is not None and event.partial.text.strip():
                self._hold_longer()  # the caller goes on: the rest is coming
            held_due = event.position >= self._held_until
        due = self.answer_due_audio
        if (event.outcome is None and not self._typed and not self.ending and not held_due
                and (self.flow is None or due is None or event.position < due)):
            # The per-frame path: nothing decoded, typed or due.
            if due is not None and self.flow is not None and self.answer_deadline is not None:
                self.answer_deadline = event.now + (due - event.position) + WALL_CLOCK_SLACK_S
            frames = self.adapter.results((), event.partial)  # type: ignore[arg-type]
            return (Send(frames),) if frames else NOTHING
        return self._drive(self._message_end(event), None)

    def _check_pace(self, now: float, position: float) -> None:
        assert self._pace is not None and self.start is not None
        ratio = self._pace.observe(now, position)
        if ratio is None:
            return
        self._pace = None  # measured once per call: a warning, not a stream of them
        if PaceCheck.too_fast(ratio):
            start = self.start
            self.metrics.count_rate_mismatch(self.adapter.name)
            log.warning("call %s on %s: audio arrives %.1fx faster than real time at %d Hz%s: is it really %d Hz?"
                        " (sample rate mismatch; set sample_rate in the URL or the metadata)",
                        start.call_id, self.adapter.name, ratio, start.sample_rate,
                        " (assumed)" if start.rate_assumed else "", round(ratio) * start.sample_rate)

    # Routines --------------------------------------------------------------------
    def _message_end(self, event: Recognized) -> Routine:
        out = event.outcome
        finals: Sequence[Transcript] = out.finals if out is not None else ()
        # Every message gets the adapter's say; it knows which ones its protocol answers.
        frames = self.adapter.results(finals, event.partial)  # type: ignore[arg-type]
        if frames:
            yield Send(frames)
        if out is not None:
            yield from self._deliver(out)
        typed, self._typed = self._typed, []
        if self.flow is not None:
            if (out is not None and out.audio_seconds > 0) or typed:
                yield from self._caller_speaks()
            yield from self._converse(finals, typed)
            if self._held is not None and (self._position >= self._held_until or self.ending):
                yield from self._release_held()
            if self.answer_due_audio is not None and self._position >= self.answer_due_audio:
                yield from self._no_input()
            elif self.answer_due_audio is not None and self.answer_deadline is not None:
                self.answer_deadline = self._now + (self.answer_due_audio - self._position) + WALL_CLOCK_SLACK_S
        if self.ending and not self.closed:
            # After the bot's hang-up or transfer the peer may still be answering the last prompt: it
            # closes first. A peer that said it hung up (its stop) has nothing left to send.
            linger = self.end_reason in {"hangup", "transfer"} and not self._peer_stopped
            yield from self._close(CLOSE_NORMAL, self.end_reason, linger=linger)

    def _tick(self) -> Routine:
        now = self._now
        if self._held is not None and now >= self._held_deadline:
            yield from self._release_held()  # no audio comes any more: the "no" alone is the answer
        elif self.answer_deadline is not None and now >= self.answer_deadline:
            yield from self._no_input()
        elif self.start is None and self._start_by is not None and now >= self._start_by:
            self.metrics.count_refusal("auth")
            yield from self._end("authentication timeout", CLOSE_POLICY, reason="authentication timeout")
        elif now >= self._ends_at:
            yield from self._end("maximum call duration reached", CLOSE_NORMAL)
        else:
            idle = self.settings.idle_timeout_s
            yield from self._end(f"no message for {idle:g} s", CLOSE_POLICY, reason="idle timeout")

    def _call_started(self, event: CallStarted) -> Routine:
        start = event.start
        self._now = event.now
        if self.start is not None:
            yield from self._protocol_error(ProtocolError("the call was already started", CLOSE_POLICY))
            return
        if not event.authorized:
            self.metrics.count_refusal("auth")
            log.warning("refused %s call %s: missing or invalid API key", self.adapter.name, start.call_id)
            yield from self._end("missing or invalid API key", CLOSE_POLICY, reason="unauthorized")
            return
        self.start = start
        self._wall0, self._mono0, self._zone = event.wall.astimezone(timezone.utc), event.now, event.wall.tzinfo
        opened: AudioOpened = yield OpenAudio(start.encoding, start.sample_rate, self._vad_config(start),
                                              start.phrases, start.words, start.max_alternatives)
        if opened.error is not None:
            yield from self._protocol_error(ProtocolError(f"unsupported audio format: {opened.error}", 1003))
            return
        log.info(
            "call %s started on %s from %s (%s %d Hz)",
            start.call_id, self.adapter.name, mask_number(start.caller_number), start.encoding.value, start.sample_rate,
        )
        if start.rate_assumed:
            self.metrics.count_rate_assumed(self.adapter.name, start.sample_rate)
            log.warning("call %s on %s: no sample rate given; assuming %d Hz", start.call_id, self.adapter.name,
                        start.sample_rate)
        if start.real_time:
            self._pace = PaceCheck()
        yield StartCallRow(start.call_id, self.adapter.name, start.caller_number)
        yield from self._publish({"type": "call.started", "protocol": self.adapter.name,
                                  "caller_number": start.caller_number, "stream_id": start.stream_id,
                                  "params": without_credentials(start.params)})  # no API key on /ws/events
        name = FlowTurns.flow_name(start)
        if name:
            yield from self._start_flow(name, start, event.wall, event.records, event.server_params)

    def _start_flow(self, name: str, start: CallStart, wall: datetime, records: Any,
                    server_params: Mapping[str, str] | None = None) -> Routine:
        flows = self.dialogues.flows if self.dialogues is not None else {}
        if name not in flows:
            known = ", ".join(sorted(flows)) or "none configured"
            yield from self._protocol_error(ProtocolError(f"unknown flow {name!r} (flows: {known})", CLOSE_POLICY))
            return
        try:
            started_at = datetime.fromisoformat(start.started_at) if start.started_at else wall
        except ValueError:
            yield from self._protocol_error(ProtocolError(f"started_at {start.started_at!r} is not ISO 8601", 1007))
            return
        if started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=wall.tzinfo)
        assert self.new_report_id is not None
        flow = flows[name]
        values = {**start.params, **(server_params or {})}  # the gateway's own values win
        missing = flow.missing_params(values)
        if missing:
            # An outbound call placed without what its message needs: end it before anything is
            # said (the platform's receipts still tell how the call ended).
            log.warning("call %s: flow %r needs the call parameters %s, not given; ending the call",
                        start.call_id, name, ", ".join(missing))
            yield from self._end(f"flow {name!r} is missing parameters: {', '.join(missing)}"[:120], CLOSE_NORMAL,
                                 reason="missing flow parameters")
            return
        self.flow = FlowTurns(self.adapter, start, flow.with_params(values), self.dialogues.understandings[name],
                              records, started_at, self.new_report_id())
        yield from self._flow_step(self.flow.begin(self._wall()))

    def _converse(self, finals: Sequence[Transcript], typed: Sequence[TextIn | DtmfIn]) -> Routine:
        """Caller turns (recognized speech, typed text, keypad) go to the call's flow in order."""
        flow = self.flow
        assert flow is not None
        if typed and self._held is not None:
            yield from self._release_held()  # typed input is its own answer
        for item in [*finals, *typed]:
            if flow.final_status is not None and flow.dialogue.finished:
                return
            if isinstance(item, Transcript) and self._held is not None:
                held, self._held = self._held, None  # "不对" + "，电话是…": one answer
                confidence = min(c for c in (held.confidence, item.confidence, 1.0) if c is not None)
                step = flow.on_text(f"{held.text} ，{item.text}", confidence, self._wall())
            elif isinstance(item, Transcript) and not self._caller_gone and flow.expects_more(item.text):
                self._held = item
                self._hold_longer()
                continue
            elif isinstance(item, Transcript):
                # n-best alternatives, when the prompt asked for them: a value the caller rejected, heard again
                step = flow.on_text(item.text, item.confidence, self._wall(),
                                    tuple(a.text for a in item.alternatives[1:]))
            elif isinstance(item, TextIn):
                step = flow.on_text(item.text, None, self._wall())
            else:
                step = flow.on_dtmf(item.digits, self._wall())
            yield from self._flow_step(step)

    def _flow_step(self, step: FlowStep) -> Routine:
        yield from step.saves
        gone = self._caller_gone
        if step.frames and not gone:
            yield Send(step.frames)
        speaking_s = 0.0
        for prompt in step.prompts:
            if gone:
                break
            played: PromptPlayed = yield Speak(prompt.text)
            self._now = played.now
            if played.seconds:
                speaking_s += played.seconds
                self.playing_until = max(self.playing_until, played.now) + played.seconds
        if step.prompts and not gone:
            # The answer to the last prompt is recognized with that prompt's vocabulary, if any.
            hints = step.prompts[-1].hints
            yield SetGrammar(grammar_phrases(hints) if hints else None, step.prompts[-1].alternatives if hints else 0)
        if step.prompts and step.end is None:
            if not speaking_s:  # not played by us: the platform or client shows or speaks the text
                speaking_s = sum(len(p.text) for p in step.prompts) / self.settings.prompt_chars_per_s
            wait_s = speaking_s + self.settings.no_input_s
            self.answer_deadline = self._now + wait_s
            self.answer_due_audio = self._position + wait_s
        if step.end is not None:
            self.end_reason = step.end
            self.ending = True

    def _hold_longer(self) -> None:
        self._held_until = self._position + HOLD_FOR_REST_S
        self._held_deadline = self._now + HOLD_FOR_REST_S + WALL_CLOCK_SLACK_S

    def _release_held(self) -> Routine:
        """No rest came: the bare "no" is the answer."""
        held, self._held = self._held, None
        if held is not None and self.flow is not None:
            yield from self._flow_step(self.flow.on_text(held.text, held.confidence, self._wall()))

    def _caller_speaks(self) -> Routine:
        """Caller speech (or input) arrived: it answers the prompt, and barges in on playback."""
        self.answer_deadline = None
        self.answer_due_audio = None
        if self._now < self.playing_until:
            self.playing_until = 0.0
            yield ClearPlayback(self.adapter.clear())

    def _no_input(self) -> Routine:
        self.answer_deadline = None
        self.answer_due_audio = None
        # Silence means "no answer" only on a voice call; a chat user may take their time to type.
        voice_call = self.adapter.plays_audio or self._heard_audio
        if voice_call and self.flow is not None and not self.flow.dialogue.finished:
            yield from self._flow_step(self.flow.on_no_input(self._wall()))
            if self.ending and not self.closed:
                yield from self._close(CLOSE_NORMAL, self.end_reason, linger=True)

    def _deliver(self, out: RecognitionOutcome) -> Routine:
        """Publish and store what recognition produced."""
        metrics = self.metrics
        metrics.audio_seconds_decoded += out.audio_seconds
        metrics.recognizer_seconds += out.elapsed
        metrics.vosk_decode_cpu_s += out.decode_cpu_s
        metrics.vosk_partial_cpu_s += out.partial_cpu_s
        for final in out.finals:
            metrics.transcripts_final += 1
            self.segments += 1
            yield from self._publish(
                {"type": "transcript", "final": True, "text": final.text, "start": final.start, "end": final.end,
                 "confidence": final.confidence, "words": [w.__dict__ for w in final.words]}
            )
            yield StoreSegment(self.segments, final.compact_text, final.start, final.end, final.confidence)
            self.last_published_partial = ""
        partial = out.partial
        if partial is not None and partial.text != self.last_published_partial:
            self.last_published_partial = partial.text
            yield from self._publish({"type": "transcript", "final": False, "text": partial.text})

    def _end(self, message: str, code: int, reason: str | None = None) -> Routine:
        """The gateway ends the call: what was said is decoded and delivered, then the close."""
        self.end_reason = reason or message
        flushed: Flushed = yield FlushAudio()
        out = flushed.outcome
        if out.finals:
            frames = self.adapter.results(out.finals, None)
            if frames:
                yield Send(frames)
        yield from self._deliver(out)
        if code != CLOSE_NORMAL:
            frames = self.adapter.error(message)
            if frames:
                yield Send(frames)
        yield from self._close(code, message)

    def _protocol_error(self, error: ProtocolError) -> Routine:
        self.metrics.protocol_errors += 1
        log.warning("call %s on %s: protocol error: %s", self.call_id, self.adapter.name, error.message)
        yield from self._end(error.message, error.close_code, reason=f"protocol error: {error.message}")

    def _finished(self, event: Finished) -> Routine:
        """However the call ended: last transcript out, the flow told, the call row closed."""
        self._now, self._position = event.now, event.position
        out = event.outcome
        yield from self._deliver(out)
        if self.start is None:
            return
        self._caller_gone = True
        if self.flow is not None:
            if out.finals and self.flow.final_status is None:
                yield from self._converse(out.finals, ())  # the caller is gone; their last words still count
            if self._held is not None and self.flow.final_status is None:
                yield from self._release_held()
            yield from self.flow.on_hangup(self._wall())
        yield EndCallRow(self.end_reason, event.position)
        yield from self._publish({"type": "call.ended", "reason": self.end_reason,
                                  "audio_seconds": round(event.position, 3)})
        log.info("call %s ended: %s (%.1f s of audio)", self.call_id, self.end_reason, event.position)

    # Helpers -----------------------------------------------------------------------
    def _publish(self, event: dict[str, Any]) -> tuple[Publish, ...]:
        if self.start is None:
            return NOTHING
        return (Publish({"call_id": self.start.call_id, **event}),)

    def _close(self, code: int, reason: str, linger: bool = False) -> tuple[Close, ...]:
        if self.closed:
            return NOTHING
        self.closed = True
        self.ending = True
        return (Close(code, reason[:120], linger),)  # a close reason must fit in 123 bytes

    def _vad_config(self, event: CallStart) -> VadConfig:
        s = self.settings
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
