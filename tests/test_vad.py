"""VoiceGate on synthetic signals and on real Mandarin recordings."""

from __future__ import annotations

import numpy as np
import pytest

from speech.vad import SortedWindow, SpeechAudio, SpeechEnd, SpeechStart, VadConfig, VoiceGate, frame_energy_db

from audio_helpers import (
    REAL,
    bursts,
    feed_chunks,
    line_noise,
    load_pcm,
    passed_mask,
    speech_coverage,
    speechlike,
    starts,
    to_pcm,
    tone,
    utterances,
)

RATE = 16000
CHUNK = 640  # 20 ms of 16 kHz PCM16


def run(x: np.ndarray, config: VadConfig | None = None, chunk: int = CHUNK) -> tuple[VoiceGate, list]:
    gate = VoiceGate(RATE, config or VadConfig())
    return gate, feed_chunks(gate, to_pcm(x), chunk)


def check_order(events: list) -> None:
    """Start, Audio..., End per utterance; audio moves forward without overlap."""
    open_ = False
    last_end = -1.0
    for e in events:
        if isinstance(e, SpeechStart):
            assert not open_
            open_ = True
        elif isinstance(e, SpeechAudio):
            assert open_ and e.pcm16 and len(e.pcm16) % 2 == 0
            assert e.t >= last_end - 1e-9
            last_end = e.t + len(e.pcm16) / 2 / RATE
        else:
            assert open_ and e.reason in ("silence", "max_utterance", "flush")
            open_ = False
    assert not open_


# -- configuration ------------------------------------------------------------


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="hangover_ms"):
        VadConfig(hangover_ms=700, trailing_silence_ms=600)
    with pytest.raises(ValueError, match="whole number of samples"):
        VoiceGate(11025, VadConfig())
    VoiceGate(8000, VadConfig(frame_ms=10))


# -- synthetic signals ----------------------------------------------------------


@pytest.mark.parametrize(
    "x",
    [
        np.zeros(5 * RATE),
        line_noise(5, RATE, -60),
        line_noise(5, RATE, -72),
    ],
    ids=["digital-silence", "line-noise", "quiet-line"],
)
def test_silence_and_steady_noise_give_no_events(x: np.ndarray) -> None:
    gate, events = run(x)
    assert events == []
    assert gate.seconds_in == 5.0
    assert gate.seconds_passed == 0.0


def test_dropouts_in_line_noise_do_not_trigger() -> None:
    x = line_noise(5, RATE, -45)
    for s in np.arange(1.0, 5.0, 0.7):  # 60 ms of digital silence now and then
        x[int(s * RATE) : int(s * RATE) + 960] = 0
    # A line this loud from the first frame may open one utterance until its floor is
    # learnt (see test_steady_signal_is_absorbed_as_noise); the dropouts open none.
    assert all(e.t < 0.1 for e in starts(run(x)[1]))


@pytest.mark.parametrize("kind", ["tone", "noise"])
def test_bursts_with_gaps_are_separate_utterances(kind: str) -> None:
    layout = [(1.0, 0.5), (2.5, 0.3), (4.0, 0.8)]
    if kind == "tone":
        x = bursts(RATE, layout)
    else:
        x = line_noise(6.5, RATE, -60, seed=1)
        for i, (s, n) in enumerate(layout):
            a = round(s * RATE)
            x[a : a + round(n * RATE)] += line_noise(n, RATE, -25, seed=10 + i)
    gate, events = run(x)
    check_order(events)
    spans = utterances(events, RATE)
    assert len(spans) == len(layout)
    for (first, last, reason), start, (onset, length) in zip(spans, starts(events), layout):
        assert reason == "silence"
        assert start.t == pytest.approx(onset, abs=0.03)
        assert first == pytest.approx(onset - 0.3, abs=0.03)  # preroll before the onset
        assert last == pytest.approx(onset + length + 0.2, abs=0.03)  # hangover after it
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert [e.t for e in ends] == pytest.approx([s + n for s, n in layout], abs=0.03)
    assert gate.seconds_passed == pytest.approx(sum(n + 0.5 for _, n in layout), abs=0.1)


def test_trailing_silence_ends_the_utterance_on_time() -> None:
    x = bursts(RATE, [(1.0, 0.6)])
    gate = VoiceGate(RATE, VadConfig(trailing_silence_ms=600))
    pcm = to_pcm(x)
    returned_at = None
    for i in range(0, len(pcm), CHUNK):
        if any(isinstance(e, SpeechEnd) for e in gate.feed(pcm[i : i + CHUNK])):
            returned_at = gate.seconds_in
    assert returned_at == pytest.approx(1.6 + 0.6, abs=0.04)


def test_short_pause_stays_in_one_contiguous_utterance() -> None:
    x = bursts(RATE, [(1.0, 0.5), (1.9, 0.5)])  # 0.4 s pause < 0.6 s trailing silence
    gate, events = run(x)
    check_order(events)
    assert len(utterances(events, RATE)) == 1
    audio = [e for e in events if isinstance(e, SpeechAudio)]
    joined = b"".join(e.pcm16 for e in audio)
    start = round(audio[0].t * RATE)
    assert joined == to_pcm(x)[2 * start : 2 * start + len(joined)]  # pause included


def test_clicks_shorter_than_min_speech_do_not_open() -> None:
    clicks = bursts(RATE, [(1.0, 0.04), (2.0, 0.02), (3.0, 0.04)])
    assert run(clicks)[1] == []
    word = bursts(RATE, [(1.0, 0.1)])
    assert len(utterances(run(word)[1], RATE)) == 1


def test_max_utterance_splits_long_speech_without_losing_audio() -> None:
    x = np.concatenate([line_noise(1, RATE, -60), speechlike(5, RATE, -20), line_noise(1.5, RATE, -60, seed=2)])
    gate, events = run(x, VadConfig(max_utterance_s=2.0))
    check_order(events)
    spans = utterances(events, RATE)
    assert [r for _, _, r in spans] == ["max_utterance", "max_utterance", "silence"]
    assert len(starts(events)) == 3
    for (first, last, _), (next_first, _, _) in zip(spans, spans[1:]):
        assert last - first == pytest.approx(2.0, abs=0.021)
        assert next_first == pytest.approx(last, abs=1e-9)  # contiguous across the cut
    assert spans[-1][1] == pytest.approx(6.2, abs=0.05)


def test_long_fluent_speech_is_not_cut() -> None:
    # No pause for 8 s (think of a read-out ID number): the noise floor must
    # not climb to the speech level and end the utterance early.
    x = np.concatenate([line_noise(1, RATE, -60), speechlike(8, RATE, -25), line_noise(1, RATE, -60, seed=2)])
    _, events = run(x)
    assert utterances(events, RATE) == [pytest.approx((0.7, 9.2, "silence"), abs=0.03)]


@pytest.mark.parametrize(
    "x",
    [
        np.concatenate([line_noise(1, RATE, -60), tone(5, RATE, -20) + line_noise(5, RATE, -60, seed=3)]),
        np.concatenate([line_noise(1, RATE, -65), line_noise(5, RATE, -40, seed=5)]),
        # From the first frame: it may be speech (a clip cut at its onset), so it may open.
        line_noise(5, RATE, -40),
    ],
    ids=["tone", "louder-line", "loud-line-from-the-first-frame"],
)
def test_steady_signal_is_absorbed_as_noise(x: np.ndarray) -> None:
    # A constant-level signal (ringback, hum, a much louder line) is noise:
    # speech fluctuates by syllable. It may open one utterance that ends soon.
    gate, events = run(x)
    spans = utterances(events, RATE)
    assert len(spans) <= 1
    assert gate.seconds_passed < 2.5


def test_chunk_sizes_do_not_change_the_result() -> None:
    x = bursts(RATE, [(0.5, 0.4), (1.2, 0.3), (2.5, 0.5)])

    def summary(chunk: int) -> list:
        _, events = run(x, chunk=chunk)
        out, audio = [], b""
        for e in events:
            if isinstance(e, SpeechAudio):
                audio += e.pcm16
            else:
                out.append((e, audio))
                audio = b""
        return out

    reference = summary(len(x) * 2)  # one piece
    assert len(reference) == 4  # 2 utterances (the first two bursts merge)
    for chunk in (7, 320, 641, 4096):
        assert summary(chunk) == reference


def test_flush_closes_an_utterance_in_progress() -> None:
    x = np.concatenate([line_noise(1, RATE, -60), speechlike(1.0, RATE, -20)])
    gate = VoiceGate(RATE, VadConfig())
    events = gate.feed(to_pcm(x)[:-101])  # leave a partial frame and an odd byte
    assert not any(isinstance(e, SpeechEnd) for e in events)
    tail = gate.flush()
    assert isinstance(tail[-1], SpeechEnd) and tail[-1].reason == "flush"
    audio = [e for e in events + tail if isinstance(e, SpeechAudio)]
    end = audio[-1].t + len(audio[-1].pcm16) / 2 / RATE
    assert tail[-1].t == pytest.approx(end)
    fed_samples = (len(x) * 2 - 101) // 2
    assert end == pytest.approx(fed_samples / RATE)  # the partial frame was emitted too
    assert gate.seconds_in == pytest.approx(fed_samples / RATE)
    assert gate.flush() == []


def test_disabled_passes_everything() -> None:
    x = to_pcm(line_noise(3.3, RATE, -60))
    gate = VoiceGate(RATE, VadConfig(enabled=False, max_utterance_s=1.0))
    events = feed_chunks(gate, x, 999)  # odd size: samples straddle chunks
    assert not any(isinstance(e, SpeechStart) for e in events)
    assert b"".join(e.pcm16 for e in events if isinstance(e, SpeechAudio)) == x
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert [e.reason for e in ends] == ["max_utterance"] * 3 + ["flush"]
    assert [e.t for e in ends] == pytest.approx([1.0, 2.0, 3.0, 3.3])
    assert gate.seconds_passed == gate.seconds_in == pytest.approx(3.3)
    assert VoiceGate(RATE, VadConfig(enabled=False)).flush() == []


# -- real speech ------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_real_speech_is_passed_and_padding_is_not(path) -> None:
    speech = load_pcm(path).astype(float)
    pad = 2 * RATE
    x = np.concatenate([line_noise(2, RATE, -60, seed=3), speech, line_noise(2, RATE, -60, seed=4)])
    gate, events = run(x)
    check_order(events)
    assert 1 <= len(utterances(events, RATE)) <= 2
    mask = passed_mask(events, len(x), RATE)
    assert speech_coverage(speech, mask, RATE, pad) >= 0.95
    # Of the 4 s of line noise at most preroll + hangover may go through, and the
    # noise window it takes to learn that the line after the clip is louder than the
    # recording's own background.
    assert (mask[:pad].sum() + mask[pad + len(speech) :].sum()) / RATE <= 0.3 + 0.6 + 1.0
    assert gate.seconds_passed < gate.seconds_in - 2.0


def test_real_speech_unpadded_yields_an_utterance() -> None:
    for path in REAL:
        speech = load_pcm(path)
        gate, events = run(speech.astype(float))
        assert len(utterances(events, RATE)) >= 1
        assert speech_coverage(speech, passed_mask(events, len(speech), RATE), RATE, 0) >= 0.95


def test_sorted_window_percentiles_equal_numpy_over_the_last_values() -> None:
    rng = np.random.default_rng(7)
    window = SortedWindow(50)
    history: list[float] = []
    values = np.concatenate([rng.normal(-60, 3, 80), np.full(40, -42.0), rng.uniform(-90, -10, 80)])
    for value in values:
        window.append(float(value))
        history = (history + [float(value)])[-50:]
        assert len(window) == len(history)
        for q in (10.0, 50.0, 90.0, 0.0, 100.0):
            assert window.percentile(q) == float(np.percentile(history, q))


def test_frame_energy_ignores_dc_offset_and_reads_full_scale_sine_as_minus_3_dbfs() -> None:
    t = np.arange(160)
    sine = (32767 * np.sin(2 * np.pi * 1000 * t / 8000)).astype(np.int16)
    assert frame_energy_db(sine) == pytest.approx(-3.01, abs=0.01)
    quiet = (300 * np.sin(2 * np.pi * 1000 * t / 8000)).astype(np.int16)
    assert frame_energy_db(quiet + 5000) == pytest.approx(frame_energy_db(quiet), abs=0.01)
    assert frame_energy_db(np.full(160, 1234, dtype=np.int16)) == -100.0
