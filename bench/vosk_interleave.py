#!/usr/bin/env python3
"""What decoding many calls at once costs raw Vosk (not a test; CI does not run it).

    .venv/bin/python bench/vosk_interleave.py            # 24 calls, about 6 min
    .venv/bin/python bench/vosk_interleave.py --calls 8

A live gateway cannot decode one call after another: it decodes every call's speech as it
arrives, so recognizers take turns on the CPU. This measures, in one thread and in this
process, the thread CPU per second of speech that raw Vosk spends on the same gated audio
(bench/asr_load.py's call scripts through the gateway's own voice gate) when it is decoded:

- call after call, in the 100 ms pieces the gateway feeds (the baseline);
- in call-time order, as a live gateway must: only the callers speaking at a moment take turns,
  each time with a batch of at least B seconds of one call's speech (an utterance's end ends
  a batch), for B = 0.1, 0.4 and 2 s, and whole utterances.

Printed as ratios against the baseline of the same run (the machine is shared and noisy).
Needs the static graph (`gateway model fetch` compiles it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asr_load as load  # noqa: E402  (the load benchmark's call scripts and model paths)
from gateway.model.graph import is_compiled, static_model_path  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from speech.vad import SpeechAudio, SpeechEnd  # noqa: E402

WHOLE_UTTERANCE = float("inf")
Unit = tuple[float, int, bytes | None]  # (call time it is complete, call, speech or None for the utterance's end)


def units(plan: Any, events: list[list[Any]], batch_s: float) -> list[Unit]:
    """One call's gated audio cut into batches of at least `batch_s`, each stamped with the call
    time its last message arrives (20 ms Twilio frames, 100 ms vosk-server chunks)."""
    message_s = load.FRAME_S if plan.kind == "twilio" else load.ASR_CHUNK_S
    out: list[Unit] = []
    pending: list[bytes] = []
    size = 0
    for k, batch in enumerate(events):
        t = (k + 1) * message_s
        for event in batch:
            if isinstance(event, SpeechAudio):
                pending.append(event.pcm16)
                size += len(event.pcm16)
            elif isinstance(event, SpeechEnd):
                if pending:
                    out.append((t, plan.index, b"".join(pending)))
                    pending, size = [], 0
                out.append((t, plan.index, None))
        if size >= batch_s * 2 * load.REC_RATE:
            out.append((t, plan.index, b"".join(pending)))
            pending, size = [], 0
    if pending:
        out.append((float("inf"), plan.index, b"".join(pending)))
    return out


def cpu_per_speech_second(recs: list[Any], work: list[Unit]) -> float:
    for rec in recs:
        rec.Reset()
    speech = 0.0
    t0 = time.thread_time()
    for _, call, pcm in work:
        if pcm is None:
            recs[call].FinalResult()
        else:
            speech += len(pcm) / 2 / load.REC_RATE
            if recs[call].AcceptWaveform(pcm):
                recs[call].Result()
    for rec in recs:
        rec.FinalResult()
    return (time.thread_time() - t0) / speech


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=40.0, help="length of every call")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args(argv)

    model_dir = load.MODEL_CACHE / Settings().model_name
    if not is_compiled(model_dir):
        raise SystemExit(f"no static graph for {model_dir}: run `gateway model fetch` first")
    vosk, model = load.load_vosk(static_model_path(model_dir))
    pool = load.load_candidates(args.seed)[:32]
    scripts = load.make_scripts(pool, args.seconds, 8, args.seed)
    plans = [load.call_from_script(scripts[i % 8], i, i // 8, "interleave") for i in range(args.calls)]
    events = [load.call_events(plan, True) for plan in plans]
    recs = [load._new_rec(vosk, model) for _ in plans]

    def schedule(batch_s: float, live: bool) -> list[Unit]:
        work = [u for plan, ev in zip(plans, events) for u in units(plan, ev, batch_s)]
        # stable sort: a call's own batches keep their order
        return sorted(work, key=lambda u: u[0]) if live else work

    modes = [("call after call, 100 ms pieces (baseline)", 0.1, False)] + [
        (f"live order, batches >= {b:g} s", b, True) for b in (0.1, 0.4, 2.0)
    ] + [("live order, whole utterances", WHOLE_UTTERANCE, True)]
    results: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    for _ in range(args.repeats):
        for name, batch_s, live in modes:
            results[name].append(cpu_per_speech_second(recs, schedule(batch_s, live)))
            print(f"  {name}: {results[name][-1]:.4f}", file=sys.stderr, flush=True)

    base = sum(results[modes[0][0]]) / args.repeats
    print(f"\nraw Vosk on the static graph, {args.calls} calls of {args.seconds:g} s, one thread "
          f"(CPU s per s of speech, mean of {args.repeats}):")
    for name, _, _ in modes:
        mean = sum(results[name]) / args.repeats
        print(f"  {name:<45} {mean:.4f}   {mean / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
