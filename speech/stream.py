"""One call's audio on its way to the recognizer: gate events batched into trips, and the decoding loop.

`SpeechStream` is sans-I/O: payloads in (through `AudioInput`: decode, resample,
voice gate), batches of gate events out. `recognize` is the loop that feeds one
batch to a `Recognizer`; it blocks in Vosk, so callers run it in a worker thread.

Guarantees of `SpeechStream`:
- every gate event is handed out exactly once, in stream order;
- a batch is handed out once it holds at least `batch_s` of speech, and at once
  when it holds an utterance's end (its final transcript is what callers wait for);
  silence the gate dropped never makes a batch;
- after `flush()` the stream has nothing left: the drained resampler and the
  closing utterance come out with the pending events, once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .pipeline import AudioInput
from .recognizer import Recognizer
from .results import Transcript
from .vad import GateEvent, SpeechAudio, SpeechEnd


@dataclass
class RecognitionOutcome:
    """What decoding one or more batches produced."""

    finals: list[Transcript] = field(default_factory=list)
    partial: Transcript | None = None
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    decode_cpu_s: float = 0.0  # thread CPU inside Vosk decoding
    partial_cpu_s: float = 0.0  # thread CPU inside Vosk partial results

    def merge(self, more: RecognitionOutcome) -> None:
        """`more` was decoded after this: its finals follow, its partial is the current one."""
        self.finals.extend(more.finals)
        self.partial = more.partial
        self.audio_seconds += more.audio_seconds
        self.elapsed += more.elapsed
        self.decode_cpu_s += more.decode_cpu_s
        self.partial_cpu_s += more.partial_cpu_s


def recognize(recognizer: Recognizer, gate_events: list[GateEvent], flush: bool = False) -> RecognitionOutcome:
    """Feed gated audio to the recognizer (blocking: run it in the recognition pool)."""
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


class SpeechStream:
    """Batches one call's gated audio. Raises CodecError (from `feed`) for undecodable payloads."""

    def __init__(self, audio: AudioInput, batch_s: float) -> None:
        self.audio = audio
        self.batch_s = batch_s
        # Each trip to the recognizer threads costs ~80 us of event-loop time; a 20 ms
        # Twilio frame apiece would be most of it.
        self._pending: list[GateEvent] = []
        self._pending_s = 0.0
        self.earlier_s = 0.0  # seconds of audio received before a change of input format
        self.flushed = False
        self.partial: Transcript | None = None  # the current hypothesis of the utterance in progress

    def feed(self, payload: bytes) -> list[GateEvent] | None:
        """One payload of call audio; a batch to decode now, or None."""
        events = self.audio.feed(payload)
        if not events:  # silence the gate dropped costs no trip to the recognizer threads
            return None
        self._pending.extend(events)
        self._pending_s += sum(len(e.pcm16) for e in events if isinstance(e, SpeechAudio)) / 2 / self.audio.rate
        # An utterance's end goes at once: its final transcript is what callers wait for.
        if self._pending_s >= self.batch_s or any(isinstance(e, SpeechEnd) for e in events):
            return self.take()
        return None

    def take(self) -> list[GateEvent]:
        """Everything pending, now (a setting changes, the caller asked for a result)."""
        events, self._pending, self._pending_s = self._pending, [], 0.0
        return events

    def flush(self) -> list[GateEvent] | None:
        """End of audio: what is pending and what the input still holds; None once flushed."""
        if self.flushed:
            return None
        self.flushed = True
        return [*self.take(), *self.audio.flush()]

    def switch(self, audio: AudioInput) -> None:
        """The input format changed (after a flush): later audio comes through `audio`."""
        self.earlier_s += self.audio.seconds_in
        self.audio = audio
        self.flushed = False

    def decoded(self, outcome: RecognitionOutcome) -> None:
        """Note what a batch decoded to: an utterance that ended has no partial any more."""
        if outcome.finals:
            self.partial = None
        if outcome.partial is not None:
            self.partial = outcome.partial

    @property
    def seconds_in(self) -> float:
        """Call audio received through the current input, in seconds."""
        return self.audio.seconds_in

    @property
    def position(self) -> float:
        """Call audio received in all, in seconds: the call's own audio clock."""
        return self.earlier_s + self.audio.seconds_in
