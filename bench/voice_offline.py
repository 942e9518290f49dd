#!/usr/bin/env python3
"""Offline voice loop for the claim-report flow: recorded callers, real recognizer, no gateway.

    .venv/bin/python bench/voice_offline.py                  # the 30 recorded callers, failing logs
    .venv/bin/python bench/voice_offline.py --show 3 --ids dev-0003,dev-0017
    .venv/bin/python bench/voice_offline.py --json           # one JSON line of figures only
    .venv/bin/python bench/voice_offline.py --asr-report     # per slot and vocabulary: CER, slot right
    .venv/bin/python bench/voice_offline.py --flow /tmp/x.yaml   # try other hints without editing the flow
    .venv/bin/python bench/voice_offline.py --personas GEN/callers.jsonl --policies GEN/policies.csv \
        --audio var/claims_eval/gen-47/audio     # callers of bench/gen_callers.py, synthesized by claims_eval

1. Every recording the recorded callers of claim_dev.jsonl may say is recognized once per
   vocabulary it may be heard with: the full vocabulary (everything), and each distinct grammar
   the flow file's `hints` define (slots, read-back), built as the gateway builds them
   (`speech.recognizer.grammar_phrases`); a slot's grammar hears that slot's answers. Recognition
   is in-process and follows the gateway's audio path: line noise, the recording, line noise,
   through the voice gate (`speech.pipeline.AudioInput`, the gateway's VAD settings) into
   `speech.recognizer.Recognizer` at 8 kHz in 20 ms frames, free speech on the static graph when
   it is compiled (grammars on the graph as shipped), as the gateway does. First run: in parallel processes,
   several minutes; cached in var/voice_cache/<file>.<grammar hash>.<pipeline>.json.
2. The callers are played through `Dialogue` + the flow's reader (as the gateway binds it) + the dev policy records
   (`RecordIndex`), with simcaller.py's own `Caller` (recorded phrasings only). As with
   simcaller and the gateway, the caller answers every prompt (after hearing it at 6 chars/s),
   its utterances go down one line in order, each is heard with the vocabulary of the last prompt
   when it starts, and every final goes to `Dialogue.on_text(text, confidence)`. A read-back
   correction "<no>，<fix>" is the two recordings with 0.3 s between: when the recognizer ends an
   utterance in that pause (checked once per pair, cached as join.*.json) the bot answers "<no>"
   alone and hears "<fix>" with its next prompt's vocabulary, else the two recognitions joined.
   Nothing heard is a no-input timeout.
3. Prints simcaller's figures (slot/report accuracy, per slot, turns, outcomes), an estimate of
   the call length from that clock (no decoding lag, no TTS: the live figure of
   bench/claims_eval.py runs some 10-20% higher), and the failing calls' logs with what was heard
   and with which vocabulary (free, or the first characters of the grammar's hash).
"""

from __future__ import annotations

import importlib.util
import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")).resolve()
PERSONAS = SHARED / "eval" / "claim_dev.jsonl"
POLICIES = SHARED / "eval" / "policies_dev.csv"
AUDIO = SHARED / "audio" / "callers-dev"
MODEL = ROOT / "var" / "models" / "vosk-model-small-cn-0.22"
CACHE = ROOT / "var" / "voice_cache"
FLOW = ROOT / "config" / "flows" / "claim_report.yaml"

SLOTS = ["reporter_name", "reporter_phone", "relationship", "insured_name", "insured_id_number",
         "incident_date", "incident_type", "hospital", "diagnosis"]
MAX_TURNS = 24
SAMPLE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of 16-bit PCM at 8 kHz
JOIN_SILENCE_S = 0.3
LEAD_NOISE_S = 1.0  # line noise before and after each utterance (the voice gate learns the floor)
TAIL_NOISE_S = 1.2
PIPELINE = "gate1"  # version of the recognition path, part of every cache file name
NO_INPUT_S = 8.0  # the gateway's silence timeout after a prompt
HOLD_FOR_REST_S = 1.2  # gateway.calls.core: how long a bare "no" at the read-back waits for the rest
PROMPT_CPS = 6.0
END_OF_SPEECH_S = 0.8
FREE = "free"


# ---------------------------------------------------------------- simcaller, in substance


def _load_simcaller():
    """The shared simulated caller itself, so this never drifts from what the evaluation plays."""
    spec = importlib.util.spec_from_file_location("simcaller", SHARED / "eval" / "simcaller.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simcaller = _load_simcaller()
slot_ok = simcaller.slot_ok
Caller = simcaller.Caller


# ---------------------------------------------------------------- recordings and recognition


def load_manifest(folder: Path = AUDIO) -> dict[str, str]:
    files = {}
    for line in (folder / "manifest.tsv").read_text(encoding="utf-8").splitlines():
        f, _, text = line.partition("\t")
        if f != "file" and text:
            files[text] = f
    return files


def grammar_key(phrases: tuple[str, ...] | None) -> str:
    if not phrases:
        return FREE
    return hashlib.sha1(json.dumps(list(phrases), ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def flow_grammars(flow) -> dict[str, tuple[str, ...] | None]:
    """Every vocabulary the flow's prompts can set: the full one, and one per distinct hints list."""
    from speech.recognizer import grammar_phrases

    lists = [spec.hints for spec in flow.slots if spec.hints] + ([flow.confirm.hints] if flow.confirm.hints else [])
    grammars: dict[str, tuple[str, ...] | None] = {FREE: None}
    for hints in lists:
        phrases = grammar_phrases(hints)
        grammars[grammar_key(phrases)] = phrases
    return grammars


def static_graph() -> bool:
    """Free speech is decoded on the compiled static graph when there is one, as the gateway does."""
    from gateway.model.graph import is_compiled

    return is_compiled(MODEL)


def pipeline(key: str) -> str:
    # Only free recognition runs on the static graph; grammars stay on the shipped one.
    return PIPELINE + ("-static" if key == FREE and static_graph() else "")


def cache_path(wav: str, key: str) -> Path:
    return CACHE / f"{Path(wav).stem}.{key}.{pipeline(key)}.json"


_MODELS: list = []


def _models() -> tuple:
    """(free speech model, grammar model), loaded once per process."""
    if not _MODELS:
        from gateway.model.graph import static_model_path
        from speech.recognizer import load_model

        shipped = load_model(MODEL)
        _MODELS.extend([load_model(static_model_path(MODEL)) if static_graph() else shipped, shipped])
    return _MODELS[0], _MODELS[1]


def _noise(seconds: float, seed: int) -> bytes:
    """The line between utterances: faint noise, as simcaller sends it."""
    import random
    import struct

    rng = random.Random(seed)
    n = int(seconds * SAMPLE_RATE)
    return struct.pack(f"<{n}h", *(rng.randint(-24, 24) for _ in range(n)))


def _pcm(wav: str) -> bytes:
    from speech.codecs import decode
    from speech.wavfile import read_wav

    encoding, rate, channels, payload = read_wav(AUDIO / wav)
    assert rate == SAMPLE_RATE and channels == 1, (wav, rate, channels)
    return decode(encoding, payload)


def _stream(pcm: bytes, phrases: tuple[str, ...] | None) -> list:
    """Finals for one utterance as the gateway hears it: line noise, the utterance, line noise,
    through the voice gate (speech.pipeline.AudioInput, the gateway's VAD settings) into the
    recognizer at 8 kHz, 20 ms frames; a final at each recognizer endpoint and each gate end."""
    from speech.codecs import Encoding
    from speech.pipeline import AudioInput
    from speech.recognizer import Recognizer
    from speech.vad import SpeechAudio, SpeechEnd, VadConfig

    gate = AudioInput(Encoding.PCM16, SAMPLE_RATE, SAMPLE_RATE, VadConfig(
        preroll_ms=300, trailing_silence_ms=600, hangover_ms=200, max_utterance_s=20.0))
    free, grammar = _models()
    rec = Recognizer(free, SAMPLE_RATE, phrases=phrases, grammar_model=grammar)
    stream = _noise(LEAD_NOISE_S, 1) + pcm + _noise(TAIL_NOISE_S, 2)
    finals = []

    def handle(events: list) -> None:
        for event in events:
            if isinstance(event, SpeechAudio):
                result = rec.accept(event.pcm16, event.t)
                if result is not None and result.final and result.text:
                    finals.append(result)
            elif isinstance(event, SpeechEnd) and rec.utterance_has_audio:
                result = rec.finish()
                if result.text:
                    finals.append(result)

    for i in range(0, len(stream), FRAME_BYTES):
        handle(gate.feed(stream[i:i + FRAME_BYTES]))
    handle(gate.flush())
    if rec.utterance_has_audio:
        result = rec.finish()
        if result.text:
            finals.append(result)
    return finals


def recognize_file(wav: str, phrases: tuple[str, ...] | None) -> dict:
    """Recognize one recording as the gateway would (see _stream)."""
    pcm = _pcm(wav)
    finals = _stream(pcm, phrases)
    return {
        "file": wav,
        "grammar": grammar_key(phrases),
        "seconds": round(len(pcm) / 2 / SAMPLE_RATE, 3),
        "finals": [{"text": f.text, "confidence": None if f.confidence is None else round(f.confidence, 4)}
                   for f in finals],
    }


def join_split(no_wav: str, fix_wav: str) -> bool:
    """Does the gateway end an utterance between the two parts of a correction ("不是" + 0.3 s +
    "叶艳")? Its recognizer ends one after 0.5 s of silence, and the recordings have some of their
    own. Then "不是" is answered alone and the fix heard with the next prompt's vocabulary.
    Decided on the full vocabulary; cached in var/voice_cache/join.<no>.<fix>.<version>.json."""
    path = CACHE / f"join.{Path(no_wav).stem}.{Path(fix_wav).stem}.{pipeline(FREE)}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))["split"]
    no_pcm = _pcm(no_wav)
    pcm = no_pcm + b"\x00\x00" * int(JOIN_SILENCE_S * SAMPLE_RATE) + _pcm(fix_wav)
    finals = _stream(pcm, None)
    boundary = LEAD_NOISE_S + len(no_pcm) / 2 / SAMPLE_RATE + JOIN_SILENCE_S
    split = len(finals) >= 2 and finals[0].end is not None and finals[0].end <= boundary + 0.05
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"split": split, "finals": [[f.text, f.start, f.end] for f in finals],
                                "boundary": boundary}, ensure_ascii=False), encoding="utf-8")
    return split


def _work(job: tuple[str, tuple[str, ...] | None]) -> dict:
    wav, phrases = job
    result = recognize_file(wav, phrases)
    path = cache_path(wav, result["grammar"])
    path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return result


class Heard:
    """Cached recognitions: (recording, grammar) -> finals."""

    def __init__(self, files: dict[str, str], grammars: dict[str, tuple[str, ...] | None]) -> None:
        self.files = files
        self.grammars = grammars
        self.memo: dict[tuple[str, str], dict] = {}

    def warm(self, jobs_wanted: dict[str, set[str]], workers: int) -> None:
        """Recognize (in parallel) what is not cached yet: grammar key -> texts."""
        CACHE.mkdir(parents=True, exist_ok=True)
        jobs = [(self.files[t], self.grammars[key]) for key, texts in jobs_wanted.items() for t in sorted(texts)
                if not cache_path(self.files[t], key).exists()]
        if not jobs:
            return
        started = time.monotonic()
        print(f"recognizing {len(jobs)} (recording, grammar) pairs with {workers} processes ...", file=sys.stderr)
        if workers <= 1:
            for job in jobs:
                _work(job)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for i, _ in enumerate(pool.map(_work, jobs, chunksize=4), 1):
                    if i % 100 == 0:
                        print(f"  {i}/{len(jobs)}", file=sys.stderr)
        print(f"  done in {time.monotonic() - started:.0f} s", file=sys.stderr)

    def one(self, text: str, key: str) -> dict:
        wav = self.files[text]
        if (wav, key) not in self.memo:
            path = cache_path(wav, key)
            if path.exists():
                self.memo[wav, key] = json.loads(path.read_text(encoding="utf-8"))
            else:
                CACHE.mkdir(parents=True, exist_ok=True)
                self.memo[wav, key] = _work((wav, self.grammars[key]))
        return self.memo[wav, key]

    def units(self, text: str) -> list[str]:
        """What the gateway hears as separate utterances when the caller says `text`: a correction
        "<no>，<fix>" is two when the recognizer ends an utterance between them (join_split)."""
        head, sep, tail = text.partition("，")
        if text not in self.files and sep and head in self.files and tail in self.files:
            if join_split(self.files[head], self.files[tail]):
                return [head, tail]
        return [text]

    def utterance(self, text: str, key: str) -> tuple[list[tuple[str, float | None]], float]:
        """(finals as (text, confidence), seconds of audio) for what the caller says."""
        if text in self.files:
            r = self.one(text, key)
            return [(f["text"], f["confidence"]) for f in r["finals"]], r["seconds"]
        head, sep, tail = text.partition("，")
        if sep and head in self.files and tail in self.files:
            a, b = self.one(head, key), self.one(tail, key)
            words = [f for f in a["finals"] + b["finals"] if f["text"]]
            joined = " ".join(f["text"] for f in words)
            confs = [f["confidence"] for f in words if f["confidence"] is not None]
            confidence = round(sum(confs) / len(confs), 4) if confs else None
            return ([(joined, confidence)] if joined else []), a["seconds"] + JOIN_SILENCE_S + b["seconds"]
        raise KeyError(f"no recording of {text!r}")


# ---------------------------------------------------------------- calls


def personas(files: dict[str, str], limit: int) -> list[dict]:
    lines = PERSONAS.read_text(encoding="utf-8").splitlines()
    ps = [json.loads(line) for line in lines if line.strip()]
    ps = [p for p in ps if all(o in files for v in p["answers"].values() for o in v[:1])]
    return ps[:limit] if limit else ps


def needed(ps: list[dict], files: dict[str, str], flow) -> dict[str, set[str]]:
    """What each vocabulary may have to recognize: grammar key -> recorded texts. The full
    vocabulary hears everything; a slot's grammar hears the answers for that slot (and the
    opening, when the first prompt listens with its slot's hints); the read-back's grammar the
    yes/no and the corrections' parts."""
    from speech.recognizer import grammar_phrases

    def key(hints):
        return grammar_key(grammar_phrases(hints) if hints else None)

    out: dict[str, set[str]] = {FREE: set()}
    for p in ps:
        every = {o for v in p["answers"].values() for o in v if o in files}
        every |= {t for t in (p.get("opening"), p["yes"], p["no"]) if t and t in files}
        out[FREE] |= every
        for spec in flow.slots:
            if spec.hints and spec.name in p["answers"]:
                texts = {o for o in p["answers"][spec.name] if o in files}
                if flow.start_hints and p.get("opening") in files:
                    texts.add(p["opening"])
                out.setdefault(key(spec.hints), set()).update(texts)
        if flow.confirm.hints:
            out.setdefault(key(flow.confirm.hints), set()).update(every)
    return out


def run_call(p: dict, flow, extractor, records, heard: Heard) -> dict:
    """One call as the gateway and simcaller play it: the caller answers every prompt (after
    hearing it at PROMPT_CPS), its utterances go down one line in order, and each is heard with
    the vocabulary of the last prompt the bot gave when it starts; finals reach the dialogue one at
    a time. A clock gives the call's length (what simcaller's median_call_seconds measures)."""
    from collections import deque

    from speech.dialogue.actions import Hangup, Prompt, Report, Transfer
    from speech.dialogue.engine import Dialogue
    from speech.recognizer import grammar_phrases
    from speech.understanding.types import CallContext

    context = CallContext(started_at=datetime.fromisoformat(p["started_at"]), caller_number=p["caller_number"])
    dialogue = Dialogue(flow, extractor, context, records)
    caller = Caller(p, can_say=lambda text: text in heard.files)
    result: dict[str, Any] = {"id": p["id"], "outcome": "timeout", "slots": {}, "log": [], "status": None}
    queue: deque[tuple[str, float, int]] = deque()  # (recorded text, when the caller starts it, log entry)
    state = {"key": FREE, "stop": False, "line_free": 0.0, "end": 0.0}

    def act(actions: list, t: float) -> None:
        for action in actions:
            if state["stop"]:
                return
            if isinstance(action, Report):
                result["slots"], result["status"] = dict(action.slots), action.status
            elif isinstance(action, (Hangup, Transfer)):
                result["outcome"] = "hangup" if isinstance(action, Hangup) else "transfer"
                result["reason"] = action.reason
                state["stop"], state["end"] = True, t
            elif isinstance(action, Prompt):
                if action.slots:
                    result["slots"] = dict(action.slots)
                state["key"] = grammar_key(grammar_phrases(action.hints) if action.hints else None)
                if caller.turns >= MAX_TURNS:
                    result["outcome"] = "too_many_turns"
                    state["stop"], state["end"] = True, t
                    return
                say = caller.answer({"event": "prompt", "text": action.text, "slot": action.slot,
                                     "slots": action.slots})
                caller.turns += 1
                result["log"].append({"bot": action.text, "slot": action.slot, "caller": say, "heard": [],
                                      "grammar": []})
                for unit in heard.units(say):
                    queue.append((unit, t + len(action.text) / PROMPT_CPS, len(result["log"]) - 1))

    act(dialogue.start(), 0.0)
    held: tuple[str, float | None] | None = None  # a bare "no" the gateway waits on (CallCore's hold)
    while queue and not state["stop"]:
        unit, ready, entry = queue.popleft()
        key = state["key"]
        finals, seconds = heard.utterance(unit, key)
        start = max(ready, state["line_free"])
        state["line_free"] = start + seconds
        t = state["line_free"] + END_OF_SPEECH_S
        result["log"][entry]["heard"].append(" ".join(text for text, _ in finals) or "(nothing)")
        result["log"][entry]["grammar"].append(key[:6])
        if not finals and held is None:
            act(dialogue.on_no_input(), ready + NO_INPUT_S)
        for text, confidence in finals:
            if state["stop"]:
                break
            if held is not None:  # the rest of "<no>，<fix>": one answer, as the gateway gives it
                confs = [c for c in (held[1], confidence) if c is not None]
                text, confidence, held = f"{held[0]} ，{text}", min(confs) if confs else None, None
            elif queue and queue[0][2] == entry and dialogue.expects_more(text):
                held = (text, confidence)  # more of this answer follows within the hold
                continue
            act(dialogue.on_text(text, confidence), t)
        if held is not None and not (queue and queue[0][2] == entry):
            text, confidence = held
            held = None
            act(dialogue.on_text(text, confidence), t + HOLD_FOR_REST_S)
    for e in result["log"]:
        e["heard"] = " | ".join(e["heard"]) or "(not heard: the call ended)"
        e["grammar"] = "/".join(e["grammar"])
    result["turns"] = caller.turns
    result["seconds"] = round(state["end"] or state["line_free"], 1)
    result["correct"] = {s: slot_ok(p, s, result["slots"].get(s)) for s in SLOTS}
    return result


def summarize(results: list[dict]) -> dict:
    n = len(results)
    return {
        "callers": n,
        "slot_accuracy": round(sum(sum(r["correct"].values()) for r in results) / (n * len(SLOTS)), 4),
        "report_accuracy": round(sum(all(r["correct"].values()) for r in results) / n, 4),
        "completed": round(sum(r["status"] == "complete" for r in results) / n, 4),
        "median_turns": statistics.median(r["turns"] for r in results),
        "max_turns": max(r["turns"] for r in results),
        "median_call_seconds_est": statistics.median(r["seconds"] for r in results),
        "outcomes": {o: sum(r["outcome"] == o for r in results) for o in sorted({r["outcome"] for r in results})},
        "reasons": {o: sum(f"{r['outcome']}/{r.get('reason')}" == o for r in results)
                    for o in sorted({f"{r['outcome']}/{r.get('reason')}" for r in results})},
        "per_slot": {s: round(sum(r["correct"][s] for r in results) / n, 4) for s in SLOTS},
    }


def show_failure(r: dict, p: dict) -> str:
    wrong = {s: (r["slots"].get(s), p["gold"][s]) for s in SLOTS if not r["correct"][s]}
    lines = [f"{r['id']} {r['outcome']}/{r.get('reason')} turns={r['turns']} wrong (got, gold)={wrong}"]
    for e in r["log"]:
        lines.append(f"    bot[{e['slot']}]: {e['bot']}")
        lines.append(f"    caller: {e['caller']}   => heard[{e['grammar']}]: {e['heard']}")
    return "\n".join(lines)


_CER_FOLD = str.maketrans({"幺": "一", "两": "二", **{str(d): "零一二三四五六七八九"[d] for d in range(10)}})


def asr_report(ps: list[dict], heard: Heard, flow, extractor) -> None:
    """Per answer slot and vocabulary: character error rate of the recognized answers (digits folded:
    幺/1 = 一), and how often understanding gets the slot right from the answer alone."""
    from speech.cer import character_errors
    from speech.recognizer import grammar_phrases
    from speech.understanding.types import CallContext

    slot_keys = {spec.name: grammar_key(grammar_phrases(spec.hints) if spec.hints else None) for spec in flow.slots}
    for slot in SLOTS:
        keys = list(dict.fromkeys([FREE, slot_keys.get(slot, FREE)]))
        for key in keys:
            errors = total = n = right = 0
            wrong = []
            for p in ps:
                context = CallContext(datetime.fromisoformat(p["started_at"]), p["caller_number"], slot)
                for text in dict.fromkeys(o for o in p["answers"][slot] if o in heard.files):
                    hyp = " ".join(t for t, _ in heard.utterance(text, key)[0])
                    e, m = character_errors(text.translate(_CER_FOLD), hyp.translate(_CER_FOLD))
                    errors, total, n = errors + e, total + m, n + 1
                    value = extractor.extract(hyp, context).values.get(slot)
                    ok = slot_ok(p, slot, value.value if value else None)
                    right += ok
                    if not ok:
                        wrong.append(f"{text}->{hyp.replace(' ', '')}")
            print(f"{slot:18s} {key:12s} n={n:3d} CER={errors / max(total, 1):.3f} slot right={right / max(n, 1):.2f}")
            if os.environ.get("ASR_WRONG"):
                print("    " + "  ".join(wrong))


def main() -> int:
    global PERSONAS, POLICIES, AUDIO  # set from the options; read by the recognition workers, forked later
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--ids", help="comma-separated caller ids to run (after --limit)")
    ap.add_argument("--show", type=int, default=30, help="failing calls to print")
    ap.add_argument("--flow", type=Path, default=FLOW)
    ap.add_argument("--no-records", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="only the JSON figures")
    ap.add_argument("--asr-report", action="store_true", help="recognition error rates per slot and grammar")
    ap.add_argument("--personas", type=Path, default=PERSONAS,
                    help="callers (JSON lines), e.g. bench/gen_callers.py's callers.jsonl")
    ap.add_argument("--policies", type=Path, default=POLICIES, help="their policy records (CSV)")
    ap.add_argument("--audio", type=Path, default=AUDIO,
                    help="their recordings (manifest.tsv), e.g. var/claims_eval/gen-47/audio")
    args = ap.parse_args()
    PERSONAS, POLICIES, AUDIO = args.personas, args.policies, args.audio

    from speech.dialogue.binding import bind
    from speech.dialogue.flow import load_flow
    from speech.dialogue.records import RecordIndex, load_policies_csv
    from speech.understanding.kinds import KindRegistry

    files = load_manifest(AUDIO)
    # bound to its kinds as the gateway binds it: the same grammars, the flow's own reader
    flow, extractor = bind(load_flow(args.flow), KindRegistry.from_config(ROOT / "config"))
    grammars = flow_grammars(flow)
    ps = personas(files, args.limit)
    heard = Heard(files, grammars)
    heard.warm(needed(ps, files, flow), args.workers)
    if args.ids:
        wanted = set(args.ids.split(","))
        ps = [p for p in ps if p["id"] in wanted]

    if args.asr_report:
        asr_report(ps, heard, flow, extractor)
        return 0
    records = None if args.no_records else RecordIndex(load_policies_csv(POLICIES))
    started = time.monotonic()
    results = [run_call(p, flow, extractor, records, heard) for p in ps]
    summary = summarize(results)
    summary["run_seconds"] = round(time.monotonic() - started, 1)
    if not args.json:
        by_id = {p["id"]: p for p in ps}
        bad = [r for r in results if not all(r["correct"].values())]
        for r in bad[:args.show]:
            print(show_failure(r, by_id[r["id"]]))
            print()
        print("grammars:", {k: (len(v) if v else None) for k, v in grammars.items()})
        print("per slot:", json.dumps(summary["per_slot"], ensure_ascii=False))
        print("outcomes:", summary["outcomes"])
        print("failing:", " ".join(f"{r['id']}:{','.join(s for s in SLOTS if not r['correct'][s])}" for r in bad))
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
