"""The engine's generic parts a survey by voice needs, on a flow written by hand: a slot asked only
when a condition on the call's params and earlier answers holds (`ask_if`), a check against a
value the call brings (`expect`, the call ending when it fails twice), the `digits` kind (an ID
number's last four, X said as 叉), and a choice that hears "不清楚" as one of its answers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from speech.dialogue.actions import Hangup, Prompt, Report, Transfer
from speech.dialogue.binding import bind
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import FlowError, parse_flow
from speech.understanding.kinds import Heard, KindError, KindRegistry
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parent.parent
STARTED = datetime(2026, 3, 20, 10, 0)

FLOW = {
    "name": "check_flow",
    "params": ["expected", "regular"],
    "limits": {"max_turns": 20},
    "slots": [
        {"name": "suffix", "kind": "digits", "options": {"length": 4, "x": True}, "expect": "expected",
         "confirm": False, "prompts": ["请说身份证后四位。", "请再说一次后四位。"],
         "problems": {"mismatch": "与记录不一致，请再说一遍。"}, "limits": {"no_match": 2, "no_input": 2},
         "dtmf": {"after": 3, "prompt": "请按键输入。", "max_length": 4, "star": "X"}},
        {"name": "signed", "kind": "choice", "confirm": False, "prompts": ["是您本人签名吗？"],
         "options": {"choices": {"是": ["是的", "对", "1"], "否": ["不是", "不清楚", "2"]}}},
        {"name": "who", "kind": "free_text", "confirm": False, "prompts": ["是谁签的？"], "ask_if": {"signed": "否"}},
        {"name": "years", "kind": "choice", "confirm": False, "prompts": ["您知道交费年限吗？"],
         "options": {"choices": {"是": ["知道"], "否": ["不知道"]}}, "ask_if": {"regular": "1"}},
    ],
    "confirm": "none",
    "outcomes": [{"name": "not_verified", "when": {"suffix": None}}],
    "closing": [{"when": {"suffix": None}, "text": "核实未通过，再见。"}, "再见。"],
    "transfer": "转人工。",
}


@pytest.fixture(scope="module")
def registry() -> KindRegistry:
    return KindRegistry.from_config(ROOT / "config")


def dialogue(registry: KindRegistry, **params: str) -> Dialogue:
    flow, reader = bind(parse_flow(FLOW), registry)
    return Dialogue(flow.with_params({"expected": "357X", "regular": "1", **params}), reader,
                    CallContext(started_at=STARTED))


def asked(actions: list) -> str | None:
    return [a for a in actions if isinstance(a, Prompt)][-1].slot


def test_the_expected_answer_goes_on_and_conditions_pick_the_questions(registry: KindRegistry) -> None:
    d = dialogue(registry)
    assert asked(d.start()) == "suffix"
    assert asked(d.on_text("三五七叉")) == "signed"
    assert asked(d.on_text("不清楚")) == "who"  # a choice word that is also "I don't know"
    assert asked(d.on_text("我太太帮我签的")) == "years"
    actions = d.on_text("知道")
    report = next(a for a in actions if isinstance(a, Report))
    assert report.status == "complete"
    assert report.slots == {"suffix": "357X", "signed": "否", "who": "我太太帮我签的", "years": "是"}
    assert isinstance(actions[-1], Hangup)


def test_a_condition_on_a_param_and_one_on_an_answer_pass_over_their_slots(registry: KindRegistry) -> None:
    d = dialogue(registry, regular="0")
    d.start()
    d.on_text("三五七艾克斯")
    actions = d.on_text("是的")
    report = next(a for a in actions if isinstance(a, Report))
    assert report.status == "complete" and report.slots == {"suffix": "357X", "signed": "是"}


def test_the_keypad_star_is_x(registry: KindRegistry) -> None:
    d = dialogue(registry)
    d.start()
    assert d.on_dtmf("35") == []
    assert asked(d.on_dtmf("7*")) == "signed"
    assert d.slots["suffix"] == "357X"


def test_a_wrong_answer_is_asked_once_more_then_the_call_ends_without_it(registry: KindRegistry) -> None:
    d = dialogue(registry)
    d.start()
    again = d.on_text("一二三四")
    assert asked(again) == "suffix" and again[-1].text == "与记录不一致，请再说一遍。"
    actions = d.on_text("四三二一")
    report = next(a for a in actions if isinstance(a, Report))
    assert report.status == "not_verified" and report.slots == {}
    assert [a.text for a in actions if isinstance(a, Prompt)] == ["核实未通过，再见。"]
    assert isinstance(actions[-1], Hangup)


def test_a_wrong_then_right_answer_goes_on(registry: KindRegistry) -> None:
    d = dialogue(registry)
    d.start()
    d.on_text("一二三四")
    assert asked(d.on_text("三五七叉")) == "signed"


def test_no_expected_value_never_matches(registry: KindRegistry) -> None:
    d = dialogue(registry, expected="")
    d.start()
    d.on_text("三五七叉")
    report = next(a for a in d.on_text("三五七叉") if isinstance(a, Report))
    assert report.status == "not_verified"


def test_a_person_please_at_the_check(registry: KindRegistry) -> None:
    d = dialogue(registry)
    d.start()
    assert isinstance(d.on_text("转人工")[-1], Transfer)


def test_digits_kind(registry: KindRegistry) -> None:
    kind = registry.make("digits", {"length": 4, "x": True})
    heard = lambda text, asked=True: kind.read(Heard(text, STARTED, asked, True))  # noqa: E731
    assert heard("一二三四").value == "1234"
    assert heard("幺两三四").value == "1234"
    assert heard("三五七叉").value == "357X"
    assert heard("后四位是零零八艾克斯").value == "008X"
    assert heard("一二三").problem == "digits_length"
    assert heard("一二三四", asked=False) is None
    assert {"叉", "三"} <= set(kind.grammar())
    assert registry.make("digits", {"length": 4}).read(Heard("三五七叉", STARTED, True, True)).problem == "digits_length"
    with pytest.raises(KindError):
        registry.make("digits", {"width": 4})


def test_conditions_and_checks_name_known_slots_and_params() -> None:
    def broken(change: dict) -> str:
        raw = {**FLOW, "slots": [dict(FLOW["slots"][0]), *FLOW["slots"][1:]]}
        raw["slots"][0].update(change)
        with pytest.raises(FlowError) as e:
            parse_flow(raw)
        return str(e.value)

    assert "slots[0](suffix).expect: names no param" in broken({"expect": "nothing"})
    assert "slots[0](suffix).ask_if.nobody: names no slot" in broken({"ask_if": {"nobody": "1"}})
    assert "cannot name the slot itself" in broken({"ask_if": {"suffix": "1"}})


def test_a_choice_read_only_when_asked(registry: KindRegistry) -> None:
    choices = {"是": ["是的", "知道"], "否": ["不是"]}
    heard = Heard("是的，知道", STARTED, False, True)
    assert registry.make("choice", {"choices": choices}).read(heard) is not None  # a mention, by default
    assert registry.make("choice", {"choices": choices, "unasked": False}).read(heard) is None
    with pytest.raises(KindError):
        registry.make("choice", {"choices": choices, "unasked": "no"})
