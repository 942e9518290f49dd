"""speech.stream: gated audio batched into recognizer trips, an utterance's end at once."""

from __future__ import annotations

import numpy as np

from speech.codecs import Encoding
from speech.pipeline import AudioInput
from speech.stream import RecognitionOutcome, SpeechStream
from speech.results import Transcript
from speech.vad import SpeechAudio, SpeechEnd, VadConfig

RATE = 8000
FRAME = RATE * 2 // 50  # 20 ms of 16-bit PCM


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def feed(stream: SpeechStream, pcm: bytes) -> list[list]:
    batches = []
    for i in range(0, len(pcm), FRAME):
        batch = stream.feed(pcm[i:i + FRAME])
        if batch is not None:
            batches.append(batch)
    return batches


def stream(batch_s: float = 0.1) -> SpeechStream:
    return SpeechStream(AudioInput(Encoding.PCM16, RATE, RATE, VadConfig()), batch_s)


def speech_s(events: list) -> float:
    return sum(len(e.pcm16) for e in events if isinstance(e, SpeechAudio)) / 2 / RATE


def test_silence_makes_no_trip():
    assert feed(stream(), silence(2.0)) == []


def test_speech_goes_in_batches_and_its_end_at_once():
    s = stream(batch_s=0.1)
    batches = feed(s, silence(1.0) + tone(1.0) + silence(1.0))
    assert len(batches) >= 5
    assert all(speech_s(b) >= 0.1 for b in batches if not any(isinstance(e, SpeechEnd) for e in b))
    assert any(isinstance(e, SpeechEnd) for e in batches[-1])  # not held back for a full batch
    assert s.take() == []  # nothing left behind
    everything = [e for b in batches for e in b]
    assert speech_s(everything) == s.audio.seconds_passed  # every gated second, once


def test_flush_hands_out_the_rest_once():
    s = stream(batch_s=10.0)
    assert feed(s, silence(1.0) + tone(0.5)) == []  # less than a batch of speech, still speaking
    rest = s.flush()
    assert rest and isinstance(rest[-1], SpeechEnd) and speech_s(rest) > 0.4
    assert s.flush() is None


def test_the_audio_clock_runs_across_a_change_of_format():
    s = stream()
    feed(s, silence(1.0))
    s.flush()
    s.switch(AudioInput(Encoding.PCM16, 16000, 8000, VadConfig()))
    s.feed(bytes(16000 * 2 // 2))  # half a second at 16 kHz
    assert s.position == 1.5 and s.seconds_in == 0.5 and not s.flushed


def test_the_partial_is_dropped_when_its_utterance_ends():
    s = stream()
    s.decoded(RecognitionOutcome(partial=Transcript("你好", False)))
    assert s.partial.text == "你好"
    s.decoded(RecognitionOutcome())
    assert s.partial.text == "你好"
    s.decoded(RecognitionOutcome(finals=[Transcript("你好 世界", True)]))
    assert s.partial is None
