"""Every phrasing of every simulated caller in shared/eval/claim_dev.jsonl, typed and as recognized.

For each caller and slot S, each answer phrasing extracted with expected_slot=S
must give the gold value (hospital: any accepted name; diagnosis: the core term
with at most 6 extra characters), and must not give a wrong value for another
slot. The same holds for the recognizer style: punctuation removed, spaces
between characters, or between pairs of characters (words split anywhere). The opening utterance must fill the
slots its template mentions, all correctly. A read-back correction
("不对，<first phrasing>") must be flagged and fill the slot.
"""

from __future__ import annotations

import os
import json
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from speech.understanding.claims import ClaimReader
from speech.understanding.claims import ROLES as SLOTS
from speech.understanding.types import CallContext

EVAL = Path(os.environ.get("GATEWAY_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "eval"
PERSONAS = EVAL / "claim_dev.jsonl"
CONFIG = Path(__file__).resolve().parents[1] / "config"
STYLES = ("chat", "asr_chars", "asr_pairs")

pytestmark = pytest.mark.skipif(not PERSONAS.exists(), reason="shared eval data not present")


def slot_ok(p: dict[str, Any], slot: str, value: str | None) -> bool:
    """The simulated caller's own check (simcaller.slot_ok)."""
    if value is None:
        return False
    value = value.replace(" ", "")
    if slot == "hospital":
        return value in p["accept"]["hospital"]
    if slot == "diagnosis":
        core = p["accept"]["diagnosis_core"]
        return core in value and len(value) <= len(core) + 6
    if slot == "insured_id_number":
        return value.upper() == p["gold"][slot]
    return value == p["gold"][slot]


def styled(text: str, style: str) -> str:
    """A phrasing as a chat user types it, or as the recognizer would write it."""
    if style == "chat":
        return text
    plain = re.sub(r"[，,。.！!？?、\s]+", "", text)
    if style == "asr_chars":
        return " ".join(plain)
    return " ".join(plain[i:i + 2] for i in range(0, len(plain), 2))  # asr_pairs


def opening_slots(p: dict[str, Any]) -> list[str]:
    """Slots the opening templates mention: "我要报案，我叫X，给我Y报" or "我<who><when><what>，在<hospital>"."""
    if p["opening"].replace(" ", "").startswith("我要报案"):
        return ["reporter_name", "relationship"] + (["insured_name"] if p["gold"]["relationship"] == "本人" else [])
    slots = ["relationship", "incident_date", "incident_type", "hospital", "diagnosis"]
    return slots + (["insured_name"] if p["gold"]["relationship"] != "本人" else [])


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str], list[tuple[int, list[str]]]]:
    """(slot or check, style) → [(1 if right else 0, failure details)]."""
    u = ClaimReader.from_config(CONFIG)
    personas = [json.loads(line) for line in PERSONAS.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[tuple[str, str], list[tuple[int, list[str]]]] = defaultdict(list)
    for p in personas:
        now = datetime.fromisoformat(p["started_at"])
        caller_is_phone = p["caller_number"] == p["gold"]["reporter_phone"]
        seen: dict[tuple[str, str], Any] = {}  # phrasings repeat across styles and turns: extract once
        for slot in SLOTS:
            for answer in p["answers"].get(slot, []):
                for style in STYLES:
                    text = styled(answer, style)
                    if (slot, text) not in seen:
                        seen[(slot, text)] = u.extract(text, CallContext(now, p["caller_number"], slot))
                    e = seen[(slot, text)]
                    got = e.values.get(slot)
                    ok = slot_ok(p, slot, got.value if got else None) or (
                        slot == "reporter_phone" and e.use_caller_number and caller_is_phone
                    )
                    wrong = [f"{s}={v.value}" for s, v in e.values.items() if s != slot and not slot_ok(p, s, v.value)]
                    details = [] if ok and not wrong else [f"{p['id']} {text!r} → {got.value if got else None} {wrong}"]
                    out[(slot, style)].append((int(ok and not wrong), details))
            fix = f"{p['no']}，{p['answers'][slot][0]}"
            e = u.extract(fix, CallContext(now, p["caller_number"], "confirm"))
            got = e.values.get(slot)
            ok = slot_ok(p, slot, got.value if got else None) or (
                slot == "reporter_phone" and e.use_caller_number and caller_is_phone
            )
            if slot == "insured_name" and not ok and p["gold"]["relationship"] == "本人":
                # a bare name at read-back is taken as the caller's; for 本人 that is the insured too
                reporter = e.values.get("reporter_name")
                ok = reporter is not None and reporter.value == p["gold"]["insured_name"]
            ok = ok and e.correction and e.affirm is False
            found = {s: v.value for s, v in e.values.items()}
            out[(slot, "confirm")].append((int(ok), [] if ok else [f"{p['id']} {fix!r} → {found}"]))
        for word, affirm in ((p["yes"], True), (p["no"], False)):
            e = u.extract(word, CallContext(now, p["caller_number"], "confirm"))
            ok = e.affirm is affirm and not e.values
            out[("yes_no", "chat")].append((int(ok), [] if ok else [f"{p['id']} {word!r} → {e.affirm}"]))
        if p.get("opening"):
            for style in STYLES:
                text = styled(p["opening"], style)
                e = u.extract(text, CallContext(now, p["caller_number"], None))
                wrong = [f"{s}={v.value}" for s, v in e.values.items() if not slot_ok(p, s, v.value)]
                missing = [s for s in opening_slots(p) if s not in e.values]
                ok = not wrong and not missing
                details = [] if ok else [f"{p['id']} {text!r} wrong={wrong} missing={missing}"]
                out[("opening", style)].append((int(ok), details))
    return out


def accuracy_table(results: dict[tuple[str, str], list[tuple[int, list[str]]]]) -> str:
    rows = []
    for (check, style), items in sorted(results.items()):
        right = sum(ok for ok, _ in items)
        rows.append(f"{check:18} {style:12} {right:4}/{len(items):<4} {100 * right / len(items):6.2f}%")
    return "\n".join(rows)


@pytest.mark.parametrize("style", (*STYLES, "confirm"))
@pytest.mark.parametrize("slot", SLOTS)
def test_answers(results: dict, slot: str, style: str) -> None:
    failures = [d for ok, details in results[(slot, style)] for d in details]
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20]) + "\n\n" + accuracy_table(results)


@pytest.mark.parametrize("style", STYLES)
def test_openings(results: dict, style: str) -> None:
    failures = [d for ok, details in results[("opening", style)] for d in details]
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])


def test_yes_no(results: dict) -> None:
    failures = [d for ok, details in results[("yes_no", "chat")] for d in details]
    assert not failures, "\n".join(failures)
