"""Synthetic signals and the shared recordings, for the audio-path tests."""

from __future__ import annotations

import csv
import ctypes
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from speech.codecs import decode, ulaw_encode
from speech.pipeline import AudioInput
from speech.resample import StreamResampler
from speech.vad import GateEvent, SpeechAudio, SpeechEnd, SpeechStart, VoiceGate
from speech.wavfile import read_wav

AUDIO = Path(os.environ.get("GATEWAY_SHARED_DIR", Path(__file__).resolve().parent.parent.parent / "shared")) / "audio"
REAL = sorted((AUDIO / "real").glob("*.wav"))  # 16 kHz PCM16, clean
PHONE = sorted((AUDIO / "phone").glob("*.wav"))  # same, 8 kHz mu-law
CALLERS = AUDIO / "callers-dev"  # 8 kHz mu-law single caller utterances

Samples = npt.NDArray[np.int16]


def to_pcm(x: npt.ArrayLike) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def from_pcm(pcm16: bytes) -> Samples:
    return np.frombuffer(pcm16, dtype="<i2")


def level(db: float) -> float:
    """RMS amplitude of a signal at `db` dBFS."""
    return 32768.0 * 10 ** (db / 20)


def line_noise(seconds: float, rate: int, db: float = -60.0, seed: int = 0) -> npt.NDArray[np.float64]:
    """Gaussian noise band-limited to the telephone band 300-3400 Hz."""
    n = round(seconds * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    x = np.fft.irfft(spectrum, n)
    return x * level(db) / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def tone(seconds: float, rate: int, db: float = -20.0, freq: float = 440.0) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * rate)) / rate
    return np.sqrt(2) * level(db) * np.sin(2 * np.pi * freq * t)


def bursts(
    rate: int, layout: list[tuple[float, float]], noise_db: float = -60.0, burst_db: float = -20.0
) -> npt.NDArray[np.float64]:
    """Line noise with tone bursts; `layout` is (start s, length s) per burst."""
    total = max(s + n for s, n in layout) + 1.5
    x = line_noise(total, rate, noise_db, seed=1)
    for i, (start, length) in enumerate(layout):
        a = round(start * rate)
        x[a : a + round(length * rate)] += tone(length, rate, burst_db, 300 + 200 * i)
    return x


def speechlike(seconds: float, rate: int, db: float = -20.0, seed: int = 7) -> npt.NDArray[np.float64]:
    """Band-limited noise with a ~4 Hz syllable envelope (speech is never steady)."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.25 + np.abs(np.sin(2 * np.pi * 2.2 * t))
    return line_noise(seconds, rate, db, seed) * envelope / np.sqrt(np.mean(envelope**2))


def frame_db(x: npt.ArrayLike, rate: int) -> npt.NDArray[np.float64]:
    """dBFS of consecutive 20 ms frames."""
    from speech.vad import frame_energy_db

    x = np.asarray(x)
    n = rate // 50
    return np.array([frame_energy_db(x[i : i + n]) for i in range(0, len(x) - n + 1, n)])


def speech_coverage(x: npt.ArrayLike, mask: npt.NDArray[np.bool_], rate: int, offset: int) -> float:
    """Share of the loud frames of `x` (top half, and 10 dB above its quiet
    tenth, so a noisy recording's own noise does not count) that were emitted;
    `x` starts at stream sample `offset`."""
    e = frame_db(x, rate)
    loud = (e >= np.median(e)) & (e >= np.percentile(e, 10) + 10)
    n = rate // 50
    emitted = np.array([mask[offset + i * n : offset + (i + 1) * n].mean() > 0.5 for i in range(len(e))])
    return float(emitted[loud].mean())


def mulaw_8k(x: npt.ArrayLike) -> bytes:
    return ulaw_encode(to_pcm(x))


def load_pcm(path: Path, rate: int = 16000) -> Samples:
    """Any supported WAV as 16-bit PCM at `rate` (decoded and resampled)."""
    encoding, file_rate, channels, payload = read_wav(path)
    assert channels == 1
    pcm = decode(encoding, payload)
    if file_rate != rate:
        resampler = StreamResampler(file_rate, rate)
        pcm = resampler.process(pcm) + resampler.flush()
    return from_pcm(pcm)


def seed_dither(seed: int) -> None:
    """Restart the C library's rand() stream, which Kaldi (inside Vosk) draws its feature dither
    from process-wide: a decode that follows is then the same whatever Vosk decoded before it in
    this process (any thread)."""
    ctypes.CDLL(None).srand(seed)  # the process's own libc: the one libvosk.so binds rand() to


def callers_manifest() -> dict[str, str]:
    with open(CALLERS / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return {name: text for name, text in rows[1:]}


def feed_chunks(target: VoiceGate | AudioInput, pcm16: bytes, chunk: int) -> list[GateEvent]:
    """Feed `pcm16` in chunks of `chunk` bytes, then flush; all events."""
    events: list[GateEvent] = []
    for i in range(0, len(pcm16), chunk):
        events += target.feed(pcm16[i : i + chunk])
    return events + target.flush()


def utterances(events: list[GateEvent], rate: int) -> list[tuple[float, float, str]]:
    """(first emitted sample s, end of emitted audio s, end reason) per utterance."""
    spans: list[tuple[float, float, str]] = []
    start = end = None
    for e in events:
        if isinstance(e, SpeechAudio):
            if start is None:
                start = e.t
            end = e.t + len(e.pcm16) / 2 / rate
        elif isinstance(e, SpeechEnd):
            if start is not None:
                spans.append((start, end, e.reason))
            start = end = None
    return spans


def starts(events: list[GateEvent]) -> list[SpeechStart]:
    return [e for e in events if isinstance(e, SpeechStart)]


def passed_mask(events: list[GateEvent], n_samples: int, rate: int) -> npt.NDArray[np.bool_]:
    """Which stream samples were emitted as SpeechAudio."""
    mask = np.zeros(n_samples, dtype=bool)
    for e in events:
        if isinstance(e, SpeechAudio):
            a = round(e.t * rate)
            mask[a : a + len(e.pcm16) // 2] = True
    return mask


