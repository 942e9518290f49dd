"""Flows bound to slot kinds (speech.dialogue.binding): the new flow keys, their validation errors
(file and key path), which reader a flow gets, and the claim flows unchanged by it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml

from speech.dialogue.actions import Hangup, Prompt, Report
from speech.dialogue.binding import bind, load_bound_flows
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import FlowError, load_flow
from speech.understanding.kinds import KindRegistry
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parent.parent
SURVEY = ROOT / "tests" / "flows" / "satisfaction_callback.yaml"
STARTED = datetime(2026, 3, 20, 10, 0)


@pytest.fixture(scope="module")
def registry() -> KindRegistry:
    return KindRegistry.from_config(ROOT / "config")


def survey_raw() -> dict:
    return yaml.safe_load(SURVEY.read_text(encoding="utf-8"))


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["slots"][1]["options"].update(maximum=5), "slots[1](score).options.maximum: unknown option (known: max, min)"),
    (lambda r: r["slots"][0].update(kind="boolean"), "slots[0](handled).kind: unknown kind 'boolean'"),
    (lambda r: r["slots"][0].pop("kind"), "slots[0](handled).kind: missing"),
    (lambda r: r["slots"][2].update(options={"choices": 3}), "slots[2](channel).options.choices: expected the values"),
    (lambda r: r["slots"][3].update(role="remark"), "slots[3](remark).role: unknown claim role 'remark'"),
])
def test_kind_errors_name_the_file_and_the_key(tmp_path: Path, registry: KindRegistry, change, expected: str) -> None:
    raw = survey_raw()
    change(raw)
    path = write(tmp_path, raw)
    with pytest.raises(FlowError) as info:
        bind(load_flow(path), registry)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.update(outcome=[]), "outcome: unknown key"),
    (lambda r: r.update(outcomes=[{"name": "complete", "when": {"handled": "否"}}]), "outcomes[0].name: a name of its own"),
    (lambda r: r.update(outcomes=[{"name": "bad", "when": {"handle": "否"}}]), "outcomes[0].when.handle: names no slot"),
    (lambda r: r.update(outcomes=[{"name": "bad", "when": {}}]), "outcomes[0].when: needs a condition"),
    (lambda r: r.update(outcomes=[{"name": "bad"}]), "outcomes[0].when: missing"),
    (lambda r: r.update(result={"topic": "Survey!"}), "result.topic: use lower case"),
    (lambda r: r.update(result={"store": ["score", "mood"]}), "result.store[1]: names no slot of this flow: 'mood'"),
    (lambda r: r.update(result={"where": "x"}), "result.where: unknown key"),
    (lambda r: r["slots"][0].update(confirm="no"), "slots[0](handled).confirm: expected true or false"),
    (lambda r: r["slots"][3].update(options={"none": "无"}, kind=None), "slots[3](remark).options: options are a kind's"),
    (lambda r: r.update(intro=["x"]), "intro: expected text, got a list"),
    (lambda r: r.update(intro="您好{name}"), "intro: placeholder {name} names no slot"),
    (lambda r: r.update(refused=[{"when": {"handled": "否"}, "text": "x"}]), "refused: the last text must have no `when`"),
    (lambda r: r.update(confirm={"question": "对吗？", "changed": "{changes}", "which": "哪项？", "order": ["score"]}),
     "confirm.order: names slots with `confirm: false`: score"),
])
def test_new_keys_are_validated(tmp_path: Path, change, expected: str) -> None:
    raw = survey_raw()
    change(raw)
    path = write(tmp_path, raw)
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)


def test_a_flow_without_claim_kinds_never_uses_the_claim_reader(registry: KindRegistry) -> None:
    flow, reader = bind(load_flow(SURVEY), registry)
    assert reader.claim is None
    assert [(s.slot, s.kind.name) for s in reader.slots.values()] == [
        ("handled", "yes_no"), ("score", "rating"), ("channel", "choice"), ("remark", "free_text")]


def test_the_claim_flows_are_read_by_the_joint_reader_in_their_roles() -> None:
    bound = load_bound_flows(ROOT / "config")
    claim_flow, claim = bound["claim_report"]
    assert claim.claim is not None and set(claim.claim.roles) == set(claim_flow.slot_names)
    callback_flow, callback = bound["claim_status_callback"]
    assert callback.claim is not None and set(callback.claim.roles.values()) == set(callback_flow.slot_names)
    # their hints are their own, as before kinds: none added where the flow had none
    assert callback_flow.slot("reporter_name").hints is None
    one = claim.extract("我爸张建国昨天因为肺炎住进了华西医院", CallContext(started_at=STARTED))
    assert {"relationship", "insured_name", "incident_date", "incident_type", "hospital", "diagnosis"} <= set(one.values)


def test_claim_roles_under_other_slot_names(tmp_path: Path, registry: KindRegistry) -> None:
    """A flow of its own names the slots as it likes; the roles say what the joint reader fills."""
    raw = {
        "name": "visit", "closing": "再见。", "transfer": "转人工。", "confirm": "none",
        "slots": [
            {"name": "patient", "kind": "person_name", "role": "insured_name", "prompts": ["病人叫什么？"]},
            {"name": "where", "kind": "hospital", "prompts": ["在哪家医院？"]},
            {"name": "visits", "kind": "number", "options": {"unit": "次", "max": 50}, "prompts": ["去了几次？"]},
        ],
    }
    flow, reader = bind(load_flow(write(tmp_path, raw)), registry)
    assert reader.claim is not None and reader.claim.roles == {"insured_name": "patient", "hospital": "where"}
    found = reader.extract("我爸张建国在华西医院", CallContext(started_at=STARTED, expected_slot="patient"))
    assert {k: v.value for k, v in found.values.items()} == {"patient": "张建国", "where": "四川大学华西医院"}
    dialogue = Dialogue(flow, reader, CallContext(started_at=STARTED))
    dialogue.start()
    asked = dialogue.on_text("我爸张建国在华西医院看的")
    assert asked[-1].slot == "visits" and {"三", "三次"} <= set(asked[-1].hints)
    end = dialogue.on_text("去了三次")
    report = next(a for a in end if isinstance(a, Report))
    assert report.slots == {"patient": "张建国", "where": "四川大学华西医院", "visits": "3"}
    assert report.status == "complete" and report.topic == "visit" and isinstance(end[-1], Hangup)


def test_a_short_read_back_of_the_confirmed_slots_only(tmp_path: Path, registry: KindRegistry) -> None:
    raw = survey_raw()
    raw["slots"][1]["confirm"] = True
    raw["slots"][1]["readback"] = "您打了{score}分"
    raw["confirm"] = {"question": "，对吗？", "changed": "好的，{changes}。对吗？", "which": "请问哪一项不对？"}
    flow, reader = bind(load_flow(write(tmp_path, raw)), registry)
    dialogue = Dialogue(flow, reader, CallContext(started_at=STARTED))
    dialogue.start()
    for answer in ("是的", "四分", "短信"):
        dialogue.on_text(answer)
    read_back = dialogue.on_text("没有了")[-1]
    assert read_back.slot == "confirm" and read_back.text == "好的，您打了4分，对吗？"
    fixed = dialogue.on_text("不对，打五分")[-1]
    assert fixed.text == "好的，您打了5分。对吗？"
    end = dialogue.on_text("对")
    assert next(a for a in end if isinstance(a, Report)).slots["score"] == "5"


def test_the_result_stores_only_its_slots(tmp_path: Path, registry: KindRegistry) -> None:
    raw = survey_raw()
    raw["result"] = {"store": ["score"]}
    flow, reader = bind(load_flow(write(tmp_path, raw)), registry)
    dialogue = Dialogue(flow, reader, CallContext(started_at=STARTED))
    dialogue.start()
    actions = [a for answer in ("是的", "四分", "短信", "没有") for a in dialogue.on_text(answer)]
    report = next(a for a in actions if isinstance(a, Report))
    assert report.slots == {"score": "4"} and set(report.details) == {"score"}
    assert report.topic == "satisfaction_callback"  # no topic given: the flow's name


def test_refusals_are_only_heard_by_flows_that_answer_them(tmp_path: Path, registry: KindRegistry) -> None:
    raw = survey_raw()
    del raw["refused"]
    flow, reader = bind(load_flow(write(tmp_path, raw)), registry)
    assert "别再打了" not in flow.slot("handled").hints
    dialogue = Dialogue(flow, reader, CallContext(started_at=STARTED))
    dialogue.start()
    again = dialogue.on_text("不方便")
    assert isinstance(again[-1], Prompt) and again[-1].slot == "handled"


def test_a_slot_without_readback_is_read_back_in_its_kinds_words(tmp_path: Path, registry: KindRegistry) -> None:
    raw = {
        "name": "costs", "closing": "再见。", "transfer": "转人工。",
        "confirm": {"intro": "跟您确认：", "question": "。对吗？", "changed": "好的，{changes}。对吗？", "which": "哪一项不对？"},
        "slots": [
            {"name": "spent", "kind": "money", "prompts": ["一共花了多少钱？"]},
            {"name": "nights", "kind": "number", "options": {"unit": "晚"}, "prompts": ["住了几晚？"]},
            {"name": "day", "kind": "date", "prompts": ["哪天出院的？"]},
            {"name": "score", "kind": "rating", "prompts": ["打几分？"]},
        ],
    }
    flow, reader = bind(load_flow(write(tmp_path, raw)), registry)
    dialogue = Dialogue(flow, reader, CallContext(started_at=STARTED))
    dialogue.start()
    for answer in ("三千五百块", "住了三晚", "昨天", "四分"):
        actions = dialogue.on_text(answer)
    assert actions[-1].text == "跟您确认：3500元，3晚，2026年3月19日，4分。对吗？"
    assert [a.text for a in dialogue.on_text("不对，打五分") if isinstance(a, Prompt)] == ["好的，5分。对吗？"]
