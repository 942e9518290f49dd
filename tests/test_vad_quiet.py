"""The voice gate passes quiet, noisy and far-field real speech: what it drops the recognizer never hears.

Each clip is streamed as ../shared/eval/vad_recall.py streams it to the gateway: from its first
sample, then 5 s of faint line noise, in 0.2 s chunks.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from speech.vad import SpeechEnd, VadConfig, VoiceGate

from audio_helpers import REAL, feed_chunks, frame_db, line_noise, load_pcm, passed_mask, speech_coverage, to_pcm

RATE = 16000
CHUNK = 2 * RATE // 5  # 0.2 s
TAIL_S = 5.0
# The gate as the gateway configures it by default (gateway/calls/core.py).
GATEWAY = VadConfig(preroll_ms=300, trailing_silence_ms=600, max_utterance_s=20.0)


def speech_level(x: np.ndarray) -> float:
    """dBFS of the louder half of the 20 ms frames (the speech, not the pauses)."""
    e = frame_db(x, RATE)
    return float(10 * np.log10(np.mean(10 ** (e[e >= np.median(e)] / 10))))


def at_level(x: np.ndarray, db: float) -> np.ndarray:
    return x * 10 ** ((db - speech_level(x)) / 20)


def tail_noise(seconds: float = TAIL_S) -> np.ndarray:
    """vad_recall.py's line noise after each clip: uniform +-24, about -67 dBFS."""
    rnd = random.Random(1)
    n = int(seconds * RATE)
    return np.array(struct.unpack(f"<{n}h", struct.pack(f"<{n}h", *(rnd.randint(-24, 24) for _ in range(n)))), float)


def stream(speech: np.ndarray) -> tuple[VoiceGate, list, np.ndarray]:
    """`speech` then the tail, through the gate: (gate, events, mask of passed samples)."""
    x = np.concatenate([speech, tail_noise()])
    gate = VoiceGate(RATE, GATEWAY)
    events = feed_chunks(gate, to_pcm(x), CHUNK)
    return gate, events, passed_mask(events, len(x), RATE)


def passed_share(speech: np.ndarray, mask: np.ndarray) -> float:
    """Share of the clip's speech frames that reached the recognizer."""
    return speech_coverage(speech, mask, RATE, 0)


@pytest.mark.parametrize("db", [-45, -50, -55, -60])
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_quiet_speech_reaches_the_recognizer(path, db) -> None:
    speech = at_level(load_pcm(path).astype(float), db)
    gate, events, mask = stream(speech)
    assert passed_share(speech, mask) >= 0.98
    # It still ends in the faint noise after it, rather than passing the line on.
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends and ends[-1].reason == "silence"
    assert gate.seconds_passed < gate.seconds_in - 3.0


@pytest.mark.parametrize("snr", [20, 10])  # at 5 dB weak syllables sink into the noise (see bench/vad_compare.py)
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_speech_under_line_noise_reaches_the_recognizer(path, snr) -> None:
    clean = at_level(load_pcm(path).astype(float), -30)
    noisy = clean + line_noise(len(clean) / RATE, RATE, -30 - snr, seed=3)
    _, _, mask = stream(noisy)
    assert passed_share(clean, mask) >= 0.98


def test_quiet_speech_from_the_first_sample_opens_at_once() -> None:
    # A clip whose speech starts in its first frame: the floor starts at that frame's level.
    for path in REAL:
        speech = load_pcm(path).astype(float)
        e = frame_db(speech, RATE)
        first = int(np.argmax(e > np.median(e)))  # the first loud frame
        quiet = at_level(speech[first * RATE // 50 :], -55)
        _, events, mask = stream(quiet)
        assert passed_share(quiet, mask) >= 0.98, path.name
