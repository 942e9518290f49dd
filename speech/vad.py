"""Voice-activity gate and endpointer for 16-bit PCM (sans-I/O).

Why: the recognizer costs CPU for every second it is fed, so line silence
between utterances is held back (that is where concurrency comes from); and
the Vosk build we use has no configurable endpointer, so this gate decides
when an utterance ends.

The detector is deliberately simple: per-frame energy (dBFS) compared with
an adaptive noise floor (see EnergyDetector), plus an absolute minimum. Its
margins are low: when in doubt, audio goes through, for nothing the gate drops
can be recognized. Trained detectors (Silero VAD, WebRTC VAD, TEN VAD) were
measured against it (bench/vad_compare.py): none heard more of what raw Vosk
hears, and the neural ones cost 10x its CPU. Any `FrameDetector` can be given
to `VoiceGate` instead.

Guarantees of `VoiceGate`:
- events come in the order SpeechStart, SpeechAudio..., SpeechEnd;
- the audio of one utterance is contiguous in the stream (pauses inside an
  utterance are emitted too), so recognizer timestamps map back to stream
  time by adding the `t` of the utterance's first SpeechAudio;
- it starts `preroll_ms` before the detected speech, so onsets are not cut,
  and runs `hangover_ms` past the last speech, so word ends are not cut.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class VadConfig:
    enabled: bool = True
    frame_ms: int = 20
    # Audio before the detected speech start that is still emitted.
    preroll_ms: int = 300
    # Silence after speech that ends the utterance.
    trailing_silence_ms: int = 600
    # Silence after speech still emitted so the recognizer sees the word end.
    hangover_ms: int = 200
    max_utterance_s: float = 20.0
    # Shorter bursts do not open an utterance (clicks, line pops).
    min_speech_ms: int = 60
    # A frame is speech when its energy (dBFS, RMS) exceeds the noise floor by
    # `start_margin_db` (or `continue_margin_db` right after a speech frame:
    # hysteresis keeps weak word tails) and is above `min_speech_db`.
    # Low on purpose: gating only saves CPU on silence, and whatever it drops the
    # recognizer can never hear. Steady noise stays out all the same: a 20 ms frame
    # of line noise varies by well under 1 dB about the floor. At 12/8 dB and
    # -55 dBFS quiet and noisy speech that raw Vosk recognizes was lost whole
    # (bench/vad_compare.py has the figures).
    start_margin_db: float = 4.0
    continue_margin_db: float = 2.0
    min_speech_db: float = -72.0
    # Noise floor tracking, see EnergyDetector.
    initial_floor_db: float = -62.0
    floor_rise_db_per_s: float = 2.0
    noise_window_s: float = 1.0
    stationary_spread_db: float = 4.0

    def __post_init__(self) -> None:
        if self.frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        for name in ("preroll_ms", "trailing_silence_ms", "hangover_ms", "min_speech_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.hangover_ms > self.trailing_silence_ms:
            raise ValueError("hangover_ms must be <= trailing_silence_ms")
        if self.max_utterance_s <= 0:
            raise ValueError("max_utterance_s must be positive")
        if self.noise_window_s <= 0 or self.floor_rise_db_per_s < 0:
            raise ValueError("noise_window_s must be positive, floor_rise_db_per_s >= 0")


@dataclass(frozen=True)
class SpeechStart:
    t: float  # stream time (s) where speech was detected; preroll precedes it


@dataclass(frozen=True)
class SpeechAudio:
    pcm16: bytes  # audio to feed the recognizer
    t: float  # stream time (s) of its first sample


@dataclass(frozen=True)
class SpeechEnd:
    # "silence": end of the last speech frame (hangover audio follows it);
    # "max_utterance": the cut point; "flush": end of the emitted audio.
    t: float
    reason: str  # "silence" | "max_utterance" | "flush"


GateEvent: TypeAlias = SpeechStart | SpeechAudio | SpeechEnd

_MIN_DB = -100.0  # energy of digital silence, so log10 never sees zero


def frame_energy_db(frame: npt.NDArray[np.int16]) -> float:
    """RMS level of a frame in dBFS, ignoring any DC offset."""
    x = frame.astype(np.float64)
    n = len(x)
    total = float(x.sum())
    # Variance as E[x^2] - E[x]^2: one pass fewer than subtracting the mean (this runs for
    # every 20 ms of every call); float64 keeps it exact enough at 16-bit sample scale.
    power = max(float(x.dot(x)) - total * total / n, 0.0) / (n * 32768.0 * 32768.0)
    return 10.0 * math.log10(power) if power > 1e-10 else _MIN_DB


class SortedWindow:
    """The last `size` values, kept sorted too, for percentiles in O(size) per update
    (np.percentile over the window cost ~20 us per 20 ms frame, the gate's biggest cost)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def append(self, value: float) -> None:
        if len(self._order) == self.size:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._order.append(value)
        bisect.insort(self._sorted, value)

    def percentile(self, q: float) -> float:
        """As np.percentile's default (linear) method."""
        values = self._sorted
        if not values:
            raise ValueError("percentile of an empty window")
        pos = q / 100.0 * (len(values) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(values) - 1)
        a, b, t = values[lo], values[hi], pos - lo
        # numpy's lerp, for results identical to np.percentile
        return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t


class FrameDetector(Protocol):
    """Speech or not, one `frame_ms` frame at a time, in stream order (a detector keeps state)."""

    def is_speech(self, frame: npt.NDArray[np.int16]) -> bool: ...


class EnergyDetector:
    """Frame-level speech/non-speech decision against an adaptive noise floor.

    Floor tracking, in dB:
    - it falls at once to any level held for a few frames (a pause, a quieter
      line); a single dropout frame does not drag it down;
    - it rises slowly (`floor_rise_db_per_s`), so fluent speech without pauses,
      e.g. a read-out ID number, cannot lift it to the speech level;
    - when the last `noise_window_s` of energies is nearly constant (spread under
      `stationary_spread_db`), that level is noise, whatever its loudness: speech
      always fluctuates by syllable. This absorbs a louder line, hum or a steady
      tone within about a window instead of passing it on for many seconds.
    """

    _FALL_FRAMES = 5  # a dip must last this many frames (100 ms) to lower the floor

    def __init__(self, config: VadConfig) -> None:
        self._config = config
        window = max(self._FALL_FRAMES, round(config.noise_window_s * 1000 / config.frame_ms))
        self._history: collections.deque[float] = collections.deque(maxlen=window)
        self._window = SortedWindow(window)
        self._rise = config.floor_rise_db_per_s * config.frame_ms / 1000
        self._previous = False
        self.noise_floor_db: float | None = None

    def is_speech(self, frame: npt.NDArray[np.int16]) -> bool:
        cfg = self._config
        energy = frame_energy_db(frame)
        self._history.append(energy)
        self._window.append(energy)
        floor = self._update_floor(energy)
        margin = cfg.continue_margin_db if self._previous else cfg.start_margin_db
        self._previous = energy > floor + margin and energy > cfg.min_speech_db
        return self._previous

    def _update_floor(self, energy: float) -> float:
        history = self._history
        if self.noise_floor_db is None:
            # The first frame may already be speech (a clip cut at its onset): the floor
            # starts no higher than a quiet line's level, and a louder steady line is
            # absorbed within a noise window like any other.
            self.noise_floor_db = min(energy, self._config.initial_floor_db)
            return self.noise_floor_db
        floor = self.noise_floor_db + self._rise
        recent = min(len(history), self._FALL_FRAMES)
        floor = min(floor, max(history[-i] for i in range(1, recent + 1)))
        if len(history) == history.maxlen:
            window = self._window
            if window.percentile(90.0) - window.percentile(10.0) <= self._config.stationary_spread_db:
                floor = max(floor, window.percentile(50.0))
        self.noise_floor_db = floor
        return floor


class _Audio(NamedTuple):
    """Emitted audio before merging; `start` is a stream sample index."""

    start: int
    pcm16: bytes


_Frame = tuple[int, bytes]  # (index of first sample in the stream, pcm16)
_Event: TypeAlias = SpeechStart | SpeechAudio | SpeechEnd | _Audio


class VoiceGate:
    """Bytes of 16-bit PCM in, `GateEvent`s out. Feed chunks of any size."""

    def __init__(self, sample_rate: int, config: VadConfig | None = None,
                 detector: FrameDetector | None = None) -> None:
        self.config = config = config or VadConfig()
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        samples = sample_rate * config.frame_ms
        if samples % 1000:
            raise ValueError(
                f"{config.frame_ms} ms is not a whole number of samples at {sample_rate} Hz"
            )
        self.sample_rate = sample_rate
        self._frame_samples = samples // 1000
        self._frame_bytes = 2 * self._frame_samples

        def frames(ms: float) -> int:
            return math.ceil(ms / config.frame_ms)

        self._preroll = frames(config.preroll_ms)
        self._min_speech = max(1, frames(config.min_speech_ms))
        self._hangover = frames(config.hangover_ms)
        self._trailing = max(1, frames(config.trailing_silence_ms))
        self._max_samples = max(1, round(config.max_utterance_s * sample_rate))

        self._detector: FrameDetector = detector or EnergyDetector(config)
        self._partial = b""  # bytes of an incomplete frame
        self._pos = 0  # stream index of the first sample in `_partial`
        self._samples_passed = 0

        # Idle: recent frames kept for preroll (plus a pending speech run).
        self._recent: collections.deque[_Frame] = collections.deque(
            maxlen=self._preroll + self._min_speech
        )
        self._in_utterance = False
        self._utterance_start = 0  # stream index of the utterance's first sample
        self._emitted_end = 0  # stream index just past the last emitted sample
        self._run = 0  # consecutive speech frames
        self._silence = 0  # frames since the last confirmed speech frame
        self._speech_end = 0  # stream index just past the last speech frame
        self._held: list[_Frame] = []  # utterance frames past the hangover
        self._passthrough_open = False  # disabled mode: audio since last end

    # -- counters -----------------------------------------------------------

    @property
    def seconds_in(self) -> float:
        return (self._pos + len(self._partial) // 2) / self.sample_rate

    @property
    def seconds_passed(self) -> float:
        return self._samples_passed / self.sample_rate

    # -- public API ---------------------------------------------------------

    def feed(self, pcm16: bytes) -> list[GateEvent]:
        if not self.config.enabled:
            return self._pass_through(pcm16)
        events: list[_Event] = []
        data = self._partial + pcm16
        n = len(data) - len(data) % self._frame_bytes
        for offset in range(0, n, self._frame_bytes):
            frame = data[offset : offset + self._frame_bytes]
            self._on_frame(frame, events)
            self._pos += self._frame_samples
        self._partial = data[n:]
        return _merge_audio(events, self.sample_rate)

    def flush(self) -> list[GateEvent]:
        """End of stream: close an open utterance. The gate may be fed again."""
        events: list[_Event] = []
        tail = self._partial[: len(self._partial) - len(self._partial) % 2]
        self._partial = b""
        if not self.config.enabled:
            self._emit(tail, self._pos, events)
            self._pos += len(tail) // 2
            if self._passthrough_open:
                events.append(SpeechEnd(self._time(self._pos), "flush"))
                self._passthrough_open = False
            return _merge_audio(events, self.sample_rate)
        if self._in_utterance:
            if self._silence <= self._hangover:
                self._emit_held(events)
                self._emit(tail, self._pos, events)
            events.append(SpeechEnd(self._time(self._emitted_end), "flush"))
            self._in_utterance = False
        self._pos += len(tail) // 2
        self._held = []
        self._recent.clear()
        self._run = 0
        return _merge_audio(events, self.sample_rate)

    # -- internals ----------------------------------------------------------

    def _time(self, sample_index: int) -> float:
        return sample_index / self.sample_rate

    def _emit(self, pcm16: bytes, start: int, events: list[_Event]) -> None:
        if pcm16:
            events.append(_Audio(start, pcm16))
            self._samples_passed += len(pcm16) // 2
            self._emitted_end = start + len(pcm16) // 2

    def _emit_held(self, events: list[_Event]) -> None:
        for start, frame in self._held:
            self._emit(frame, start, events)
        self._held = []

    def _on_frame(self, frame: bytes, events: list[_Event]) -> None:
        start = self._pos
        end = start + self._frame_samples
        speech = self._detector.is_speech(np.frombuffer(frame, dtype="<i2"))
        self._run = self._run + 1 if speech else 0

        if not self._in_utterance:
            self._recent.append((start, frame))
            if self._run < self._min_speech:
                return
            # Open: preroll frames first, then the speech run that confirmed it.
            keep = list(self._recent)[-(self._preroll + self._run) :]
            self._in_utterance = True
            self._utterance_start = keep[0][0]
            self._silence = 0
            self._speech_end = end
            self._recent.clear()
            events.append(SpeechStart(self._time(end - self._run * self._frame_samples)))
            for frame_start, pcm in keep:
                self._emit(pcm, frame_start, events)
            return

        if self._run >= self._min_speech:
            self._silence = 0
            self._speech_end = end
        else:
            self._silence += 1
        if self._silence <= self._hangover:
            self._emit_held(events)  # speech resumed: keep the audio contiguous
            self._emit(frame, start, events)
        else:
            self._held.append((start, frame))

        # A pending run (too short to confirm yet) may be speech resuming, so
        # it does not count towards the trailing silence.
        if self._silence - self._run >= self._trailing:
            events.append(SpeechEnd(self._time(self._speech_end), "silence"))
            self._close_into_idle()
        elif end - self._utterance_start >= self._max_samples:
            events.append(SpeechEnd(self._time(end), "max_utterance"))
            self._close_into_idle()
            # Frames still counting as a speech run must not open the next
            # utterance with a preroll that overlaps this one.
            self._run = 0

    def _close_into_idle(self) -> None:
        # Unemitted trailing frames become the preroll of the next utterance;
        # a pending speech run (shorter than min_speech) carries over with them.
        self._in_utterance = False
        self._recent.clear()
        self._recent.extend(self._held)
        self._held = []

    def _pass_through(self, pcm16: bytes) -> list[GateEvent]:
        events: list[_Event] = []
        data = self._partial + pcm16
        n = len(data) - len(data) % 2
        self._partial = data[n:]
        pos = 0
        while pos < n:
            # Split at max_utterance boundaries so no chunk straddles one.
            room = self._max_samples - (self._pos - self._utterance_start)
            take = min(room, (n - pos) // 2)
            self._emit(data[pos : pos + 2 * take], self._pos, events)
            self._passthrough_open = True
            self._pos += take
            pos += 2 * take
            if self._pos - self._utterance_start >= self._max_samples:
                events.append(SpeechEnd(self._time(self._pos), "max_utterance"))
                self._utterance_start = self._pos
                self._passthrough_open = False
        return _merge_audio(events, self.sample_rate)


def _merge_audio(events: list[_Event], sample_rate: int) -> list[GateEvent]:
    """Join adjacent contiguous audio (fewer, larger chunks) and stamp times."""
    merged: list[GateEvent] = []
    start = end = 0
    parts: list[bytes] = []
    for event in events:
        if isinstance(event, _Audio) and parts and event.start == end:
            parts.append(event.pcm16)
        else:
            if parts:
                merged.append(SpeechAudio(b"".join(parts), start / sample_rate))
                parts = []
            if isinstance(event, _Audio):
                start, parts = event.start, [event.pcm16]
            else:
                merged.append(event)
        if isinstance(event, _Audio):
            end = event.start + len(event.pcm16) // 2
    if parts:
        merged.append(SpeechAudio(b"".join(parts), start / sample_rate))
    return merged
