#!/usr/bin/env python3
"""Load benchmark of the gateway's live recognition path (not a test; CI does not run it).

    .venv/bin/python bench/asr_load.py            # full run, about 15-20 min
    .venv/bin/python bench/asr_load.py --quick    # smoke check, about 5 min
    .venv/bin/python bench/asr_load.py --calls 6 8 10 --step-seconds 30

The machine is shared and noisy, so every figure is set against a baseline
measured in the same run:

1. Raw Vosk ceiling, in this process: K call scripts (caller utterances from
   shared/audio/callers-dev, 8 kHz u-law, separated by 2-5 s of faint line
   noise as eval/simcaller.py does; speech is ~40 % of a call) are decoded by
   raw `vosk.KaldiRecognizer` at 8 kHz (as the gateway feeds it), one fresh
   recognizer per call as vosk-server does (one per connection). Thread CPU
   time per second of audio (RTF), 1 and 2 threads; ceiling = 1/RTF streams
   per core, x cores: the baseline of the capacity target. The small model
   composes its graph on the fly with a cache per recognizer, so a fresh one
   costs ~2.5x the CPU of a warm one for its first ~40 s of speech; the same
   scripts are therefore also decoded by warm recognizers (one per thread,
   warmed on shared/audio/real like the gateway's pool, Reset() between
   calls): the warm ceiling, the best raw Vosk does. And both gated: only
   the audio the gateway's own VAD (speech.pipeline.AudioInput, run ahead of
   time) passes, FinalResult at every utterance end; gated + warm is the
   like-for-like reference of the gateway's CPU with VAD on.
   The gateway decodes free speech on a static graph it compiles once from
   the model's two halves (gateway/model/graph.py), so the same scripts are
   decoded by raw Vosk on that very graph too (a recognizer per call; a static
   graph needs no warming): the static ceiling, the like-for-like baseline
   the capacity target is judged against. The ceilings of the model as
   shipped are printed beside it.
2. The gateway as a subprocess (`gateway serve`, temporary GATEWAY_DATA_DIR,
   model from ../shared/models, its recognizer pool warmed at start on
   shared/audio/real: GATEWAY_WARMUP_AUDIO_DIR, --warm recognizers, waited
   for), N simulated calls streaming in real time;
   call i plays script i % K (repeats start at another pause). Even calls are
   Twilio Media Streams (/ws/twilio, base64 u-law 20 ms media messages,
   transcripts read from /ws/events?call_id=<callSid>), odd calls vosk-server
   clients (/ws/asr, config sample_rate 8000, 100 ms PCM16 chunks, one reply
   awaited per chunk). N ramps 8, 16, 24, ... until a step fails, then
   bisects. A step passes when gateway_decode_lag_seconds (polled every 1 s)
   stays < 1 s and nothing is lost: every utterance yields a final transcript,
   gateway_audio_seconds_in_total grows by exactly the audio sent, no errors.
   The sustained N is run once more with GATEWAY_VAD_ENABLED=false.
3. Gateway CPU overhead: server CPU (psutil, all threads and children) per
   second of decoded audio over warm raw Vosk CPU per second of the same
   scripts' audio, minus 1; split into event loop vs recognizer threads.
4. End of speech (the message carrying an utterance's last sample was sent)
   -> final transcript at the client, p50/p95, at ~80 % of the sustained N,
   beside the floor the VAD's trailing silence alone imposes.
5. RSS per call: (peak server RSS with N calls - idle RSS after warm-up) / N.
6. Targets, PASS/FAIL: overhead <= 10 %; sustained calls (VAD on) >= 1.5 x raw
   ceiling (on the gateway's own graph); p95 end of speech -> final <= 0.8 s at 80 % of capacity; zero
   dropped audio. Also printed: a CPU-based capacity (cores / gateway CPU per
   call-second), which other processes on the machine do not distort, and
   how many cores other processes used during each step.

Loopback only; each phase is bounded (calls last --step-seconds, a call is
abandoned 15-30 s after its audio ends, new phases start only within
--max-minutes); the gateway is stopped (SIGTERM, then SIGKILL) and its data
folder removed, on errors too. Progress goes to stderr; the table and one
final JSON line with every figure go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from speech.codecs import Encoding, decode, ulaw_encode  # noqa: E402
from speech.resample import StreamResampler  # noqa: E402
from speech.wavfile import read_wav  # noqa: E402

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
CALLERS = SHARED / "audio" / "callers-dev"
MIRROR = SHARED / "models"
MODEL_CACHE = ROOT / "var" / "models"
GATEWAY_BIN = ROOT / ".venv" / "bin" / "gateway"
if not GATEWAY_BIN.exists():  # run from another venv: the console script next to this interpreter
    GATEWAY_BIN = Path(sys.executable).with_name("gateway")

RATE = 8000  # telephone audio, as Twilio and the recordings carry it
FRAME_S = 0.020  # Twilio media frame
ASR_CHUNK_S = 0.100  # vosk-server client chunk
MODEL_RATE = 16000  # vosk-model-small-cn-0.22 features (conf/mfcc.conf)
REC_RATE = RATE  # the gateway feeds 8 kHz phone audio to Vosk as is (gateway.calls.speech_service.input_rate)
WARMUP_DIR = SHARED / "audio" / "real"  # speech that warms recognizers (not the callers the load plays)
NOISE_AMPLITUDE = 24  # faint line noise between utterances, like eval/simcaller.py
GAP_S = (2.0, 5.0)  # noise between utterances
UTTERANCE_S = (1.5, 8.5)  # recordings used (single utterances; the longer half, so speech is ~40 % of a call)
PREROLL_S, HANGOVER_S = 0.3, 0.2  # gateway VAD defaults: what the gate passes around speech
LAG_LIMIT_S = 1.0
RUN_NONCE = f"{os.getpid():x}{int(time.time()) % 100000:x}"  # call ids unique across runs

# Targets (item 6 of the brief).
TARGET_OVERHEAD = 0.10
TARGET_CAPACITY_RATIO = 1.5
TARGET_P95_S = 0.8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(x, nd)


# --------------------------------------------------------------------------------------------
# Audio: utterance pool, call streams, protocol messages
# --------------------------------------------------------------------------------------------
@dataclass
class Utterance:
    name: str
    pcm: bytes  # PCM16 at 8 kHz

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE


def load_candidates(seed: int) -> list[Utterance]:
    files = sorted(CALLERS.glob("*.wav"))
    if not files:
        raise SystemExit(f"no recordings in {CALLERS}")
    out = []
    for path in files:
        encoding, rate, channels, payload = read_wav(path)
        if rate != RATE or channels != 1:
            continue
        pcm = decode(encoding, payload)
        if UTTERANCE_S[0] <= len(pcm) / 2 / RATE <= UTTERANCE_S[1]:
            out.append(Utterance(path.name, pcm))
    random.Random(seed).shuffle(out)
    return out


def noise(rng: np.random.Generator, seconds: float) -> bytes:
    n = max(0, int(round(seconds * RATE)))
    return rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=n).astype("<i2").tobytes()


def to_16k(pcm8k: bytes) -> bytes:
    rs = StreamResampler(RATE, MODEL_RATE)
    return rs.process(pcm8k) + rs.flush()


@dataclass
class CallPlan:
    index: int
    kind: str  # "twilio" | "asr"
    call_id: str
    pcm: bytes  # the whole call, PCM16 8 kHz
    utts: list[tuple[int, int]]  # sample ranges of the utterances
    script: int = -1  # which call script it plays
    names: tuple[str, ...] = ()  # recordings, in order

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE

    @property
    def speech_seconds(self) -> float:
        return sum(e - s for s, e in self.utts) / RATE


def make_stream(pool: list[Utterance], seconds: float, seed: int) -> tuple[bytes, list[tuple[int, int]], list[str]]:
    """Line noise, then utterances separated by 2-5 s of noise; >= 2 s of noise at the end."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    parts = [noise(nrng, rng.uniform(0.5, 2.0))]
    pos = len(parts[0]) // 2
    utts, names = [], []
    while True:
        u = rng.choice(pool)
        n = len(u.pcm) // 2
        gap = noise(nrng, rng.uniform(*GAP_S))
        if pos + n + len(gap) // 2 > total:
            break
        parts += [u.pcm, gap]
        utts.append((pos, pos + n))
        names.append(u.name)
        pos += n + len(gap) // 2
    parts.append(noise(nrng, (total - pos) / RATE))
    return b"".join(parts), utts, names


def make_plan(index: int, kind: str, seconds: float, pool: list[Utterance], seed: int, tag: str) -> CallPlan:
    pcm, utts, names = make_stream(pool, seconds, seed)
    if kind == "twilio":
        call_id = "CA" + random.Random(seed).getrandbits(128).to_bytes(16, "big").hex()
    else:
        call_id = f"bench-{tag}-{index}-{seed % 100000}"
    return CallPlan(index, kind, call_id, pcm, utts, names=tuple(names))


def make_scripts(pool: list[Utterance], seconds: float, k: int, seed: int) -> list[CallPlan]:
    """K call scripts; every simulated call plays one, so the raw baseline can decode exactly the same audio."""
    return [make_plan(i, "twilio" if i % 2 == 0 else "asr", seconds, pool, seed + 7 * i, "script") for i in range(k)]


def call_from_script(script: CallPlan, index: int, repeat: int, tag: str) -> CallPlan:
    """Call `index` plays `script`; repeats start at another pause so equal scripts do not speak in unison."""
    pcm, utts = script.pcm, script.utts
    if repeat and len(utts) >= 2:
        gaps = [(utts[k][1], utts[k + 1][0]) for k in range(len(utts) - 1)]
        a, b = gaps[(repeat - 1) % len(gaps)]
        cut, total = (a + b) // 2, len(pcm) // 2
        pcm = pcm[2 * cut:] + pcm[:2 * cut]
        utts = sorted(((s - cut) % total, (s - cut) % total + (e - s)) for s, e in utts)
    if script.kind == "twilio":
        call_id = "CA" + random.Random(f"{RUN_NONCE}-{tag}-{index}").getrandbits(128).to_bytes(16, "big").hex()
    else:
        call_id = f"bench-{RUN_NONCE}-{tag}-{index}"
    return CallPlan(index, script.kind, call_id, pcm, utts, script.index, script.names)


def twilio_messages(plan: CallPlan) -> tuple[list[str], list[str], str]:
    """(head messages, one media message per 20 ms frame, stop), shaped as in tests/calls.py."""
    sid = plan.call_id
    stream_sid = "MZ" + sid[2:]
    account = "AC" + "0" * 32
    head = [
        json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                    "start": {"accountSid": account, "streamSid": stream_sid, "callSid": sid,
                              "tracks": ["inbound"], "customParameters": {},
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}}),
    ]
    ulaw = ulaw_encode(plan.pcm)
    step = int(RATE * FRAME_S)
    media = []
    for i, off in enumerate(range(0, len(ulaw), step), start=1):
        payload = base64.b64encode(ulaw[off:off + step]).decode()
        media.append(
            '{"event":"media","sequenceNumber":"%d","streamSid":"%s","media":{"track":"inbound",'
            '"chunk":"%d","timestamp":"%d","payload":"%s"}}' % (i + 1, stream_sid, i, i * 20, payload)
        )
    stop = json.dumps({"event": "stop", "sequenceNumber": str(len(media) + 2), "streamSid": stream_sid,
                       "stop": {"accountSid": account, "callSid": sid}})
    return head, media, stop


def chunks(pcm: bytes, seconds: float) -> list[bytes]:
    step = int(RATE * seconds) * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


# --------------------------------------------------------------------------------------------
# Raw Vosk baseline (in this process, no gateway)
#
# Vosk's small models compose their graph on the fly (HCLr.fst + Gr.fst) with a cache that
# belongs to each KaldiRecognizer: a new recognizer decodes several times slower than a warm
# one. The gateway opens a new recognizer per call, so the baseline does the same: one fresh
# recognizer per simulated call, calls as long as the load steps', fed exactly the audio the
# gateway's gate would pass (speech.pipeline.AudioInput run ahead of time, outside the timing).
# --------------------------------------------------------------------------------------------
def _new_rec(vosk: Any, model: Any, partial_words: bool = False) -> Any:
    rec = vosk.KaldiRecognizer(model, REC_RATE)
    rec.SetWords(True)  # the gateway asks for words too
    if partial_words:
        rec.SetPartialWords(True)
    return rec


def call_events(plan: CallPlan, vad: bool) -> list[list[Any]]:
    """The gate events the gateway derives from this call, message by message (20 ms / 100 ms)."""
    from speech.pipeline import AudioInput
    from speech.vad import VadConfig

    if plan.kind == "twilio":
        step = int(RATE * FRAME_S) * 2
        encoding, payloads = Encoding.MULAW, [ulaw_encode(plan.pcm[i:i + step]) for i in range(0, len(plan.pcm), step)]
    else:
        encoding, payloads = Encoding.PCM16, chunks(plan.pcm, ASR_CHUNK_S)
    audio = AudioInput(encoding, RATE, REC_RATE, VadConfig(enabled=vad))  # gateway defaults
    return [audio.feed(p) for p in payloads] + [audio.flush()]


def decode_batch(rec: Any, batch: list[Any], partials: bool = False, chunk_s: list[float] | None = None) -> float:
    """Raw Vosk on one message's gate events: AcceptWaveform per audio event, FinalResult per
    SpeechEnd; the seconds of audio fed."""
    from speech.vad import SpeechAudio, SpeechEnd

    audio = 0.0
    for ev in batch:
        if isinstance(ev, SpeechAudio):
            audio += len(ev.pcm16) / 2 / REC_RATE
            c0 = time.perf_counter()
            final = rec.AcceptWaveform(ev.pcm16)
            if chunk_s is not None:
                chunk_s.append(time.perf_counter() - c0)
            if final:
                rec.Result()
            elif partials:  # what speech.recognizer.Recognizer.accept adds
                json.loads(rec.PartialResult())
        elif isinstance(ev, SpeechEnd):
            rec.FinalResult()
    return audio


def raw_call(vosk: Any, model: Any, events: list[list[Any]], partials: bool = False, rec: Any = None) -> dict:
    """Vosk alone on one call's gate events."""
    if rec is None:
        rec = _new_rec(vosk, model, partial_words=partials)
    else:
        rec.Reset()
    chunk_s: list[float] = []  # wall time of each AcceptWaveform: cold graph regions make some very slow
    t0, w0 = time.thread_time(), time.perf_counter()
    audio = sum(decode_batch(rec, batch, partials, chunk_s) for batch in events)
    rec.FinalResult()
    return {"cpu": time.thread_time() - t0, "wall": time.perf_counter() - w0, "audio": audio, "chunks": chunk_s}


def warm_rec(vosk: Any, model: Any, warm_pcm: bytes) -> Any:
    """A recognizer warmed by the gateway's own warm-up (speech.recognizer.RecognizerPool.warm_up)."""
    from speech.recognizer import RecognizerPool

    pool = RecognizerPool(model, max_idle=1)
    pool.warm_up(REC_RATE, warm_pcm)
    rec, _ = pool.acquire(REC_RATE)
    rec.SetWords(True)  # as _new_rec
    return rec


def raw_calls(vosk: Any, model: Any, scripts: list[CallPlan], vad: bool, threads: int,
              partials: bool = False, warm_pcm: bytes | None = None) -> dict:
    """Decode each script with a fresh recognizer (vosk-server's way: one per connection) or, given
    `warm_pcm`, with one recognizer per thread warmed on it (outside the timing) and Reset() between
    calls (the gateway's pool); spread over `threads` threads; CPU per script."""
    events = {sc.index: call_events(sc, vad) for sc in scripts}  # outside the timing
    jobs = [scripts[i::threads] for i in range(threads)]

    def job(part: list[CallPlan]) -> dict:
        rec = warm_rec(vosk, model, warm_pcm) if warm_pcm else None
        return {sc.index: raw_call(vosk, model, events[sc.index], partials, rec) for sc in part}

    results, wall = in_threads(job, [(j,) for j in jobs])
    per = {k: v for res in results for k, v in res.items()}
    chunk_s = [c for v in per.values() for c in v["chunks"]]
    cpu = sum(v["cpu"] for v in per.values())
    audio = sum(v["audio"] for v in per.values())
    return {"rtf": cpu / audio if audio else float("nan"), "cpu_s": cpu, "audio_s": audio, "wall_s": wall,
            "wall_streams": sum(sc.seconds for sc in scripts) / wall if wall else None, "threads": threads,
            "calls": len(scripts), "per_script": {k: (v["cpu"], v["audio"]) for k, v in per.items()},
            "chunk_p99_ms": pct(chunk_s, 99) * 1e3 if chunk_s else None,
            "chunk_max_ms": max(chunk_s) * 1e3 if chunk_s else None}


class RawPool:
    """Raw Vosk at the gateway's concurrency: one warm recognizer per simulated call (warmed like
    the gateway's pool, kept across steps as the pool keeps them), the step's calls decoded
    message by message, round-robin, in 2 threads. N recognizers' graph caches compete for the
    CPU caches as the gateway's do, which a single recognizer per thread would not show."""

    def __init__(self, vosk: Any, model: Any, warm_pcm: bytes) -> None:
        self.vosk, self.model, self.warm_pcm = vosk, model, warm_pcm
        self.recs: list[Any] = []

    def ensure(self, n: int) -> None:
        todo = n - len(self.recs)
        if todo <= 0:
            return
        results, _ = in_threads(lambda k: {"recs": [warm_rec(self.vosk, self.model, self.warm_pcm) for _ in range(k)]},
                                [((todo + 1) // 2,), (todo // 2,)])
        self.recs += results[0]["recs"] + results[1]["recs"]

    def rtf(self, plans: list[CallPlan], vad: bool) -> float:
        """Thread CPU per second of audio fed to Vosk for these calls."""
        self.ensure(len(plans))
        events = [call_events(p, vad) for p in plans]  # outside the timing

        def job(part: list[int]) -> dict:
            t0, audio = time.thread_time(), 0.0
            for i in part:
                self.recs[i].Reset()
            for k in range(max((len(events[i]) for i in part), default=0)):
                for i in part:
                    if k < len(events[i]):
                        audio += decode_batch(self.recs[i], events[i][k])
            for i in part:
                self.recs[i].FinalResult()
            return {"cpu": time.thread_time() - t0, "audio": audio}

        results, _ = in_threads(job, [(list(range(0, len(plans), 2)),), (list(range(1, len(plans), 2)),)])
        audio = sum(x["audio"] for x in results)
        return sum(x["cpu"] for x in results) / audio if audio else float("nan")


def in_threads(fn: Any, jobs: list[tuple]) -> tuple[list[dict], float]:
    results: list[dict | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fn(*jobs[i])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    w0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results, time.perf_counter() - w0  # type: ignore[return-value]


def check_pool(vosk: Any, model: Any, pool: list[Utterance], seed: int) -> list[Utterance]:
    """Keep the recordings Vosk hears some text in (else "no final" would not mean lost audio)."""
    def job(utts: list[Utterance]) -> list[str]:
        rec = _new_rec(vosk, model)
        nrng = np.random.default_rng(seed)
        heard = []
        for u in utts:
            rec.AcceptWaveform(noise(nrng, PREROLL_S) + u.pcm + noise(nrng, HANGOVER_S))
            if json.loads(rec.FinalResult()).get("text", "").replace("[unk]", "").strip():
                heard.append(u.name)
        return heard

    results, _ = in_threads(job, [(pool[0::2],), (pool[1::2],)])
    names = set(results[0]) | set(results[1])
    return [u for u in pool if u.name in names]


def load_vosk(model_dir: Path) -> tuple[Any, Any]:
    import vosk

    vosk.SetLogLevel(-1)
    return vosk, vosk.Model(str(model_dir))


def raw_baseline(vosk: Any, model: Any, scripts: list[CallPlan], warm_pcm: bytes, *, one_thread: int = 2,
                 ungated: int = 99, partials: bool = False, static_model: Any = None) -> dict:
    out: dict[str, Any] = {}
    if static_model is not None:
        # The graph the gateway decodes on, a recognizer per call: the like-for-like ceiling.
        out["ungated_2t_static"] = raw_calls(vosk, static_model, scripts[:ungated], False, 2)
        out["gated_2t_static"] = raw_calls(vosk, static_model, scripts, True, 2)
    # Every second of call audio decoded by a fresh recognizer per call, as vosk-server does:
    # the raw ceiling of the capacity target.
    if one_thread:
        out["ungated_1t"] = raw_calls(vosk, model, scripts[:one_thread], False, 1)
    out["ungated_2t"] = raw_calls(vosk, model, scripts[:ungated], False, 2)
    # Only what the gateway's VAD passes, fresh recognizers: what gating alone saves.
    out["gated_2t"] = raw_calls(vosk, model, scripts, True, 2)
    # Warm recognizers, as the gateway's pool has them: the best raw Vosk can do (all audio), and
    # the like-for-like references of the gateway's CPU overhead (VAD on: gated; VAD off: all audio).
    out["ungated_2t_warm"] = raw_calls(vosk, model, scripts[:ungated], False, 2, warm_pcm=warm_pcm)
    out["gated_2t_warm"] = raw_calls(vosk, model, scripts, True, 2, warm_pcm=warm_pcm)
    if partials:
        # What speech.recognizer.Recognizer.accept adds inside Vosk: PartialResult (with words) per message.
        out["gated_2t_partials"] = raw_calls(vosk, model, scripts[:4], True, 2, partials=True)
        plain = sum(out["gated_2t"]["per_script"][sc.index][0] for sc in scripts[:4])
        out["partials_cost"] = out["gated_2t_partials"]["cpu_s"] / plain - 1 if plain else None
    floors = endpoint_floor(scripts)
    out["endpoint_floor_p50_s"], out["endpoint_floor_p95_s"] = pct(floors, 50), pct(floors, 95)
    total = sum(sc.seconds for sc in scripts)
    out["speech_fraction"] = sum(sc.speech_seconds for sc in scripts) / total
    out["gated_fraction"] = out["gated_2t"]["audio_s"] / total
    return out


def endpoint_floor(scripts: list[CallPlan]) -> list[float]:
    """End of speech -> final if decoding took no time: when the gate ends each utterance (VAD on),
    measured like the clients do, from the message carrying the utterance's last sample."""
    from speech.vad import SpeechEnd

    out = []
    for sc in scripts:
        msg = int(RATE * (FRAME_S if sc.kind == "twilio" else ASR_CHUNK_S))
        ends = sorted(e for _, e in sc.utts)
        last_msg = {(e - 1) // msg: e for e in ends}
        pending = []
        for k, batch in enumerate(call_events(sc, vad=True)[:-1]):
            if k in last_msg:
                pending.append(k)
            if any(isinstance(ev, SpeechEnd) for ev in batch) and pending:
                out += [(k - j) * msg / RATE for j in pending]
                pending = []
    return out


def script_ref(per_script: dict[int, tuple[float, float]], plans: list[CallPlan]) -> float | None:
    """Raw CPU per decoded second for exactly the scripts these calls play."""
    cpu = sum(per_script[p.script][0] for p in plans if p.script in per_script)
    audio = sum(per_script[p.script][1] for p in plans if p.script in per_script)
    return cpu / audio if audio else None


# --------------------------------------------------------------------------------------------
# Per-message cost breakdown of the gateway's audio path, in process (no sockets)
# --------------------------------------------------------------------------------------------
def breakdown(pool: list[Utterance], seed: int, seconds: float = 20.0) -> dict:
    """Microseconds per 20 ms frame spent outside Vosk by the audio path of one call."""
    from speech.pipeline import AudioInput
    from speech.vad import VadConfig

    out: dict[str, Any] = {}
    pcm, _, _ = make_stream(pool, seconds, seed)
    plan = CallPlan(0, "twilio", "CA" + "1" * 32, pcm, [])
    head, media, _ = twilio_messages(plan)
    n = len(media)
    try:
        from gateway.telephony.twilio import TwilioAdapter

        adapter = TwilioAdapter()
        for m in head:
            adapter.receive_text(m)
        t0 = time.thread_time()
        payloads = [adapter.receive_text(m)[0].payload for m in media]
        out["twilio_parse_us"] = (time.thread_time() - t0) / n * 1e6
    except Exception as exc:  # noqa: BLE001 - informative only
        out["twilio_parse_error"] = repr(exc)
        payloads = [ulaw_encode(pcm[i:i + 320]) for i in range(0, len(pcm), 320)]
    for label, enabled in (("audio_input_vad_us", True), ("audio_input_novad_us", False)):
        ai = AudioInput(Encoding.MULAW, RATE, REC_RATE, VadConfig(enabled=enabled))
        t0 = time.thread_time()
        for p in payloads:
            ai.feed(p)
        out[label] = (time.thread_time() - t0) / n * 1e6
    out["vad_us"] = out["audio_input_vad_us"] - out["audio_input_novad_us"]

    async def hops() -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(2) as pool_:
            k = 3000
            t0 = time.process_time()
            for _ in range(k):
                await loop.run_in_executor(pool_, int)
            return (time.process_time() - t0) / k * 1e6

    out["executor_hop_us"] = asyncio.run(hops())
    return out


# --------------------------------------------------------------------------------------------
# The gateway subprocess
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_MODEL_MIRRORS=str(MIRROR),
        GATEWAY_MODEL_CACHE_DIR=str(MODEL_CACHE),
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_MAX_CALLS="512",
        GATEWAY_API_KEYS="",
        GATEWAY_WEBHOOK_URL="",
        GATEWAY_TWILIO_AUTH_TOKEN="",
    )
    env.update(extra)
    return env


def set_env(args: argparse.Namespace) -> dict[str, str]:
    """The gateway settings `--set KEY=VALUE` asks for, as environment variables."""
    out = {}
    for item in args.set:
        key, _, value = item.partition("=")
        out["GATEWAY_" + key.strip().upper()] = value.strip()
    return out


def static_graph_dir(model_dir: Path, args: argparse.Namespace) -> Path | None:
    """The compiled graph the gateway decodes on (`gateway model fetch` made it), unless turned off."""
    from gateway.model.graph import is_compiled, static_model_path
    from gateway.settings import load_settings

    if not load_settings(environ=set_env(args)).static_graph:
        return None
    return static_model_path(model_dir) if is_compiled(model_dir) else None


def fetch_model(data_dir: Path) -> Path:
    proc = subprocess.run([str(GATEWAY_BIN), "model", "fetch"], env=gateway_env(data_dir), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"gateway model fetch failed: {proc.stderr.strip()[-500:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


class Server:
    def __init__(self, data_dir: Path, port: int, env_extra: dict[str, str], label: str) -> None:
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.label = label
        self.log_path = data_dir / f"gateway-{label}.log"
        self.env = gateway_env(data_dir, **env_extra)
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None

    def start(self, timeout: float = 180.0) -> float:
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [str(GATEWAY_BIN), "serve", "--port", str(self.port)], env=self.env, cwd=ROOT,
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.ps = psutil.Process(self.proc.pid)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://{self.addr}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cpu(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def thread_cpu(self) -> tuple[float, float]:
        """(event-loop thread, all other threads) CPU seconds: where the gateway's time goes."""
        assert self.ps is not None
        main = other = 0.0
        for t in self.ps.threads():
            if t.id == self.ps.pid:
                main += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
        return main, other

    def rss(self) -> int:
        assert self.ps is not None
        rss = self.ps.memory_info().rss
        with contextlib.suppress(psutil.Error):
            rss += sum(c.memory_info().rss for c in self.ps.children(recursive=True))
        return rss

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)


async def scrape(client: httpx.AsyncClient, addr: str) -> dict[str, float]:
    resp = await client.get(f"http://{addr}/metrics", timeout=10)
    resp.raise_for_status()
    out: dict[str, float] = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name = key.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
        if name != key:
            out[key] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# Simulated calls
# --------------------------------------------------------------------------------------------
@dataclass
class CallResult:
    plan: CallPlan
    end_sent: dict[int, float] = field(default_factory=dict)  # utterance -> send time of its last frame
    finals: list[tuple[float, str, float | None, float | None]] = field(default_factory=list)
    slip_max: float = 0.0  # how late (s) a frame left against its wall-clock schedule
    reply_s: list[float] = field(default_factory=list)  # /ws/asr: chunk sent -> its reply
    errors: list[str] = field(default_factory=list)
    completed: bool = False
    server_audio_s: float | None = None


def _final_from(d: dict, arrival: float) -> tuple[float, str, float | None, float | None]:
    words = d.get("result") or d.get("words") or []
    start = d.get("start")
    end = d.get("end")
    if start is None and words:
        start, end = words[0].get("start"), words[-1].get("end")
    return (arrival, d.get("text", ""), start, end)


WS_OPTS = dict(compression=None, ping_interval=None, max_size=2 ** 22, open_timeout=20, close_timeout=10)


async def sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        await asyncio.sleep(d)


async def twilio_call(addr: str, plan: CallPlan, t_start: float, res: CallResult) -> None:
    head, media, stop = twilio_messages(plan)
    step = int(RATE * FRAME_S)
    last_frame = {(e - 1) // step: i for i, (_, e) in enumerate(plan.utts)}
    ended = asyncio.Event()
    async with connect(f"ws://{addr}/ws/events?call_id={plan.call_id}", **WS_OPTS) as events:
        async def read_events() -> None:
            async for raw in events:
                arrival = time.monotonic()
                ev = json.loads(raw)
                kind = ev.get("type")
                if kind == "transcript" and ev.get("final"):
                    res.finals.append(_final_from(ev, arrival))
                elif kind == "call.ended":
                    res.server_audio_s = ev.get("audio_seconds")
                    ended.set()
                    return

        reader = asyncio.create_task(read_events())
        try:
            async with connect(f"ws://{addr}/ws/twilio", **WS_OPTS) as ws:
                async def drain() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        async for _ in ws:
                            pass

                drainer = asyncio.create_task(drain())
                await sleep_until(t_start)
                for m in head:
                    await ws.send(m)
                for k, m in enumerate(media):
                    due = t_start + k * FRAME_S
                    await sleep_until(due)
                    await ws.send(m)
                    now = time.monotonic()
                    res.slip_max = max(res.slip_max, now - due)
                    if k in last_frame:
                        res.end_sent[last_frame[k]] = now
                await ws.send(stop)
                await asyncio.wait_for(drainer, 20)  # the gateway closes the stream after stop
            await asyncio.wait_for(ended.wait(), 20)
            res.completed = True
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def asr_call(addr: str, plan: CallPlan, t_start: float, res: CallResult) -> None:
    parts = chunks(plan.pcm, ASR_CHUNK_S)
    step = int(RATE * ASR_CHUNK_S)
    last_chunk = {(e - 1) // step: i for i, (_, e) in enumerate(plan.utts)}

    def handle(raw: str | bytes) -> None:
        arrival = time.monotonic()
        d = json.loads(raw)
        if d.get("text"):
            res.finals.append(_final_from(d, arrival))

    async with connect(f"ws://{addr}/ws/asr?call_id={plan.call_id}", **WS_OPTS) as ws:
        await sleep_until(t_start)
        await ws.send(json.dumps({"config": {"sample_rate": RATE, "words": 1}}))
        for k, part in enumerate(parts):
            due = t_start + k * ASR_CHUNK_S
            await sleep_until(due)
            await ws.send(part)
            now = time.monotonic()
            res.slip_max = max(res.slip_max, now - due)
            if k in last_chunk:
                res.end_sent[last_chunk[k]] = now
            handle(await asyncio.wait_for(ws.recv(), 20))  # lock-step, as vosk-server clients do
            res.reply_s.append(time.monotonic() - now)
        await ws.send('{"eof" : 1}')
        handle(await asyncio.wait_for(ws.recv(), 20))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)  # the gateway closes after the eof reply
    res.completed = True


def attribute(res: CallResult) -> dict:
    """Match finals to utterances by their word times (call clock); latency per utterance."""
    spans = [(s / RATE, e / RATE) for s, e in res.plan.utts]
    by_utt: dict[int, list[float]] = {i: [] for i in range(len(spans))}
    spurious = 0
    for arrival, _text, start, end in res.finals:
        best = None
        if start is not None and end is not None:
            overlaps = [min(end, e + 0.35) - max(start, s - 0.35) for s, e in spans]
            i = int(np.argmax(overlaps)) if overlaps else -1
            if i >= 0 and overlaps[i] > 0:
                best = i
            elif spans:
                mid = (start + end) / 2
                dist = [abs(mid - (s + e) / 2) for s, e in spans]
                j = int(np.argmin(dist))
                best = j if dist[j] < 2.0 else None
        else:  # no word times: the latest utterance whose end was sent before the final arrived
            sent = [(t, i) for i, t in res.end_sent.items() if t <= arrival]
            best = max(sent)[1] if sent else None
        if best is None:
            spurious += 1
        else:
            by_utt[best].append(arrival)
    latencies = []
    missing = 0
    for i, arrivals in by_utt.items():
        if not arrivals or i not in res.end_sent:
            missing += 1
            continue
        latencies.append(max(arrivals) - res.end_sent[i])
    return {"utterances": len(spans), "missing": missing, "spurious": spurious, "latencies": latencies}


async def run_call(addr: str, plan: CallPlan, t_start: float, limit: float) -> CallResult:
    res = CallResult(plan)
    fn = twilio_call if plan.kind == "twilio" else asr_call
    try:
        await asyncio.wait_for(fn(addr, plan, t_start, res), limit)
    except Exception as exc:  # noqa: BLE001 - every failure is a result of the step
        res.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
    return res


# --------------------------------------------------------------------------------------------
# One load step
# --------------------------------------------------------------------------------------------
@dataclass
class Snap:
    t: float
    server_cpu: float
    loop_cpu: float
    pool_cpu: float
    self_cpu: float
    sys_busy: float
    sys_steal: float
    m: dict[str, float]


async def snap(server: Server, client: httpx.AsyncClient) -> Snap:
    m = await scrape(client, server.addr)
    st = psutil.cpu_times()
    busy = st.user + st.nice + st.system + getattr(st, "irq", 0) + getattr(st, "softirq", 0)
    me = psutil.Process().cpu_times()
    return Snap(time.monotonic(), server.cpu(), *server.thread_cpu(), me.user + me.system, busy,
                getattr(st, "steal", 0.0), m)


async def wait_warm(server: Server, timeout: float = 900.0) -> float:
    """Seconds until the gateway's recognizer pool has been warmed (gateway_recognizers_warming 0)."""
    t0 = time.monotonic()
    async with httpx.AsyncClient() as client:
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if (await scrape(client, server.addr)).get("gateway_recognizers_warming", 1.0) == 0:
                    return time.monotonic() - t0
            await asyncio.sleep(1.0)
    raise RuntimeError(f"gateway pool not warm after {timeout:.0f} s")


async def wait_idle(server: Server, client: httpx.AsyncClient, timeout: float = 30.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (await scrape(client, server.addr)).get("gateway_active_calls", 0) == 0:
            return True
        await asyncio.sleep(0.25)
    return False


async def run_step(server: Server, label: str, n: int, scripts: list[CallPlan], raw_per_script: dict,
                   vad: bool, idle_ref: int | None = None, rss_valid: bool = True) -> dict:
    async with httpx.AsyncClient() as client:
        await wait_idle(server, client)
        await asyncio.sleep(0.5)
        idle_rss = server.rss()
        idle_ref = idle_ref or idle_rss
        k = len(scripts)
        plans = [call_from_script(scripts[i % k], i, i // k, label) for i in range(n)]
        seconds = min(p.seconds for p in plans)
        raw_ref = script_ref(raw_per_script, plans)
        before = await snap(server, client)
        t0 = time.monotonic() + 1.0
        stagger = 1.0  # calls start spread over 1 s, so frames do not all land at once
        starts = [t0 + stagger * i / max(1, n) for i in range(n)]
        t_all = t0 + stagger + 1.0  # every call is streaming
        t_send_end = t0 + seconds  # the first call to finish
        samples: list[tuple[float, float, float, int]] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    m = await scrape(client, server.addr)
                    samples.append((time.monotonic(), m.get("gateway_decode_lag_seconds", 0.0),
                                    m.get("gateway_active_calls", 0.0), server.rss()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        async def window() -> tuple[Snap, Snap]:
            await sleep_until(t_all)
            a = await snap(server, client)
            await sleep_until(t_send_end - 0.1)
            return a, await snap(server, client)

        poller = asyncio.create_task(poll())
        win = asyncio.create_task(window())
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError(f"gateway ({server.label}) is not running")
        results = await asyncio.gather(*(run_call(server.addr, p, s, seconds + min(30.0, max(15.0, seconds))) for p, s in zip(plans, starts)))
        w0, w1 = await win
        stop.set()
        await poller
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError(f"gateway ({server.label}) exited during the step")
        settled = await wait_idle(server, client)
        after = await snap(server, client)

    dm = {k: after.m.get(k, 0.0) - before.m.get(k, 0.0) for k in after.m}
    audio_sent = sum(p.seconds for p in plans)
    audio_in = dm.get("gateway_audio_seconds_in_total", 0.0)
    decoded = dm.get("gateway_audio_seconds_decoded_total", 0.0)
    att = [attribute(x) for x in results]
    lat = [v for a in att for v in a["latencies"]]
    utts = sum(a["utterances"] for a in att)
    missing = sum(a["missing"] for a in att)
    errors = [f"{x.plan.kind}#{x.plan.index}: {e}" for x in results for e in x.errors]
    incomplete = sum(1 for x in results if not x.completed)
    lags = [lag for t, lag, _, _ in samples if t0 + 0.5 <= t <= t_send_end + stagger]
    win_rss = [rss for t, _, _, rss in samples if w0.t <= t <= w1.t]
    peak_rss = max(win_rss) if win_rss else None
    # Shares of the machine: over the window where all N calls stream.
    dt = w1.t - w0.t
    gw_cpu_w = w1.server_cpu - w0.server_cpu
    self_cpu = w1.self_cpu - w0.self_cpu
    busy = w1.sys_busy - w0.sys_busy
    # Cost per audio second: over the whole step (call setup, flush and close are gateway work too),
    # as the raw baseline covers whole calls.
    gw_cpu = after.server_cpu - before.server_cpu
    loop_cpu = after.loop_cpu - before.loop_cpu
    pool_cpu = after.pool_cpu - before.pool_cpu
    rec_s = dm.get("gateway_recognizer_seconds_total", 0.0)
    cpu_per_dec = gw_cpu / decoded if decoded > 0 else None
    # The gateway's own account of the CPU spent inside Vosk on these very calls.
    vosk_decode = dm.get('gateway_vosk_cpu_seconds_total{kind="decode"}', 0.0)
    vosk_partial = dm.get('gateway_vosk_cpu_seconds_total{kind="partial"}', 0.0)
    audio_diff = audio_in - audio_sent
    drop_ok = (missing == 0 and abs(audio_diff) <= 0.002 * n + 1e-6 and not errors and incomplete == 0
               and dm.get("gateway_calls_refused_total", 0) == 0 and dm.get("gateway_protocol_errors_total", 0) == 0)
    lag_max = max(lags) if lags else None
    ok = drop_ok and lag_max is not None and lag_max < LAG_LIMIT_S
    return {
        "label": label, "vad": vad, "calls": n, "seconds": seconds,
        "twilio": sum(p.kind == "twilio" for p in plans), "asr": sum(p.kind == "asr" for p in plans),
        "audio_sent_s": r(audio_sent, 2), "audio_in_s": r(audio_in, 2), "audio_diff_s": r(audio_diff, 4),
        "speech_fraction": r(sum(p.speech_seconds for p in plans) / audio_sent, 3),
        "decoded_fraction": r(decoded / audio_in if audio_in else None, 3),
        "lag_max_s": r(lag_max), "lag_p95_s": r(pct(lags, 95)),
        "client_slip_max_s": r(max((x.slip_max for x in results), default=0.0)),
        "asr_reply_p99_s": r(pct([v for x in results for v in x.reply_s], 99)),
        "asr_reply_max_s": r(max((v for x in results for v in x.reply_s), default=None)),
        "utterances": utts, "utterances_missing": missing,
        "spurious_finals": sum(a["spurious"] for a in att),
        "latency_p50_s": r(pct(lat, 50)), "latency_p95_s": r(pct(lat, 95)), "latency_max_s": r(max(lat) if lat else None),
        "latency_n": len(lat),
        "errors": errors[:5], "error_count": len(errors), "incomplete_calls": incomplete,
        "refused": dm.get("gateway_calls_refused_total", 0), "protocol_errors": dm.get("gateway_protocol_errors_total", 0),
        "settled": settled,
        "window_s": r(dt, 2),
        "gw_cpu_s": r(gw_cpu, 2), "decoded_s": r(decoded, 2),
        "gw_cpu_per_decoded_s": r(cpu_per_dec, 4),
        "gw_cpu_per_audio_in_s": r(gw_cpu / audio_in if audio_in > 0 else None, 4),
        "loop_cpu_per_audio_in_s": r(loop_cpu / audio_in if audio_in > 0 else None, 4),
        "threads_cpu_per_decoded_s": r(pool_cpu / decoded if decoded > 0 else None, 4),
        "gw_recognizer_wall_rtf": r(rec_s / decoded if decoded > 0 else None, 4),
        "raw_ref_rtf": r(raw_ref, 4),
        "vosk_decode_cpu_s": r(vosk_decode, 2), "vosk_partial_cpu_s": r(vosk_partial, 2),
        "vosk_decode_per_decoded_s": r(vosk_decode / decoded if decoded > 0 else None, 4),
        "overhead_in_gateway": r(gw_cpu / vosk_decode - 1 if vosk_decode > 0 else None, 3),
        "overhead": r(cpu_per_dec / raw_ref - 1 if cpu_per_dec and raw_ref else None, 3),
        "gw_cores": r(gw_cpu_w / dt if dt > 0 else None, 2),
        "client_cores": r(self_cpu / dt if dt > 0 else None, 2),
        "other_cores": r(max(0.0, busy - gw_cpu_w - self_cpu) / dt if dt > 0 else None, 2),
        "steal_cores": r((w1.sys_steal - w0.sys_steal) / dt if dt > 0 else None, 2),
        "idle_rss_mb": r(idle_ref / 2 ** 20, 1), "pre_step_rss_mb": r(idle_rss / 2 ** 20, 1),
        "peak_rss_mb": r(peak_rss / 2 ** 20 if peak_rss else None, 1),
        # After a larger step the allocator keeps that step's memory: no per-call figure then.
        "rss_per_call_mb": r((peak_rss - idle_ref) / n / 2 ** 20 if peak_rss and rss_valid else None, 2),
        "drop_ok": drop_ok, "pass": ok,
    }


def step_line(s: dict) -> str:
    def f(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    lat = f"{f(s['latency_p50_s'], '.2f')}/{f(s['latency_p95_s'], '.2f')}"
    return (f"{s['label']:<9}{'on' if s['vad'] else 'off':>4}{s['calls']:>4}{s['audio_in_s']:>8.0f}"
            f"{f(s['decoded_fraction'] and 100 * s['decoded_fraction'], '.0f'):>5}"
            f"{f(s['lag_max_s'], '.2f'):>7}{f(s['lag_p95_s'], '.2f'):>6}{f(s['client_slip_max_s'], '.2f'):>6}"
            f"{s['utterances'] - s['utterances_missing']:>5}/{s['utterances']:<4}{f(s['audio_diff_s'], '.2f'):>7}"
            f" {lat:>11}{f(s['gw_cpu_per_decoded_s'], '.3f'):>7}{f(s['vosk_decode_per_decoded_s'], '.3f'):>7}"
            f"{f(s['raw_ref_rtf'], '.3f'):>7}{f(s['overhead_in_gateway'] and 100 * s['overhead_in_gateway'], '+.0f'):>6}"
            f"{f(s['gw_cores'], '.2f'):>6}{f(s['client_cores'], '.2f'):>5}{f(s['other_cores'], '.2f'):>6}"
            f"{f(s['rss_per_call_mb'], '.1f'):>6}  {'PASS' if s['pass'] else 'FAIL'}"
            + ("" if s["drop_ok"] else " (drops/errors)"))


STEP_HEADER = (f"{'step':<9}{'vad':>4}{'N':>4}{'in_s':>8}{'dec%':>5}{'lagmx':>7}{'lag95':>6}{'slip':>6}"
               f"{'finals':>10}{'diff':>7}{'p50/p95 s':>12}{'cpu/s':>7}{'vosk/s':>7}{'raw/s':>7}{'ovh%':>6}"
               f"{'gwC':>6}{'cli':>5}{'oth':>6}{'MB/c':>6}  result")


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
def ref_keys(raw: dict) -> tuple[str, str]:
    """The raw passes the gateway's CPU is set against (VAD on, off): its own graph's."""
    if "gated_2t_static" in raw:
        return "gated_2t_static", "ungated_2t_static"
    return "gated_2t_warm", "ungated_2t_warm"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, nargs="+", metavar="N",
                    help="ramp exactly these N, no extension or bisection (default: 8 16 24 ... 64, on by 8 up "
                         "to 160 while steps pass, then bisect between the last pass and the first failure)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 15 s steps from N 4 and 8, about 5 min")
    ap.add_argument("--step-seconds", type=float, help="length of every simulated call (default 40, quick 15)")
    ap.add_argument("--pool", type=int, help="recordings drawn from callers-dev (default 32, quick 16)")
    ap.add_argument("--scripts", type=int, help="distinct call scripts, call i plays script i %% K (default 8, quick 4)")
    ap.add_argument("--max-minutes", type=float, help="time budget for starting new phases (default 16, quick 4)")
    ap.add_argument("--warm", type=int, help="recognizers the gateway warms at start, its pool size (default 48, "
                    "quick 24); calls beyond them get fresh recognizers")
    ap.add_argument("--workers", type=int, default=0, help="GATEWAY_RECOGNIZER_WORKERS (default 0: one per core)")
    ap.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a gateway setting for the load phase, e.g. --set recognize_batch_ms=200 (repeatable)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--no-vad-off", action="store_true", help="skip the VAD-off comparison")
    ap.add_argument("--partials", action="store_true",
                    help="also time raw Vosk with PartialResult after every message (what partials can cost)")
    args = ap.parse_args(argv)
    q = args.quick
    args.step_seconds = args.step_seconds or (15.0 if q else 40.0)
    args.pool = args.pool or (16 if q else 32)
    args.scripts = max(2, args.scripts or (4 if q else 8))
    args.max_minutes = args.max_minutes or (4.0 if q else 16.0)
    args.warm = args.warm if args.warm is not None else (24 if q else 48)
    args.explicit_calls = bool(args.calls)
    args.calls = sorted(set(args.calls)) if args.calls else ([4, 8] if q else [8, 16, 24, 32, 40, 48, 56, 64])
    return args


async def ramp(args: argparse.Namespace, data_dir: Path, scripts: list[CallPlan], warm_scripts: list[CallPlan],
               raw: dict, deadline: float, servers: list[Server], raw_pool: RawPool) -> dict:
    on_key, off_key = ref_keys(raw)
    ref_on, ref_off = raw[on_key]["per_script"], raw[off_key]["per_script"]
    step_cost = args.step_seconds + 12.0
    out: dict[str, Any] = {"steps": [], "notes": []}
    env = {"GATEWAY_VAD_ENABLED": "true", "GATEWAY_WARMUP_AUDIO_DIR": str(WARMUP_DIR),
           "GATEWAY_RECOGNIZER_POOL_SIZE": str(max(args.warm, 1)), "GATEWAY_WARMUP_RECOGNIZERS": str(max(args.warm, 1))}
    if args.workers:
        env["GATEWAY_RECOGNIZER_WORKERS"] = str(args.workers)
    env.update(set_env(args))

    def reserve() -> float:  # what must still fit after a ramp step: latency step, VAD-off, closing baseline
        vad_off = 0.0 if args.no_vad_off else step_cost + 15.0
        return vad_off if args.quick else step_cost + vad_off + 30.0

    server = Server(data_dir, args.port or free_port(), env, "vad-on")
    servers.append(server)
    log(f"starting gateway on {server.addr} (VAD on)")
    out["server_start_s"] = r(server.start(), 2)
    out["server_rss_after_start_mb"] = r(server.rss() / 2 ** 20, 1)
    out["warmup_s"] = r(await wait_warm(server), 1)
    log(f"gateway pool warm: {args.warm} recognizers in {out['warmup_s']} s")
    warm = await run_step(server, "warmup", 2, warm_scripts, {}, True)
    log(f"warm-up: {step_line(warm)}")
    if not warm["drop_ok"]:
        out["notes"].append(f"warm-up had errors: {warm['errors']}")
    await asyncio.sleep(1.0)
    idle_ref = server.rss()
    out["idle_rss_mb"] = r(idle_ref / 2 ** 20, 1)

    tried: dict[int, dict] = {}
    largest = 0

    def concurrent_ref(st: dict, n: int, label: str, vad: bool) -> None:
        """Overhead against raw Vosk decoding the very same calls at the same concurrency."""
        plans = [call_from_script(scripts[i % len(scripts)], i, i // len(scripts), label) for i in range(n)]
        t0 = time.monotonic()
        st["raw_ref_rtf"] = r(raw_pool.rtf(plans, vad), 4)
        st["overhead"] = r(st["gw_cpu_per_decoded_s"] / st["raw_ref_rtf"] - 1 if st["gw_cpu_per_decoded_s"] else None, 3)
        log(f"  raw Vosk, same {n} calls concurrently: {st['raw_ref_rtf']} s/s ({time.monotonic() - t0:.0f} s)")

    async def step(n: int, label: str) -> dict:
        nonlocal largest
        log(f"step {label}: {n} calls x {args.step_seconds:.0f} s")
        st = await run_step(server, label, n, scripts, ref_on, True, idle_ref, rss_valid=n >= largest)
        largest = max(largest, n)
        concurrent_ref(st, n, label, True)
        out["steps"].append(st)
        log(step_line(st))
        return st

    lo, hi = 0, None  # largest passing N, smallest failing N
    queue = list(args.calls)
    while queue:
        n = queue.pop(0)
        if tried and time.monotonic() + step_cost + reserve() > deadline:  # the first step always runs
            out["notes"].append(f"ramp stopped before N={n}: time budget")
            break
        st = tried[n] = await step(n, f"ramp{n}")
        if not st["pass"]:
            hi = n
            break
        lo = n
        if not queue and not args.explicit_calls and n < 160:
            queue.append(n + 8)
    bisections = 0
    while (hi is not None and hi - lo >= 2 and bisections < 2 and not args.quick and not args.explicit_calls
           and time.monotonic() + step_cost + reserve() <= deadline):
        n = (lo + hi) // 2
        bisections += 1
        st = tried[n] = await step(n, f"bisect{n}")
        lo, hi = (n, hi) if st["pass"] else (lo, n)
    out["sustained"] = lo
    out["sustained_step"] = tried.get(lo)

    # Latency (and CPU overhead) at ~80 % of the sustained capacity.
    lat_step = None
    if lo:
        n80 = max(1, int(round(0.8 * lo)))
        lat_step = tried.get(n80)
        if lat_step is None and not args.quick and time.monotonic() + reserve() <= deadline:
            lat_step = tried[n80] = await step(n80, f"lat{n80}")
        if lat_step is None:  # no time for a step of its own: the largest passing step below 80 %
            below = [k for k in tried if k <= n80 and tried[k]["pass"]]
            lat_step = tried[max(below)] if below else None
    else:
        out["notes"].append("no N sustained: latency at 80 % of capacity not measured")
    out["latency_step"] = lat_step
    server.stop()

    # The sustained N once more, with VAD gating off.
    if not args.no_vad_off:
        n_off = lo or min(args.calls)
        if time.monotonic() + step_cost + 15.0 > deadline:
            out["notes"].append("VAD-off step skipped: time budget")
        else:
            off = Server(data_dir, args.port or free_port(), dict(env, GATEWAY_VAD_ENABLED="false",
                         GATEWAY_WARMUP_RECOGNIZERS=str(min(max(args.warm, 1), n_off))), "vad-off")
            servers.append(off)
            log(f"restarting gateway with VAD off on {off.addr}")
            off.start()
            await wait_warm(off)
            await run_step(off, "warmup", 2, warm_scripts, {}, False)
            await asyncio.sleep(1.0)
            idle_off = off.rss()
            log(f"step vadoff{n_off}: {n_off} calls x {args.step_seconds:.0f} s")
            st = await run_step(off, f"vadoff{n_off}", n_off, scripts, ref_off, False, idle_off)
            concurrent_ref(st, n_off, f"vadoff{n_off}", False)
            out["steps"].append(st)
            out["vad_off_step"] = st
            log(step_line(st))
            off.stop()
    return out


def report(args: argparse.Namespace, raw: dict, raw_end: dict | None, bd: dict | None, load: dict,
           pool_info: dict, elapsed: float) -> dict:
    cores = psutil.cpu_count() or 1

    # The machine drifts: when the baseline was repeated after the load phase, use the mean of both.
    drift = {}
    for key in ("ungated_2t", "gated_2t", "ungated_2t_warm", "gated_2t_warm", "ungated_2t_static", "gated_2t_static"):
        drift[key] = 1.0
        if raw_end and key in raw_end:
            idx = list(raw_end[key]["per_script"])
            before = sum(raw[key]["per_script"][i][0] for i in idx)
            drift[key] = sum(raw_end[key]["per_script"][i][0] for i in idx) / before if before else 1.0
    adj = {k: (1 + f) / 2 for k, f in drift.items()}
    rtf1 = raw["ungated_1t"]["rtf"]
    rtf2 = raw["ungated_2t"]["rtf"] * adj["ungated_2t"]
    rtf2_warm = raw["ungated_2t_warm"]["rtf"] * adj["ungated_2t_warm"]
    on_key, off_key = ref_keys(raw)
    ref_on = raw[on_key]["rtf"] * adj[on_key]
    ref_off = raw[off_key]["rtf"] * adj[off_key]
    per_core = 1 / rtf1
    ceiling = cores / rtf2
    ceiling_warm = cores / rtf2_warm
    static = "ungated_2t_static" in raw
    rtf2_static = raw["ungated_2t_static"]["rtf"] * adj["ungated_2t_static"] if static else None
    ceiling_static = cores / rtf2_static if rtf2_static else None
    # The target's baseline: raw Vosk on the graph the gateway decodes on.
    ceiling_ref = ceiling_static or ceiling
    steps = load.get("steps", [])
    for s in steps:  # overhead against warm raw Vosk on exactly the scripts the step's calls played
        if s["raw_ref_rtf"]:
            ref = s["raw_ref_rtf"] * adj[on_key if s["vad"] else off_key]
            s["raw_ref_rtf"] = r(ref, 4)
            s["overhead"] = r(s["gw_cpu_per_decoded_s"] / ref - 1, 3) if s["gw_cpu_per_decoded_s"] else None
    sustained_n = load.get("sustained", 0)
    sus = load.get("sustained_step")
    lat = load.get("latency_step")
    off = load.get("vad_off_step")
    first = next((s for s in steps if s["vad"] and s["label"].startswith("ramp")), None)
    # CPU per decoded second: from the busiest VAD-on step that lost nothing (fixed costs such as
    # the /metrics polling weigh too much with one or two calls; lagging does not change CPU per second).
    ref_step = max((s for s in steps if s["vad"] and s["drop_ok"] and s["gw_cpu_per_decoded_s"]),
                   key=lambda s: s["calls"], default=None) or lat or sus or first
    rss_step = max((s for s in steps if s["vad"] and s["rss_per_call_mb"] is not None
                    and (s["pass"] or s is first)), key=lambda s: s["calls"], default=None)
    overhead = ref_step["overhead_in_gateway"] if ref_step else None
    p95 = lat["latency_p95_s"] if lat else None
    ok_steps = [s for s in steps if s["vad"] and s["calls"] <= sustained_n]
    zero_drop = bool(ok_steps) and all(s["drop_ok"] for s in ok_steps)
    gating_saving = None
    if sus and off and sus["gw_cpu_per_audio_in_s"] and off["gw_cpu_per_audio_in_s"]:
        gating_saving = 1 - sus["gw_cpu_per_audio_in_s"] / off["gw_cpu_per_audio_in_s"]
    cap_ratio = sustained_n / ceiling_ref if ceiling_ref else None
    cap_ratio_shipped = sustained_n / ceiling if ceiling else None
    cap_ratio_warm = sustained_n / ceiling_warm if ceiling_warm else None
    # The same comparison in CPU terms, which other processes on the machine do not distort.
    cpu_cap = cores / ref_step["gw_cpu_per_audio_in_s"] if ref_step and ref_step["gw_cpu_per_audio_in_s"] else None
    other = [s["other_cores"] for s in steps if s["other_cores"] is not None]
    other_mean = sum(other) / len(other) if other else 0.0

    def pf(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    D = args.step_seconds
    print()
    print(f"gateway ASR load benchmark ({'quick' if args.quick else 'full'}): {cores} cores, {elapsed / 60:.1f} min, "
          f"{pool_info['recordings']} recordings (mean {pool_info['mean_s']} s), calls of {D:.0f} s, "
          f"speech {raw['speech_fraction']:.0%} of call time")
    print()
    print(f"raw Vosk in process, thread CPU per second of audio fed                     RTF    streams/core")
    print(f"fresh recognizer per {D:.0f}-s call (as vosk-server: one per connection):")
    print(f"  1 thread,  all call audio                                                   {rtf1:.3f}  {1 / rtf1:6.2f}")
    u2 = raw["ungated_2t"]
    print(f"  2 threads, all call audio                                                   {u2['rtf']:.3f}  "
          f"{1 / u2['rtf']:6.2f}   wall: {u2['wall_streams']:.1f} streams")
    g2 = raw["gated_2t"]
    print(f"  2 threads, gated audio only ({raw['gated_fraction']:.0%} of call audio, the gateway's own VAD)       "
          f"{g2['rtf']:.3f}   one AcceptWaveform p99 {g2['chunk_p99_ms']:.0f} ms, max {g2['chunk_max_ms']:.0f} ms")
    if "gated_2t_partials" in raw:
        gp = raw["gated_2t_partials"]["rtf"]
        print(f"  2 threads, gated + PartialResult (words) per message, upper bound of partials {gp:.3f}  "
              f"({raw['partials_cost']:+.0%})")
    uw, gw = raw["ungated_2t_warm"], raw["gated_2t_warm"]
    print(f"warm recognizers (warmed on {WARMUP_DIR.name}/ speech, Reset() between calls, as the gateway's pool):")
    print(f"  2 threads, all call audio                                                   {uw['rtf']:.3f}  "
          f"{1 / uw['rtf']:6.2f}")
    print(f"  2 threads, gated audio only                                                 {gw['rtf']:.3f}   "
          f"one AcceptWaveform p99 {gw['chunk_p99_ms']:.0f} ms, max {gw['chunk_max_ms']:.0f} ms")
    if raw_end:
        print(f"  repeated after the load phase: all audio {drift['ungated_2t'] - 1:+.0%}, gated "
              f"{drift['gated_2t'] - 1:+.0%} (same scripts); the references below use the mean")
    print(f"  raw ceiling: {per_core:.2f} streams/core (1 thread); {cores} cores x {1 / rtf2:.2f} (2 threads) "
          f"= {ceiling:.1f} real-time streams; with warm recognizers {cores} x {1 / rtf2_warm:.2f} = "
          f"{ceiling_warm:.1f}")
    if static:
        us, gs = raw["ungated_2t_static"], raw["gated_2t_static"]
        print(f"static graph (compiled once from the model's two halves, as the gateway decodes; a recognizer per call):")
        print(f"  2 threads, all call audio                                                   {us['rtf']:.3f}  "
              f"{1 / us['rtf']:6.2f}")
        print(f"  2 threads, gated audio only                                                 {gs['rtf']:.3f}   "
              f"one AcceptWaveform p99 {gs['chunk_p99_ms']:.0f} ms, max {gs['chunk_max_ms']:.0f} ms")
        print(f"  static ceiling: {cores} x {1 / rtf2_static:.2f} = {ceiling_static:.1f} real-time streams "
              f"({ceiling_static / ceiling:.1f}x the shipped graph's, {ceiling_static / ceiling_warm:.1f}x warm)")
    if bd:
        print(f"  gateway audio path outside Vosk per 20 ms frame: twilio JSON+base64 {fmt(bd.get('twilio_parse_us'), '.0f')} us,"
              f" decode+resample {bd['audio_input_novad_us']:.0f} us, VAD {bd['vad_us']:.0f} us, executor hop "
              f"{bd['executor_hop_us']:.0f} us")
    print()
    print(STEP_HEADER)
    for s in steps:
        print(step_line(s))
    print("  lagmx/lag95: max/p95 of gateway_decode_lag_seconds; slip: max client send lateness (s); finals: utterances with a final")
    print("  transcript / sent; diff: gateway audio_seconds_in - audio sent (s); p50/p95: end of speech -> final (s);")
    print("  cpu/s: gateway CPU s per decoded audio s; vosk/s: of which inside Vosk decoding (the gateway's own count);")
    print("  raw/s: raw Vosk decoding the same N calls concurrently, N warm recognizers round-robin per message in 2")
    print("  threads (a cross-check of vosk/s); ovh%: cpu/s over vosk/s - 1, all the gateway adds; gwC/cli/oth: cores")
    print("  used by the gateway / this client / other processes while all calls stream; MB/c: (peak RSS - idle) / N")
    for note in load.get("notes", []):
        print(f"  note: {note}")
    if ref_step:
        print(f"  where the gateway's CPU goes at N={ref_step['calls']}: event loop "
              f"{fmt(ref_step['loop_cpu_per_audio_in_s'], '.3f')} s per call-audio s; recognizer threads "
              f"{fmt(ref_step['threads_cpu_per_decoded_s'], '.3f')} s per decoded s (raw {fmt(ref_step['raw_ref_rtf'], '.3f')})")
    print()
    rows = [
        ("raw Vosk ceiling, model as shipped", f"{ceiling:.1f} streams", f"fresh recognizer per call, as vosk-server", ""),
        ("raw Vosk ceiling, shipped, warm", f"{ceiling_warm:.1f} streams", "warm recognizers reused", ""),
        *([("raw Vosk ceiling, static graph", f"{ceiling_static:.1f} streams", "the gateway's graph: the baseline", "")]
          if static else []),
        ("sustained calls, VAD on", f"{sustained_n}", f"{fmt(cap_ratio, '.2f')}x raw ceiling" + (
            f"; {fmt(cap_ratio_shipped, '.2f')}x shipped, {fmt(cap_ratio_warm, '.2f')}x shipped warm" if static
            else f"; {fmt(cap_ratio_warm, '.2f')}x warm ceiling"),
         f">= {TARGET_CAPACITY_RATIO}x   {pf(cap_ratio is not None and cap_ratio >= TARGET_CAPACITY_RATIO)}"),
        (f"same N={off['calls']}, VAD off" if off else "VAD off",
         (("sustained" if off["pass"] else f"not sustained (lag {fmt(off['lag_max_s'], '.1f')} s)") if off else "-"),
         f"gating saves {gating_saving:.0%} CPU per call-s" if gating_saving is not None else "", ""),
        (f"gateway CPU overhead (N={ref_step['calls']})" if ref_step else "gateway CPU overhead",
         f"{fmt(overhead and 100 * overhead, '+.0f')} %",
         f"{fmt(ref_step and ref_step['gw_cpu_per_decoded_s'], '.3f')} vs Vosk decoding "
         f"{fmt(ref_step and ref_step['vosk_decode_per_decoded_s'], '.3f')} s/s (raw {fmt(ref_step and ref_step['raw_ref_rtf'], '.3f')})",
         f"<= {TARGET_OVERHEAD:.0%}   {pf(None if overhead is None else overhead <= TARGET_OVERHEAD)}"),
        (f"end of speech -> final (N={lat['calls']})" if lat else "end of speech -> final",
         f"p50 {fmt(lat and lat['latency_p50_s'], '.2f')} p95 {fmt(p95, '.2f')} s",
         f"VAD endpointing alone: p50 {fmt(raw.get('endpoint_floor_p50_s'), '.2f')} p95 "
         f"{fmt(raw.get('endpoint_floor_p95_s'), '.2f')} s",
         f"p95 <= {TARGET_P95_S} s {pf(None if p95 is None else p95 <= TARGET_P95_S)}"),
        ("CPU-based capacity (cores / CPU per call)", f"{fmt(cpu_cap, '.1f')} calls",
         f"{fmt(cpu_cap and cpu_cap / ceiling_ref, '.2f')}x raw ceiling",
         f"(other processes used {other_mean:.2f} cores)"),
        ("dropped audio (steps N <= sustained)", "none" if zero_drop else ("-" if not ok_steps else "SOME"), "",
         f"zero      {pf(zero_drop if ok_steps else None)}"),
        (f"RSS per call (N={rss_step['calls']})" if rss_step else "RSS per call",
         f"{fmt(rss_step and rss_step['rss_per_call_mb'], '.1f')} MB", f"idle {fmt(load.get('idle_rss_mb'), '.0f')} MB", ""),
    ]
    print(f"{'figure':<42}{'value':<26}{'ratio / baseline':<44}target")
    for name, value, ratio, target in rows:
        print(f"{name:<42}{value:<26}{ratio:<44}{target}")
    summary = {
        "mode": "quick" if args.quick else "full", "cores": cores, "elapsed_s": round(elapsed, 1),
        "call_seconds": D, "pool": pool_info, "speech_fraction": r(raw["speech_fraction"], 3),
        "raw": {
            "rtf_1t": r(rtf1, 4), "rtf_2t": r(u2["rtf"], 4), "rtf_gated_2t": r(raw["gated_2t"]["rtf"], 4),
            "partials_cost": r(raw.get("partials_cost"), 3),
            "rtf_2t_warm": r(raw["ungated_2t_warm"]["rtf"], 4), "rtf_gated_2t_warm": r(raw["gated_2t_warm"]["rtf"], 4),
            "ceiling_streams_warm": r(ceiling_warm, 2),
            "accept_p99_ms": r(raw["gated_2t"]["chunk_p99_ms"], 1), "accept_max_ms": r(raw["gated_2t"]["chunk_max_ms"], 1),
            "accept_p99_ms_warm": r(raw["gated_2t_warm"]["chunk_p99_ms"], 1),
            "accept_max_ms_warm": r(raw["gated_2t_warm"]["chunk_max_ms"], 1),
            "ref_vad_on": r(ref_on, 4), "ref_vad_off": r(ref_off, 4),
            "gated_fraction": r(raw["gated_fraction"], 3),
            "endpoint_floor_p50_s": r(raw.get("endpoint_floor_p50_s")),
            "endpoint_floor_p95_s": r(raw.get("endpoint_floor_p95_s")),
            "streams_per_core": r(per_core, 2), "ceiling_streams": r(ceiling, 2),
            "rtf_2t_static": r(rtf2_static, 4), "rtf_gated_2t_static": r(raw["gated_2t_static"]["rtf"], 4) if static else None,
            "ceiling_streams_static": r(ceiling_static, 2),
            "wall_streams_2t": r(u2["wall_streams"], 2),
        },
        "breakdown_us_per_frame": {k: (r(v, 1) if isinstance(v, float) else v) for k, v in (bd or {}).items()},
        "sustained_calls": sustained_n, "capacity_ratio": r(cap_ratio, 3), "capacity_ratio_shipped": r(cap_ratio_shipped, 3),
        "capacity_ratio_warm": r(cap_ratio_warm, 3), "static_graph": static,
        "warmup_s": load.get("warmup_s"), "warm_recognizers": args.warm,
        "cpu_capacity_calls": r(cpu_cap, 2), "cpu_capacity_ratio": r(cpu_cap / ceiling_ref if cpu_cap else None, 3),
        "other_processes_cores_mean": r(other_mean, 2), "baseline_drift": {k: r(v - 1, 3) for k, v in drift.items()},
        "overhead": overhead, "overhead_calls": ref_step["calls"] if ref_step else None,
        "overhead_vs_raw_same_calls": ref_step["overhead"] if ref_step else None,
        "latency_calls": lat["calls"] if lat else None,
        "latency_p50_s": lat["latency_p50_s"] if lat else None, "latency_p95_s": p95,
        "rss_per_call_mb": rss_step["rss_per_call_mb"] if rss_step else None,
        "rss_calls": rss_step["calls"] if rss_step else None, "idle_rss_mb": load.get("idle_rss_mb"),
        "gating_cpu_saving": r(gating_saving, 3),
        "vad_off": {k: off[k] for k in ("calls", "pass", "lag_max_s", "gw_cores", "gw_cpu_per_audio_in_s",
                                         "overhead", "latency_p95_s", "utterances_missing")} if off else None,
        "targets": {
            "overhead_le_10pct": None if overhead is None else overhead <= TARGET_OVERHEAD,
            "capacity_ge_1_5x_raw": cap_ratio is not None and cap_ratio >= TARGET_CAPACITY_RATIO,
            "p95_le_0_8s": None if p95 is None else p95 <= TARGET_P95_S,
            "zero_dropped_audio": zero_drop if ok_steps else None,
        },
        "steps": [{k: v for k, v in s.items() if k != "errors"} | {"errors": s["errors"][:2]} for s in steps],
        "notes": load.get("notes", []),
    }
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    data_dir = Path(tempfile.mkdtemp(prefix="asr_load_"))
    servers: list[Server] = []

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        model_dir = fetch_model(data_dir)
        vosk, model = load_vosk(model_dir)
        static_dir = static_graph_dir(model_dir, args)
        static_model = vosk.Model(str(static_dir)) if static_dir else None
        pool = load_candidates(args.seed)[: args.pool]
        # Only recordings Vosk hears text in, else "no final transcript" would not mean lost audio;
        # only the ones the scripts use are checked.
        deaf: set[str] = set()
        checked: set[str] = set()
        while True:
            usable = [u for u in pool if u.name not in deaf]
            if len(usable) < 4:
                raise SystemExit("too few recordings with a transcript")
            scripts = make_scripts(usable, args.step_seconds, args.scripts, args.seed)
            warm_scripts = make_scripts(usable, 5.0 if args.quick else 8.0, 2, args.seed + 1)
            used = {n for sc in scripts + warm_scripts for n in sc.names} - checked
            if not used:
                break
            todo = [u for u in usable if u.name in used]
            heard = {u.name for u in check_pool(vosk, model, todo, args.seed)}
            checked |= used
            deaf |= used - heard
        used_all = {n for sc in scripts for n in sc.names}
        pool_info = {"recordings": len(used_all), "rejected_no_text": len(deaf),
                     "mean_s": r(float(np.mean([u.seconds for u in pool if u.name in used_all])), 2)}
        log(f"raw Vosk baseline: {len(scripts)} call scripts of {args.step_seconds:.0f} s, {len(used_all)} "
            f"recordings ({model_dir.name})")
        from gateway.calls.speech_service import load_warmup_speech

        warm_pcm = load_warmup_speech(WARMUP_DIR, REC_RATE)
        raw = raw_baseline(vosk, model, scripts, warm_pcm, one_thread=1 if args.quick else 2,
                           ungated=2 if args.quick else 99, partials=args.partials, static_model=static_model)
        log(f"raw RTF: all audio 1t {raw['ungated_1t']['rtf']:.3f}, 2t {raw['ungated_2t']['rtf']:.3f}, warm 2t "
            f"{raw['ungated_2t_warm']['rtf']:.3f}; gated 2t {raw['gated_2t']['rtf']:.3f}, warm 2t "
            f"{raw['gated_2t_warm']['rtf']:.3f}")
        bd = None
        try:
            bd = breakdown(usable, args.seed, 8.0 if args.quick else 20.0)
        except Exception as exc:  # noqa: BLE001 - informative only
            log(f"breakdown skipped: {exc!r}")
        # The cross-check decodes on the gateway's graph; static recognizers need no warming.
        raw_pool = RawPool(vosk, static_model, b"") if static_model else RawPool(vosk, model, warm_pcm)
        load = asyncio.run(ramp(args, data_dir, scripts, warm_scripts, raw, deadline, servers, raw_pool))
        del raw_pool
        for s in servers:
            s.stop()
        raw_end = None
        if not args.quick and time.monotonic() + 25 < deadline + 30:
            log("closing raw baseline (drift check)")
            vosk, model = load_vosk(model_dir)
            static_model = vosk.Model(str(static_dir)) if static_dir else None
            raw_end = raw_baseline(vosk, model, scripts[:4], warm_pcm, one_thread=0, partials=False,
                                   static_model=static_model)
            del model, static_model
        report(args, raw, raw_end, bd, load, pool_info, time.monotonic() - started)
        return 0
    except BaseException:
        for s in servers:
            if s.proc is not None or s.log_path.exists():
                log(f"gateway ({s.label}) log, last lines:\n{s.log_tail(25)}")
        raise
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                s.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
