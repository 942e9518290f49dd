"""AudioInput: decode -> resample -> gate, on phone recordings and caller utterances."""

from __future__ import annotations

import pytest

from speech.codecs import CodecError, Encoding, alaw_encode, ulaw_encode
from speech.pipeline import AudioInput
from speech.vad import SpeechAudio, SpeechEnd, VadConfig, VoiceGate
from speech.wavfile import read_wav

from audio_helpers import (
    CALLERS,
    PHONE,
    REAL,
    bursts,
    callers_manifest,
    feed_chunks,
    line_noise,
    load_pcm,
    mulaw_8k,
    passed_mask,
    speech_coverage,
    to_pcm,
    utterances,
)

OUT = 16000
PAYLOAD = 160  # 20 ms of 8 kHz G.711, as RTP carries it


def phone_input(vad: VadConfig | None = None) -> AudioInput:
    return AudioInput(Encoding.MULAW, 8000, OUT, vad or VadConfig())


def test_padded_phone_recordings() -> None:
    total_in = total_passed = 0.0
    for path in PHONE:
        _, _, _, payload = read_wav(path)
        pad = mulaw_8k(line_noise(2, 8000, -60, seed=3))
        audio = phone_input()
        events = feed_chunks(audio, pad + payload + mulaw_8k(line_noise(2, 8000, -60, seed=4)), PAYLOAD)
        spans = utterances(events, OUT)
        assert 1 <= len(spans) <= 2, path.name
        speech = load_pcm(path)
        mask = passed_mask(events, round(audio.seconds_in * OUT), OUT)
        assert speech_coverage(speech, mask, OUT, 2 * OUT) >= 0.95, path.name
        assert audio.seconds_in == pytest.approx(4 + len(payload) / 8000)
        total_in += audio.seconds_in
        total_passed += audio.seconds_passed
    # 36 s of the ~79 s are padding; gating passes the recordings and, per clip, preroll,
    # hangover and up to a noise window where the line is louder than the recording's own
    # background.
    assert total_passed < 0.66 * total_in


def test_caller_utterances_are_not_split() -> None:
    manifest = list(callers_manifest())
    for name in manifest[:12]:
        encoding, rate, _, payload = read_wav(CALLERS / name)
        audio = AudioInput(encoding, rate, OUT, VadConfig())
        events = feed_chunks(audio, payload, PAYLOAD)
        spans = utterances(events, OUT)
        seconds = len(payload) / rate
        assert 1 <= len(spans) <= (1 if seconds < 3 else 3), (name, seconds, spans)
        speech = load_pcm(CALLERS / name)
        mask = passed_mask(events, len(speech) + OUT, OUT)
        assert speech_coverage(speech, mask, OUT, 0) >= 0.95, name


def test_caller_utterances_sample() -> None:
    names = list(callers_manifest())[::6]
    single = 0
    for name in names:
        encoding, rate, _, payload = read_wav(CALLERS / name)
        events = feed_chunks(AudioInput(encoding, rate, OUT, VadConfig()), payload, PAYLOAD)
        n = len(utterances(events, OUT))
        assert 1 <= n <= 3, name
        single += n == 1
        speech = load_pcm(CALLERS / name)
        mask = passed_mask(events, len(speech) + OUT, OUT)
        assert speech_coverage(speech, mask, OUT, 0) >= 0.95, name
    assert single >= 0.95 * len(names)


def test_alaw_and_mulaw_agree() -> None:
    x = to_pcm(bursts(8000, [(1.0, 0.5), (2.5, 0.5)]))
    results = []
    for encoding, encode in ((Encoding.MULAW, ulaw_encode), (Encoding.ALAW, alaw_encode)):
        events = feed_chunks(AudioInput(encoding, 8000, OUT, VadConfig()), encode(x), PAYLOAD)
        results.append([(round(a, 2), round(b, 2), r) for a, b, r in utterances(events, OUT)])
    assert results[0] == results[1]
    assert len(results[0]) == 2


def test_pcm16_at_the_output_rate_is_only_gated() -> None:
    encoding, rate, _, payload = read_wav(REAL[0])
    audio = AudioInput(encoding, rate, OUT, VadConfig())
    gate = VoiceGate(OUT, VadConfig())
    assert feed_chunks(audio, payload, 640) == feed_chunks(gate, payload, 640)
    assert audio.seconds_in == gate.seconds_in


def test_seconds_in_counts_received_audio() -> None:
    audio = phone_input()
    audio.feed(mulaw_8k(line_noise(1.0, 8000, -60)))
    assert audio.seconds_in == 1.0  # before the resampler's delay is drained
    assert audio.seconds_passed == 0.0


def test_disabled_vad_passes_all_audio() -> None:
    _, _, _, payload = read_wav(PHONE[0])
    audio = phone_input(VadConfig(enabled=False))
    events = feed_chunks(audio, payload, PAYLOAD)
    assert isinstance(events[-1], SpeechEnd) and events[-1].reason == "flush"
    passed = sum(len(e.pcm16) for e in events if isinstance(e, SpeechAudio)) / 2
    assert passed == pytest.approx(2 * len(payload), abs=2)
    assert audio.seconds_passed == pytest.approx(audio.seconds_in, abs=1e-3)


def test_decode_errors_propagate() -> None:
    audio = AudioInput(Encoding.PCM16, 8000, OUT, VadConfig())
    with pytest.raises(CodecError, match="even number of bytes"):
        audio.feed(b"\x00\x01\x02")
    with pytest.raises(ValueError):
        AudioInput(Encoding.MULAW, 4000, OUT, VadConfig())


def test_reusable_after_flush() -> None:
    x = mulaw_8k(bursts(8000, [(1.0, 0.5)]))
    audio = phone_input()
    first = utterances(feed_chunks(audio, x, PAYLOAD), OUT)
    second = utterances(feed_chunks(audio, x, PAYLOAD), OUT)
    assert len(first) == len(second) == 1
    offset = len(x) / 8000
    assert second[0][0] == pytest.approx(first[0][0] + offset, abs=0.03)
