"""Integration: every simulated caller of shared/eval/claim_dev.jsonl through Dialogue + the claim flow as the gateway binds it (its kinds, the joint claim reader).

The caller is shared/eval/simcaller.py's own `Caller` (text turns): it answers the slot a prompt
asks for with its own phrasings, checks the read-back against its gold values and corrects the first
wrong slot, and says yes to anything else. Turns are counted as simcaller counts them: every prompt
the caller hears and answers, including the last one before the hang-up.
"""

from __future__ import annotations

import os
import importlib.util
import json
import statistics
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from speech.dialogue.actions import Hangup, Prompt, Report, Transfer
from speech.dialogue.engine import Dialogue
from speech.dialogue.binding import bind
from speech.dialogue.flow import Flow, load_flow
from speech.understanding.kinds import KindRegistry
from speech.dialogue.records import RecordIndex, load_policies_csv
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "eval"

# simcaller.py, verbatim in substance
SLOTS = ["reporter_name", "reporter_phone", "relationship", "insured_name", "insured_id_number",
         "incident_date", "incident_type", "hospital", "diagnosis"]
MAX_TURNS = 24

TARGETS = {"slot_accuracy": 0.97, "report_accuracy": 0.90, "median_turns": 8, "max_turns": 16}


def _load_simcaller():
    """The shared simulated caller itself, so this never drifts from what the evaluation plays."""
    spec = importlib.util.spec_from_file_location("simcaller", SHARED / "simcaller.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simcaller = _load_simcaller()
slot_ok = simcaller.slot_ok
Caller = simcaller.Caller


# ---------------------------------------------------------------- running calls


@lru_cache(maxsize=None)
def bound(file: str):
    """A flow of config/flows bound to its kinds, and its reader: as the gateway loads them."""
    return bind(load_flow(ROOT / "config" / "flows" / file), registry())


@lru_cache(maxsize=1)
def registry() -> KindRegistry:
    return KindRegistry.from_config(ROOT / "config")


@lru_cache(maxsize=1)
def policies() -> RecordIndex:
    return RecordIndex(load_policies_csv(SHARED / "policies_dev.csv"))


def personas() -> list[dict]:
    text = (SHARED / "claim_dev.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_call(p: dict, flow: Flow, extractor, records) -> dict:
    """One call as simcaller's run_one sees it: events in order, the caller answering each prompt."""
    context = CallContext(started_at=datetime.fromisoformat(p["started_at"]), caller_number=p["caller_number"])
    dialogue = Dialogue(flow, extractor, context, records)
    caller = Caller(p)
    result: dict[str, Any] = {"id": p["id"], "outcome": "timeout", "slots": {}, "log": [], "status": None}
    pending = dialogue.start()
    while pending:
        said: list[str] = []
        for action in pending:
            if isinstance(action, Report):
                result["slots"], result["status"] = dict(action.slots), action.status
            elif isinstance(action, (Hangup, Transfer)):
                result["outcome"] = "hangup" if isinstance(action, Hangup) else "transfer"
                result["reason"] = action.reason
                said = []
                break
            elif isinstance(action, Prompt):
                if action.slots:
                    result["slots"] = dict(action.slots)
                if caller.turns >= MAX_TURNS:
                    result["outcome"] = "too_many_turns"
                    said = []
                    break
                event = {"event": "prompt", "text": action.text, "slot": action.slot, "slots": action.slots}
                say = caller.answer(event)
                caller.turns += 1
                result["log"].append({"bot": action.text, "slot": action.slot, "caller": say})
                said.append(say)
        else:
            pending = [a for text in said for a in dialogue.on_text(text)]
            continue
        break
    result["turns"] = caller.turns
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
        "outcomes": {o: sum(r["outcome"] == o for r in results) for o in sorted({r["outcome"] for r in results})},
        "per_slot": {s: round(sum(r["correct"][s] for r in results) / n, 4) for s in SLOTS},
    }


def failures(results: list[dict], limit: int = 5) -> str:
    bad = [r for r in results if not all(r["correct"].values())][:limit]
    lines = []
    for r in bad:
        wrong = {s: r["slots"].get(s) for s in SLOTS if not r["correct"][s]}
        lines.append(f"{r['id']} {r['outcome']} turns={r['turns']} wrong={wrong}")
        lines += [f"    bot[{e['slot']}]: {e['bot']}\n    caller: {e['caller']}" for e in r["log"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- the targets


@pytest.mark.parametrize("with_records", [True, False], ids=["policy-records", "no-records"])
def test_claim_dev_targets(with_records: bool) -> None:
    flow, extractor = bound("claim_report.yaml")
    records = policies() if with_records else None
    results = [run_call(p, flow, extractor, records) for p in personas()]
    summary = summarize(results)
    print(f"\nclaim_dev ({'with' if with_records else 'without'} policy records):",
          json.dumps(summary, ensure_ascii=False))
    detail = failures(results)
    assert summary["slot_accuracy"] >= TARGETS["slot_accuracy"], detail
    assert summary["report_accuracy"] >= TARGETS["report_accuracy"], detail
    assert summary["median_turns"] <= TARGETS["median_turns"], summary
    assert summary["max_turns"] <= TARGETS["max_turns"], detail
    assert summary["outcomes"].get("too_many_turns", 0) == 0


# ---------------------------------------------------------------- scripted conversations, real understanding


def scripted(utterances: list[str], caller_number: str = "16066907439", started_at: str = "2026-03-19T10:16:00+08:00",
             records: RecordIndex | None = None) -> tuple[Dialogue, list]:
    flow, extractor = bound("claim_report.yaml")
    d = Dialogue(flow, extractor, CallContext(datetime.fromisoformat(started_at), caller_number), records)
    out = d.start()
    for text in utterances:
        assert not d.finished, (text, out)
        out += d.on_text(text)
    return d, out


def test_real_understanding_full_call_with_correction() -> None:
    d, out = scripted([
        "你好 我要 报案 我爸 钟明 前天 下午 三点 住院 了 急性 心肌梗死 在 西京医院",
        "我 叫 钟勇",
        "身份证号是三三零幺零六幺九九零幺幺幺三零九六幺",
        "不对，我的手机号是幺八零零零八零六三六零",
        "对",
    ])
    assert d.finished
    report = next(a for a in out if isinstance(a, Report))
    assert report.status == "complete"
    assert report.slots["relationship"] == "父母" and report.slots["reporter_name"] == "钟勇"
    assert report.slots["incident_date"] == "2026-03-17" and report.slots["incident_type"] == "住院"
    assert report.slots["reporter_phone"] == "18000806360"
    assert "心肌梗死" in report.slots["diagnosis"]


def test_real_understanding_invalid_id_then_caller_number() -> None:
    d, out = scripted(["我叫李明，给我自己报", "身份证号是三三零幺零六幺九九零幺幺幺三零九六二"], caller_number="13812345678")
    last = [a for a in out if isinstance(a, Prompt)][-1]
    assert last.slot == "insured_id_number" and "校验" in last.text
    out = d.on_text("三三零一零六一九九零一一一三零九六一")
    assert [a for a in out if isinstance(a, Prompt)][-1].slot == "incident_date"


def test_real_understanding_wants_human() -> None:
    d, out = scripted(["我叫李明", "帮我转人工"])
    assert d.finished and isinstance(out[-1], Transfer) and out[-1].reason == "caller_request"
    assert any(isinstance(a, Report) and a.status == "transferred" for a in out)


def test_real_understanding_runs_the_second_flow() -> None:
    flow, extractor = bound("claim_status_callback.yaml")
    context = CallContext(datetime.fromisoformat("2026-03-19T10:16:00+08:00"), "13812345678")
    d = Dialogue(flow, extractor, context)
    d.start()
    assert d.on_text("我 叫 李明")[0].slot == "insured_id_number"
    assert d.on_text("三三零一零六一九九零一一一三零九六一")[0].slot == "reporter_phone"
    readback = d.on_text("就用这个号码")[0]
    assert readback.slot == "confirm" and "回电号码幺三八 幺二三四 五六七八" in readback.text
    report = d.on_text("对的")[0]
    assert isinstance(report, Report) and report.status == "complete"
    assert report.slots == {"reporter_name": "李明", "insured_id_number": "330106199011130961",
                            "reporter_phone": "13812345678"}
